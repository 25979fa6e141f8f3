//! Our own line framing for MCP over stdio, in front of rmcp.
//!
//! rmcp's stdio transport drops a line over 16 MiB, and a line it cannot decode, without an
//! answer: the client waits forever. Here every line that carries an id is answered:
//! - a line over [`MAX_LINE_BYTES`] gets an error naming the limit and the alternatives (a
//!   path or an https URL); its id is read from the start of the line when it is there, else
//!   the answer has `"id": null` as JSON-RPC prescribes;
//! - unparseable JSON gets -32700 (`"id": null`);
//! - a structurally invalid request (no or wrong `jsonrpc`, a `method` that is no string,
//!   `params` that are neither object nor array, an id of the wrong type) gets -32600;
//! - a batch (a JSON array; MCP dropped batching in 2025-06-18) gets -32600 for each member
//!   that has an id, or one with `"id": null`.
//!
//! rmcp accepts any `(Sink<ServerJsonRpcMessage>, Stream<ClientJsonRpcMessage>)` as a
//! transport: [`framed`] gives it channels. One writer task owns stdout and writes whole lines,
//! rmcp's messages and ours alike, so nothing interleaves.

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, RequestId, ServerJsonRpcMessage};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest stdin line. A create may carry two images (`image`, `end_image`) of up to 10 MB each
/// (the remote providers' limit) as `data:` URIs: 2 × 13.4 MiB of base64 plus the rest of the
/// request fits with room to spare, while a line is held in memory only once or twice over.
/// Larger images (the local preview takes up to 50 MiB) go by path: the server is local.
pub const MAX_LINE_BYTES: usize = 32 << 20;
/// Bytes kept from the start of an over-long line to find its id.
const HEAD_BYTES: usize = 4096;
/// Messages buffered towards rmcp, and from it to stdout.
const CHANNEL: usize = 16;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;

/// Frame `input` and `output` for rmcp: returns the sink and stream to `serve`, and the writer
/// task, which ends (output flushed) once rmcp and the reader are both done.
pub fn framed<R, W>(
    input: R,
    output: W,
    max_line: usize,
) -> (
    mpsc::Sender<ServerJsonRpcMessage>,
    mpsc::Receiver<ClientJsonRpcMessage>,
    tokio::task::JoinHandle<()>,
)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (to_rmcp, from_client) = mpsc::channel(CHANNEL);
    let (to_client, from_rmcp) = mpsc::channel(CHANNEL);
    let (replies, our_replies) = mpsc::channel(CHANNEL);
    tokio::spawn(read_lines(
        BufReader::with_capacity(64 * 1024, input),
        max_line,
        to_rmcp,
        replies,
    ));
    let writer = tokio::spawn(write_lines(output, from_rmcp, our_replies));
    (to_client, from_client, writer)
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut out: W,
    from_rmcp: mpsc::Receiver<ServerJsonRpcMessage>,
    ours: mpsc::Receiver<Value>,
) {
    let rmcp_lines = from_rmcp.map(|m| serde_json::to_vec(&m));
    let our_lines = ours.map(|v| serde_json::to_vec(&v));
    let mut lines = futures::stream::select(rmcp_lines, our_lines);
    while let Some(line) = lines.next().await {
        let mut line = match line {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a message for stdout; dropped");
                continue;
            }
        };
        line.push(b'\n');
        if let Err(e) = async {
            out.write_all(&line).await?;
            out.flush().await
        }
        .await
        {
            tracing::warn!(error = %e, "stdout closed; no more answers can be sent");
            return;
        }
    }
}

