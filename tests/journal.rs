//! The journal under stress: idempotent retries after refusals, a journal write failing after the
//! provider accepted, large inputs, undecodable rows, orphan temp files and a second server.

use std::sync::Arc;

use i2v_mcp::core::Core;
use serde_json::json;

use crate::mcp_flow::{assert_downloaded, core_for};
use crate::support::fakes::{FakeProvider, Fault, Kind};
use crate::support::{Workspace, call, connect, err, ok};

/// A core whose piapi base URL is a port nobody listens on: every create is refused at connect.
fn unreachable_core(ws: &Workspace, fake: &FakeProvider) -> Arc<Core> {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1", dead.local_addr().unwrap());
    drop(dead);
    Core::start(ws.config(&[
        ("PIAPI_API_KEY", fake.api_key()),
        ("I2V_MCP_PIAPI_BASE_URL", &url),
    ]))
    .unwrap()
}

#[tokio::test]
async fn a_key_refused_while_the_provider_was_unreachable_makes_a_new_attempt() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let args = json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": "k1", "wait_seconds": 60});
    let refused = {
        let (s, _) = connect(unreachable_core(&ws, &fake)).await;
        let e = err(&call(&s, "create_i2v_task", args.clone()).await);
        assert_eq!(e["category"], "provider_unavailable", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("nothing was"),
            "{e}"
        );
        s.cancel().await.unwrap();
        let rows = ws.data().join("journal.sqlite");
        assert!(rows.exists());
        e
    };
    // The provider is back (same journal): the same key is a new attempt that reaches it.
    let core = core_for(&ws, &fake, "piapi");
    let (s, _) = connect(core.clone()).await;
    let t = ok(&call(&s, "create_i2v_task", args.clone()).await);
    assert_ne!(t["deduplicated"], true, "{t}");
    assert_downloaded(&t);
    assert_eq!(fake.accepted_creates(), 1, "{refused}");
    // From now on the key holds an accepted task: no second create.
    let again = ok(&call(&s, "create_i2v_task", args).await);
    assert_eq!(again["task_id"], t["task_id"]);
    assert_eq!(again["deduplicated"], true);
    assert_eq!(fake.creates(), 1);
    // The refused attempt is still readable, as it was, and says what replaced it.
    let failed = ok(&call(&s, "list_tasks", json!({"status": "failed"})).await);
    let old = &failed["tasks"][0];
    assert_eq!(old["error"]["category"], "provider_unavailable", "{failed}");
    assert_ne!(old["task_id"], t["task_id"]);
    assert!(
        old["note"]
            .as_str()
            .unwrap_or_default()
            .contains(t["task_id"].as_str().unwrap()),
        "{old}"
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn keys_refused_by_the_provider_retry_and_concurrent_retries_create_once() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;

    // 429 on every attempt: refused after the retries.
    for _ in 0..3 {
        fake.push_create_fault(Fault::rate_limited(0));
    }
    let args =
        json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": "k-429"});
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "rate_limited", "{e}");
    let (a, b, c) = tokio::join!(
        call(&s, "create_i2v_task", args.clone()),
        call(&s, "create_i2v_task", args.clone()),
        call(&s, "create_i2v_task", args.clone())
    );
    let ids: Vec<_> = [a, b, c].iter().map(|r| ok(r)["task_id"].clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(fake.accepted_creates(), 1, "one upstream create per key");

    // Auth refused; after the key is fixed the same idempotency key goes through.
    fake.fail_auth(true);
    let args =
        json!({"image": img, "prompt": "q", "provider": "piapi", "idempotency_key": "k-auth"});
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "auth", "{e}");
    fake.fail_auth(false);
    let t = ok(&call(&s, "create_i2v_task", args).await);
    assert_ne!(t["deduplicated"], true, "{t}");
    assert_eq!(fake.accepted_creates(), 2);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn a_key_whose_outcome_is_unknown_is_never_resubmitted() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.push_create_fault(Fault::AcceptThenServerError);
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let args =
        json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": "k-unknown"});
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "submit_unknown", "{e}");
    for _ in 0..2 {
        let again = call(&s, "create_i2v_task", args.clone()).await;
        let t = again.structured_content.clone().unwrap();
        assert_eq!(t["deduplicated"], true, "{t}");
        assert_eq!(t["error"]["category"], "submit_unknown", "{t}");
    }
    assert_eq!(fake.creates(), 1, "never sent again");
    s.cancel().await.unwrap();
}
