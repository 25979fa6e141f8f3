//! Spend consent (`[budget] confirm_above_usd`, issue 15 item 2) through rmcp's client, in-process:
//! on a 2025-11-25 session (`elicitation/create` while the call waits) and on 2026-07-28 (the
//! multi-round-trip pattern, which rmcp's client drives through the same handler). Accept sends
//! one create; decline or a client without elicitation sends none and gets a `budget` error.

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams,
    ElicitResult, ElicitationAction, ElicitationCapability, FormElicitationCapability,
    Implementation, ProtocolVersion,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::mcp_flow::env_for;
use crate::support::fakes::{FakeProvider, Kind};
use crate::support::{Workspace, err, ok, within};

/// The fake piapi quote for a default create is $0.28: above this threshold.
const THRESHOLD: &str = "0.1";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Era {
    Legacy,
    Rounds,
}

/// A client that answers every question with `answer`, or offers no elicitation (`None`).
#[derive(Clone)]
struct Person {
    answer: Option<ElicitationAction>,
    era: Era,
    asked: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Person {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        else {
            panic!("a form was expected");
        };
        let schema = serde_json::to_value(&requested_schema).unwrap();
        assert_eq!(
            schema["properties"]["approve"]["type"], "boolean",
            "{schema}"
        );
        self.asked.lock().unwrap().push(message);
        let action = self.answer.clone().unwrap();
        Ok(match action {
            ElicitationAction::Accept => {
                ElicitResult::new(action).with_content(json!({"approve": true}))
            }
            other => ElicitResult::new(other),
        })
    }

    fn get_info(&self) -> ClientConfig {
        let mut caps = ClientCapabilities::default();
        if self.answer.is_some() {
            let mut e = ElicitationCapability::new();
            e.form = Some(FormElicitationCapability::default());
            caps.elicitation = Some(e);
        }
        let version = match self.era {
            Era::Legacy => ProtocolVersion::V_2025_11_25,
            Era::Rounds => ProtocolVersion::V_2026_07_28,
        };
        ClientConfig::new(caps, Implementation::new("person", "1")).with_protocol_version(version)
    }
}

type Session = RunningService<RoleClient, Person>;

struct Setup {
    fake: FakeProvider,
    ws: Workspace,
    img: std::path::PathBuf,
    core: Arc<i2v_mcp::core::Core>,
}

async fn setup() -> Setup {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("cat.png", 640, 360);
    let env = env_for(&fake, "piapi");
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("I2V_MCP_CONFIRM_ABOVE_USD", THRESHOLD));
    let core = i2v_mcp::core::Core::start(ws.config(&pairs)).unwrap();
    Setup {
        fake,
        ws,
        img,
        core,
    }
}

async fn connect(core: Arc<i2v_mcp::core::Core>, person: Person) -> Session {
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = i2v_mcp::mcp::Server::new(core);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(a).await {
            let _ = running.waiting().await;
        }
    });
    let era = person.era;
    let start = async move {
        match era {
            Era::Legacy => person.serve(b).await.unwrap(),
            Era::Rounds => {
                let lifecycle = ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                };
                person.serve_with_lifecycle(b, lifecycle).await.unwrap()
            }
        }
    };
    let s = within(10, "connect", start).await;
    let version = s.peer().peer_info().map(|i| i.protocol_version.clone());
    let want = match era {
        Era::Legacy => ProtocolVersion::V_2025_11_25,
        Era::Rounds => ProtocolVersion::V_2026_07_28,
    };
    assert_eq!(version, Some(want));
    s
}

fn person(answer: Option<ElicitationAction>, era: Era) -> Person {
    Person {
        answer,
        era,
        asked: Arc::default(),
    }
}

async fn create(s: &Session, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new("create_i2v_task")
        .with_arguments(args.as_object().cloned().unwrap());
    within(30, "create", s.call_tool(params)).await.unwrap()
}

async fn tasks(s: &Session) -> usize {
    let params = CallToolRequestParams::new("list_tasks").with_arguments(Default::default());
    let r = within(10, "list_tasks", s.call_tool(params)).await.unwrap();
    ok(&r)["tasks"].as_array().unwrap().len()
}

async fn accept_sends_one_create(era: Era) {
    let t = setup().await;
    let p = person(Some(ElicitationAction::Accept), era);
    let s = connect(t.core.clone(), p.clone()).await;
    let args = json!({"image": t.img, "prompt": "the cat turns", "provider": "piapi", "idempotency_key": "k1"});
    let task = ok(&create(&s, args.clone()).await);
    assert_eq!(task["status"], "queued", "{task}");
    assert_eq!(t.fake.creates(), 1);
    let asked = p.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    for part in ["piapi/", "$0.28", "5 s", "480p", "Spent today: $0.00"] {
        assert!(asked[0].contains(part), "{part} missing from: {}", asked[0]);
    }
    // The same key again: its task, no second question, no second create.
    let again = ok(&create(&s, args).await);
    assert_eq!(again["task_id"], task["task_id"]);
    assert_eq!(again["deduplicated"], true, "{again}");
    assert_eq!(p.asked.lock().unwrap().len(), 1, "asked twice");
    assert_eq!(t.fake.creates(), 1);
    s.cancel().await.unwrap();
    drop(t.ws);
}

