//! `tools/` holds the generated tool definitions; they must match what the code generates.

use std::path::Path;

#[test]
fn tools_dir_matches_the_code() {
    let dir = tempfile::tempdir().unwrap();
    i2v_mcp::cli::export_tools(dir.path()).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let mut have: Vec<String> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    have.sort();
    assert_eq!(
        names, have,
        "tools/ has other files than the code generates: run `cargo run -- export-tools`"
    );
    assert_eq!(names.len(), 7);
    for n in &names {
        let want = std::fs::read_to_string(dir.path().join(n)).unwrap();
        let got = std::fs::read_to_string(committed.join(n)).unwrap();
        assert_eq!(
            got, want,
            "tools/{n} is stale: run `cargo run -- export-tools`"
        );
    }
}
