//! Reading a batch manifest: JSONL (one JSON object a line) or CSV (a header row naming the
//! fields). A row has the fields of `create_i2v_task` (parsed into the same `CreateRequest`,
//! so an unknown or mistyped field is the same error create gives) plus `id` (required, unique),
//! `after` (the id of an earlier row this one waits for) and `continue` (start from the last
//! frame of the `after` row's video). Problems are collected with their line numbers; nothing
//! stops at the first.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::model::CreateRequest;

/// Longest row id.
const MAX_ID: usize = 100;

/// One row of the manifest.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based line of the row in its file (CSV: the line the record starts on).
    pub line: usize,
    pub id: String,
    pub req: CreateRequest,
    pub after: Option<String>,
    /// Start from the last frame of the `after` row's video.
    pub continues: bool,
}

impl Row {
    /// Hex sha256 of the row's normalized fields (the request as parsed, `after`, `continue`):
    /// the same row written as JSONL or CSV, in any key order, hashes the same.
    pub fn hash(&self) -> String {
        let mut req = self.req.clone();
        req.idempotency_key = None;
        req.wait_seconds = None;
        let v = serde_json::json!({
            "request": req,
            "after": self.after,
            "continue": self.continues,
        });
        hex::encode(Sha256::digest(v.to_string().as_bytes()))
    }
}

/// A row that cannot run, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Invalid {
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub error: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "line {} (row {id}): {}", self.line, self.error),
            None => write!(f, "line {}: {}", self.line, self.error),
        }
    }
}

/// Parse `text` (read from `path`: `.csv` is CSV, anything else JSONL). Relative image paths
/// are taken from `base` (the manifest's directory). Rows that parse, and the problems of those
/// that do not (the cross-row checks, unique ids and `after`, come after, in `check_links`).
pub fn parse(path: &Path, text: &str, base: &Path) -> (Vec<Row>, Vec<Invalid>) {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let objects = if is_csv {
        csv_objects(text)
    } else {
        jsonl_objects(text)
    };
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (line, obj) in objects {
        // The id, when there is one, even if the row is bad: later rows may name it.
        let id = obj
            .as_ref()
            .ok()
            .and_then(|o| o.get("id"))
            .and_then(|v| v.as_str().map(|s| s.trim().to_string()));
        match obj.and_then(|o| row(line, o, base)) {
            Ok(r) => rows.push(r),
            Err((given, error)) => bad.push(Invalid {
                line,
                id: given.or(id),
                error,
            }),
        }
    }
    let (rows, mut linked) = check_links(rows, &bad);
    bad.append(&mut linked);
    bad.sort_by_key(|b| b.line);
    (rows, bad)
}

type Parsed = Result<Map<String, Value>, (Option<String>, String)>;

/// Non-empty lines that do not start with `#`, as JSON objects.
fn jsonl_objects(text: &str) -> Vec<(usize, Parsed)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let parsed = match serde_json::from_str::<Value>(l) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err((None, "a row must be a JSON object".to_string())),
                Err(e) => Err((None, format!("not valid JSON: {e}"))),
            };
            (i + 1, parsed)
        })
        .collect()
}

/// Columns whose cells are text as written (a prompt "123" stays a string).
const TEXT_COLUMNS: [&str; 13] = [
    "id",
    "after",
    "image",
    "prompt",
    "negative_prompt",
    "provider",
    "model",
    "resolution",
    "aspect_ratio",
    "end_image",
    "audio_url",
    "shot_type",
    "acceleration",
];

/// CSV records as JSON objects: empty cells are left out; text columns are strings;
/// `camera_motion` is a motion name (or JSON), `loras` is `name[:strength]` separated by `;` (or
/// JSON); every other cell is read as JSON (numbers, `true`/`false`).
fn csv_objects(text: &str) -> Vec<(usize, Parsed)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::Headers)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return vec![(1, Err((None, format!("cannot read the CSV header: {e}"))))],
    };
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| line_at(text, p.byte() as usize));
                out.push((line, Err((None, format!("not valid CSV: {e}")))));
                continue;
            }
        };
        let line = record
            .position()
            .map_or(0, |p| line_at(text, p.byte() as usize));
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let mut obj = Map::new();
        let mut problem = None;
        for (name, cell) in headers.iter().zip(record.iter()) {
            if cell.trim().is_empty() {
                continue;
            }
            match csv_cell(name, cell) {
                Ok(v) => {
                    obj.insert(name.to_string(), v);
                }
                Err(e) => {
                    problem.get_or_insert(e);
                }
            }
        }
        let id = obj.get("id").and_then(Value::as_str).map(str::to_string);
        out.push((
            line,
            match problem {
                Some(e) => Err((id, e)),
                None => Ok(obj),
            },
        ));
    }
    out
}

