//! Fault injection against the fake providers: the lifecycle keeps paid videos, never pays twice,
//! and never leaves an agent hanging. Every wait is bounded; nothing depends on timing luck (task
//! progression is driven by poll counts, not clocks).

use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::mcp_flow::{assert_downloaded, core_for, env_for};
use crate::mcp_stdio::Proc;
use crate::support::fakes::{FakeProvider, Fault, Kind, Outcome, TaskPlan};
use crate::support::{Workspace, call, connect, err, ok, within};

#[tokio::test]
async fn timeout_after_sending_ends_as_submit_unknown_without_a_second_create() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_hang_duration(Duration::from_secs(5));
    fake.push_create_fault(Fault::Hang { after_accept: true });
    let ws = Workspace::new();
    std::fs::write(
        ws.path("no-config.toml"),
        "[providers.piapi]\ntimeout = 1\n",
    )
    .unwrap();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    assert_eq!(e["category"], "submit_unknown", "{e}");
    assert_eq!(fake.creates(), 1);
    assert_eq!(
        fake.accepted_creates(),
        1,
        "the provider did take it: exactly why we must not resend"
    );
    let failed = ok(&call(&s, "list_tasks", json!({"status": "failed"})).await);
    assert_eq!(failed["tasks"][0]["error"]["category"], "submit_unknown");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn flapping_polls_and_downloads_still_complete() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    for f in [
        Fault::ServerError,
        Fault::Drop,
        Fault::Malformed,
        Fault::rate_limited(0),
        Fault::ServerError,
    ] {
        fake.push_poll_fault(f);
    }
    fake.push_download_fault(Fault::ServerError);
    fake.push_download_fault(Fault::status(404, "gone"));
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi", "wait_seconds": 60}),
    )
    .await);
    assert_downloaded(&t);
    assert_eq!(fake.downloads(), 3, "two failed attempts, then the file");
    assert_eq!(fake.accepted_creates(), 1);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn sigkill_mid_task_then_restart_completes_and_downloads_once() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 15,
        processing: 3,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let mut env = ws.env(&[
        ("I2V_MCP_POLL_FIRST_MS", "30"),
        ("I2V_MCP_POLL_MAX_MS", "100"),
    ]);
    env.extend(env_for(&fake, "piapi"));

    let mut p = Proc::spawn(&env);
    p.init("2025-06-18").await;
    let t = p
        .call(1, "create_i2v_task", json!({"image": img, "prompt": "p"}))
        .await;
    let id = t["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_string();
    p.kill().await;
    assert_eq!(fake.downloads(), 0, "killed before the result");

    let mut p = Proc::spawn(&env);
    p.init("2025-06-18").await;
    let done = p
        .call(2, "get_task", json!({"task_id": id, "wait_seconds": 60}))
        .await;
    assert_downloaded(&done["structuredContent"]);
    p.close().await;
    assert_eq!(fake.creates(), 1, "no create repeated after the crash");
    assert_eq!(fake.downloads(), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_tasks() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let peer = s.peer().clone();
    let mut calls = Vec::new();
    for i in 0..100 {
        let peer = peer.clone();
        let args = json!({"image": img, "prompt": format!("task {i}"), "provider": "piapi", "wait_seconds": 90});
        calls.push(tokio::spawn(async move {
            let params = CallToolRequestParams::new("create_i2v_task")
                .with_arguments(args.as_object().cloned().unwrap());
            peer.call_tool_once(params).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for c in calls {
        let r = within(120, "100 tasks", c).await.unwrap().unwrap();
        let rmcp::model::CallToolResponse::Complete(r) = r else {
            panic!("unexpected response")
        };
        let t = ok(&r);
        assert_downloaded(&t);
        ids.insert(t["task_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 100);
    assert_eq!(fake.accepted_creates(), 100);
    assert_eq!(fake.downloads(), 100);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn concurrent_creates_with_one_key_make_one_upstream_task() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let args = json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": "same"});
    let (a, b, c) = tokio::join!(
        call(&s, "create_i2v_task", args.clone()),
        call(&s, "create_i2v_task", args.clone()),
        call(&s, "create_i2v_task", args)
    );
    let ids: Vec<_> = [a, b, c].iter().map(|r| ok(r)["task_id"].clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(fake.creates(), 1);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn client_side_rate_limit_refuses_before_calling_the_provider() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    std::fs::write(
        ws.path("no-config.toml"),
        "[providers.piapi.rate_limit]\nper_minute = 1\n",
    )
    .unwrap();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "one", "provider": "piapi"}),
    )
    .await);
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "two", "provider": "piapi", "wait_seconds": 2}),
    )
    .await);
    assert_eq!(e["category"], "rate_limited", "{e}");
    assert!(e["message"].as_str().unwrap().contains("retry in"), "{e}");
    assert_eq!(fake.creates(), 1);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_wait_ends_at_once_and_the_task_goes_on() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 40,
        processing: 1,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let core = core_for(&ws, &fake, "piapi");
    let (s, _) = connect(core.clone()).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    let id = t["task_id"].as_str().unwrap().to_string();
    let peer = s.peer().clone();
    let args = json!({"task_id": id, "wait_seconds": 120});
    let waiting = tokio::spawn(async move {
        let params = CallToolRequestParams::new("get_task")
            .with_arguments(args.as_object().cloned().unwrap());
        peer.call_tool_once(params).await
    });
    within(10, "the wait to start", async {
        while core.waiting_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Dropping the request sends notifications/cancelled.
    waiting.abort();
    within(5, "the server to end the wait", async {
        while core.waiting_calls() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Still serving, and the task still completes.
    let done = ok(&call(&s, "get_task", json!({"task_id": id, "wait_seconds": 60})).await);
    assert_downloaded(&done);
    s.cancel().await.unwrap();
}

#[tokio::test]
// resources/subscribe is what clients on the 2025 revisions use; 2026-07-28 moves to listen.
#[allow(deprecated)]
async fn task_resources_notify_subscribers() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 3,
        processing: 2,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, client) = connect(core_for(&ws, &fake, "piapi")).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    let uri = format!("i2v://tasks/{}", t["task_id"].as_str().unwrap());
    within(
        10,
        "subscribe",
        s.peer()
            .subscribe(rmcp::model::SubscribeRequestParams::new(uri.clone())),
    )
    .await
    .unwrap();
    let done = ok(&call(
        &s,
        "get_task",
        json!({"task_id": t["task_id"], "wait_seconds": 60}),
    )
    .await);
    assert_downloaded(&done);
    within(5, "resource updates", async {
        while !client.updated.lock().unwrap().contains(&uri) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let read = within(
        10,
        "read",
        s.peer()
            .read_resource(rmcp::model::ReadResourceRequestParams::new(uri.clone())),
    )
    .await
    .unwrap();
    let text = serde_json::to_string(&read).unwrap();
    assert!(text.contains("succeeded"), "{text}");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn no_progress_without_a_client_token() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("p.png", 64, 64);
    let mut env = ws.env(&[
        ("I2V_MCP_POLL_FIRST_MS", "30"),
        ("I2V_MCP_POLL_MAX_MS", "100"),
    ]);
    env.extend(env_for(&fake, "piapi"));
    let mut p = Proc::spawn(&env);
    p.init("2025-06-18").await;
    let r = p
        .call(
            1,
            "create_i2v_task",
            json!({"image": img, "prompt": "p", "wait_seconds": 30}),
        )
        .await;
    assert_downloaded(&r["structuredContent"]);
    assert!(
        !p.seen
            .iter()
            .any(|m| m["method"] == "notifications/progress"),
        "progress without a token: {:?}",
        p.seen
    );
    // With a token: progress, strictly increasing, ending at 100.
    let r = p
        .request(2, "tools/call", json!({"name": "create_i2v_task", "arguments": {"image": img, "prompt": "q", "wait_seconds": 30}, "_meta": {"progressToken": "tok-7"}}))
        .await;
    assert_downloaded(&r["result"]["structuredContent"]);
    let progress: Vec<f64> = p
        .seen
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            assert_eq!(m["params"]["progressToken"], "tok-7");
            assert_eq!(m["params"]["total"], 100.0);
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert!(progress.len() >= 2, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[1] > w[0]), "{progress:?}");
    assert_eq!(progress.last(), Some(&100.0));
    p.close().await;
}