async fn decline_sends_nothing(era: Era, action: ElicitationAction) {
    let t = setup().await;
    let p = person(Some(action), era);
    let s = connect(t.core.clone(), p.clone()).await;
    let args = json!({"image": t.img, "prompt": "the cat turns", "provider": "piapi"});
    let e = err(&create(&s, args).await);
    assert_eq!(e["category"], "budget", "{e}");
    assert!(e["message"].as_str().unwrap().contains("declined"), "{e}");
    assert_eq!(p.asked.lock().unwrap().len(), 1);
    assert_eq!(
        t.fake.creates(),
        0,
        "a declined create reached the provider"
    );
    assert_eq!(tasks(&s).await, 0, "a declined create was journaled");
    s.cancel().await.unwrap();
}

async fn no_elicitation_says_how_to_proceed(era: Era) {
    let t = setup().await;
    let s = connect(t.core.clone(), person(None, era)).await;
    let args = json!({"image": t.img, "prompt": "the cat turns", "provider": "piapi"});
    let e = err(&create(&s, args.clone()).await);
    assert_eq!(e["category"], "budget", "{e}");
    let next = e["next_step"].as_str().unwrap_or_default();
    assert!(next.contains("max_cost_usd 0.28"), "{e}");
    assert!(next.contains("confirm_above_usd"), "{e}");
    assert_eq!(t.fake.creates(), 0);
    assert_eq!(tasks(&s).await, 0);
    // Following the next step: a cap at the quote is consent given in advance.
    let mut capped = args;
    capped["max_cost_usd"] = json!(0.28);
    ok(&create(&s, capped).await);
    assert_eq!(t.fake.creates(), 1);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn legacy_accept_creates_once_and_a_key_retry_does_not_ask_again() {
    accept_sends_one_create(Era::Legacy).await;
}

#[tokio::test]
async fn rounds_accept_creates_once_and_a_key_retry_does_not_ask_again() {
    accept_sends_one_create(Era::Rounds).await;
}

#[tokio::test]
async fn legacy_decline_and_cancel_send_nothing() {
    decline_sends_nothing(Era::Legacy, ElicitationAction::Decline).await;
    decline_sends_nothing(Era::Legacy, ElicitationAction::Cancel).await;
}

#[tokio::test]
async fn rounds_decline_and_cancel_send_nothing() {
    decline_sends_nothing(Era::Rounds, ElicitationAction::Decline).await;
    decline_sends_nothing(Era::Rounds, ElicitationAction::Cancel).await;
}

#[tokio::test]
async fn legacy_without_elicitation_is_a_budget_error_with_a_next_step() {
    no_elicitation_says_how_to_proceed(Era::Legacy).await;
}

#[tokio::test]
async fn rounds_without_elicitation_is_a_budget_error_with_a_next_step() {
    no_elicitation_says_how_to_proceed(Era::Rounds).await;
}

/// Under the threshold, free previews and clients that never asked for the feature see no change.
#[tokio::test]
async fn below_the_threshold_nobody_is_asked() {
    let t = setup().await;
    let p = person(Some(ElicitationAction::Decline), Era::Legacy);
    let s = connect(t.core.clone(), p.clone()).await;
    let args = json!({"image": t.img, "prompt": "x", "provider": "local", "wait_seconds": 0});
    ok(&create(&s, args).await);
    assert!(p.asked.lock().unwrap().is_empty());
    s.cancel().await.unwrap();
}

/// `serve --http --stateless` with a 2025 client that offers elicitation: the question has no way
/// back, so the call ends at once with a budget error (it must not hang) and nothing is sent.
#[tokio::test]
async fn stateless_http_cannot_ask_a_2025_client() {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let t = setup().await;
    let (addr, handle) = crate::http::start(t.core.clone(), |o, _| o.stateless = true).await;
    let cfg = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
        .auth_header(crate::http::TOKEN);
    let p = person(Some(ElicitationAction::Accept), Era::Legacy);
    let s = within(
        10,
        "connect",
        p.clone()
            .serve(StreamableHttpClientTransport::from_config(cfg)),
    )
    .await
    .unwrap();
    let args = json!({"image": t.img, "prompt": "the cat turns", "provider": "piapi"});
    let e = err(&create(&s, args).await);
    assert_eq!(e["category"], "budget", "{e}");
    assert!(e["message"].as_str().unwrap().contains("stateless"), "{e}");

    assert!(
        e["next_step"].as_str().unwrap().contains("max_cost_usd"),
        "{e}"
    );
    assert!(p.asked.lock().unwrap().is_empty());
    assert_eq!(t.fake.creates(), 0);
    let _ = s.cancel().await;
    within(15, "shutdown", handle.shutdown()).await;
}
