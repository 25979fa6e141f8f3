//! Batches: many creates from one manifest (`i2v-mcp batch run FILE`), in budget, resumable,
//! with storyboards. The flow:
//!
//! 1. Read every row (`manifest`), and vet each through `Core::vet`: the checks create makes
//!    before the journal (model, request rules, images, preflight, per-task caps) and its quote.
//!    A bad row is reported with its line and the batch does not start (unless skipping).
//! 2. Check the journal: a row already run with other fields is an error naming it.
//! 3. Check the total of the rows still to create against `--max-total-usd` and the daily budget.
//! 4. Register the rows (journal, both backends) and run them, at most `concurrency` at once. A
//!    row's create carries the idempotency key `batch:<batch>:<row>`: after a crash, a rerun
//!    finds the task of every row already created instead of creating it again.
//! 5. A row with `after` waits for that row; with `continue` its image is that row's last frame,
//!    decoded in the contact-sheet child (`preview::last_frame`).
//! 6. The report (JSONL), a gallery beside it (`gallery`), and optionally the shots joined.

mod gallery;
pub mod manifest;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::{CallCtx, Core, Quote};
use crate::error::{Category, Error, Result};
use crate::journal::{BatchRow, NewBatchRow};
use crate::model::{ProviderId, Status, Task, now_ms};
use crate::providers::registry::Declared;
pub use manifest::{Invalid, Row};

/// Rows vetted at once (image reads and decodes run on the blocking pool).
const VET_AT_ONCE: usize = 8;
/// Creates of one row refused as rate limited before the row fails.
const RATE_LIMITED_TRIES: u32 = 8;
/// Invalid rows named in the error that stops a batch.
const SHOWN_INVALID: usize = 20;

/// What `batch run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub file: PathBuf,
    /// The batch's id; default: derived from the manifest's absolute path.
    pub batch_id: Option<String>,
    /// Rows running at once; default from the providers' limits (`default_concurrency`).
    pub concurrency: Option<usize>,
    pub max_total_usd: Option<f64>,
    /// Quote every row, print the total, send nothing.
    pub dry_run: bool,
    /// The JSONL report; the gallery goes beside it (`.html`).
    pub report: Option<PathBuf>,
    /// Leave invalid rows (and the rows after them) out instead of refusing the batch.
    pub skip_invalid: bool,
    /// Join the shots, in file order, into this MP4.
    pub join: Option<PathBuf>,
}

/// One row's price, for `--dry-run`.
#[derive(Debug, Clone, Serialize)]
pub struct RowQuote {
    pub row: String,
    pub line: usize,
    pub provider: ProviderId,
    pub model: String,
    pub usd: Option<f64>,
    pub basis: String,
    /// Already created by an earlier run of this batch: not counted in the total.
    pub created: bool,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowResult {
    pub row: String,
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// succeeded, failed, cancelled, skipped (its `after` row did not succeed) or invalid.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The end of a run (or of a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub batch_id: String,
    pub dry_run: bool,
    pub rows: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub invalid: Vec<Invalid>,
    /// Estimated cost of the rows still to create (dry run) or created by this batch.
    pub total_usd: f64,
    /// Rows with no known price (not in the total).
    pub unpriced: usize,
    pub concurrency: usize,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quotes: Vec<RowQuote>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<RowResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gallery: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined: Option<PathBuf>,
    /// Why the shots were not joined, when asked to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_error: Option<String>,
    /// Dry run: why the batch would not start (its total breaks a limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl Summary {
    /// Whether the batch fully succeeded (every row, and the join when asked).
    pub fn ok(&self) -> bool {
        self.failed == 0
            && self.skipped == 0
            && self.invalid.is_empty()
            && self.join_error.is_none()
            && self.refused.is_none()
    }
}

/// Where a run is, for the progress line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchProgress {
    pub total: usize,
    pub done: usize,
    pub running: usize,
    pub failed: usize,
    pub spent_usd: f64,
    pub eta_seconds: Option<u64>,
}

impl std::fmt::Display for BatchProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch: {}/{} done, {} running, {} failed, ${:.2} spent",
            self.done, self.total, self.running, self.failed, self.spent_usd
        )?;
        match self.eta_seconds {
            Some(s) => write!(f, ", eta {s} s"),
            None => Ok(()),
        }
    }
}

