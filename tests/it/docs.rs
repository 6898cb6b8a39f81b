//! The project's own documents: the README stays a quickstart that still holds
//! what the issues put there, and no file points outside the project.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README quickstart is at most 120 lines (issue 19) and keeps the
/// compared / not-compared table (issue 15) and the stock-vs-patched table
/// (issue 18).
#[test]
fn the_readme_is_a_short_quickstart_with_its_two_tables() {
    let text = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines = text.lines().count();
    assert!(lines <= 120, "README.md has {lines} lines, at most 120");
    assert!(
        text.contains("| compared | not compared"),
        "the coverage table is gone from the README"
    );
    assert!(
        text.contains("3.6.1+sync-client-backoff"),
        "the stock-vs-patched table is gone from the README"
    );
    // The count it gives is the bundled suite's.
    let bundled = std::fs::read_dir(root().join("scenarios"))
        .expect("scenarios/")
        .filter_map(|d| std::fs::read_dir(d.ok()?.path()).ok())
        .flatten()
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "toml"))
        })
        .count();
    assert!(
        text.contains(&format!("runs the {bundled} scenarios in `scenarios/`")),
        "README.md does not say the suite has its {bundled} scenarios"
    );
}

/// No file of the project points at the lab material outside it (the lab's
/// `shared` directory, relative or absolute): what a reader needs is in `docs/`.
#[test]
fn no_file_points_outside_the_project() {
    // Built from pieces, so that this file does not match itself.
    let needles = [format!("../{}/", "shared"), format!("/work/{}", "shared")];
    let mut bad = Vec::new();
    let mut stack: Vec<PathBuf> = [
        "README.md",
        "docs",
        "src",
        "scenarios",
        "scripts",
        "tests",
        "fixtures",
        "examples",
        "ci",
        "Makefile",
        "Cargo.toml",
    ]
    .iter()
    .map(|p| root().join(p))
    .collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                stack.push(e.expect("entry").path());
            }
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            for n in &needles {
                if text.contains(n.as_str()) {
                    bad.push(format!("{}: {n}", p.display()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "files pointing outside the project:\n{}",
        bad.join("\n")
    );
}
