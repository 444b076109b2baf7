//! Which of a bench binary's benchmarks to run: the names given on the
//! command line (`cargo bench --bench NAME -- a b`), or all of them.

/// True when `name` was asked for, or when nothing was.
pub fn wanted(name: &str) -> bool {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    only.is_empty() || only.iter().any(|o| o == name)
}