/// The default batch id: the manifest's absolute path, hashed (the same file run again is the
/// same batch).
fn default_batch_id(file: &Path) -> String {
    use sha2::{Digest, Sha256};
    let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let digest = hex::encode(Sha256::digest(abs.display().to_string().as_bytes()));
    format!("b_{}", &digest[..16])
}

/// The idempotency key of a row's create.
pub fn row_key(batch: &str, row: &str) -> String {
    format!("batch:{batch}:{row}")
}

/// Rows at once by default: for each provider in the batch, its client-side rate limit per 10
/// seconds (or a sixth of its limit per minute), 4 where none is set, 2 for a keyless
/// (on-machine) renderer; the smallest of those, at least 1.
pub fn default_concurrency(core: &Core, providers: &[ProviderId]) -> usize {
    providers
        .iter()
        .map(|p| {
            if !p.decl().needs_key() {
                return 2;
            }
            let limit = core
                .cfg
                .providers
                .get(p)
                .map(|c| c.rate_limit)
                .unwrap_or(p.decl().rate_limits);
            match (limit.per_10_seconds, limit.per_minute) {
                (Some(n), _) => n as usize,
                (None, Some(m)) => (m as usize).div_ceil(6),
                (None, None) => 4,
            }
        })
        .min()
        .unwrap_or(1)
        .clamp(1, 16)
}

