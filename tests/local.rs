//! The free local preview through the same lifecycle as the paid providers: journal, progress,
//! a real MP4 in the output dir with its sha256, a resource_link, cost 0 — and clear errors
//! before any work on bad input, with nothing half-written left behind.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{Workspace, call, connect, err, ok};

fn core(ws: &Workspace) -> std::sync::Arc<i2v_mcp::core::Core> {
    i2v_mcp::core::Core::start(ws.config(&[])).unwrap()
}

#[tokio::test]
async fn preview_renders_a_real_mp4_through_the_lifecycle() {
    let ws = Workspace::new();
    let img = ws.png("scene.png", 1024, 576);
    let (s, client) = connect(core(&ws)).await;
    let r = call(&s, "create_i2v_task", json!({"image": img, "prompt": "slow pan left over the scene", "provider": "local", "wait_seconds": 60})).await;
    let t = ok(&r);
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["estimated_cost_usd"], 0.0);
    assert_eq!(t["model"], "camera-preview");
    let path = t["video"]["local_path"].as_str().unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(t["video"]["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(&bytes[4..8], b"ftyp", "an MP4");
    let mp4 =
        mp4::Mp4Reader::read_header(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
    let track = mp4.tracks().values().next().unwrap();
    assert_eq!((track.width(), track.height()), (832, 480));
    assert_eq!(track.sample_count(), 80);
    assert!(
        r.content.iter().any(|c| c.as_resource_link().is_some()),
        "resource_link"
    );
    let progress = client.progress.lock().unwrap().clone();
    assert!(progress.len() >= 2, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[1].progress > w[0].progress));
    assert_eq!(progress.last().unwrap().progress, 100.0);
    let listed = ok(&call(&s, "list_tasks", json!({"provider": "local"})).await);
    assert_eq!(listed["tasks"][0]["task_id"], t["task_id"]);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_before_any_work() {
    let ws = Workspace::new();
    let small = ws.png("small.png", 200, 150);
    let ok_img = ws.png("ok.png", 640, 360);
    let corrupt = ws.images().join("corrupt.png");
    let mut bytes = std::fs::read(&ok_img).unwrap();
    bytes.truncate(200);
    std::fs::write(&corrupt, bytes).unwrap();
    let (s, _) = connect(core(&ws)).await;
    let cases = [
        (
            json!({"image": small, "prompt": "", "provider": "local", "resolution": "720p"}),
            "invalid_input",
            "480p",
        ),
        (
            json!({"image": ok_img, "prompt": "", "provider": "local", "camera_motion": {"type": "spin"}}),
            "invalid_input",
            "zoom_in",
        ),
        (
            json!({"image": ok_img, "prompt": "", "provider": "local", "camera_motion": {"type": "zoom_in", "speed": 9}}),
            "invalid_input",
            "4",
        ),
        (
            json!({"image": ok_img, "prompt": "", "provider": "local", "duration_seconds": 7}),
            "unsupported",
            "5, 10, 15",
        ),
        (
            json!({"image": ok_img, "prompt": "", "provider": "local", "resolution": "1080p"}),
            "unsupported",
            "480p",
        ),
        (
            json!({"image": "https://example.com/a.png", "prompt": "", "provider": "local"}),
            "unsupported",
            "local files",
        ),
        (
            json!({"image": corrupt, "prompt": "", "provider": "local"}),
            "invalid_input",
            "corrupt",
        ),
    ];
    for (args, category, hint) in cases {
        let e = err(&call(&s, "create_i2v_task", args.clone()).await);
        assert_eq!(e["category"], category, "{args}: {e}");
        assert!(e["message"].as_str().unwrap().contains(hint), "{args}: {e}");
    }
    let tasks = ok(&call(&s, "list_tasks", json!({})).await);
    assert_eq!(tasks["tasks"], json!([]), "nothing journaled");
    let leftovers: Vec<_> = std::fs::read_dir(ws.out()).unwrap().collect();
    assert!(leftovers.is_empty(), "output dir not empty: {leftovers:?}");
    s.cancel().await.unwrap();
}
