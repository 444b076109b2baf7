//! The generator and the embedded demo: the generator's records are keyed
//! and partitioned as the processor expects; a short demo makes every kind
//! of decision, and its summary agrees with the decisions topic, the
//! processor's own count and the table; the `demo` command runs from the
//! command line.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::common::kafka::Kafka;
use crate::common::postgres::TestDb;
use earlykill::demo::{self, DemoConfig};
use earlykill::generate::{self, GenerateConfig, TrafficConfig};
use earlykill::shutdown::Shutdown;
use earlykill::watch::Watch;

#[test]
fn the_generator_publishes_every_event_in_its_variants_partition() {
    let kafka = Kafka::new(3);
    let config = GenerateConfig {
        bootstrap_servers: kafka.cluster.bootstrap_servers(),
        kafka: BTreeMap::new(),
        topics: kafka.config.topics.clone(),
        traffic: TrafficConfig {
            variants: Some(30),
            posts_per_second: 10.0,
            timeout_minutes: 1,
            stop_fraction: 0.2,
            start: chrono::Utc::now().timestamp_millis(),
            ..TrafficConfig::default()
        },
        speedup: 0.0,
        rate: None,
    };
    let status = generate::run(&config, &Shutdown::new(), &Watch::default()).expect("generate");
    assert_eq!(status.posted, 30);
    assert!(status.interactions > 0 && status.stops > 0, "{status:?}");
    assert_eq!(status.failed, 0);

    let topics = &kafka.config.topics;
    let mut partition_of: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for (topic, expected) in [
        (&topics.posted, status.posted),
        (&topics.interactions, status.interactions),
        (&topics.commands, status.stops),
    ] {
        let records = kafka.read_until(topic, |r| r.len() as u64 >= expected);
        assert_eq!(records.len() as u64, expected, "{topic}");
        for record in records {
            let key = record.key.expect("keyed by variant");
            let p = *partition_of.entry(key.clone()).or_insert(record.partition);
            assert_eq!(
                p,
                record.partition,
                "{} is in two partitions",
                String::from_utf8_lossy(&key)
            );
        }
    }
    assert_eq!(partition_of.len(), 30);
}

#[test]
fn a_short_demo_decides_and_its_summary_agrees_with_the_topic_and_the_table() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::create("demo_summary"));
    let config = DemoConfig {
        partitions: 2,
        traffic: TrafficConfig {
            variants: None,
            posts_per_second: 10.0,
            poor_fraction: 0.5,
            stop_fraction: 0.1,
            timeout_minutes: 1,
            ..TrafficConfig::default()
        },
        // A one-minute window passes in two seconds.
        speedup: 30.0,
        rate: None,
        duration: Some(Duration::from_secs(12)),
        database_url: Some(db.url.clone()),
        http: Some("127.0.0.1:0".parse().unwrap()),
    };
    let mut reports = 0;
    let summary = demo::run(config, &Shutdown::new(), |_| reports += 1).expect("the demo runs");
    assert!(reports >= 10, "progress is reported twice a second");

    let count = |kind: &str| summary.decisions.get(kind).copied().unwrap_or(0);
    let (started, ended) = (
        count("started"),
        count("killed") + count("timed_out") + count("stopped"),
    );
    assert!(count("killed") > 0, "{summary:?}");
    assert!(count("timed_out") > 0, "{summary:?}");
    assert!(count("stopped") > 0, "{summary:?}");
    assert!(started >= ended, "every end has a start: {summary:?}");
    // Three independent counts agree: the topic read read_committed, the
    // processor's committed transactions, and the projector's table.
    assert_eq!(started + ended, summary.committed_decisions, "{summary:?}");
    let (rows, active) = summary.rows.expect("a database was given");
    assert_eq!(rows as u64, started, "{summary:?}");
    assert_eq!((rows - active) as u64, ended, "{summary:?}");
    assert_eq!(summary.dead_letters, 0);
    assert!(summary.latency.count() > 0);
    assert!(summary.generated.posted >= started);
    runtime.block_on(db.drop());
}

#[test]
fn the_demo_command_runs_from_the_command_line_and_prints_its_summary() {
    let output = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args([
            "demo",
            "--duration",
            "6",
            "--http-listen",
            "off",
            "--speedup",
            "60",
            "--timeout-minutes",
            "1",
        ])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run earlykill demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("demo ran"), "{stdout}");
    assert!(
        stdout.contains("decisions on the decisions topic (read_committed): ")
            && stdout.contains("started "),
        "{stdout}"
    );
    assert!(stderr.contains("active"), "progress lines: {stderr}");
}

/// The `curl` lines README.md shows under "While it runs", joined where a
/// line ends in `\`.
fn readme_curl_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let after = readme
        .split_once("While it runs, ask it about a variant:")
        .expect("README's 'While it runs' paragraph")
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("its sh block")
        .0;
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line.trim_start());
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

#[test]
fn the_readmes_curl_lines_answer_against_a_running_demo() {
    let lines = readme_curl_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("curl ")));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let base = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["demo", "--duration", "120", "--http-listen", &base])
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start earlykill demo");
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _demo = Killed(child);
    // The variants the lines name exist once the first one has a status.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !Command::new("curl")
        .args([
            "-sf",
            &format!("{base}/performance-monitor/status/v-00000002"),
        ])
        .output()
        .expect("curl")
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo never knew v-00000002"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for line in &lines {
        // As typed, against this demo's port; an HTTP error fails curl (and
        // with pipefail, the line), and so does a grep that finds nothing.
        let run = line.replace("localhost:8080", &base).replacen(
            "curl -s",
            "curl -sS --fail-with-body",
            1,
        );
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &run])
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{line}\nfailed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{line} answered nothing");
    }
}
