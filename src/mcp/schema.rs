//! Host-safe tool schemas from the Rust types (schemars): no `$schema`, no `$ref` (several
//! clients fail on them), no non-standard `format`s, optional fields as plain types, and output
//! schemas cut to the fields an agent branches on. Pinned byte for byte by `tools/` and
//! tests/tools_drift.rs.

use std::sync::Arc;

use rmcp::model::JsonObject;
use rmcp::schemars::generate::SchemaSettings;
use rmcp::schemars::transform::RecursiveTransform;
use rmcp::schemars::{JsonSchema, Schema};
use serde_json::{Map, Value};

/// The generator: 2020-12 without `$schema`; `$ref`s inlined, then every subschema tidied.
fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12()
        .with(|s| s.meta_schema = None)
        .with_transform(inline_refs as fn(&mut Schema))
        .with_transform(RecursiveTransform(tidy as fn(&mut Schema)))
}

fn generate<T: JsonSchema>(settings: SchemaSettings) -> JsonObject {
    match settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
    {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A tool's input schema (what `T` deserialises from), without the type's own description.
pub fn input<T: JsonSchema>() -> Arc<JsonObject> {
    let mut s = generate::<T>(settings().for_deserialize());
    s.remove("description");
    Arc::new(s)
}

/// A tool's output schema (what `T` serialises to), cut down by [`shallow`].
pub fn output<T: JsonSchema>(keep: &[&str]) -> Arc<JsonObject> {
    Arc::new(shallow(&generate::<T>(settings().for_serialize()), keep))
}

/// Every `$ref` replaced by its definition, and `$defs` dropped. Hand-written because schemars'
/// `inline_subschemas` keeps a type's own description where a field has none ("Provider id."
/// at every use: tokens that say little); here a field's description wins and a type's is dropped.
fn inline_refs(schema: &mut Schema) {
    let defs = match schema.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => return,
    };
    if let Some(root) = schema.as_object_mut() {
        root.values_mut().for_each(|v| inline(v, &defs, 0));
    }
}

fn inline(v: &mut Value, defs: &Map<String, Value>, depth: usize) {
    match v {
        Value::Object(o) => {
            if let Some(def) = o
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|name| defs.get(name))
                && depth < 16
            {
                let mut merged = def.clone();
                inline(&mut merged, defs, depth + 1);
                if let Value::Object(m) = &mut merged {
                    m.remove("description");
                    if let Some(d) = o.get("description") {
                        m.insert("description".into(), d.clone());
                    }
                }
                *v = merged;
                return;
            }
            o.values_mut().for_each(|x| inline(x, defs, depth + 1));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| inline(x, defs, depth + 1)),
        _ => {}
    }
}

/// One subschema made compact. A transform, but schemars has no built-in one for these: an
/// `Option`'s `anyOf [T, null]` becomes `T` (optional = not required), `["string","null"]`
/// becomes `"string"`, and `format`s (uint32, double, ...), null defaults, type-name titles and
/// `minimum: 0` go: they cost tokens and tell an agent nothing the type does not.
fn tidy(schema: &mut Schema) {
    let Some(m) = schema.as_object_mut() else {
        return;
    };
    strip(m);
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(arms)) = m.get_mut(key) else {
            continue;
        };
        arms.retain(|x| x.get("type") != Some(&Value::String("null".into())));
        if arms.len() == 1 {
            // The one arm left is the field's type: merged in, the field's own keys win.
            if let Some(Value::Array(mut arms)) = m.remove(key)
                && let Some(Value::Object(single)) = arms.pop()
            {
                for (k, v) in single {
                    m.entry(k).or_insert(v);
                }
            }
            strip(m);
        }
    }
}

fn strip(m: &mut Map<String, Value>) {
    m.remove("format");
    // schemars' type-name titles (a property named title is under `properties`, untouched).
    if m.get("title").is_some_and(Value::is_string) {
        m.remove("title");
    }
    if m.get("default").is_some_and(Value::is_null) {
        m.remove("default");
    }
    if m.get("minimum") == Some(&Value::from(0)) {
        m.remove("minimum");
    }
    if let Some(Value::Array(types)) = m.get_mut("type") {
        types.retain(|t| t != "null");
        if let [single] = types.as_slice() {
            let single = single.clone();
            m.insert("type".into(), single);
        }
    }
}

