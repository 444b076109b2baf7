//! The README and the book (`docs/`, an mdBook) hold together: every
//! relative link and image resolves to a file, every `{{#include}}` to a
//! file and, when it names one, an anchor in it; every chapter is in
//! `SUMMARY.md` and every entry there exists; the README stays a landing
//! page. (CI also builds the book with mdBook.)

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The markdown files: README.md and every chapter of the book.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut pages = vec![Path::new(ROOT).join("README.md")];
    walk(&Path::new(ROOT).join("docs/src"), &mut pages);
    pages.sort();
    pages
}

/// The targets of `[text](target)` and `![alt](target)` in `text`,
/// outside code blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans hold `[..](..)`-looking text that is not a link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// `{{#include path}}` and `{{#include path:anchor}}` in `text`.
fn includes(text: &str) -> Vec<(String, Option<String>)> {
    text.match_indices("{{#include ")
        .map(|(at, m)| {
            let rest = &text[at + m.len()..];
            let spec = &rest[..rest.find("}}").expect("closed include")];
            match spec.trim().split_once(':') {
                Some((path, anchor)) => (path.to_owned(), Some(anchor.to_owned())),
                None => (spec.trim().to_owned(), None),
            }
        })
        .collect()
}

#[test]
fn every_relative_link_and_include_resolves() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let dir = page.parent().expect("a directory");
        for target in link_targets(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
                || target.starts_with('#')
            {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            assert!(
                dir.join(path).exists(),
                "{}: the link to {target} leads nowhere",
                page.display()
            );
            checked += 1;
        }
        for (path, anchor) in includes(&text) {
            let file = dir.join(&path);
            let included = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: include {path}: {e}", page.display()));
            if let Some(anchor) = anchor {
                for mark in [format!("ANCHOR: {anchor}"), format!("ANCHOR_END: {anchor}")] {
                    assert!(
                        included.contains(&mark),
                        "{}: {path} has no {mark}",
                        page.display()
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 30,
        "the pages link to each other: {checked} links"
    );
}

#[test]
fn every_chapter_is_in_the_summary_and_every_entry_exists() {
    let src = Path::new(ROOT).join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).expect("SUMMARY.md");
    let listed: Vec<String> = link_targets(&summary);
    for entry in &listed {
        assert!(
            src.join(entry).exists(),
            "SUMMARY.md lists {entry}, which is missing"
        );
    }
    for page in pages().into_iter().filter(|p| p.starts_with(&src)) {
        let relative = page
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative == "SUMMARY.md" {
            continue;
        }
        assert!(
            listed.contains(&relative),
            "{relative} is not in SUMMARY.md: the book would not show it"
        );
    }
}

#[test]
fn the_readme_is_a_landing_page() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: the manual belongs in docs/"
    );
    for must in [
        "cargo run --release -- demo",
        "cargo nextest run --locked",
        "docs/src/SUMMARY.md",
    ] {
        assert!(readme.contains(must), "README.md does not say {must}");
    }
}

#[test]
fn the_link_check_can_fail() {
    assert_eq!(
        link_targets("see [a](x.md), `[b](not-a-link)` and ![c](img/c.svg)"),
        ["x.md", "img/c.svg"]
    );
    assert_eq!(
        includes("{{#include ../../README.md:intro}}"),
        [("../../README.md".to_owned(), Some("intro".to_owned()))]
    );
    assert!(!Path::new(ROOT).join("docs/src/no-such-chapter.md").exists());
}