/// The 1-based line a record starting at byte `at` is on. The CSV reader starts a record after
/// blank lines at the first of them: those are skipped here.
fn line_at(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    let before = text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let blank = text.as_bytes()[at..]
        .iter()
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .filter(|&&b| b == b'\n')
        .count();
    1 + before + blank
}

fn csv_cell(name: &str, cell: &str) -> Result<Value, String> {
    let t = cell.trim();
    if TEXT_COLUMNS.contains(&name) {
        return Ok(Value::String(cell.to_string()));
    }
    match name {
        "camera_motion" if !t.starts_with('{') => {
            return Ok(serde_json::json!({ "type": t }));
        }
        "loras" if !t.starts_with('[') => {
            let loras: Result<Vec<Value>, String> = t
                .split(';')
                .filter(|s| !s.trim().is_empty())
                .map(|s| match s.trim().rsplit_once(':') {
                    Some((n, st)) => st
                        .trim()
                        .parse::<f64>()
                        .map(|st| serde_json::json!({"name": n.trim(), "strength": st}))
                        .map_err(|_| format!("column loras: '{s}': use name or name:strength")),
                    None => Ok(serde_json::json!({"name": s.trim()})),
                })
                .collect();
            return loras.map(Value::Array);
        }
        _ => {}
    }
    serde_json::from_str(t)
        .map_err(|_| format!("column {name}: '{t}' is not a number, true/false or JSON value"))
}

/// One row from its fields: `id`, `after`, `continue` taken out, the rest read as a create.
fn row(
    line: usize,
    mut obj: Map<String, Value>,
    base: &Path,
) -> Result<Row, (Option<String>, String)> {
    let id = match obj.remove("id") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err((None, "id must be a string".into())),
        None => return Err((None, "id is missing: every row needs a unique id".into())),
    };
    let fail = |e: String| (Some(id.clone()), e);
    if id.is_empty()
        || id.len() > MAX_ID
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(fail(format!(
            "id '{id}' must be 1 to {MAX_ID} letters, digits, '-', '_' or '.'"
        )));
    }
    let after = match obj.remove("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(fail("after must be the id of an earlier row".into())),
    };
    let continues = match obj.remove("continue") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(fail("continue must be true or false".into())),
    };
    for (field, why) in [
        (
            "idempotency_key",
            "the batch gives each row its own key (from the batch and the row id)",
        ),
        ("wait_seconds", "the batch waits for every row itself"),
    ] {
        if obj.contains_key(field) {
            return Err(fail(format!("{field} cannot be set in a batch: {why}")));
        }
    }
    let mut req: CreateRequest =
        serde_json::from_value(Value::Object(obj)).map_err(|e| fail(e.to_string()))?;
    if continues {
        if after.is_none() {
            return Err(fail(
                "continue needs after: the id of the row whose last frame starts this one".into(),
            ));
        }
        if req.image.is_some() {
            return Err(fail(
                "a continued row takes its image from the row it follows: drop image".into(),
            ));
        }
    }
    req.image = req.image.map(|i| absolute(&i, base));
    req.end_image = req.end_image.map(|i| absolute(&i, base));
    Ok(Row {
        line,
        id,
        req,
        after,
        continues,
    })
}

/// A relative local path, from `base`; URLs, data URIs and absolute paths as given.
fn absolute(input: &str, base: &Path) -> String {
    let t = input.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("data:")
        || Path::new(t).is_absolute()
    {
        return input.to_string();
    }
    base.join(t).display().to_string()
}

/// Unique ids, and `after` naming an earlier valid row. A row after an invalid one is invalid
/// too (it could never run).
fn check_links(rows: Vec<Row>, unreadable: &[Invalid]) -> (Vec<Row>, Vec<Invalid>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut failed: Vec<(String, usize)> = unreadable
        .iter()
        .filter_map(|b| Some((b.id.clone()?, b.line)))
        .collect();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for r in rows {
        let earlier = |id: &str| {
            seen.get(id).copied().or_else(|| {
                failed
                    .iter()
                    .find(|(f, l)| f == id && *l < r.line)
                    .map(|(_, l)| *l)
            })
        };
        let problem = if let Some(first) = earlier(&r.id) {
            Some(format!("id '{}' is already used on line {first}", r.id))
        } else {
            match &r.after {
                Some(a) if a == &r.id => Some("after names the row itself".to_string()),
                Some(a) if !ok.iter().any(|o: &Row| &o.id == a) => Some(if earlier(a).is_some() {
                    format!("after '{a}': that row is invalid, so this one cannot run")
                } else {
                    format!("after '{a}': no earlier row has that id")
                }),
                _ => None,
            }
        };
        if problem.is_some() {
            failed.push((r.id.clone(), r.line));
        }
        seen.entry(r.id.clone()).or_insert(r.line);
        match problem {
            Some(error) => bad.push(Invalid {
                line: r.line,
                id: Some(r.id),
                error,
            }),
            None => ok.push(r),
        }
    }
    (ok, bad)
}

