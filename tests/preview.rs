//! Contact sheets (issue 14, part 1): a succeeded task's result carries one `image` block, a JPEG
//! of frames across the clip, for the local preview and for a provider's High-profile MP4 with
//! B-frames; a video that cannot be decoded (truncated, corrupted, a hung or starved decoder)
//! costs only its sheet, with a note saying why; the setting turns it off; the sheet and poster
//! are resources.

use std::sync::Arc;
use std::time::{Duration, Instant};

use i2v_mcp::core::Core;
use rmcp::model::{CallToolResult, ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};

use crate::mcp_flow::env_for;
use crate::support::fakes::{FakeProvider, Kind};
use crate::support::{Session, Workspace, call, connect, ok, within};

const HIGH: &[u8] = include_bytes!("fixtures/high-bframes.mp4");
const MAIN: &[u8] = include_bytes!("fixtures/main-bframes.mp4");

/// The result's blocks: the task's JSON text, the video's resource_link, the poster's
/// resource_link (the MCP Apps player shows it while the video loads), then the sheet.
fn sheet_of(r: &CallToolResult) -> image::RgbImage {
    assert_eq!(
        r.content.len(),
        4,
        "text, resource_link, poster link, image: {:?}",
        r.content
    );
    assert!(
        r.content[1].as_resource_link().is_some(),
        "{:?}",
        r.content[1]
    );
    let poster = r.content[2]
        .as_resource_link()
        .unwrap_or_else(|| panic!("the poster's link: {:?}", r.content[2]));
    assert!(poster.uri.ends_with("/poster.jpg"), "{}", poster.uri);
    assert_eq!(poster.mime_type.as_deref(), Some("image/jpeg"));
    let img = r.content[3]
        .as_image()
        .unwrap_or_else(|| panic!("an image block: {:?}", r.content[3]));
    assert_eq!(img.mime_type, "image/jpeg");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &img.data)
        .expect("base64");
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    assert!(bytes.len() < 150_000, "{} bytes", bytes.len());
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .expect("the JPEG decodes")
        .to_rgb8()
}

fn no_image(r: &CallToolResult) {
    assert!(
        r.content.iter().all(|c| c.as_image().is_none()),
        "no image block expected: {:?}",
        r.content
    );
}

/// Mean absolute difference of two cells of a 3-column sheet (cells of `cell` size, 4 px gaps),
/// away from the time label in their top-left corner.
fn cell_difference(sheet: &image::RgbImage, cell: (u32, u32), a: u32, b: u32) -> f64 {
    let origin = |i: u32| (4 + (i % 3) * (cell.0 + 4), 4 + (i / 3) * (cell.1 + 4));
    let ((ax, ay), (bx, by)) = (origin(a), origin(b));
    let mut total = 0u64;
    let mut n = 0u64;
    for y in cell.1 / 3..cell.1 {
        for x in 0..cell.0 {
            let p = sheet.get_pixel(ax + x, ay + y);
            let q = sheet.get_pixel(bx + x, by + y);
            total += (0..3).map(|c| u64::from(p[c].abs_diff(q[c]))).sum::<u64>();
            n += 3;
        }
    }
    total as f64 / n as f64
}

/// Six frames in a 3 x 2 grid of `cell`-sized cells, each different from the next.
fn assert_six_frames(sheet: &image::RgbImage, cell: (u32, u32)) {
    assert_eq!(
        sheet.dimensions(),
        (3 * cell.0 + 16, 2 * cell.1 + 12),
        "3 x 2 cells of {cell:?} with 4 px gaps"
    );
    for i in 0..5 {
        let d = cell_difference(sheet, cell, i, i + 1);
        assert!(
            d > 1.0,
            "frames {i} and {} look the same (mean diff {d})",
            i + 1
        );
    }
    // The time label: white pixels on black in the first cell's corner.
    let white = (4..40)
        .flat_map(|y| (4..60).map(move |x| (x, y)))
        .filter(|&(x, y)| sheet.get_pixel(x, y).0.iter().all(|&c| c > 200))
        .count();
    assert!(
        white > 20,
        "a time label in the first cell ({white} white pixels)"
    );
}

async fn read(s: &Session, uri: &str) -> Result<ResourceContents, rmcp::ServiceError> {
    within(
        10,
        "resources/read",
        s.read_resource(ReadResourceRequestParams::new(uri)),
    )
    .await
    .map(|r| r.contents.into_iter().next().expect("one content"))
}