/// Output schemas name the fields an agent branches on, with their types and enum values:
/// enough for clients to validate (other fields are allowed) at a fraction of the tokens. Every
/// field is described in the text summary and in README.md. `keep` empty = all top-level fields.
/// Hand-written: a projection per tool, not something a schema transform expresses.
fn shallow(schema: &JsonObject, keep: &[&str]) -> JsonObject {
    let mut props = Map::new();
    if let Some(Value::Object(p)) = schema.get("properties") {
        for (name, field) in p {
            if !keep.is_empty() && !keep.contains(&name.as_str()) {
                continue;
            }
            props.insert(name.clone(), Value::Object(shallow_field(field)));
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

/// A field's type and enum values; an array keeps its element's type (hosts such as VS Code
/// refuse an array without `items`).
fn shallow_field(field: &Value) -> JsonObject {
    let mut f = Map::new();
    for key in ["type", "enum"] {
        if let Some(v) = field.get(key) {
            f.insert(key.into(), v.clone());
        }
    }
    if !f.contains_key("type") {
        f.insert("type".into(), Value::String("object".into()));
    }
    if f.get("type") == Some(&Value::String("array".into())) {
        let item = field
            .get("items")
            .and_then(|i| i.get("type"))
            .cloned()
            .unwrap_or_else(|| Value::String("object".into()));
        f.insert("items".into(), serde_json::json!({ "type": item }));
    }
    f
}

/// Descriptions below the top level removed: estimate_cost's nested arguments (LoRAs, camera
/// motion) are create_i2v_task's, documented there; repeating them costs every host tokens.
/// So is its `provider` enum (about 4 tokens a provider): a plain string here, listed once in
/// create's schema, and a wrong one is still refused by name when the arguments are read.
/// Hand-written: it depends on the tool, not on the type (create keeps them).
pub fn without_nested_descriptions(schema: Arc<JsonObject>) -> Arc<JsonObject> {
    fn strip(v: &mut Value) {
        if let Value::Object(m) = v {
            m.remove("description");
            m.values_mut().for_each(strip);
        }
    }
    let mut schema = Arc::unwrap_or_clone(schema);
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        if let Some(Value::Object(p)) = props.get_mut("provider") {
            p.remove("enum");
        }
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
    Arc::new(schema)
}

#[cfg(test)]
mod tests {
    use rmcp::schemars;
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    /// Kind of thing.
    #[derive(Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)] // only its schema is used
    enum Kind {
        A,
        B,
    }

    /// A part.
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only its schema is used
    struct Part {
        /// How strong.
        strength: Option<f64>,
    }

    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only its schema is used
    struct Args {
        kind: Option<Kind>,
        /// The field's own words.
        described: Option<Kind>,
        count: Option<u32>,
        parts: Vec<Part>,
    }

    /// Inlined, typed, without nulls, formats, titles, `minimum: 0` or the types' descriptions.
    #[test]
    fn input_schemas_are_inline_and_compact() {
        let s = Value::Object(input::<Args>().as_ref().clone());
        let part = json!({
            "additionalProperties": false,
            "properties": {"strength": {"description": "How strong.", "type": "number"}},
            "type": "object"
        });
        assert_eq!(
            s,
            json!({
                "additionalProperties": false,
                "properties": {
                    "kind": {"enum": ["a", "b"], "type": "string"},
                    "described": {"description": "The field's own words.", "enum": ["a", "b"], "type": "string"},
                    "count": {"type": "integer"},
                    "parts": {"items": part, "type": "array"}
                },
                "required": ["parts"],
                "type": "object"
            })
        );
    }

    /// The serialize contract: an `Option` without `skip_serializing_if` is always written.
    #[test]
    fn output_schemas_keep_the_named_fields_and_array_items() {
        let s = Value::Object(output::<Args>(&["kind", "parts"]).as_ref().clone());
        assert_eq!(
            s,
            json!({
                "properties": {
                    "kind": {"enum": ["a", "b"], "type": "string"},
                    "parts": {"items": {"type": "object"}, "type": "array"}
                },
                "required": ["kind", "parts"],
                "type": "object"
            })
        );
    }
}
