//! The `earlykill` binary: parses the command line and runs the subcommand
//! (the wiring of each is in `cli/`).

mod cli;

/// mimalloc instead of glibc's malloc: the processor frees and allocates
/// many small blocks per commit (a changelog record's strings per changed
/// session), and glibc then spends a fifth of the processor thread's time
/// consolidating its free lists (BENCHMARKS.md, 2026-12-05, fourth
/// session). The crate's `override` feature makes it librdkafka's malloc
/// too (Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    cli::Cli::parse_with_defaults().dispatch()
}
