//! Bytes per active variant: everything the fold allocates for a partition
//! of N active sessions (session slab, variant index, deadline heap, ids),
//! measured with a counting global allocator, plus the process's resident
//! set growth as a cross-check. Run: `cargo bench -p earlykill-core --bench memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use earlykill_core::fixtures::*;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is ignored too.
    println!(
        "{:>10} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "variants",
        "allocated B",
        "B/variant",
        "RSS B/var",
        "slab",
        "index",
        "ids",
        "profiles",
        "timers"
    );
    for n in [1_000usize, 100_000, 1_000_000] {
        let (live, rss) = (LIVE.load(Relaxed), resident_bytes());
        let monitor = monitor_with(n);
        let allocated = LIVE.load(Relaxed) - live;
        let resident = resident_bytes().saturating_sub(rss);
        assert_eq!(monitor.active_sessions(), n);
        let per = |bytes: usize| bytes as f64 / n as f64;
        let parts = monitor.memory();
        println!(
            "{n:>10} {allocated:>14} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            per(allocated),
            per(resident),
            per(parts.slab),
            per(parts.index),
            per(parts.ids),
            per(parts.profiles),
            per(parts.timers),
        );
        drop(monitor);
    }
    // A persona's variants share its persona_id (the fixture: 10 000
    // personas). How the state grows with fewer variants per persona, down
    // to one each, where nothing is shared.
    println!(
        "\n{:>10} {:>10} {:>10}",
        "variants", "personas", "B/variant"
    );
    let n = 1_000_000;
    for personas in [1_000, 10_000, 100_000, n] {
        let live = LIVE.load(Relaxed);
        let monitor = monitor_with_personas(n, personas);
        let allocated = LIVE.load(Relaxed) - live;
        println!(
            "{n:>10} {personas:>10} {:>10.1}",
            allocated as f64 / n as f64
        );
        drop(monitor);
    }
    // What a shadow policy adds (issue 36): the same sessions once more per
    // policy, measured the same way.
    println!(
        "\n{:>10} {:>10} {:>18}",
        "variants", "policies", "shadow B/variant"
    );
    let candidate: earlykill_core::shadow::ShadowPolicy =
        "candidate:kill-threshold=0.4".parse().expect("a policy");
    for n in [100_000usize, 1_000_000] {
        for policies in [1usize, 2] {
            let set: Vec<_> = (0..policies)
                .map(|i| earlykill_core::shadow::ShadowPolicy {
                    name: format!("p{i}"),
                    ..candidate.clone()
                })
                .collect();
            let live = LIVE.load(Relaxed);
            let shadows = shadows_with(n, &set);
            let allocated = LIVE.load(Relaxed) - live;
            println!(
                "{n:>10} {policies:>10} {:>18.1}",
                allocated as f64 / n as f64
            );
            drop(shadows);
        }
    }
}
