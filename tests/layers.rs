//! The file graph of `src/` runs downward: every `crate::` / `super::` / `self::` path in a file,
//! and every path through a child module it declares (outside `#[cfg(test)]` code, which sits above
//! everything), names a file that does not, through its own paths, name the first one back.
//! `mod x;` lines are structure, not dependencies.
//!
//! The one exception is a module split over its own files: a parent and its direct children may
//! name each other (`impl Core` spread over `core/*.rs`, `render` sharing its error type with its
//! parts). Those modules are listed in [`ONE_MODULE_OVER_FILES`]; a circle anywhere else, or one
//! that leaves its module, fails, printed with the lines that close it.
//! `cargo test --test all layers -- --nocapture` prints the layers, lowest first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rust source with comments, strings and character literals blanked, so braces and paths in
/// them do not count. Lines are kept (newlines survive) for messages.
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !b
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // Raw string r"..", r#".."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let lit_end = if next == Some('\\') {
                (i + 2..b.len()).find(|&j| b[j] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match lit_end {
                Some(e) => {
                    for _ in i..=e {
                        out.push(' ');
                    }
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Blanks every item marked `#[cfg(test)]` (to its closing brace or semicolon).
fn without_test_items(code: &str) -> String {
    let mut out: Vec<char> = code.chars().collect();
    let pat: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + pat.len() <= out.len() {
        if out[i..i + pat.len()] != pat[..] {
            i += 1;
            continue;
        }
        let mut j = i + pat.len();
        let mut depth = 0usize;
        while j < out.len() {
            match out[j] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        for ch in &mut out[i..j.min(code.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = j;
    }
    out.into_iter().collect()
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree
        .split_whitespace()
        .map(|w| if w == "as" { " as " } else { w })
        .collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(|e| format!("{prefix}{e}")))
        .collect()
}

/// The module path of a file: `src/providers/mod.rs` → `[providers]`, `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// The file that defines the longest module prefix of `path` (absolute segments).
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    for n in (0..=path.len()).rev() {
        let dir = path[..n].iter().fold(src.to_path_buf(), |p, s| p.join(s));
        if n == 0 {
            return Some(src.join("lib.rs"));
        }
        let file = dir.with_extension("rs");
        if file.is_file() {
            return Some(file);
        }
        if dir.join("mod.rs").is_file() {
            return Some(dir.join("mod.rs"));
        }
    }
    None
}

/// Every file this one names, with the first line that names it.
fn deps(src: &Path, file: &Path) -> BTreeMap<PathBuf, (usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let code = without_test_items(&code_only(&text));
    let here = module_of(src, file);
    let mut paths: Vec<(usize, String)> = Vec::new();
    // `use` trees (possibly over several lines), then paths anywhere in the code.
    let mut rest = code.as_str();
    let mut offset = 0;
    while let Some(k) = rest.find("use ") {
        let before = code[..offset + k].chars().last();
        let stmt_start = offset + k + 4;
        let end = code[stmt_start..]
            .find(';')
            .map_or(code.len(), |e| stmt_start + e);
        if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
            let line = code[..offset + k].matches('\n').count() + 1;
            for p in expand(&code[stmt_start..end]) {
                paths.push((line, p));
            }
        }
        offset = end.max(stmt_start);
        rest = &code[offset..];
    }
    for (n, line) in code.lines().enumerate() {
        let mut s = line;
        while let Some(k) = s.find("crate::").or_else(|| s.find("super::")) {
            let tail = &s[k..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            paths.push((n + 1, tail[..end].to_string()));
            s = &tail[end..];
        }
    }
    // Paths through a child module this file declares (`mod piapi;` ... `piapi::PIAPI`).
    let children: Vec<String> = code
        .lines()
        .filter_map(|l| {
            let l = l
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect();
    for (n, line) in code.lines().enumerate() {
        for child in &children {
            let pat = format!("{child}::");
            let mut from = 0;
            while let Some(k) = line[from..].find(&pat) {
                let at = from + k;
                let before = line[..at].chars().last();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                    let tail = &line[at..];
                    let end = tail
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        .unwrap_or(tail.len());
                    paths.push((n + 1, format!("self::{}", &tail[..end])));
                }
                from = at + pat.len();
            }
        }
    }
    let mut out = BTreeMap::new();
    for (line, p) in paths {
        let p = p.trim_start_matches("pub ").trim_start_matches("::");
        let segs: Vec<String> = p
            .split("::")
            .map(|s| s.split(" as ").next().unwrap_or(s).to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let Some(first) = segs.first() else { continue };
        let mut abs: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" => here.clone(),
            "super" => {
                // `super` of `a/b.rs` and of `a/b/mod.rs` alike is `a`.
                let mut m = here.clone();
                m.pop();
                m
            }
            _ => continue,
        };
        let mut it = segs.iter().skip(1).peekable();
        while it.peek().map(|s| s.as_str()) == Some("super") {
            abs.pop();
            it.next();
        }
        abs.extend(it.filter(|s| *s != "self" && *s != "*").cloned());
        if let Some(target) = file_of(src, &abs)
            && target != file
        {
            out.entry(target)
                .or_insert_with(|| (line, text.lines().nth(line - 1).unwrap_or("").trim().into()));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Modules whose files may name each other (a parent and its direct children), and why.
const ONE_MODULE_OVER_FILES: &[(&str, &str)] = &[
    ("core", "`impl Core` over one file per concern"),
    ("mcp", "`Server` and its tool and task handlers"),
    (
        "render",
        "the parts share the parent's error and motion types",
    ),
    (
        "providers/piapi",
        "the Wan 2.6 part reuses the PiAPI wire bodies",
    ),
    (
        "journal",
        "the batch rows share the parent's backend and re-export their row types",
    ),
    (
        "core/batch",
        "the gallery renders the run's row results and summary",
    ),
];

/// The module a circle stays in: the one that every file of it is, or is a direct child of.
fn one_module(g: &Graph, circle: &[PathBuf]) -> Option<String> {
    let paths: Vec<Vec<String>> = circle.iter().map(|f| module_of(&g.src, f)).collect();
    let shortest = paths.iter().min_by_key(|p| p.len())?;
    let inside = paths
        .iter()
        .all(|p| p == shortest || (p.len() == shortest.len() + 1 && p.starts_with(shortest)));
    inside.then(|| shortest.join("/"))
}

struct Graph {
    src: PathBuf,
    edges: BTreeMap<PathBuf, BTreeMap<PathBuf, (usize, String)>>,
}

impl Graph {
    fn load() -> Graph {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        // Files that are only compiled for tests (`#[cfg(test)] mod tests;`) are test code.
        let test_only: BTreeSet<PathBuf> = files
            .iter()
            .filter(|f| {
                let t = std::fs::read_to_string(f).unwrap();
                t.contains("#[cfg(test)]\nmod tests;")
            })
            .map(|f| f.with_file_name("tests.rs"))
            .collect();
        let edges = files
            .iter()
            .filter(|f| !test_only.contains(*f) && !f.ends_with("main.rs"))
            .map(|f| {
                let mut d = deps(&src, f);
                d.retain(|t, _| !t.ends_with("lib.rs"));
                (f.clone(), d)
            })
            .collect();
        Graph { src, edges }
    }

    fn name(&self, f: &Path) -> String {
        f.strip_prefix(&self.src).unwrap().display().to_string()
    }

    /// Strongly connected components with more than one file (Tarjan).
    fn circles(&self) -> Vec<Vec<PathBuf>> {
        struct T<'a> {
            g: &'a Graph,
            index: BTreeMap<&'a PathBuf, usize>,
            low: BTreeMap<&'a PathBuf, usize>,
            stack: Vec<&'a PathBuf>,
            on: BTreeSet<&'a PathBuf>,
            out: Vec<Vec<PathBuf>>,
        }
        fn visit<'a>(t: &mut T<'a>, v: &'a PathBuf) {
            let n = t.index.len();
            t.index.insert(v, n);
            t.low.insert(v, n);
            t.stack.push(v);
            t.on.insert(v);
            for w in t.g.edges[v].keys() {
                let Some((w, _)) = t.g.edges.get_key_value(w) else {
                    continue;
                };
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let m = t.low[v].min(t.low[w]);
                    t.low.insert(v, m);
                } else if t.on.contains(w) {
                    let m = t.low[v].min(t.index[w]);
                    t.low.insert(v, m);
                }
            }
            if t.low[v] == t.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = t.stack.pop() {
                    t.on.remove(w);
                    comp.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    t.out.push(comp);
                }
            }
        }
        let mut t = T {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on: BTreeSet::new(),
            out: Vec::new(),
        };
        for v in self.edges.keys() {
            if !t.index.contains_key(v) {
                visit(&mut t, v);
            }
        }
        t.out
    }

    /// Each file's layer: 0 for a file naming no other, else one above the highest it names.
    fn layers(&self) -> BTreeMap<usize, Vec<String>> {
        fn depth(g: &Graph, f: &PathBuf, memo: &mut BTreeMap<PathBuf, usize>) -> usize {
            if let Some(d) = memo.get(f) {
                return *d;
            }
            memo.insert(f.clone(), 0);
            let d = g.edges.get(f).map_or(0, |e| {
                e.keys().map(|t| depth(g, t, memo) + 1).max().unwrap_or(0)
            });
            memo.insert(f.clone(), d);
            d
        }
        let mut memo = BTreeMap::new();
        let mut out: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for f in self.edges.keys() {
            out.entry(depth(self, f, &mut memo))
                .or_default()
                .push(self.name(f));
        }
        out
    }
}

#[test]
fn every_import_runs_downward() {
    let g = Graph::load();
    assert!(
        g.edges.len() > 40,
        "the scan found only {} files under {}",
        g.edges.len(),
        g.src.display()
    );
    let circles = g.circles();
    let mut report = String::new();
    let mut split_modules = Vec::new();
    for c in &circles {
        match one_module(&g, c) {
            Some(m) if ONE_MODULE_OVER_FILES.iter().any(|(a, _)| *a == m) => {
                split_modules.push(m);
                continue;
            }
            Some(m) => report.push_str(&format!(
                "a circle of {} files inside {m} (not in ONE_MODULE_OVER_FILES):\n",
                c.len()
            )),
            None => report.push_str(&format!("a circle of {} files:\n", c.len())),
        }
        for f in c {
            for (t, (line, text)) in &g.edges[f] {
                if c.contains(t) {
                    report.push_str(&format!(
                        "  {}:{line} -> {}   ({text})\n",
                        g.name(f),
                        g.name(t)
                    ));
                }
            }
        }
    }
    for (m, _) in ONE_MODULE_OVER_FILES {
        if !split_modules.iter().any(|s| s == m) {
            report.push_str(&format!(
                "{m} has no circle any more: take it out of ONE_MODULE_OVER_FILES\n"
            ));
        }
    }
    assert!(report.is_empty(), "{report}");
    for (n, files) in g.layers() {
        println!("layer {n}: {}", files.join(", "));
    }
}

#[test]
fn the_scan_sees_use_trees_super_and_inline_paths() {
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e as f"]
    );
    let code = without_test_items(&code_only(
        "use x; // crate::no\nlet s = \"crate::no\"; let c = '{';\n#[cfg(test)]\nmod t { use crate::no; }\nfn f() { crate::yes::g() }",
    ));
    assert!(!code.contains("no"), "{code}");
    assert!(code.contains("crate::yes::g"), "{code}");
}
