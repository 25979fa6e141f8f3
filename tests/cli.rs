//! The CLI: thin commands over the same core, human output by default and `--json`.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::support::Workspace;

pub fn cli(env: &BTreeMap<String, String>, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_i2v-mcp"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .envs(env)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn models_and_estimates() {
    let ws = Workspace::new();
    let env = ws.env(&[("PIAPI_API_KEY", "secret-key-value")]);
    let (code, out, _) = cli(&env, &["models", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(
        models.len(),
        i2v_mcp::catalog::models().len(),
        "every model"
    );
    assert!(
        models.len() >= 18,
        "7 before dashscope + its 6 i2v + 5 text-to-video"
    );
    let piapi = models.iter().find(|m| m["provider"] == "piapi").unwrap();
    assert_eq!(piapi["configured"], true);
    assert_eq!(piapi["price"]["usd_per_video"], 0.28);
    let local = models.iter().find(|m| m["provider"] == "local").unwrap();
    assert_eq!(local["ai"], false);
    let (code, out, _) = cli(&env, &["models"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("novita/wan2.1-i2v")
            && out.contains("[retired 2026-08-19; replacement: novita/wan2.7-i2v]"),
        "{out}"
    );

    let (code, out, _) = cli(&env, &["estimate", "--provider", "piapi", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["quotes"][0]["usd"], 0.28);

    let (code, out, _) = cli(&env, &["estimate", "--compare", "--duration", "10"]);
    assert_eq!(code, 0);
    assert!(out.contains("novita/wan2.6-i2v: unpriced"), "{out}");
    assert!(out.contains("local/camera-preview: $0"), "{out}");
    assert!(!out.contains("wan2.1"), "WanX cannot do 10 s: {out}");
    assert!(out.contains("piapi/wan2.6-t2v: $0.8"), "{out}");

    let (code, out, err) = cli(&env, &["doctor"]);
    assert_eq!(code, 0);
    assert!(out.contains("configured"), "{out}");
    assert!(!out.contains("secret-key-value") && !err.contains("secret-key-value"));
}

#[test]
fn bad_input_fails_with_a_clear_message_and_exit_code() {
    let ws = Workspace::new();
    let env = ws.env(&[]);
    let (code, _, err) = cli(
        &env,
        &[
            "create",
            "--image",
            "/etc/hostname",
            "--prompt",
            "x",
            "--provider",
            "piapi",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("auth") && err.contains("PIAPI_API_KEY"),
        "{err}"
    );

    let (code, out, _) = cli(&env, &["get", "tsk_missing", "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["category"], "not_found");

    // No key and no provider: the auth error points at provider local.
    let img = ws.png("a.png", 64, 64);
    let (code, _, err) = cli(
        &env,
        &["create", "--image", img.to_str().unwrap(), "--prompt", "x"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("local"), "{err}");

    // Unknown config keys are errors.
    std::fs::write(ws.path("bad.toml"), "output_dri = \"/tmp\"\n").unwrap();
    let mut env2 = env.clone();
    env2.insert(
        "I2V_MCP_CONFIG".into(),
        ws.path("bad.toml").display().to_string(),
    );
    let (code, _, err) = cli(&env2, &["models"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn pricing_config_sets_unpublished_prices_and_budgets_use_them() {
    let ws = Workspace::new();
    std::fs::write(
        ws.path("no-config.toml"),
        "[pricing.\"novita/wan2.6-i2v\"]\nper_second_usd = 0.1\n\n[budget]\nper_task_usd = 0.75\n",
    )
    .unwrap();
    let env = ws.env(&[("NOVITA_API_KEY", "k")]);
    let (code, out, _) = cli(
        &env,
        &[
            "estimate",
            "--provider",
            "novita",
            "--model",
            "wan2.6-i2v",
            "--duration",
            "10",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["quotes"][0]["usd"], 1.0);
    assert_eq!(v["quotes"][0]["unpriced"], false);
    assert!(
        v["quotes"][0]["price_source"]
            .as_str()
            .unwrap()
            .contains("[pricing")
    );
    // 10 s at $0.10/s is over the $0.75 per-task budget: refused before anything is sent.
    let img = ws.png("a.png", 640, 640);
    let (code, _, err) = cli(
        &env,
        &[
            "create",
            "--provider",
            "novita",
            "--model",
            "wan2.6-i2v",
            "--duration",
            "10",
            "--image",
            img.to_str().unwrap(),
            "--prompt",
            "p",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("budget") && err.contains("per_task_usd"),
        "{err}"
    );
}

#[test]
fn create_wait_and_get_print_where_the_contact_sheet_is() {
    let ws = Workspace::new();
    let env = ws.env(&[]);
    let img = ws.png("a.png", 640, 360);
    let (code, out, err) = cli(
        &env,
        &[
            "create",
            "--provider",
            "local",
            "--image",
            img.to_str().unwrap(),
            "--prompt",
            "zoom in",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let sheet = out
        .lines()
        .find_map(|l| l.strip_prefix("contact sheet: "))
        .unwrap_or_else(|| panic!("no contact sheet line: {out}"));
    assert!(sheet.ends_with(".sheet.jpg"), "{sheet}");
    let bytes = std::fs::read(sheet).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    let id = out.split_whitespace().nth(1).unwrap();
    let (code, again, _) = cli(&env, &["get", id]);
    assert_eq!(code, 0);
    assert!(
        again.contains(&format!("contact sheet: {sheet}")),
        "{again}"
    );
}

/// `[pricing]` can set per-second prices by resolution (and audio), like the catalog's tiers; a
/// negative price or a mix of per-video and per-second is refused by name.
#[test]
fn pricing_config_sets_tiers() {
    let ws = Workspace::new();
    std::fs::write(
        ws.path("no-config.toml"),
        "[pricing.\"dashscope/wan2.7-t2v\"]\nby_resolution = [\n  { resolution = \"720p\", per_second_usd = 0.1 },\n  { resolution = \"1080p\", per_second_usd = 0.15 },\n]\n",
    )
    .unwrap();
    let env = ws.env(&[("DASHSCOPE_API_KEY", "k")]);
    let quote = |res: &str| {
        let (code, out, err) = cli(
            &env,
            &[
                "estimate",
                "--provider",
                "dashscope",
                "--model",
                "wan2.7-t2v",
                "--duration",
                "10",
                "--resolution",
                res,
                "--json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["quotes"][0]["usd"].as_f64().unwrap()
    };
    assert!((quote("720p") - 1.0).abs() < 1e-9);
    assert!((quote("1080p") - 1.5).abs() < 1e-9);

    for bad in [
        "[pricing.\"dashscope/wan2.7-t2v\"]\nper_video_usd = 1.0\nby_resolution = [{ resolution = \"720p\", per_second_usd = 0.1 }]\n",
        "[pricing.\"dashscope/wan2.7-t2v\"]\nby_resolution = [{ resolution = \"720p\", per_second_usd = -0.1 }]\n",
    ] {
        std::fs::write(ws.path("no-config.toml"), bad).unwrap();
        let (code, _, err) = cli(&env, &["models"]);
        assert_eq!(code, 1, "{bad}");
        assert!(err.contains("dashscope/wan2.7-t2v"), "{err}");
    }
}