fn local_core(
    ws: &Workspace,
    extra: &[(&str, &str)],
    tweak: impl FnOnce(&mut i2v_mcp::config::Config),
) -> Arc<Core> {
    let mut cfg = ws.config(extra);
    tweak(&mut cfg);
    Core::start(cfg).unwrap()
}

async fn local_task(s: &Session, ws: &Workspace) -> CallToolResult {
    let img = ws.png("scene.png", 1024, 576);
    call(
        s,
        "create_i2v_task",
        json!({"image": img, "prompt": "slow zoom in on the scene", "provider": "local", "wait_seconds": 50}),
    )
    .await
}

#[tokio::test]
async fn local_preview_result_carries_its_contact_sheet() {
    let ws = Workspace::new();
    let (s, _) = connect(local_core(&ws, &[], |_| {})).await;
    let created = local_task(&s, &ws).await;
    let t = ok(&created);
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(t.get("note").is_none(), "{t}");
    // The waiting create reports the success: it carries the sheet.
    let sheet = sheet_of(&created);
    // 832x480 frames fit 336x194 cells: 1024 px wide.
    assert_six_frames(&sheet, (336, 194));

    // get_task on the finished task: the structured task, the link and the same sheet.
    let id = t["task_id"].as_str().unwrap();
    let got = call(&s, "get_task", json!({"task_id": id})).await;
    assert_eq!(ok(&got)["task_id"], id);
    assert_eq!(sheet_of(&got), sheet);

    // Beside the video: the sheet and the poster (the first frame, full size).
    let video = std::path::PathBuf::from(t["video"]["local_path"].as_str().unwrap());
    let dir = video.parent().unwrap();
    let on_disk = std::fs::read(dir.join(format!("{id}.sheet.jpg"))).unwrap();
    let poster = image::open(dir.join(format!("{id}.poster.jpg"))).unwrap();
    assert_eq!((poster.width(), poster.height()), (832, 480));

    // As resources: image/jpeg blobs.
    let uri = format!("i2v://tasks/{id}/contact-sheet.jpg");
    match read(&s, &uri).await.unwrap() {
        ResourceContents::BlobResourceContents {
            blob, mime_type, ..
        } => {
            assert_eq!(mime_type.as_deref(), Some("image/jpeg"));
            let bytes =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, blob).unwrap();
            assert_eq!(bytes, on_disk);
        }
        other => panic!("a blob: {other:?}"),
    }
    match read(&s, &format!("i2v://tasks/{id}/poster.jpg"))
        .await
        .unwrap()
    {
        ResourceContents::BlobResourceContents { mime_type, .. } => {
            assert_eq!(mime_type.as_deref(), Some("image/jpeg"))
        }
        other => panic!("a blob: {other:?}"),
    }
    assert!(
        read(&s, "i2v://tasks/nope/contact-sheet.jpg")
            .await
            .is_err()
    );
    s.cancel().await.unwrap();
}

/// A provider's MP4 (served by a fake): `video` as the fake serves it.
async fn provider_task(s: &Session, ws: &Workspace) -> CallToolResult {
    let img = ws.png("cat.png", 640, 360);
    call(
        s,
        "create_i2v_task",
        json!({"image": img, "prompt": "a cat walks", "provider": "piapi", "wait_seconds": 50}),
    )
    .await
}

fn provider_core(ws: &Workspace, fake: &FakeProvider) -> Arc<Core> {
    let env = env_for(fake, "piapi");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Core::start(ws.config(&pairs)).unwrap()
}

#[tokio::test]
async fn provider_high_and_main_profile_b_frames_make_a_sheet() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let (s, _) = connect(provider_core(&ws, &fake)).await;
    for (name, video) in [("high", HIGH), ("main", MAIN)] {
        fake.serve_video(video.to_vec());
        let created = provider_task(&s, &ws).await;
        let t = ok(&created);
        assert_eq!(t["status"], "succeeded", "{name}: {t}");
        assert!(t.get("note").is_none(), "{name}: {t}");
        // 320x180 frames are never enlarged: 320x180 cells.
        let sheet = sheet_of(&created);
        assert_six_frames(&sheet, (320, 180));
        let got = call(&s, "get_task", json!({"task_id": t["task_id"]})).await;
        assert_eq!(sheet_of(&got), sheet, "{name}");
    }
    s.cancel().await.unwrap();
}

