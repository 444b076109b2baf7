//! The structure the crate docs describe, checked: the import graph of the
//! `earlykill` crate runs one way (a module uses only the layers below its
//! own), the core crate depends on no Kafka, async, HTTP or database crate,
//! and no source file grows past 800 lines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers of `src/`, lowest first. A module may use its own layer's
/// module only if it is itself, and any module of a lower layer; the core
/// crate (`earlykill_core`) is below them all.
const LAYERS: &[&[&str]] = &[
    // Leaves: plumbing every component may use.
    &[
        "backoff",
        "shutdown",
        "watch",
        "secret",
        "registry",
        "telemetry",
    ],
    &["kafka"],
    // Components, each owning its resolved settings.
    &["upstream", "processor", "projector", "tail"],
    // Components built on others: the generator publishes through
    // `upstream`, the backtest reads and folds as the processor does.
    &["generate", "backtest", "cluster"],
    &["api"],
    // Layering of flags, environment and files into the components' settings.
    &["config"],
    // Wiring of every component, beside the binary's `cli/`.
    &["demo"],
    &["cli"],
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`main.rs` is the
/// binary's, as `cli/` is).
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" => None,
        "main.rs" => Some("cli".to_owned()),
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of LAYERS: add it"))
}

/// The top-level modules a line of code names through `crate::` (in the
/// library) or `earlykill::` (in the binary).
fn used_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "earlykill::"] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // `earlykill::audit` is a log target, not a module: only the
            // modules of LAYERS count (every module of src/ is in one).
            if LAYERS.iter().any(|l| l.contains(&name.as_str())) {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn the_import_graph_runs_one_way() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = BTreeSet::new();
    let mut edges = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let Some(from) = module_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for to in used_modules(code) {
                if to == from {
                    continue;
                }
                edges += 1;
                if layer(&to) >= layer(&from) {
                    upward.insert(format!("{} uses {to}: {}", relative.display(), code));
                }
            }
        }
    }
    assert!(
        edges > 50,
        "only {edges} imports found: is the scan broken?"
    );
    assert!(
        upward.is_empty(),
        "imports running up or sideways (fix the code or, if the layering changed, LAYERS):\n{}",
        upward.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn a_module_in_no_layer_is_refused() {
    // The check above cannot pass by not seeing a module: every top-level
    // module of src/ is in a layer.
    for entry in std::fs::read_dir(root().join("src")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(module) = module_of(Path::new(&name)) {
            layer(&module);
        }
    }
    assert_eq!(
        used_modules("use crate::kafka::Topics; my_crate::y"),
        ["kafka"]
    );
}

#[test]
fn the_core_depends_on_no_kafka_async_http_or_database_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "earlykill-core",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("earlykill-core") && crates.contains("apache-avro"));
    let forbidden = [
        "rdkafka",
        "rdkafka-sys",
        "tokio",
        "mio",
        "axum",
        "hyper",
        "http",
        "ureq",
        "tokio-postgres",
        "postgres-protocol",
        "deadpool-postgres",
        "earlykill",
    ];
    let found: Vec<_> = forbidden.iter().filter(|c| crates.contains(*c)).collect();
    assert!(found.is_empty(), "the core depends on {found:?}:\n{tree}");
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "crates/earlykill-core"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 100, "only {} files found", files.len());
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 800).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these by what they do:\n{}",
        long.join("\n")
    );
}