/// The rows depending (through `after`, at any depth) on none of `dropped`; and those that do,
/// as invalid. Used when `--skip-invalid` leaves rows out after validation.
pub fn without(rows: Vec<Row>, dropped: &[Invalid]) -> (Vec<Row>, Vec<Invalid>) {
    let mut gone: Vec<String> = dropped.iter().filter_map(|d| d.id.clone()).collect();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for r in rows {
        if gone.contains(&r.id) {
            continue;
        }
        match &r.after {
            Some(a) if gone.contains(a) => {
                gone.push(r.id.clone());
                bad.push(Invalid {
                    line: r.line,
                    id: Some(r.id),
                    error: format!("after '{a}': that row is invalid, so this one cannot run"),
                });
            }
            _ => ok.push(r),
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonl(text: &str) -> (Vec<Row>, Vec<Invalid>) {
        parse(Path::new("m.jsonl"), text, Path::new("/base"))
    }

    #[test]
    fn jsonl_rows_parse_with_line_numbers_and_every_problem_is_named() {
        let text = r#"{"id":"a","prompt":"x","image":"img/a.png","provider":"local"}

# a comment
{"id":"b","prompt":"y","after":"a","continue":true}
{"id":"a","prompt":"dup"}
{"prompt":"no id"}
{"id":"c","prompt":"z","colour":"red"}
{"id":"d","after":"zz","prompt":"w"}
not json
{"id":"e","prompt":"k","idempotency_key":"mine"}
{"id":"f","continue":true,"after":"a","image":"x.png","prompt":"p"}
{"id":"g","after":"c","prompt":"q"}
"#;
        let (rows, bad) = jsonl(text);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(rows[0].line, 1);
        assert_eq!(rows[0].req.image.as_deref(), Some("/base/img/a.png"));
        assert_eq!(rows[1].line, 4);
        assert!(rows[1].continues);
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [5, 6, 7, 8, 9, 10, 11, 12], "{bad:#?}");
        let msg = |l: usize| bad.iter().find(|b| b.line == l).unwrap().to_string();
        assert!(msg(5).contains("already used on line 1"), "{}", msg(5));
        assert!(msg(6).contains("id is missing"), "{}", msg(6));
        assert!(msg(7).contains("unknown field `colour`"), "{}", msg(7));
        assert!(msg(8).contains("no earlier row"), "{}", msg(8));
        assert!(msg(9).contains("not valid JSON"), "{}", msg(9));
        assert!(
            msg(10).contains("idempotency_key cannot be set"),
            "{}",
            msg(10)
        );
        assert!(msg(11).contains("drop image"), "{}", msg(11));
        assert!(msg(12).contains("that row is invalid"), "{}", msg(12));
    }

    #[test]
    fn csv_rows_are_typed_by_column_and_hash_like_jsonl() {
        let csv_text = "id,prompt,image,duration_seconds,camera_motion,loras,audio\n\
                        a,123,/i/a.png,5,zoom_in,\"x:0.5;y\",false\n\
                        \n\
                        b,\"two\nlines\",/i/b.png,five,,,\n";
        let (rows, bad) = parse(Path::new("m.CSV"), csv_text, Path::new("/base"));
        assert_eq!(rows.len(), 1, "{bad:?}");
        let a = &rows[0];
        assert_eq!((a.line, a.req.prompt.as_str()), (2, "123"));
        assert_eq!(a.req.duration_seconds, Some(5));
        assert_eq!(a.req.camera_motion.as_ref().unwrap().kind, "zoom_in");
        assert_eq!(a.req.loras.len(), 2);
        assert_eq!(a.req.loras[0].strength, Some(0.5));
        assert_eq!(a.req.audio, Some(false));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 4);
        assert!(bad[0].error.contains("duration_seconds"), "{:?}", bad[0]);
        let (same, _) = jsonl(
            r#"{"audio":false,"loras":[{"name":"x","strength":0.5},{"name":"y"}],"camera_motion":{"type":"zoom_in"},"duration_seconds":5,"image":"/i/a.png","prompt":"123","id":"a"}"#,
        );
        assert_eq!(same[0].hash(), a.hash());
        let mut changed = a.clone();
        changed.req.prompt = "124".into();
        assert_ne!(changed.hash(), a.hash());
    }

    #[test]
    fn skipping_a_row_skips_the_rows_after_it() {
        let (rows, _) = jsonl(
            "{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"b\",\"after\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"c\",\"after\":\"b\",\"prompt\":\"x\"}\n{\"id\":\"d\",\"prompt\":\"x\"}\n",
        );
        let dropped = [Invalid {
            line: 1,
            id: Some("a".into()),
            error: "bad".into(),
        }];
        let (ok, bad) = without(rows, &dropped);
        assert_eq!(ok.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["d"]);
        assert_eq!(bad.len(), 2);
    }
}