/// The directories of the local images rows name: the person running the batch named them, as
/// with `create`'s own arguments.
fn roots(rows: &[Row]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = rows
        .iter()
        .flat_map(|r| [r.req.image.as_ref(), r.req.end_image.as_ref()])
        .flatten()
        .filter(|s| {
            let l = s.to_ascii_lowercase();
            !l.starts_with("http://") && !l.starts_with("https://") && !l.starts_with("data:")
        })
        .filter_map(|s| Path::new(s).parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.into_iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect()
}

/// What stops a batch before anything is sent because rows are invalid.
fn invalid_error(bad: &[Invalid]) -> Error {
    let mut lines: Vec<String> = bad
        .iter()
        .take(SHOWN_INVALID)
        .map(|b| b.to_string())
        .collect();
    if bad.len() > SHOWN_INVALID {
        lines.push(format!("... and {} more", bad.len() - SHOWN_INVALID));
    }
    Error::invalid_input(format!(
        "{} invalid row(s); the batch did not start, nothing was sent:\n  {}",
        bad.len(),
        lines.join("\n  ")
    ))
    .with_next_step(
        "fix those rows, or run with --skip-invalid to leave them (and the rows after them) out",
    )
}

/// A read manifest: its rows, vetted, with their quotes.
struct Plan {
    batch_id: String,
    rows: Vec<Row>,
    quotes: Vec<Quote>,
    invalid: Vec<Invalid>,
    ctx: CallCtx,
}

impl Core {
    /// Read, vet and quote every row of `opts.file`; nothing is sent or written.
    async fn batch_plan(&self, opts: &RunOptions) -> Result<Plan> {
        let text = std::fs::read_to_string(&opts.file).map_err(|e| {
            Error::invalid_input(format!(
                "cannot read the batch file '{}': {e}",
                opts.file.display()
            ))
        })?;
        let base = std::fs::canonicalize(&opts.file)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let (rows, mut invalid) = manifest::parse(&opts.file, &text, &base);
        let ctx = CallCtx {
            roots: roots(&rows),
            ..CallCtx::default()
        };
        // A continued row is vetted with the image of the first row of its chain standing in
        // for the frame it will start from (same size; the provider checks it again on create).
        let by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
        let stand_in = |r: &Row| {
            let mut req = r.req.clone();
            let mut at = r;
            while at.continues {
                match at.after.as_deref().and_then(|a| by_id.get(a)) {
                    Some(prev) => at = prev,
                    None => break,
                }
            }
            if r.continues {
                req.image = at.req.image.clone();
            }
            req
        };
        let reqs: Vec<_> = rows.iter().map(stand_in).collect();
        let verdicts: Vec<Result<Quote>> = futures::stream::iter(reqs.iter())
            .map(|req| self.vet(req, &ctx))
            .buffered(VET_AT_ONCE)
            .collect()
            .await;
        let mut kept = Vec::new();
        let mut quotes = Vec::new();
        for (row, verdict) in rows.into_iter().zip(verdicts) {
            match verdict {
                Ok(q) => {
                    kept.push(row);
                    quotes.push(q);
                }
                Err(e) => invalid.push(Invalid {
                    line: row.line,
                    id: Some(row.id.clone()),
                    error: format!("{}: {}", e.category.as_str(), e.message),
                }),
            }
        }
        // Rows after a row that failed vetting cannot run either.
        let (rows, mut orphans) = manifest::without(kept.clone(), &invalid);
        let quotes = kept
            .iter()
            .zip(quotes)
            .filter(|(r, _)| rows.iter().any(|k| k.id == r.id))
            .map(|(_, q)| q)
            .collect();
        invalid.append(&mut orphans);
        invalid.sort_by_key(|b| b.line);
        if !invalid.is_empty() && !opts.skip_invalid {
            return Err(invalid_error(&invalid));
        }
        if rows.is_empty() {
            return Err(Error::invalid_input(format!(
                "the batch file '{}' has no rows to run",
                opts.file.display()
            ))
            .with_next_step(
                "write one create per line (JSONL) or a header and rows (CSV), each with an id",
            ));
        }
        Ok(Plan {
            batch_id: opts
                .batch_id
                .clone()
                .unwrap_or_else(|| default_batch_id(&opts.file)),
            rows,
            quotes,
            invalid,
            ctx,
        })
    }

    /// Run a batch (see the module docs); `progress` hears every change. Errors are the reasons
    /// a batch does not start (invalid rows, a changed row, the budget); a row that fails is in
    /// the summary.
    pub async fn batch_run(
        self: &Arc<Self>,
        opts: &RunOptions,
        progress: impl Fn(&BatchProgress) + Send + Sync + 'static,
    ) -> Result<Summary> {
        let started = Instant::now();
        let plan = self.batch_plan(opts).await?;
        let known = self.journal.batch_rows(&plan.batch_id).await?;
        let known: HashMap<String, BatchRow> =
            known.into_iter().map(|r| (r.row_id.clone(), r)).collect();
        let changed: Vec<String> = plan
            .rows
            .iter()
            .filter(|r| known.get(&r.id).is_some_and(|k| k.hash != r.hash()))
            .map(|r| changed_message(&r.id, r.line, known.get(&r.id).map_or(0, |k| k.line)))
            .collect();
        if !changed.is_empty() {
            return Err(changed_error(&changed));
        }
        let created = |r: &Row| known.get(&r.id).is_some_and(|k| k.task_id.is_some());
        let mut total = 0.0;
        let mut unpriced = Vec::new();
        let mut quotes = Vec::new();
        for (r, q) in plan.rows.iter().zip(&plan.quotes) {
            let done = created(r);
            if !done {
                match q.usd {
                    Some(usd) => total += usd,
                    None => unpriced.push(r.id.clone()),
                }
            }
            quotes.push(RowQuote {
                row: r.id.clone(),
                line: r.line,
                provider: q.provider,
                model: q.model.clone(),
                usd: q.usd,
                basis: q.basis.clone(),
                created: done,
            });
        }
        let total = (total * 1e6).round() / 1e6;
        // A dry run shows every quote even when the total is refused, and says why.
        let budget = self
            .check_batch_budget(opts.max_total_usd, total, &unpriced)
            .await;
        let refused = match budget {
            Err(e) if opts.dry_run => Some(e.message),
            Err(e) => return Err(e),
            Ok(()) => None,
        };
        let mut providers: Vec<ProviderId> = plan.quotes.iter().map(|q| q.provider).collect();
        providers.sort_by_key(|p| p.as_str());
        providers.dedup();
        let concurrency = opts
            .concurrency
            .unwrap_or_else(|| default_concurrency(self, &providers))
            .max(1);
        let mut summary = Summary {
            batch_id: plan.batch_id.clone(),
            dry_run: opts.dry_run,
            rows: plan.rows.len(),
            succeeded: 0,
            failed: 0,
            skipped: 0,
            invalid: plan.invalid.clone(),
            total_usd: total,
            unpriced: unpriced.len(),
            concurrency,
            elapsed_ms: 0,
            quotes: Vec::new(),
            results: Vec::new(),
            report: None,
            gallery: None,
            joined: None,
            join_error: None,
            refused,
        };
        if opts.dry_run {
            summary.quotes = quotes;
            summary.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(summary);
        }
        let source = std::fs::canonicalize(&opts.file)
            .unwrap_or_else(|_| opts.file.clone())
            .display()
            .to_string();
        let new_rows = plan
            .rows
            .iter()
            .map(|r| NewBatchRow {
                row_id: r.id.clone(),
                line: r.line as i64,
                hash: r.hash(),
            })
            .collect();
        let journaled = match self
            .journal
            .batch_register(&plan.batch_id, &source, new_rows, now_ms())
            .await?
        {
            Ok(rows) => rows,
            Err(changed) => {
                let msgs: Vec<String> = changed
                    .iter()
                    .map(|c| changed_message(&c.row_id, c.line as usize, c.was_line))
                    .collect();
                return Err(changed_error(&msgs));
            }
        };
        let results = self
            .run_rows(&plan, journaled, concurrency, Arc::new(progress))
            .await;
        for r in &results {
            match r.status.as_str() {
                "succeeded" => summary.succeeded += 1,
                "skipped" => summary.skipped += 1,
                _ => summary.failed += 1,
            }
        }
        summary.total_usd =
            (results.iter().filter_map(|r| r.cost_usd).sum::<f64>() * 1e6).round() / 1e6;
        let mut all = results.clone();
        all.extend(plan.invalid.iter().map(|b| RowResult {
            row: b.id.clone().unwrap_or_default(),
            line: b.line,
            task_id: None,
            status: "invalid".into(),
            cost_usd: None,
            video: None,
            sheet: None,
            error: Some(b.error.clone()),
        }));
        all.sort_by_key(|r| r.line);
        if let Some(report) = &opts.report {
            let gallery = write_report(report, &all, &summary)?;
            summary.report = Some(report.clone());
            summary.gallery = Some(gallery);
        }
        if let Some(out) = &opts.join {
            match self.join_results(&results, out).await {
                Ok(()) => summary.joined = Some(out.clone()),
                Err(e) => summary.join_error = Some(e.message),
            }
        }
        summary.results = all;
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }

    /// Refuse before anything is sent when the total breaks `--max-total-usd` or today's budget.
    async fn check_batch_budget(
        &self,
        max_total: Option<f64>,
        total: f64,
        unpriced: &[String],
    ) -> Result<()> {
        let daily = self.cfg.budget.daily_usd;
        if !unpriced.is_empty() && (max_total.is_some() || daily.is_some()) {
            return Err(Error::budget(format!(
                "a spending limit is set but {} row(s) have no known price ({}); nothing was sent",
                unpriced.len(),
                unpriced
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_next_step(
                "set their prices under [pricing], pick priced models, or drop the limit",
            ));
        }
        if let Some(max) = max_total
            && total > max + 1e-9
        {
            return Err(Error::budget(format!(
                "the batch would cost an estimated ${total}, over --max-total-usd ${max}; nothing was sent"
            ))
            .with_next_step("raise --max-total-usd, drop rows, or pick cheaper models (--dry-run lists each row's price)"));
        }
        if let Some(daily) = daily {
            let spent = self.spent_today().await?;
            if spent + total > daily + 1e-9 {
                return Err(Error::budget(format!(
                    "the batch's estimated ${total} on top of today's ${spent:.2} is over [budget].daily_usd ${daily}; nothing was sent"
                ))
                .with_next_step("wait until 00:00 UTC, raise the budget, or run fewer rows"));
            }
        }
        Ok(())
    }

    /// Run every row, at most `concurrency` at once, a row waiting for its `after` row.
    async fn run_rows(
        self: &Arc<Self>,
        plan: &Plan,
        journaled: Vec<BatchRow>,
        concurrency: usize,
        progress: Arc<dyn Fn(&BatchProgress) + Send + Sync>,
    ) -> Vec<RowResult> {
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let tracker = Arc::new(Tracker::new(plan.rows.len(), progress));
        let mut outcome_of: HashMap<String, tokio::sync::watch::Receiver<Option<RowResult>>> =
            HashMap::new();
        let mut handles = Vec::new();
        for row in &plan.rows {
            let (tx, rx) = tokio::sync::watch::channel(None);
            let waits_for = row.after.as_ref().and_then(|a| outcome_of.get(a).cloned());
            outcome_of.insert(row.id.clone(), rx);
            let job = RowJob {
                core: self.clone(),
                batch: plan.batch_id.clone(),
                row: row.clone(),
                known: journaled.iter().find(|k| k.row_id == row.id).cloned(),
                ctx: plan.ctx.clone(),
            };
            let (permits, tracker) = (permits.clone(), tracker.clone());
            handles.push(tokio::spawn(async move {
                let before = match waits_for {
                    Some(mut rx) => rx
                        .wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|r| r.clone()),
                    None => None,
                };
                let _permit = permits.acquire_owned().await;
                tracker.started();
                let result = job.run(before).await;
                tracker.finished(&result);
                let _ = tx.send(Some(result.clone()));
                result
            }));
        }
        let mut results = Vec::new();
        for (h, row) in handles.into_iter().zip(&plan.rows) {
            results.push(h.await.unwrap_or_else(|e| RowResult {
                error: Some(format!("the row's job stopped: {e}")),
                ..RowResult::failed(row, None)
            }));
        }
        results
    }

    /// Join the succeeded shots of `results`, in order, into `out` (in the decoder child).
    async fn join_results(&self, results: &[RowResult], out: &Path) -> Result<()> {
        let mut shots = Vec::new();
        for r in results {
            match (&r.status[..], &r.video) {
                ("succeeded", Some(v)) => shots.push((r.row.clone(), PathBuf::from(v))),
                _ => {
                    return Err(Error::invalid_input(format!(
                        "not joined: row {} (line {}) has no video ({})",
                        r.row, r.line, r.status
                    )));
                }
            }
        }
        crate::preview::join(&self.cfg.preview, &shots, out)
            .await
            .map(|_| ())
            .map_err(Error::unsupported)
    }

    /// `batch join`: the shots of the batch run from `file`, in file order, into `out`.
    pub async fn batch_join(
        &self,
        file: &Path,
        batch_id: Option<&str>,
        out: &Path,
    ) -> Result<crate::preview::Joined> {
        let id = batch_id.map_or_else(|| default_batch_id(file), str::to_string);
        let rows = self.journal.batch_rows(&id).await?;
        if rows.is_empty() {
            return Err(Error::not_found(format!(
                "no batch {id} in the journal (from '{}'): run it first with batch run",
                file.display()
            )));
        }
        let mut shots = Vec::new();
        for r in &rows {
            let task = match &r.task_id {
                Some(t) => self.task(t).await?,
                None => {
                    return Err(Error::invalid_input(format!(
                        "not joined: row {} (line {}) has no task yet ({})",
                        r.row_id, r.line, r.status
                    )));
                }
            };
            match task.video.as_ref().and_then(|v| v.local_path.clone()) {
                Some(p) if task.status == Status::Succeeded => {
                    shots.push((r.row_id.clone(), PathBuf::from(p)))
                }
                _ => {
                    return Err(Error::invalid_input(format!(
                        "not joined: row {} (line {}) has no video (task {} is {})",
                        r.row_id, r.line, task.task_id, task.status
                    )));
                }
            }
        }
        crate::preview::join(&self.cfg.preview, &shots, out)
            .await
            .map_err(Error::unsupported)
    }
}

fn changed_message(row: &str, line: usize, was_line: i64) -> String {
    format!(
        "row {row} (line {line}) has other fields than when this batch ran it (line {was_line} then)"
    )
}

fn changed_error(msgs: &[String]) -> Error {
    Error::invalid_input(format!(
        "{}; nothing was sent",
        msgs.join("; ")
    ))
    .with_next_step("give a changed row a new id (its old task stays as it was), or restore it; or run the file as a new batch with --batch")
}

impl RowResult {
    fn failed(row: &Row, error: Option<String>) -> RowResult {
        RowResult {
            row: row.id.clone(),
            line: row.line,
            task_id: None,
            status: "failed".into(),
            cost_usd: None,
            video: None,
            sheet: None,
            error,
        }
    }

    fn of_task(row: &Row, task: &Task) -> RowResult {
        let video = task.video.as_ref().and_then(|v| v.local_path.clone());
        let sheet = video
            .as_deref()
            .map(|v| crate::preview::sheet_path(Path::new(v), &task.task_id))
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string());
        let mut error = task
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.category.as_str(), e.message));
        if task.status == Status::Succeeded && video.is_none() {
            error = Some(
                task.note
                    .clone()
                    .unwrap_or_else(|| "the video was not downloaded".into()),
            );
        }
        RowResult {
            row: row.id.clone(),
            line: row.line,
            task_id: Some(task.task_id.clone()),
            status: if task.status == Status::Succeeded && video.is_none() {
                "failed".into()
            } else {
                task.status.as_str().into()
            },
            cost_usd: task.estimated_cost_usd,
            video,
            sheet,
            error,
        }
    }
}

