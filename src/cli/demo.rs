//! `earlykill demo`: the whole flow in this process, with live progress
//! and a summary.

use std::time::Duration;

use anyhow::Result;

use earlykill::demo::Demo;
use earlykill::shutdown::Shutdown;

use super::serve::init_logging_to;

/// Runs the embedded demo with live progress, then prints its summary.
/// Its log (the audit line of every decision among it) goes to a file, so
/// that the terminal shows the progress and the summary only.
pub fn demo(Demo { config, log_level }: Demo) -> Result<()> {
    use std::io::IsTerminal;
    let log = std::env::temp_dir().join("earlykill-demo.log");
    init_logging_to(&log_level, Some(&log))?;
    let shutdown = Shutdown::new();
    shutdown.drain_on_signal()?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut last_line: Option<std::time::Instant> = None;
    let mut announced = false;
    let summary = earlykill::demo::run(config, &shutdown, |p| {
        if !announced {
            announced = true;
            let api = p.http.map_or_else(
                || "off".to_owned(),
                |a| format!("http://{a}/performance-monitor/active (also /metrics, /readyz)"),
            );
            let line = format!(
                "demo running: in-process Kafka at {bootstrap}, processor, generator; HTTP API {api}; Ctrl-C stops\n\
                 watch the decisions: earlykill tail earlykill.decisions --bootstrap-servers {bootstrap} -f\n\
                 the log (every decision's audit line): {log}",
                bootstrap = p.bootstrap,
                log = log.display(),
            );
            match &bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
        let count = |kind: &str| p.decisions.get(kind).copied().unwrap_or(0);
        let line = format!(
            "{:>5.0} s | active {} | killed {} | timed out {} | stopped {} | {:.0} events/s | decision latency p99 {}",
            p.elapsed.as_secs_f64(),
            p.active,
            count("killed"),
            count("timed_out"),
            count("stopped"),
            p.events_per_second,
            p.latency_p99
                .map_or_else(|| "-".to_owned(), |l| format!("{} ms", l.as_millis())),
        );
        match &bar {
            Some(bar) => bar.set_message(line),
            None if last_line.is_none_or(|l| l.elapsed() >= Duration::from_secs(5)) => {
                last_line = Some(std::time::Instant::now());
                eprintln!("{line}");
            }
            None => {}
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_summary(&summary);
    Ok(())
}

fn print_summary(s: &earlykill::demo::DemoSummary) {
    let g = &s.generated;
    println!(
        "demo ran {:.1} s: {} events published ({} variants posted, {} view and engagement events, {} stops)",
        s.elapsed.as_secs_f64(),
        g.events(),
        g.posted,
        g.interactions,
        g.stops
    );
    let kinds: Vec<String> = s
        .decisions
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "decisions on the decisions topic (read_committed): {} (the processor committed {})",
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        },
        s.committed_decisions
    );
    let ms = |q: f64| {
        s.latency
            .quantile(q)
            .map_or_else(|| "-".to_owned(), |l| format!("{} ms", l.as_millis()))
    };
    println!(
        "decision latency, trigger's append to commit: p50 {}, p99 {}, p999 {}; dead letters {}",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        s.dead_letters
    );
    if let Some((rows, active)) = s.rows {
        println!("variant_monitoring: {rows} rows, {active} active");
    }
}
