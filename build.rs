//! Bundles the scenario suite (`scenarios/**/*.toml` and their snapshots) and
//! the known-deviations file into the binary, so an installed `backupd-sim`
//! (`cargo install --path .`) runs them from anywhere (`src/bundled.rs`).

use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            // Local output of `explore`, never part of the suite.
            if p.file_name().is_some_and(|n| n == "regressions") {
                continue;
            }
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml" || e == "snap") {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=scenarios");
    println!("cargo:rerun-if-changed=fixtures/deviations.toml");
    let mut files = Vec::new();
    walk(&root.join("scenarios"), &mut files);
    let deviations = root.join("fixtures/deviations.toml");
    if deviations.is_file() {
        files.push(deviations);
    }
    let mut code = String::from(
        "/// (path relative to the checkout, contents)\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under the manifest dir");
        code.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            rel.to_string_lossy(),
            f.to_string_lossy()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("bundled.rs");
    std::fs::write(out, code).expect("write bundled.rs");
}