/// One row's run.
struct RowJob {
    core: Arc<Core>,
    batch: String,
    row: Row,
    known: Option<BatchRow>,
    ctx: CallCtx,
}

impl RowJob {
    async fn run(self, before: Option<RowResult>) -> RowResult {
        let result = self.attempt(before).await;
        let journal = &self.core.journal;
        if let Err(e) = journal
            .batch_row_update(
                &self.batch,
                &self.row.id,
                result.task_id.as_deref(),
                &result.status,
                result.error.as_deref(),
                now_ms(),
            )
            .await
        {
            tracing::warn!(row = %self.row.id, error = %e, "cannot record the row's outcome; its task is journaled, a rerun finds it");
        }
        result
    }

    async fn attempt(&self, before: Option<RowResult>) -> RowResult {
        let row = &self.row;
        // Done in an earlier run: its task as it is now.
        if let Some(k) = &self.known
            && k.status == "succeeded"
            && let Some(t) = &k.task_id
            && let Ok(task) = self.core.task(t).await
        {
            return RowResult::of_task(row, &task);
        }
        let mut req = row.req.clone();
        if row.after.is_some() {
            let Some(prev) = before.filter(|b| b.status == "succeeded") else {
                return RowResult {
                    status: "skipped".into(),
                    error: Some(format!(
                        "row {} did not succeed",
                        row.after.as_deref().unwrap_or_default()
                    )),
                    ..RowResult::failed(row, None)
                };
            };
            if row.continues {
                match self.first_frame(&prev).await {
                    Ok(png) => req.image = Some(png.display().to_string()),
                    Err(e) => return RowResult::failed(row, Some(e)),
                }
            }
        }
        req.idempotency_key = Some(row_key(&self.batch, &row.id));
        let mut task = match self.create(req).await {
            Ok(t) => t,
            Err(e) => {
                return RowResult::failed(
                    row,
                    Some(format!("{}: {}", e.category.as_str(), e.message)),
                );
            }
        };
        if task.deduplicated && task.is_settled() {
            // Created by an earlier run: one refresh retries a download that gave up.
            if let Ok(t) = self.core.get(&task.task_id, None, CallCtx::default()).await {
                task = t;
            }
        }
        let journal = &self.core.journal;
        let _ = journal
            .batch_row_update(
                &self.batch,
                &row.id,
                Some(&task.task_id),
                "created",
                None,
                now_ms(),
            )
            .await;
        while !task.is_settled() {
            if let Some(t) = self.interrupted_submit(&task).await {
                task = t;
                continue;
            }
            let wait = self.core.cfg.max_wait_seconds.min(30);
            match self
                .core
                .get(&task.task_id, Some(wait), CallCtx::default())
                .await
            {
                Ok(t) => task = t,
                Err(e) if e.category == Category::Internal => {
                    tracing::warn!(row = %row.id, error = %e, "reading the row's task failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return RowResult {
                        task_id: Some(task.task_id.clone()),
                        ..RowResult::failed(row, Some(e.message))
                    };
                }
            }
        }
        RowResult::of_task(row, &task)
    }

