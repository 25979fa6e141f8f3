//! Times the local camera-preview renderer: 5 s zoom_in clips at 480p and 720p, best of 3 runs.
//!
//! `cargo run --release --example bench_render [image]`; without an image a synthetic 1920x1080
//! picture with photo-like detail is used. Prints one line per resolution.

use std::io::Cursor;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use i2v_mcp::render::{Aspect, Motion, RenderSpec, Resolution, render_mp4};

/// Gradients, soft blobs and fine texture at several scales, roughly like a detailed photo.
fn synthetic_png(w: u32, h: u32) -> Result<Vec<u8>, image::ImageError> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
        let blobs =
            ((u * 7.0).sin() * (v * 5.0).cos() * 50.0) + ((u * 23.0 + v * 17.0).sin() * 20.0);
        let fine = ((x as f32 * 0.9).sin() * (y as f32 * 0.7).cos()) * 12.0;
        let c = |base: f32| (base + blobs + fine).clamp(0.0, 255.0) as u8;
        image::Rgb([c(60.0 + 120.0 * u), c(80.0 + 90.0 * v), c(150.0 - 80.0 * u)])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bytes = match std::env::args().nth(1) {
        Some(path) => std::fs::read(path)?,
        None => synthetic_png(1920, 1080)?,
    };
    let cancel = AtomicBool::new(false);
    for (label, resolution, goal) in [
        ("480p", Resolution::P480, Some(2.0)),
        ("720p", Resolution::P720, None),
    ] {
        let spec = RenderSpec {
            motion: Motion::ZoomIn,
            speed: 1.0,
            duration_seconds: 5,
            resolution,
            aspect: Aspect::Auto,
        };
        let mut best = f64::INFINITY;
        let (mut frames, mut size, mut dims) = (0, 0, (0, 0));
        for _ in 0..3 {
            let mut out = Cursor::new(Vec::new());
            let start = Instant::now();
            let plan = render_mp4(&bytes, &spec, &mut out, &mut |_, _| {}, &cancel)?;
            best = best.min(start.elapsed().as_secs_f64());
            frames = plan.frames;
            dims = (plan.width, plan.height);
            size = out.into_inner().len();
        }
        let verdict = match goal {
            Some(g) if best < g => format!(" (goal < {g:.1} s: met)"),
            Some(g) => format!(" (goal < {g:.1} s: MISSED)"),
            None => String::new(),
        };
        println!(
            "{label} 5s: {frames} frames in {best:.2} s = {:.0} fps{verdict}; {}x{}, {size} bytes",
            f64::from(frames) / best,
            dims.0,
            dims.1,
        );
    }
    Ok(())
}