async fn read_lines<R: AsyncBufRead + Unpin>(
    mut input: R,
    max_line: usize,
    mut to_rmcp: mpsc::Sender<ClientJsonRpcMessage>,
    mut replies: mpsc::Sender<Value>,
) {
    loop {
        let line = match read_line(&mut input, max_line).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stdin; ending the session");
                return;
            }
        };
        let answers = match line {
            Line::Eof => return,
            Line::TooLong { head, len } => {
                let id = id_from_head(&head);
                tracing::warn!(bytes = len, id = ?id, "stdin line over the limit; answered with an error");
                vec![error(
                    id.map(id_value),
                    INVALID_REQUEST,
                    format!(
                        "message too large: this line is {len} bytes, over the {} MiB limit of a stdio message; pass the image as a local file path or an https URL instead of a data: URI",
                        max_line >> 20
                    ),
                )]
            }
            Line::Full(bytes) => match classify(&bytes) {
                Classified::Message(m) => {
                    drop(bytes);
                    if to_rmcp.send(*m).await.is_err() {
                        return; // the MCP service has ended
                    }
                    continue;
                }
                Classified::Answer(a) => a,
            },
        };
        for a in answers {
            if replies.send(a).await.is_err() {
                return;
            }
        }
    }
}

enum Line {
    Eof,
    Full(Vec<u8>),
    /// Over the limit: the first bytes, and the whole length (the rest was skipped).
    TooLong {
        head: Vec<u8>,
        len: usize,
    },
}

/// One line without its `\n` (and `\r`), never holding more than `max` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(input: &mut R, max: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let mut head: Option<Vec<u8>> = None;
    let mut len = 0usize;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            if len == 0 {
                return Ok(Line::Eof);
            }
            break; // a last line without a newline
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        match &mut head {
            None if buf.len() + chunk.len() <= max => buf.extend_from_slice(chunk),
            None => {
                let mut h = std::mem::take(&mut buf);
                h.truncate(HEAD_BYTES);
                let more = HEAD_BYTES.saturating_sub(h.len()).min(chunk.len());
                h.extend_from_slice(&chunk[..more]);
                head = Some(h);
            }
            Some(h) => {
                let more = HEAD_BYTES.saturating_sub(h.len()).min(chunk.len());
                h.extend_from_slice(&chunk[..more]);
            }
        }
        len += chunk.len();
        let used = chunk.len() + usize::from(done);
        input.consume(used);
        if done {
            break;
        }
    }
    if let Some(head) = head {
        return Ok(Line::TooLong { head, len });
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Line::Full(buf))
}

enum Classified {
    Message(Box<ClientJsonRpcMessage>),
    /// Answers to send back (none for a blank line or a broken notification).
    Answer(Vec<Value>),
}

fn classify(line: &[u8]) -> Classified {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Classified::Answer(Vec::new());
    }
    let rmcp_err = match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(m) => return Classified::Message(Box::new(m)),
        Err(e) => e,
    };
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Classified::Answer(vec![error(
                None,
                PARSE_ERROR,
                format!("Parse error: the line is not valid JSON ({e})"),
            )]);
        }
    };
    Classified::Answer(match value {
        Value::Array(items) => {
            let msg = "Invalid Request: batches (JSON arrays) are not supported; MCP removed JSON-RPC batching in 2025-06-18: send one message per line";
            let mut answers: Vec<Value> = items
                .iter()
                .filter_map(valid_id)
                .map(|id| error(Some(id), INVALID_REQUEST, msg.to_string()))
                .collect();
            if answers.is_empty() {
                answers.push(error(None, INVALID_REQUEST, msg.to_string()));
            }
            answers
        }
        Value::Object(obj) => invalid_object(&obj, &rmcp_err),
        _ => vec![error(
            None,
            INVALID_REQUEST,
            "Invalid Request: a JSON-RPC message is an object".to_string(),
        )],
    })
}

