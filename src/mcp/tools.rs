//! The seven tool definitions: names, titles, descriptions, inline input and output schemas, and
//! annotations. Schemas come from the same Rust types the core uses (schemars), then are made
//! client-friendly: every `$ref` inlined (several clients fail on them), no `$schema`, no
//! non-standard `format`s, and optional fields as plain types. `export-tools` writes these to
//! `tools/`, and a test fails when the files drift from the code.

use std::sync::Arc;

use rmcp::handler::server::common::schema_for_type;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::{Estimate, EstimateRequest, LoraList, ModelList, TaskList};
use crate::model::{CreateRequest, ProviderId, Status, Task};

/// The longest wait one tool call asks for: under the 60 s request timeout of the TypeScript
/// SDK (Claude Code, Cursor, the MCP Inspector), which progress does not reset unless the host
/// opts in. A longer wait is one more `get_task` call.
pub const MAX_WAIT_SECONDS: u32 = crate::config::DEFAULT_MAX_WAIT_SECONDS;

/// `get_task` arguments.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetArgs {
    pub task_id: String,
    /// Seconds to wait for it to finish (0 = refresh and return).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_WAIT_SECONDS))]
    pub wait_seconds: Option<u32>,
}

/// `list_tasks` arguments.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    /// Default 20, max 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `cancel_task` arguments.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelArgs {
    pub task_id: String,
}

/// `list_loras` arguments.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `list_models` arguments.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
}

/// Inline every `$ref` from `$defs` and drop what clients do not need.
pub fn compact(schema: &JsonObject) -> JsonObject {
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut root = schema.clone();
    root.remove("$defs");
    root.remove("$schema");
    match inline(&Value::Object(root), &defs, 0) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn inline(v: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
                && let Some(def) = defs.get(name)
                && depth < 16
            {
                let mut merged = match inline(def, defs, depth + 1) {
                    Value::Object(m) => m,
                    other => return other,
                };
                // A field's own description wins; a type's description ("Provider id.") is
                // dropped: repeated at every use, it costs tokens and says little.
                merged.remove("description");
                if let Some(d) = o.get("description") {
                    merged.insert("description".into(), d.clone());
                }
                return Value::Object(merged);
            }
            let mut m = Map::new();
            for (k, val) in o {
                match k.as_str() {
                    // Non-standard formats (uint32, double, ...) and null defaults cost tokens
                    // and tell an agent nothing the type does not.
                    "format" => continue,
                    "default" if val.is_null() => continue,
                    // schemars' type-name titles; a property *named* title is an object, kept.
                    "title" if val.is_string() => continue,
                    "minimum" if val == &Value::from(0) => continue,
                    "type" => {
                        m.insert(k.clone(), drop_null_type(val));
                    }
                    "anyOf" | "oneOf" => {
                        let arms: Vec<Value> = val
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter(|x| {
                                        x.get("type") != Some(&Value::String("null".into()))
                                    })
                                    .map(|x| inline(x, defs, depth + 1))
                                    .collect()
                            })
                            .unwrap_or_default();
                        if arms.len() == 1 {
                            if let Value::Object(single) = &arms[0] {
                                for (sk, sv) in single {
                                    m.entry(sk.clone()).or_insert_with(|| sv.clone());
                                }
                            }
                        } else {
                            m.insert(k.clone(), Value::Array(arms));
                        }
                    }
                    _ => {
                        m.insert(k.clone(), inline(val, defs, depth + 1));
                    }
                }
            }
            Value::Object(m)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| inline(x, defs, depth + 1)).collect()),
        other => other.clone(),
    }
}

/// `["string","null"]` -> `"string"`: optional fields are simply not required.
fn drop_null_type(v: &Value) -> Value {
    match v {
        Value::Array(types) => {
            let rest: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
            match rest.as_slice() {
                [single] => (*single).clone(),
                _ => Value::Array(rest.into_iter().cloned().collect()),
            }
        }
        other => other.clone(),
    }
}

fn schema<T: JsonSchema + std::any::Any>() -> Arc<JsonObject> {
    let mut c = compact(&schema_for_type::<T>());
    c.remove("description");
    Arc::new(c)
}

fn output<T: JsonSchema + std::any::Any>(keep: &[&str]) -> Arc<JsonObject> {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings = settings.for_serialize();
    let generated = settings.into_generator().into_root_schema_for::<T>();
    let obj = serde_json::to_value(generated)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    Arc::new(shallow(&compact(&obj), keep))
}

/// Output schemas name the fields an agent branches on, with their types and enum values:
/// enough for clients to validate (other fields are allowed) at a fraction of the tokens. Every
/// field is described in the text summary and in README.md. `keep` empty = all top-level fields.
fn shallow(schema: &JsonObject, keep: &[&str]) -> JsonObject {
    let mut props = Map::new();
    if let Some(Value::Object(p)) = schema.get("properties") {
        for (name, field) in p {
            if !keep.is_empty() && !keep.contains(&name.as_str()) {
                continue;
            }
            let mut f = Map::new();
            for key in ["type", "enum"] {
                if let Some(v) = field.get(key) {
                    f.insert(key.into(), v.clone());
                }
            }
            if !f.contains_key("type") {
                f.insert("type".into(), Value::String("object".into()));
            }
            // Hosts refuse an array without `items` (VS Code); the element's type is enough.
            if f.get("type") == Some(&Value::String("array".into())) {
                let item = field
                    .get("items")
                    .and_then(|i| i.get("type"))
                    .cloned()
                    .unwrap_or_else(|| Value::String("object".into()));
                f.insert("items".into(), serde_json::json!({ "type": item }));
            }
            props.insert(name.clone(), Value::Object(f));
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::String("object".into()));
    out.insert("properties".into(), Value::Object(props.clone()));
    if let Some(Value::Array(r)) = schema.get("required") {
        let required: Vec<Value> = r
            .iter()
            .filter(|n| n.as_str().is_some_and(|n| props.contains_key(n)))
            .cloned()
            .collect();
        out.insert("required".into(), Value::Array(required));
    }
    out
}

/// Descriptions below the top level removed: estimate_cost's nested arguments (LoRAs, camera
/// motion) are create_i2v_task's, documented there; repeating them costs every host tokens.
fn without_nested_descriptions(mut schema: JsonObject) -> JsonObject {
    fn strip(v: &mut Value) {
        if let Value::Object(m) = v {
            m.remove("description");
            m.values_mut().for_each(strip);
        }
    }
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for field in props.values_mut() {
            if let Value::Object(f) = field {
                for (k, v) in f.iter_mut() {
                    if k != "description" {
                        strip(v);
                    }
                }
            }
        }
    }
    schema
}

