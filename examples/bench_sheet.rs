//! Times the contact sheet of a 5 s 480p video: the extra time a succeeded task waits before it is
//! announced. Best of 5 runs of: the decode alone (baseline), the whole sheet in this process
//! (decode, pick, compose, two JPEGs), and the sheet as the server makes it (a child process with
//! its limits, spawned from tokio).
//!
//! `cargo run --release --example bench_sheet [video.mp4 ...]`: a 5 s 832x480 zoom_in clip from the
//! local renderer (Baseline profile), then any MP4s given, e.g. providers' (High profile, B-frames).

use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use i2v_mcp::config::PreviewConfig;
use i2v_mcp::preview;
use i2v_mcp::render::{Aspect, Motion, RenderSpec, Resolution, render_mp4};
use openh264::decoder::{Decoder, DecoderConfig, Flush};

const RUNS: usize = 5;
const GOAL_MS: f64 = 150.0;

/// Baseline: read every sample and decode it, nothing else. Returns the frames decoded.
fn decode_only(path: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut mp4 = mp4::Mp4Reader::read_header(BufReader::new(file), size)?;
    let track = mp4
        .tracks()
        .values()
        .find(|t| matches!(t.media_type(), Ok(mp4::MediaType::H264)))
        .ok_or("no H.264 track")?;
    let (id, samples) = (track.track_id(), track.sample_count());
    let mut annex_b = Vec::new();
    for nal in [
        track.sequence_parameter_set()?,
        track.picture_parameter_set()?,
    ] {
        annex_b.extend_from_slice(&[0, 0, 0, 1]);
        annex_b.extend_from_slice(nal);
    }
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    let mut decoder = Decoder::with_api_config(openh264::OpenH264API::from_source(), config)?;
    let _ = decoder.decode(&annex_b);
    let mut frames = 0;
    for s in 1..=samples {
        let Some(sample) = mp4.read_sample(id, s)? else {
            break;
        };
        annex_b.clear();
        let mut rest = &sample.bytes[..];
        while rest.len() >= 4 {
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let end = (4 + n).min(rest.len());
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(&rest[4..end]);
            rest = &rest[end..];
        }
        if let Ok(Some(_)) = decoder.decode(&annex_b) {
            frames += 1;
        }
    }
    frames += decoder.flush_remaining()?.len();
    Ok(frames)
}

/// CPU time (user + system, ms) used so far by this process and by its waited-for children: on
/// a machine shared with other builds, wall time says more about the neighbours than about us.
fn cpu_ms() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the zeroed struct it is given and nothing else.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } == 0 {
            for t in [u.ru_utime, u.ru_stime] {
                total += t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
            }
        }
    }
    total
}

/// Best wall time and best CPU time of `RUNS` runs, in ms.
fn best_ms(
    runs: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..runs {
        let (start, cpu0) = (Instant::now(), cpu_ms());
        f()?;
        wall = wall.min(start.elapsed().as_secs_f64() * 1000.0);
        cpu = cpu.min(cpu_ms() - cpu0);
    }
    Ok((wall, cpu))
}

fn local_clip(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let img = image::RgbImage::from_fn(1920, 1080, |x, y| {
        let (u, v) = (x as f32 / 1920.0, y as f32 / 1080.0);
        let blobs =
            ((u * 7.0).sin() * (v * 5.0).cos() * 50.0) + ((u * 23.0 + v * 17.0).sin() * 20.0);
        let fine = ((x as f32 * 0.9).sin() * (y as f32 * 0.7).cos()) * 12.0;
        let c = |base: f32| (base + blobs + fine).clamp(0.0, 255.0) as u8;
        image::Rgb([c(60.0 + 120.0 * u), c(80.0 + 90.0 * v), c(150.0 - 80.0 * u)])
    });
    let mut png = Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)?;
    let spec = RenderSpec {
        motion: Motion::ZoomIn,
        speed: 1.0,
        duration_seconds: 5,
        resolution: Resolution::P480,
        aspect: Aspect::Auto,
    };
    let mut out = Cursor::new(Vec::new());
    render_mp4(
        png.get_ref(),
        &spec,
        &mut out,
        &mut |_, _| {},
        &AtomicBool::new(false),
    )?;
    let path = dir.join("local-480p.mp4");
    std::fs::write(&path, out.into_inner())?;
    Ok(path)
}