/// Why an object rmcp refused is not a request we can serve, as the answer to send (if any).
fn invalid_object(
    obj: &serde_json::Map<String, Value>,
    rmcp_err: &serde_json::Error,
) -> Vec<Value> {
    let is_response =
        !obj.contains_key("method") && (obj.contains_key("result") || obj.contains_key("error"));
    if is_response {
        // Never answer an answer.
        tracing::warn!(error = %rmcp_err, "ignored a malformed response from the client");
        return Vec::new();
    }
    let mut problems = Vec::new();
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        problems.push("\"jsonrpc\" must be \"2.0\"");
    }
    if !obj.get("method").is_some_and(Value::is_string) {
        problems.push("\"method\" must be a string");
    }
    if obj
        .get("params")
        .is_some_and(|p| !p.is_object() && !p.is_array())
    {
        problems.push("\"params\" must be an object");
    }
    let id = obj.get("id");
    let id_ok = id.and_then(valid_id_value);
    if id.is_some() && id_ok.is_none() {
        problems.push("\"id\" must be a string or an integer");
    }
    if id.is_none() {
        // A notification: JSON-RPC forbids answering it, however broken.
        tracing::warn!(error = %rmcp_err, "ignored a malformed notification");
        return Vec::new();
    }
    let message = if problems.is_empty() {
        format!("Invalid Request: {rmcp_err}")
    } else {
        format!("Invalid Request: {}", problems.join("; "))
    };
    vec![error(id_ok, INVALID_REQUEST, message)]
}

/// The id of a batch member, if it has a usable one.
fn valid_id(item: &Value) -> Option<Value> {
    item.get("id").and_then(valid_id_value)
}

fn valid_id_value(id: &Value) -> Option<Value> {
    serde_json::from_value::<RequestId>(id.clone())
        .ok()
        .map(id_value)
}

fn id_value(id: RequestId) -> Value {
    serde_json::to_value(id).unwrap_or(Value::Null)
}

/// A JSON-RPC error; `id: None` is written as `"id": null`.
fn error(id: Option<Value>, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id.unwrap_or(Value::Null), "error": {"code": code, "message": message}})
}

/// The top-level `id` of a JSON object cut short, if it comes before the cut (clients write it
/// before `params`).
fn id_from_head(head: &[u8]) -> Option<RequestId> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

    struct Finder<'a>(&'a mut Option<RequestId>);

    impl<'de> Visitor<'de> for Finder<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON-RPC message")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == "id" {
                    *self.0 = map.next_value::<Option<RequestId>>()?;
                    return Ok(());
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(head);
    // The cut makes the whole parse fail; the id, once read, is kept.
    let _ = de.deserialize_map(Finder(&mut found));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_found_at_the_start_of_a_cut_line() {
        let id = |s: &str| id_from_head(s.as_bytes()).map(id_value);
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"AAAA"#),
            Some(json!(7))
        );
        assert_eq!(
            id(r#"{ "id" : "abc", "params": {"id": 5, "#),
            Some(json!("abc"))
        );
        // A nested "id" before the top-level one is not taken for it.
        assert_eq!(id(r#"{"params":{"id":5},"id":6,"x":"AAA"#), Some(json!(6)));
        assert_eq!(id(r#"{"params":{"id":5,"image":"AAAA"#), None);
        assert_eq!(id(r#"not json"#), None);
    }

    #[tokio::test]
    async fn lines_over_the_limit_are_skipped_whole() {
        let input = format!("{}\r\nnext\nlast", "x".repeat(100));
        let mut r = BufReader::with_capacity(16, input.as_bytes());
        match read_line(&mut r, 50).await.unwrap() {
            Line::TooLong { head, len } => {
                assert_eq!(len, 101);
                assert_eq!(head.len(), 101.min(HEAD_BYTES));
            }
            _ => panic!("expected an over-long line"),
        }
        assert!(matches!(read_line(&mut r, 50).await.unwrap(), Line::Full(l) if l == b"next"));
        assert!(matches!(read_line(&mut r, 50).await.unwrap(), Line::Full(l) if l == b"last"));
        assert!(matches!(read_line(&mut r, 50).await.unwrap(), Line::Eof));
    }
}