/// `bytes` with every byte of the `mdat` payload after its first 64 replaced by noise.
fn corrupted(bytes: &[u8]) -> Vec<u8> {
    let at = bytes.windows(4).position(|w| w == b"mdat").unwrap() + 4 + 64;
    let mut v = bytes.to_vec();
    let mut x: u32 = 0x1234_5678;
    for b in &mut v[at..] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 24) as u8;
    }
    v
}

fn assert_no_sheet(r: &CallToolResult, why: &str) -> Value {
    let t = ok(r);
    assert_eq!(t["status"], "succeeded", "{t}");
    no_image(r);
    assert!(
        r.content[1].as_resource_link().is_some(),
        "the video is still linked"
    );
    let note = t["note"].as_str().unwrap_or_else(|| panic!("a note: {t}"));
    assert!(
        note.starts_with("no contact sheet: ") && note.contains(why),
        "note '{note}' should say '{why}'"
    );
    t
}

#[tokio::test]
async fn undecodable_videos_cost_only_their_sheet() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let (s, _) = connect(provider_core(&ws, &fake)).await;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "truncated",
            HIGH[..HIGH.len() / 2].to_vec(),
            "not a readable MP4",
        ),
        ("corrupted", corrupted(HIGH), "frames decoded"),
        (
            "not a video",
            FakeProvider::video_bytes(),
            "not a readable MP4",
        ),
    ];
    for (name, bytes, why) in cases {
        fake.serve_video(bytes.clone());
        let r = provider_task(&s, &ws).await;
        let t = assert_no_sheet(&r, why);
        // The paid video is kept as served, whatever its sheet.
        let path = t["video"]["local_path"].as_str().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), bytes, "{name}");
        let id = t["task_id"].as_str().unwrap();
        let again = call(&s, "get_task", json!({"task_id": id})).await;
        assert_no_sheet(&again, why);
        assert!(
            read(&s, &format!("i2v://tasks/{id}/contact-sheet.jpg"))
                .await
                .is_err()
        );
    }
    // The server keeps serving, and a good video still gets its sheet.
    fake.serve_video(HIGH.to_vec());
    sheet_of(&provider_task(&s, &ws).await);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn a_hung_decoder_is_stopped_and_the_task_succeeds() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.serve_video(HIGH.to_vec());
    let ws = Workspace::new();
    let env = env_for(&fake, "piapi");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let core = local_core(&ws, &pairs, |c| {
        c.preview.child_delay = Some(Duration::from_secs(30));
        c.preview.timeout = Duration::from_millis(500);
    });
    let (s, _) = connect(core).await;
    let started = Instant::now();
    let r = provider_task(&s, &ws).await;
    assert_no_sheet(&r, "longer than 500 ms");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the 30 s child was not stopped: {:?}",
        started.elapsed()
    );
    // The server keeps answering.
    ok(&call(&s, "list_tasks", json!({})).await);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn a_starved_decoder_costs_only_the_sheet() {
    let ws = Workspace::new();
    // 16 MiB of address space: too little to even map the program.
    let core = local_core(&ws, &[], |c| c.preview.memory_bytes = 16 << 20);
    let (s, _) = connect(core).await;
    let r = local_task(&s, &ws).await;
    // It cannot even start: "the decoder crashed (signal 11)" here.
    assert_no_sheet(&r, "decoder");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn the_setting_turns_sheets_off() {
    let ws = Workspace::new();
    let (s, _) = connect(local_core(
        &ws,
        &[("I2V_MCP_CONTACT_SHEET", "false")],
        |_| {},
    ))
    .await;
    let r = local_task(&s, &ws).await;
    let t = ok(&r);
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(t.get("note").is_none(), "{t}");
    assert_eq!(
        r.content.len(),
        2,
        "text and resource_link only: {:?}",
        r.content
    );
    no_image(&r);
    let id = t["task_id"].as_str().unwrap();
    let video = std::path::PathBuf::from(t["video"]["local_path"].as_str().unwrap());
    assert!(!video.with_file_name(format!("{id}.sheet.jpg")).exists());
    s.cancel().await.unwrap();
}