/// The fields of a task an agent acts on.
const TASK_FIELDS: &[&str] = &["task_id", "status", "video", "error"];

/// Only hints that differ from the spec's defaults (readOnly false, destructive true,
/// idempotent false, openWorld true) are sent; destructive/idempotent only matter for tools that
/// write.
fn annotations(
    read_only: bool,
    idempotent: bool,
    open_world: bool,
    destructive: bool,
) -> ToolAnnotations {
    let mut a = ToolAnnotations::new();
    if read_only {
        a.read_only_hint = Some(true);
    } else {
        if !destructive {
            a.destructive_hint = Some(false);
        }
        if idempotent {
            a.idempotent_hint = Some(true);
        }
    }
    if !open_world {
        a.open_world_hint = Some(false);
    }
    a
}

/// The tool list, sorted by name; built once per process (sessions share it).
pub fn all() -> Vec<Tool> {
    list().to_vec()
}

/// One tool by name, without copying the list (looked up on every call).
pub fn get(name: &str) -> Option<&'static Tool> {
    list().iter().find(|t| t.name == name)
}

fn list() -> &'static [Tool] {
    static TOOLS: std::sync::OnceLock<Vec<Tool>> = std::sync::OnceLock::new();
    TOOLS.get_or_init(build)
}

fn build() -> Vec<Tool> {
    let mut tools = vec![
        Tool::new(
            "create_i2v_task",
            "Start turning a still image into a video. Returns a task at once; then call get_task with wait_seconds until status is succeeded/failed/cancelled. Paid unless provider is local (free camera-motion preview).",
            schema::<CreateRequest>(),
        )
        .with_title("Create image-to-video task")
        .with_raw_output_schema(output::<Task>(TASK_FIELDS))
        .with_annotations(annotations(false, false, true, false)),
        Tool::new(
            "get_task",
            "Get a task, refreshed from its provider. With wait_seconds (max 50; call again to wait longer), waits with progress until it finishes. A succeeded task has video.local_path and sha256.",
            schema::<GetArgs>(),
        )
        .with_title("Get task")
        .with_raw_output_schema(output::<Task>(TASK_FIELDS))
        .with_annotations(annotations(true, true, true, false)),
        Tool::new(
            "list_tasks",
            "List tasks from the journal, newest first.",
            schema::<ListArgs>(),
        )
        .with_title("List tasks")
        .with_raw_output_schema(output::<TaskList>(&[]))
        .with_annotations(annotations(true, true, false, false)),
        Tool::new(
            "cancel_task",
            "Cancel a task: upstream where the provider allows it, else stop watching it (the note says which).",
            schema::<CancelArgs>(),
        )
        .with_title("Cancel task")
        .with_raw_output_schema(output::<Task>(TASK_FIELDS))
        .with_annotations(annotations(false, true, true, true)),
        Tool::new(
            "list_loras",
            "List known LoRAs per provider and model.",
            schema::<LoraArgs>(),
        )
        .with_title("List LoRAs")
        .with_raw_output_schema(output::<LoraList>(&[]))
        .with_annotations(annotations(true, true, false, false)),
        Tool::new(
            "list_models",
            "List providers x models: capabilities, limits, prices (null = unpublished) and whether each is configured.",
            schema::<ModelArgs>(),
        )
        .with_title("List models")
        .with_raw_output_schema(output::<ModelList>(&[]))
        .with_annotations(annotations(true, true, false, false)),
        Tool::new(
            "estimate_cost",
            "Estimate the USD cost of a create before paying; compare=true quotes every model that can do it.",
            Arc::new(without_nested_descriptions(
                schema::<EstimateRequest>().as_ref().clone(),
            )),
        )
        .with_title("Estimate cost")
        .with_raw_output_schema(output::<Estimate>(&[]))
        .with_annotations(annotations(true, true, false, false)),
    ];
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_inline_objects() {
        for t in all() {
            let text = serde_json::to_string(&t).unwrap();
            assert!(!text.contains("$ref"), "{} has a $ref", t.name);
            assert!(!text.contains("$defs"), "{} has $defs", t.name);
            assert_eq!(
                t.input_schema.get("type"),
                Some(&Value::String("object".into())),
                "{}",
                t.name
            );
            assert!(t.output_schema.is_some(), "{} has no output schema", t.name);
            assert!(t.annotations.is_some() && t.title.is_some(), "{}", t.name);
        }
        let create = all()
            .into_iter()
            .find(|t| t.name == "create_i2v_task")
            .unwrap();
        let req = create.input_schema.get("required").unwrap();
        assert_eq!(req, &serde_json::json!(["image", "prompt"]));
    }
}
