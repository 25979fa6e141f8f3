//! The command line: `serve` (MCP over stdio) and thin commands over the same core for scripts.
//! Human output by default, `--json` for machines; a progress bar on stderr while waiting.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::config::{Config, Overrides};
use crate::core::{CallCtx, Core, EstimateRequest, Progress};
use crate::error::Error;
use crate::model::{
    AspectRatio, CameraMotion, CreateRequest, LoraRef, ProviderId, Resolution, Status, Task,
};
use crate::providers::registry::Declared;

#[derive(Parser, Debug)]
#[command(
    name = "i2v-mcp",
    version,
    about = "Image-to-video MCP server and CLI (Wan 2.x providers and a free local camera-motion preview)"
)]
pub struct Cli {
    /// Config file (default: $I2V_MCP_CONFIG, else <user config dir>/i2v-mcp/config.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Journal directory (env I2V_MCP_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL journal shared by replicas, postgres://.. (env I2V_MCP_DATABASE_URL).
    #[arg(long = "database", global = true)]
    database_url: Option<String>,
    /// Where videos are written (env I2V_MCP_OUTPUT_DIR).
    #[arg(long, global = true)]
    output_dir: Option<PathBuf>,
    /// A directory local images may be read from; repeat for more (env I2V_MCP_ALLOWED_DIRS).
    #[arg(long = "allowed-dir", global = true)]
    allowed_dirs: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve MCP over stdio (stdout carries only JSON-RPC; logs go to stderr), or over HTTP.
    Serve {
        #[command(flatten)]
        flags: ServeFlags,
    },
    /// Create a task; with --wait, wait for the video.
    Create {
        #[command(flatten)]
        args: CreateArgs,
        /// Wait until the task finishes.
        #[arg(long)]
        wait: bool,
    },
    /// Show a task (refreshed from its provider).
    Get {
        task_id: String,
        /// Wait until the task finishes.
        #[arg(long)]
        wait: bool,
    },
    /// List tasks, newest first.
    Tasks {
        #[arg(long)]
        status: Option<Status>,
        #[arg(long)]
        provider: Option<ProviderId>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Cancel a task.
    Cancel { task_id: String },
    /// List known LoRAs.
    Loras {
        #[arg(long)]
        provider: Option<ProviderId>,
        #[arg(long)]
        model: Option<String>,
    },
    /// List providers x models with capabilities and prices.
    Models {
        #[arg(long)]
        provider: Option<ProviderId>,
    },
    /// Estimate the cost of a create.
    Estimate {
        #[command(flatten)]
        args: CreateArgs,
        /// Quote every model that can honour the arguments.
        #[arg(long)]
        compare: bool,
    },
    /// Many creates from a JSONL or CSV manifest: in budget, resumable, storyboards.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// Show the resolved configuration (keys are never printed).
    Doctor,
    /// Write the MCP tool definitions to DIR/<name>.json.
    ExportTools {
        #[arg(long, default_value = "tools")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum BatchCommand {
    /// Run every row of FILE (JSONL, or CSV with a header): the create_i2v_task fields plus a
    /// unique `id`, optional `after` (a row id to wait for) and `continue` (start from the last
    /// frame of that row's video). Running the same file again continues where it stopped.
    Run {
        file: PathBuf,
        /// Rows running at once (default from the providers' rate limits).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Refuse to start when the estimated total is higher.
        #[arg(long)]
        max_total_usd: Option<f64>,
        /// Quote every row and print the total; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write a JSONL report here (and a contact-sheet gallery beside it, .html).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Leave invalid rows (and rows after them) out instead of refusing the batch.
        #[arg(long)]
        skip_invalid: bool,
        /// Join the shots, in file order, into this MP4 (no re-encoding).
        #[arg(long, value_name = "OUT.mp4")]
        join: Option<PathBuf>,
        /// The batch's id (default: from the file's absolute path).
        #[arg(long = "batch")]
        batch_id: Option<String>,
    },
    /// Join the shots of a batch already run from FILE, in file order, into one MP4.
    Join {
        file: PathBuf,
        #[arg(long, value_name = "OUT.mp4")]
        out: PathBuf,
        #[arg(long = "batch")]
        batch_id: Option<String>,
    },
}

/// `serve`'s flags; all but `--http` only apply with it.
#[derive(Args, Debug)]
struct ServeFlags {
    /// Serve HTTP on this address instead of stdio, e.g. 127.0.0.1:8765: streamable HTTP at
    /// /mcp, legacy SSE at /sse, provider webhooks at /webhooks/{provider}, /healthz.
    /// A non-loopback address needs a bearer token.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Bearer token clients must send (prefer env I2V_MCP_AUTH_TOKEN: flags show in `ps`).
    #[arg(long, value_name = "TOKEN", requires = "http")]
    auth_token: Option<String>,
    /// URL clients and providers reach this server at (env I2V_MCP_PUBLIC_URL); turns
    /// provider webhooks on.
    #[arg(long, value_name = "URL", requires = "http")]
    public_url: Option<String>,
    /// Extra Host name to accept (name or name:port); repeat for more (env I2V_MCP_ALLOWED_HOSTS).
    #[arg(long = "allowed-host", value_name = "HOST", requires = "http")]
    allowed_hosts: Vec<String>,
    /// Extra browser Origin to accept, e.g. https://app.example.com:443 or http://localhost:*
    /// (env I2V_MCP_ALLOWED_ORIGINS).
    #[arg(long = "allowed-origin", value_name = "ORIGIN", requires = "http")]
    allowed_origins: Vec<String>,
    /// Largest MCP request body in bytes (default 16 MiB; env I2V_MCP_MAX_BODY_BYTES).
    #[arg(long, value_name = "BYTES", requires = "http")]
    max_body_bytes: Option<usize>,
    /// Streamable HTTP without sessions (every POST stands alone).
    #[arg(long, requires = "http")]
    stateless: bool,
}

#[derive(Args, Debug, Default)]
struct CreateArgs {
    /// Image: path, https URL or data: URI; leave out for text-to-video.
    #[arg(long)]
    image: Option<String>,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    negative_prompt: Option<String>,
    #[arg(long)]
    provider: Option<ProviderId>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    resolution: Option<Resolution>,
    #[arg(long)]
    aspect_ratio: Option<AspectRatio>,
    #[arg(long = "duration")]
    duration_seconds: Option<u32>,
    #[arg(long, allow_hyphen_values = true)]
    seed: Option<i64>,
    /// LoRA as name or name:strength; repeat for more.
    #[arg(long = "lora")]
    loras: Vec<String>,
    /// Camera motion (zoom_in, pan_left, ...).
    #[arg(long)]
    camera_motion: Option<String>,
    /// Camera motion speed.
    #[arg(long)]
    speed: Option<f64>,
    #[arg(long)]
    end_image: Option<String>,
    /// Reference image, video or audio (repeatable; reference-to-video models such as
    /// dashscope/wan3.0-video): a local image, a data URI, or an https URL ending .mp4/.mov/.mp3/.wav.
    #[arg(long = "reference")]
    references: Vec<String>,
    #[arg(long)]
    audio: Option<bool>,
    #[arg(long)]
    audio_url: Option<String>,
    #[arg(long)]
    prompt_extend: Option<bool>,
    #[arg(long)]
    steps: Option<u32>,
    #[arg(long)]
    guidance_scale: Option<f64>,
    #[arg(long)]
    flow_shift: Option<f64>,
    #[arg(long)]
    shot_type: Option<String>,
    #[arg(long)]
    watermark: Option<bool>,
    #[arg(long)]
    acceleration: Option<String>,
    #[arg(long)]
    safety_checker: Option<bool>,
    #[arg(long)]
    idempotency_key: Option<String>,
    #[arg(long)]
    max_cost_usd: Option<f64>,
}

impl CreateArgs {
    fn loras(&self) -> Result<Vec<LoraRef>, Error> {
        self.loras
            .iter()
            .map(|s| match s.rsplit_once(':') {
                Some((name, strength)) => strength
                    .parse::<f64>()
                    .map(|st| LoraRef {
                        name: name.to_string(),
                        strength: Some(st),
                    })
                    .map_err(|_| {
                        Error::invalid_input(format!("--lora '{s}': use name or name:strength"))
                    }),
                None => Ok(LoraRef {
                    name: s.clone(),
                    strength: None,
                }),
            })
            .collect()
    }

    fn camera(&self) -> Option<CameraMotion> {
        self.camera_motion.as_ref().map(|kind| CameraMotion {
            kind: kind.clone(),
            speed: self.speed,
        })
    }

    fn to_request(&self) -> Result<CreateRequest, Error> {
        Ok(CreateRequest {
            image: self.image.clone(),
            prompt: self.prompt.clone().unwrap_or_default(),
            negative_prompt: self.negative_prompt.clone(),
            provider: self.provider,
            model: self.model.clone(),
            resolution: self.resolution,
            aspect_ratio: self.aspect_ratio,
            duration_seconds: self.duration_seconds,
            seed: self.seed,
            loras: self.loras()?,
            camera_motion: self.camera(),
            end_image: self.end_image.clone(),
            references: self.references.clone(),
            audio: self.audio,
            audio_url: self.audio_url.clone(),
            prompt_extend: self.prompt_extend,
            steps: self.steps,
            guidance_scale: self.guidance_scale,
            flow_shift: self.flow_shift,
            shot_type: self.shot_type.clone(),
            watermark: self.watermark,
            acceleration: self.acceleration.clone(),
            safety_checker: self.safety_checker,
            idempotency_key: self.idempotency_key.clone(),
            max_cost_usd: self.max_cost_usd,
            wait_seconds: None,
        })
    }

    fn to_estimate(&self, compare: bool) -> Result<EstimateRequest, Error> {
        Ok(EstimateRequest {
            image: self.image.clone(),
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            provider: self.provider,
            model: self.model.clone(),
            resolution: self.resolution,
            aspect_ratio: self.aspect_ratio,
            duration_seconds: self.duration_seconds,
            loras: self.loras()?,
            camera_motion: self.camera(),
            end_image: self.end_image.clone(),
            audio: self.audio,
            compare,
        })
    }
}

macro_rules! value_parser_from_str {
    ($($t:ty),*) => {$(
        impl clap::builder::ValueParserFactory for $t {
            type Parser = clap::builder::ValueParser;
            fn value_parser() -> Self::Parser {
                clap::builder::ValueParser::new(|s: &str| s.parse::<$t>().map_err(|e| e.message))
            }
        }
    )*};
}
value_parser_from_str!(ProviderId, Status, Resolution, AspectRatio);

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // The contact-sheet child (see `preview`): no config, no runtime, no logging on stdout.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == crate::preview::SUBCOMMAND) {
        return crate::preview::child_main(&args[2..]);
    }
    let cli = Cli::parse();
    let serve = matches!(cli.command, Command::Serve { .. });
    init_logging(serve);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    let result = runtime.block_on(async {
        let result = run(cli).await;
        // Whatever ended the command, this process's task leases go back to the journal now,
        // so another server there takes the tasks over at once (not when the leases lapse).
        crate::watcher::release_all().await;
        result
    });
    // Do not wait for work on the blocking pool (a render, a journal call): its task is journaled
    // and resumes in another server. A framework that starts a server per call waits for the
    // exit before its next call.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            if json && !serve {
                println!("{}", serde_json::json!({ "error": e }));
            } else {
                eprintln!("error: {}: {}", e.category.as_str(), e.message);
                if let Some(step) = &e.next_step {
                    eprintln!("next: {step}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr only (stdout is the protocol in stdio mode). `RUST_LOG` overrides.
fn init_logging(serve: bool) {
    let default = if serve { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn overrides(cli: &Cli) -> Overrides {
    Overrides {
        config_file: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
        output_dir: cli.output_dir.clone(),
        database_url: cli.database_url.clone().map(Into::into),
        allowed_dirs: cli.allowed_dirs.clone(),
        default_provider: None,
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let cfg = Config::load(&overrides(&cli))?;
    let json = cli.json;
    let done = match cli.command {
        Command::Batch { command } => return batch(cfg, command, json).await,
        Command::ExportTools { dir } => export_tools(&dir),
        Command::Doctor => {
            doctor(&cfg, json);
            Ok(())
        }
        Command::Serve { flags } => serve(cfg, flags).await,
        Command::Create { args, wait } => create(cfg, &args, wait, json).await,
        Command::Get { task_id, wait } => get(cfg, &task_id, wait, json).await,
        Command::Tasks {
            status,
            provider,
            limit,
        } => tasks(cfg, status, provider, limit, json).await,
        Command::Cancel { task_id } => {
            let core = Core::open(cfg)?;
            let task = core.cancel(&task_id).await?;
            print_task(&task, json);
            Ok(())
        }
        Command::Loras { provider, model } => loras(cfg, provider, model.as_deref(), json),
        Command::Models { provider } => models(cfg, provider, json),
        Command::Estimate { args, compare } => estimate(cfg, &args, compare, json).await,
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// `batch run` / `batch join`: progress on stderr, the summary on stdout; exit status 1 when a
/// row failed (or the join did not happen).
async fn batch(cfg: Config, command: BatchCommand, json: bool) -> Result<ExitCode, Error> {
    use crate::core::batch::RunOptions;
    let core = Core::open(cfg)?;
    let opts = match command {
        BatchCommand::Join {
            file,
            out,
            batch_id,
        } => {
            let joined = core.batch_join(&file, batch_id.as_deref(), &out).await?;
            if json {
                print_json(&joined);
            } else {
                println!(
                    "joined {} shots ({} frames, {:.1} s) into {}",
                    joined.shots,
                    joined.samples,
                    joined.seconds,
                    out.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        BatchCommand::Run {
            file,
            concurrency,
            max_total_usd,
            dry_run,
            report,
            skip_invalid,
            join,
            batch_id,
        } => RunOptions {
            file,
            batch_id,
            concurrency,
            max_total_usd,
            dry_run,
            report,
            skip_invalid,
            join,
        },
    };
    let summary = core.batch_run(&opts, |p| eprintln!("{p}")).await?;
    if json {
        print_json(&summary);
    } else {
        print_batch(&summary);
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_batch(s: &crate::core::batch::Summary) {
    for b in &s.invalid {
        eprintln!("skipped invalid {b}");
    }
    if s.dry_run {
        for q in &s.quotes {
            let price = q
                .usd
                .map_or_else(|| "unpriced".to_string(), |u| format!("${u} ({})", q.basis));
            let done = if q.created { " [already created]" } else { "" };
            println!(
                "line {} row {}: {}/{} {price}{done}",
                q.line, q.row, q.provider, q.model
            );
        }
        println!(
            "total: ${} for {} row(s){} (dry run: nothing was sent; {} ms)",
            s.total_usd,
            s.quotes.iter().filter(|q| !q.created).count(),
            if s.unpriced > 0 {
                format!(", {} unpriced not counted", s.unpriced)
            } else {
                String::new()
            },
            s.elapsed_ms
        );
        if let Some(why) = &s.refused {
            println!("refused: {why}");
        }
        return;
    }
    for r in &s.results {
        let mut line = format!("line {} row {}: {}", r.line, r.row, r.status);
        if let Some(t) = &r.task_id {
            line.push_str(&format!(" task {t}"));
        }
        if let Some(v) = &r.video {
            line.push_str(&format!(" video {v}"));
        }
        if let Some(e) = &r.error {
            line.push_str(&format!(" ({e})"));
        }
        println!("{line}");
    }
    println!(
        "batch {}: {} succeeded, {} failed, {} skipped, {} invalid of {} rows; ${} estimated; {:.1} s",
        s.batch_id,
        s.succeeded,
        s.failed,
        s.skipped,
        s.invalid.len(),
        s.rows + s.invalid.len(),
        s.total_usd,
        s.elapsed_ms as f64 / 1000.0
    );
    if let Some(r) = &s.report {
        println!("report: {}", r.display());
    }
    if let Some(g) = &s.gallery {
        println!("gallery: {}", g.display());
    }
    if let Some(j) = &s.joined {
        println!("joined: {}", j.display());
    }
    if let Some(e) = &s.join_error {
        println!("not joined: {e}");
    }
}

/// `serve`: stdio, or HTTP with `--http`.
async fn serve(cfg: Config, flags: ServeFlags) -> Result<(), Error> {
    // Any number of servers share a data dir (or a database): each task is watched by the one
    // holding its lease in the journal, and the others hear of its changes there.
    let Some(addr) = flags.http.clone() else {
        return serve_stdio(cfg).await;
    };
    let opts = http_options(&cfg, addr, flags);
    serve_http(cfg, opts).await
}

/// The HTTP options of the config, with `serve`'s flags over them (flags win over environment
/// and file).
fn http_options(cfg: &Config, addr: String, flags: ServeFlags) -> crate::http::HttpOptions {
    let mut opts = crate::http::HttpOptions::from_config(cfg, addr);
    if let Some(t) = flags.auth_token.filter(|t| !t.trim().is_empty()) {
        opts.auth_token = Some(t.trim().to_string().into());
    }
    opts.public_url = flags.public_url.or(opts.public_url);
    if !flags.allowed_hosts.is_empty() {
        opts.allowed_hosts = flags.allowed_hosts;
    }
    if !flags.allowed_origins.is_empty() {
        opts.allowed_origins = flags.allowed_origins;
    }
    if let Some(n) = flags.max_body_bytes {
        opts.max_body_bytes = n;
    }
    opts.stateless = flags.stateless;
    opts
}

/// `create [--wait]`.
async fn create(cfg: Config, args: &CreateArgs, wait: bool, json: bool) -> Result<(), Error> {
    let core = Core::open(cfg)?;
    let req = args.to_request()?;
    let mut inputs = vec![req.image.as_ref(), req.end_image.as_ref()];
    inputs.extend(req.references.iter().map(Some));
    let roots = explicit_roots(&inputs);
    let ctx = CallCtx {
        roots,
        ..CallCtx::default()
    };
    let task = core.create(req, ctx).await?;
    finish_task(&core, task, wait, json).await
}

/// `get TASK_ID [--wait]`.
async fn get(cfg: Config, task_id: &str, wait: bool, json: bool) -> Result<(), Error> {
    let core = Core::open(cfg)?;
    let task = core.get(task_id, None, CallCtx::default()).await?;
    finish_task(&core, task, wait, json).await
}

/// Print `task`, after waiting for it to finish when asked to.
async fn finish_task(core: &Arc<Core>, task: Task, wait: bool, json: bool) -> Result<(), Error> {
    let task = if wait {
        wait_for(core, task, json).await?
    } else {
        task
    };
    print_task(&task, json);
    Ok(())
}

/// `tasks`: newest first, one summary line each.
async fn tasks(
    cfg: Config,
    status: Option<Status>,
    provider: Option<ProviderId>,
    limit: u32,
    json: bool,
) -> Result<(), Error> {
    let core = Core::open(cfg)?;
    let list = core.list(status, provider, Some(limit)).await?;
    if json {
        print_json(&list);
    } else if list.tasks.is_empty() {
        println!("no tasks");
    } else {
        for t in &list.tasks {
            println!("{}", t.summary());
        }
    }
    if let (false, Some(note)) = (json, &list.note) {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// `loras`.
fn loras(
    cfg: Config,
    provider: Option<ProviderId>,
    model: Option<&str>,
    json: bool,
) -> Result<(), Error> {
    let core = Core::open(cfg)?;
    let list = core.list_loras(provider, model)?;
    if json {
        print_json(&list);
    } else {
        for l in &list.loras {
            println!("{}/{} {}: {}", l.provider, l.model, l.name, l.description);
        }
        println!("{}", list.note);
    }
    Ok(())
}

/// `models`: one line per provider x model, with its price and whether a key is set.
fn models(cfg: Config, provider: Option<ProviderId>, json: bool) -> Result<(), Error> {
    let list = Core::open(cfg)?.list_models(provider);
    if json {
        print_json(&list);
        return Ok(());
    }
    for m in &list.models {
        let price = m.spec.price.short();
        let retired = match (&m.spec.retired_on, &m.spec.replacement) {
            (Some(on), Some(r)) => format!(" [retired {on}; replacement: {r}]"),
            (Some(on), None) => format!(" [retired {on}]"),
            _ => String::new(),
        };
        println!(
            "{:<40} {:<9} {}{}{retired}",
            m.spec.key(),
            price,
            m.spec.description,
            if m.configured { "" } else { " [no key]" }
        );
    }
    Ok(())
}

/// `estimate [--compare]`.
async fn estimate(cfg: Config, args: &CreateArgs, compare: bool, json: bool) -> Result<(), Error> {
    let core = Core::open(cfg)?;
    let req = args.to_estimate(compare)?;
    let ctx = CallCtx {
        roots: explicit_roots(&[req.image.as_ref(), req.end_image.as_ref()]),
        ..CallCtx::default()
    };
    let est = core.estimate(&req, &ctx).await?;
    if json {
        print_json(&est);
        return Ok(());
    }
    for q in &est.quotes {
        match q.usd {
            Some(usd) => println!("{}/{}: ${usd} ({})", q.provider, q.model, q.basis),
            None => {
                println!("{}/{}: unpriced ({})", q.provider, q.model, q.price_source)
            }
        }
    }
    println!("spent today: ${:.2}", est.budget.spent_today_usd);
    Ok(())
}

async fn serve_stdio(cfg: Config) -> Result<(), Error> {
    use rmcp::ServiceExt;
    let server = crate::mcp::Server::starting(cfg);
    // Our framing answers over-long and malformed lines that rmcp would drop unanswered.
    let (to_client, from_client, writer) = crate::mcp::stdio::framed(
        tokio::io::stdin(),
        tokio::io::stdout(),
        crate::mcp::stdio::MAX_LINE_BYTES,
    );
    let running = match server.serve((to_client, from_client)).await {
        Ok(running) => running,
        // The client left before `initialize`: a 2026-07-28 client probing with
        // `server/discover`, or a host checking that the command starts. Nothing failed.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
            return Ok(());
        }
        Err(e) => return Err(Error::internal(format!("MCP session failed to start: {e}"))),
    };
    // The session ends when the client closes stdin, or at SIGTERM/SIGINT (hosts and frameworks
    // that start a server per call stop it so): either way `main` hands the leases back.
    let cancel = running.cancellation_token();
    tokio::select! {
        ended = running.waiting() => {
            ended.map_err(|e| Error::internal(format!("MCP session ended with an error: {e}")))?;
        }
        () = shutdown_signal() => {
            tracing::info!("stopping at a signal; open tasks go on in another server or at the next start");
            cancel.cancel();
        }
    }
    // The last answers reach stdout before the process exits.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
    Ok(())
}

async fn serve_http(cfg: Config, opts: crate::http::HttpOptions) -> Result<(), Error> {
    let core = Core::start(cfg)?;
    let (addr, handle) = crate::http::bind(core, opts).await?;
    eprintln!("i2v-mcp: serving MCP at http://{addr}/mcp (legacy SSE at /sse); Ctrl-C stops");
    shutdown_signal().await;
    tracing::info!(
        "shutting down: finishing running requests; open tasks resume at the next start"
    );
    handle.shutdown().await;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The directories of paths the CLI user named on the command line: their own files are theirs
/// to read, without configuring allowed_dirs.
fn explicit_roots(inputs: &[Option<&String>]) -> Vec<PathBuf> {
    inputs
        .iter()
        .flatten()
        .filter(|s| {
            !s.starts_with("http://") && !s.starts_with("https://") && !s.starts_with("data:")
        })
        .filter_map(|s| std::fs::canonicalize(s).ok())
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect()
}

/// Wait until the task settles, with a progress bar on stderr (hidden when not a terminal or
/// with --json).
async fn wait_for(core: &Arc<Core>, task: Task, json: bool) -> Result<Task, Error> {
    if task.is_settled() {
        return Ok(task);
    }
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::with_draw_target(
            Some(100),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
    let b = bar.clone();
    let drawer = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            b.set_position(p.progress.floor() as u64);
            b.set_message(p.message);
        }
    });
    let mut current = task;
    while !current.is_settled() {
        let ctx = CallCtx {
            progress: Some(tx.clone()),
            ..CallCtx::default()
        };
        current = core
            .get(&current.task_id, Some(core.cfg.max_wait_seconds), ctx)
            .await?;
    }
    drop(tx);
    let _ = drawer.await;
    bar.finish_and_clear();
    Ok(current)
}

fn print_json<T: Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode output: {e}"),
    }
}

fn print_task(task: &Task, json: bool) {
    if json {
        print_json(task);
    } else {
        println!("{}", task.summary());
        if let Some(sheet) = contact_sheet(task) {
            println!("contact sheet: {}", sheet.display());
        }
    }
}

/// A succeeded task's contact sheet, when one was made (its absence is in the task's note).
fn contact_sheet(task: &Task) -> Option<PathBuf> {
    let video = task.video.as_ref()?.local_path.as_deref()?;
    let sheet = crate::preview::sheet_path(Path::new(video), &task.task_id);
    (task.status == Status::Succeeded && sheet.is_file()).then_some(sheet)
}

fn doctor(cfg: &Config, json: bool) {
    let providers: Vec<serde_json::Value> = cfg
        .providers
        .iter()
        .map(|(id, p)| {
            serde_json::json!({
                "provider": id,
                "configured": cfg.is_configured(*id),
                "base_url": p.base_url,
                "key_env": id.key_env(),
            })
        })
        .collect();
    let report = serde_json::json!({
        "config_file": cfg.source.as_ref().map(|p| p.display().to_string()),
        "data_dir": cfg.data_dir,
        "output_dir": cfg.output_dir,
        "allowed_dirs": cfg.allowed_dirs,
        "default_provider": cfg.default_provider,
        "max_wait_seconds": cfg.max_wait_seconds,
        "providers": providers,
    });
    if json {
        print_json(&report);
    } else {
        println!(
            "config file: {}",
            cfg.source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none)".into())
        );
        println!("data dir:    {}", cfg.data_dir.display());
        println!("output dir:  {}", cfg.output_dir.display());
        let dirs: Vec<String> = cfg
            .allowed_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        println!(
            "allowed dirs: {}",
            if dirs.is_empty() {
                "(none)".into()
            } else {
                dirs.join(", ")
            }
        );
        for (id, p) in &cfg.providers {
            println!(
                "  {:<8} {:<14} {}",
                id.as_str(),
                if cfg.is_configured(*id) {
                    "configured"
                } else {
                    "no key"
                },
                p.base_url
            );
        }
    }
}

/// Write every tool definition as pretty JSON, one file per tool.
pub fn export_tools(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    for tool in crate::mcp::tools::all() {
        let text = serde_json::to_string_pretty(&tool)
            .map_err(|e| Error::internal(format!("cannot encode tool {}: {e}", tool.name)))?;
        std::fs::write(dir.join(format!("{}.json", tool.name)), format!("{text}\n"))?;
    }
    Ok(())
}