/// Peak resident set (MiB) of this process and, separately, of its largest waited-for child.
fn peak_rss_mib() -> (f64, f64) {
    let get = |who| {
        // SAFETY: getrusage fills the zeroed struct it is given and nothing else.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } == 0 {
            u.ru_maxrss as f64 / 1024.0
        } else {
            f64::NAN
        }
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

/// A synthetic `seconds` s `w`x`h` clip at `fps` (Wan 3.0's longest: 30 s 1080P at 30 fps),
/// H.264 from OpenH264 muxed by the `mp4` crate: a moving pattern, so every frame differs.
fn synthetic_clip(
    dir: &Path,
    (w, h): (usize, usize),
    fps: u32,
    seconds: u32,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate};
    use openh264::formats::{RgbSliceU8, YUVBuffer};
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(8_000_000))
        .max_frame_rate(FrameRate::from_hz(fps as f32));
    let mut enc = Encoder::with_api_config(openh264::OpenH264API::from_source(), config)?;
    // One patterned frame, shifted 7 px a frame (cheap, and every frame differs).
    let mut rgb: Vec<u8> = (0..w * h)
        .flat_map(|p| {
            let (x, y) = (p % w, p / w);
            [(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8]
        })
        .collect();
    let mut writer: Option<mp4::Mp4Writer<std::io::BufWriter<std::fs::File>>> = None;
    let path = dir.join(format!("synthetic-{h}p-{seconds}s.mp4"));
    let tick = 1000 / fps;
    for i in 0..fps * seconds {
        rgb.rotate_left(3 * 7);
        let yuv = YUVBuffer::from_rgb_source(RgbSliceU8::new(&rgb, (w, h)));
        let annex_b = enc.encode(&yuv)?.to_vec();
        let (mut sps, mut pps, mut sample, mut idr) = (None, None, Vec::new(), false);
        for nal in split_annex_b(&annex_b) {
            match nal.first().map(|b| b & 0x1f) {
                Some(7) => sps = Some(nal.to_vec()),
                Some(8) => pps = Some(nal.to_vec()),
                Some(t) => {
                    idr |= t == 5;
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
                None => {}
            }
        }
        if writer.is_none() {
            let (Some(sps), Some(pps)) = (sps, pps) else {
                return Err("the first frame has no SPS/PPS".into());
            };
            let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let cfg = mp4::Mp4Config {
                major_brand: "isom".parse()?,
                minor_version: 512,
                compatible_brands: vec!["isom".parse()?, "avc1".parse()?],
                timescale: 1000,
            };
            let mut wr = mp4::Mp4Writer::write_start(file, &cfg)?;
            wr.add_track(&mp4::TrackConfig {
                track_type: mp4::TrackType::Video,
                timescale: 1000,
                language: "und".into(),
                media_conf: mp4::MediaConfig::AvcConfig(mp4::AvcConfig {
                    width: w as u16,
                    height: h as u16,
                    seq_param_set: sps,
                    pic_param_set: pps,
                }),
            })?;
            writer = Some(wr);
        }
        if let Some(wr) = writer.as_mut()
            && !sample.is_empty()
        {
            wr.write_sample(
                1,
                &mp4::Mp4Sample {
                    start_time: u64::from(i * tick),
                    duration: tick,
                    rendering_offset: 0,
                    is_sync: idr,
                    bytes: sample.into(),
                },
            )?;
        }
    }
    if let Some(mut wr) = writer {
        wr.write_end()?;
    }
    Ok(path)
}

/// The NAL units of an Annex-B stream (start codes of 3 or 4 bytes removed).
fn split_annex_b(b: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= b.len() {
        if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(b.len(), |&n| n - 3);
        while end > s && b[end - 1] == 0 {
            end -= 1;
        }
        out.push(&b[s..end]);
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The server runs its own binary as the child; here, this example is that binary.
    if args.get(1).is_some_and(|a| a == preview::SUBCOMMAND) {
        std::process::exit(match preview::child_main(&args[2..]) {
            c if c == std::process::ExitCode::SUCCESS => 0,
            _ => 2,
        });
    }
    let dir = std::env::temp_dir().join(format!("i2v-bench-sheet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // `--wan3`: only Wan 3.0's longest output, 30 s 1080P at 30 fps (900 frames).
    let wan3 = args.get(1).is_some_and(|a| a == "--wan3");
    let mut videos = if wan3 {
        let start = Instant::now();
        let clip = synthetic_clip(&dir, (1920, 1080), 30, 30)?;
        println!(
            "made a 30 s 1920x1080 30 fps clip in {:.1} s ({} bytes)",
            start.elapsed().as_secs_f64(),
            std::fs::metadata(&clip)?.len()
        );
        vec![clip]
    } else {
        vec![local_clip(&dir)?]
    };
    videos.extend(
        args[1..]
            .iter()
            .filter(|a| *a != "--wan3")
            .map(PathBuf::from),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cfg = PreviewConfig::default();
    for video in &videos {
        let name = video
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let copy = dir.join("bench.mp4");
        std::fs::copy(video, &copy)?;
        let mut frames = 0;
        let runs = if wan3 { 2 } else { RUNS };
        let decode = best_ms(runs, || {
            frames = decode_only(&copy)?;
            Ok(())
        })?;
        let mut made = (0, 0, 0);
        let in_process = best_ms(runs, || {
            let (sheet, _, w, h) = preview::make_in_process(&copy)?;
            made = (sheet.len(), w, h);
            Ok(())
        })?;
        let child = match best_ms(runs, || {
            runtime.block_on(preview::make(&cfg, &copy, "bench"))?;
            Ok(())
        }) {
            Ok(t) => t,
            Err(e) => {
                println!("{name}: the sheet child FAILED within its limits: {e}");
                (f64::NAN, f64::NAN)
            }
        };
        let (own_rss, child_rss) = peak_rss_mib();
        println!(
            "{name}: peak RSS {own_rss:.0} MiB in process (decode + sheet), {child_rss:.0} MiB in the sheet child (limits for this file: {} s, {} MiB address space)",
            preview::timeout_for(cfg.timeout, std::fs::metadata(&copy)?.len()).as_secs(),
            cfg.memory_bytes >> 20
        );
        let verdict = if child.0 < GOAL_MS { "met" } else { "MISSED" };
        println!(
            "{name}: {frames} frames; decode alone {:.0} ms (CPU {:.0}); sheet in process {:.0} ms \
             (CPU {:.0}); sheet in a child, what a task waits: {:.0} ms (CPU {:.0}) (goal < \
             {GOAL_MS:.0} ms: {verdict}); sheet {}x{}, {} bytes",
            decode.0,
            decode.1,
            in_process.0,
            in_process.1,
            child.0,
            child.1,
            made.1,
            made.2,
            made.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
