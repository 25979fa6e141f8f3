//! The contact-sheet gallery of a batch: one HTML file beside the report, no scripts, no CDN.
//! Each row's sheet is inlined (a data: URI, so the file can be mailed or moved alone) and its
//! video linked relative to the gallery.

use std::path::{Component, Path, PathBuf};

use base64::Engine;

use super::{RowResult, Summary};

/// Largest sheet inlined; a bigger one is linked instead.
const MAX_INLINE: u64 = 512 * 1024;

pub fn html(at: &Path, rows: &[RowResult], summary: &Summary) -> String {
    let dir = at
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(absolute)
        .unwrap_or_else(|| absolute(Path::new(".")));
    let mut cards = String::new();
    for r in rows {
        let sheet = r.sheet.as_deref().map(|s| {
            let p = Path::new(s);
            match std::fs::metadata(p) {
                Ok(m) if m.len() <= MAX_INLINE => match std::fs::read(p) {
                    Ok(bytes) => format!(
                        "data:image/jpeg;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    ),
                    Err(_) => relative(&dir, p),
                },
                _ => relative(&dir, p),
            }
        });
        let picture = match sheet {
            Some(src) => format!(
                "<img src=\"{}\" alt=\"contact sheet of row {}\">",
                esc(&src),
                esc(&r.row)
            ),
            None => "<div class=\"none\">no sheet</div>".to_string(),
        };
        let video = r
            .video
            .as_deref()
            .map(|v| {
                format!(
                    " · <a href=\"{}\">video</a>",
                    esc(&relative(&dir, Path::new(v)))
                )
            })
            .unwrap_or_default();
        let cost = r.cost_usd.map(|c| format!(" · ${c}")).unwrap_or_default();
        let task = r
            .task_id
            .as_deref()
            .map(|t| format!("<div class=\"task\">{}</div>", esc(t)))
            .unwrap_or_default();
        let error = r
            .error
            .as_deref()
            .map(|e| format!("<div class=\"error\">{}</div>", esc(e)))
            .unwrap_or_default();
        cards.push_str(&format!(
            "<figure class=\"{status}\">{picture}<figcaption><b>{row}</b> (line {line}) · {status}{cost}{video}{task}{error}</figcaption></figure>\n",
            status = esc(&r.status),
            row = esc(&r.row),
            line = r.line,
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>batch {id}</title><style>\
body{{font:14px system-ui,sans-serif;margin:1rem;background:#111;color:#ddd}}\
main{{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}}\
figure{{margin:0;background:#1c1c1c;padding:.5rem;border-left:4px solid #3a3}}\
figure.failed,figure.invalid,figure.cancelled{{border-color:#c33}}figure.skipped{{border-color:#aa3}}\
img{{width:100%;height:auto;display:block}}a{{color:#8cf}}.none{{padding:2rem;text-align:center;color:#777}}\
.task{{color:#888;font-size:12px}}.error{{color:#f99;white-space:pre-wrap}}\
</style></head><body><h1>batch {id}</h1>\
<p>{rows} rows: {ok} succeeded, {failed} failed, {skipped} skipped, {invalid} invalid · ${total} estimated</p>\
<main>\n{cards}</main></body></html>\n",
        id = esc(&summary.batch_id),
        rows = rows.len(),
        ok = summary.succeeded,
        failed = summary.failed,
        skipped = summary.skipped,
        invalid = summary.invalid.len(),
        total = summary.total_usd,
    )
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `to` relative to directory `from` (both made absolute), as a URL path with `/`.
fn relative(from: &Path, to: &Path) -> String {
    let to = absolute(to);
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_string(), a.len() - common).collect();
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts
        .iter()
        .map(|p| {
            p.replace('%', "%25")
                .replace('#', "%23")
                .replace('?', "%3F")
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_and_text_is_escaped() {
        assert_eq!(
            relative(Path::new("/a/b/reports"), Path::new("/a/b/out/t 1#.mp4")),
            "../out/t 1%23.mp4"
        );
        assert_eq!(relative(Path::new("/a"), Path::new("/a/x.mp4")), "x.mp4");
        assert_eq!(esc("<b a=\"1\">&"), "&lt;b a=&quot;1&quot;&gt;&amp;");
    }
}