    /// The row's create. One refused as rate limited (a full client-side window, or the
    /// provider's 429s) sent nothing or was refused upstream (nothing charged, the key is free
    /// again): it is tried again, a few times, later. No wait inside create: a row whose task
    /// an earlier run created comes back at once.
    async fn create(&self, mut req: crate::model::CreateRequest) -> Result<Task> {
        req.wait_seconds = None;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.core.create(req.clone(), self.ctx.clone()).await {
                Err(e) if e.category == Category::RateLimited && attempt < RATE_LIMITED_TRIES => {
                    let pause = Duration::from_secs(u64::from(5 * attempt).min(60));
                    tracing::info!(row = %self.row.id, ?pause, "rate limited; the row is tried again");
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    /// A row's task found `submitting` long after any submit could still run: an earlier run
    /// was stopped while sending it. Whether the provider took it is unknown, so it is never
    /// sent again: it ends as `submit_unknown` (as a restarted server settles it). `None` while
    /// a submit may still be in flight (another run of this batch).
    async fn interrupted_submit(&self, task: &Task) -> Option<Task> {
        let row = self.core.journal.get(&task.task_id).await.ok()??;
        if !row.is_submitting() || now_ms() - row.created_at < self.submit_cut_off_ms(row.provider)
        {
            return None;
        }
        let e = Error::new(
            Category::SubmitUnknown,
            "an earlier run of this batch stopped while this row's task was being submitted; whether the provider accepted it is unknown, so it was not sent again",
        )
        .with_next_step("check the provider dashboard: the task may exist and be charged; give the row a new id to create it again");
        let _ = self.core.journal.fail(&task.task_id, &e, now_ms()).await;
        self.core.task(&task.task_id).await.ok()
    }

    /// How long a create can take at most: every attempt's timeout and back-off, with a margin.
    fn submit_cut_off_ms(&self, provider: ProviderId) -> i64 {
        let timeout = self
            .core
            .cfg
            .providers
            .get(&provider)
            .map_or(Duration::from_secs(60), |p| p.timeout);
        let attempts = i64::from(super::submit::CREATE_ATTEMPTS);
        attempts * (timeout.as_millis() as i64 + 60_000) + 60_000
    }

    /// The last frame of the previous shot, as a PNG beside its video (decoded in the child).
    async fn first_frame(&self, prev: &RowResult) -> std::result::Result<PathBuf, String> {
        let (Some(video), Some(task)) = (&prev.video, &prev.task_id) else {
            return Err(format!("row {} has no video to continue from", prev.row));
        };
        let video = Path::new(video);
        let png = video.with_file_name(format!("{task}.last.png"));
        if !png.is_file() {
            crate::preview::last_frame(&self.core.cfg.preview, video, &png)
                .await
                .map_err(|e| format!("cannot take the last frame of row {}: {e}", prev.row))?;
        }
        Ok(png)
    }
}

/// Counts for the progress line; each change is announced.
struct Tracker {
    state: Mutex<(BatchProgress, Vec<Duration>)>,
    started: Instant,
    progress: Arc<dyn Fn(&BatchProgress) + Send + Sync>,
}

impl Tracker {
    fn new(total: usize, progress: Arc<dyn Fn(&BatchProgress) + Send + Sync>) -> Tracker {
        Tracker {
            state: Mutex::new((
                BatchProgress {
                    total,
                    ..BatchProgress::default()
                },
                Vec::new(),
            )),
            started: Instant::now(),
            progress,
        }
    }

    fn started(&self) {
        let snapshot = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.0.running += 1;
            s.0.clone()
        };
        (self.progress)(&snapshot);
    }

    fn finished(&self, r: &RowResult) {
        let snapshot = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let (p, times) = &mut *s;
            p.running = p.running.saturating_sub(1);
            p.done += 1;
            if r.status != "succeeded" {
                p.failed += 1;
            }
            p.spent_usd += r.cost_usd.unwrap_or(0.0);
            times.push(self.started.elapsed());
            // Rows finish about every (elapsed / done) while the batch is full.
            let left = p.total - p.done;
            p.eta_seconds = (p.done > 0 && left > 0).then(|| {
                let per_row = self.started.elapsed().as_secs_f64() / p.done as f64;
                (per_row * left as f64).ceil() as u64
            });
            p.clone()
        };
        (self.progress)(&snapshot);
    }
}

/// The gallery beside `report`: its name with `.html` (`.gallery.html` if it is HTML itself).
pub fn gallery_path(report: &Path) -> PathBuf {
    if report
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html"))
    {
        report.with_extension("gallery.html")
    } else {
        report.with_extension("html")
    }
}

/// Write the JSONL report and the gallery beside it; returns the gallery's path.
fn write_report(report: &Path, rows: &[RowResult], summary: &Summary) -> Result<PathBuf> {
    let mut text = String::new();
    for r in rows {
        let line = serde_json::to_string(r)
            .map_err(|e| Error::internal(format!("cannot encode the report: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    let io = |p: &Path, e: std::io::Error| {
        Error::internal(format!("cannot write '{}': {e}", p.display()))
    };
    if let Some(dir) = report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    crate::files::write_atomic(report, text.as_bytes()).map_err(|e| io(report, e))?;
    let html_path = gallery_path(report);
    let html = gallery::html(&html_path, rows, summary);
    crate::files::write_atomic(&html_path, html.as_bytes()).map_err(|e| io(&html_path, e))?;
    Ok(html_path)
}
