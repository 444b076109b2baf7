//! A restore on a real broker: `earlykill run` with one worker owning a
//! changelog partition of 60 000 sessions (several fetches) and one of a
//! single session reads the small one first, then the large one, and
//! restores both complete; the small one goes live before the large one
//! is restored.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::common::tansu::Tansu;
use earlykill::kafka::Topics;
use earlykill_core::event::codec::encode;
use earlykill_core::event::{ChangelogRecord, Contract, InputOffsets, SessionState, SessionStatus};

const LARGE: usize = 60_000;
/// A safety net only: every wait ends as soon as its line arrives.
const PATIENCE: Duration = Duration::from_secs(120);

fn session(now: i64) -> SessionState {
    SessionState {
        persona_id: "persona".into(),
        post_id: "post".into(),
        expected_engagement_rate: 0.05,
        kill_threshold: 0.5,
        min_interactions: 10,
        timeout_minutes: 10_080,
        posted_at: now,
        interactions: 0,
        views: 0,
        status: SessionStatus::Active,
        ended_at: None,
        forget_at: None,
    }
}

/// Writes `sessions` session records and then the partition record to
/// changelog partition `p`, as one commit of this release would.
fn write_changelog(producer: &BaseProducer, topic: &str, p: i32, sessions: usize, now: i64) {
    let send = |key: &str, record: &ChangelogRecord, header: (&str, &str)| {
        let value = encode(Contract::ChangelogRecord, record).expect("encode");
        let headers = OwnedHeaders::new().insert(Header {
            key: header.0,
            value: Some(header.1),
        });
        let mut record = BaseRecord::<str, [u8]>::to(topic)
            .partition(p)
            .key(key)
            .payload(&value)
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    };
    for i in 0..sessions {
        let key = format!("v-{p}-{i:06}");
        let record = ChangelogRecord {
            variant_id: key.clone(),
            partition_clock: None,
            input_offsets: None,
            session: Some(session(now)),
            held: Vec::new(),
        };
        send(&key, &record, ("t", "test@1.0"));
    }
    let own = ChangelogRecord {
        variant_id: String::new(),
        partition_clock: Some(now),
        input_offsets: Some(InputOffsets::default()),
        session: None,
        held: Vec::new(),
    };
    send("", &own, ("earlykill_transaction", "test@1.0"));
}

#[test]
fn a_restore_reads_the_smallest_partition_first_makes_it_live_and_restores_every_session() {
    let tansu = Tansu::start();
    let topics = Topics::default();
    tansu.create_earlykill_topics(&topics, 2);
    let now = chrono::Utc::now().timestamp_millis();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &tansu.bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    write_changelog(&producer, &topics.changelog, 0, LARGE, now);
    write_changelog(&producer, &topics.changelog, 1, 1, now);
    producer.flush(PATIENCE).expect("flush");

    let mut child = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["run", "--bootstrap-servers", &tansu.bootstrap])
        .args(["--guarantee", "at-least-once", "--instance-id", "restore"])
        .args(["--http-listen", "off", "--threads", "1"])
        .args(["-X", "session.timeout.ms=6000"])
        .env("EARLYKILL_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start earlykill run");
    let stdout = child.stdout.take().expect("stdout");
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    let mut events = Vec::new();
    let outcome = (|| loop {
        let line = lines.recv_timeout(PATIENCE).map_err(|e| e.to_string())?;
        let Ok(log) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let fields = &log;
        match fields["message"].as_str() {
            Some("partition restored") => events.push(format!(
                "restored {} with {}",
                fields["partition"], fields["active_sessions"]
            )),
            Some("partitions live") => events.push(format!(
                "live {}",
                fields["partitions"].as_str().unwrap_or("?")
            )),
            Some("restore finished") => return Ok(()),
            _ => {}
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    outcome.unwrap_or_else(|e: String| panic!("no restore finished ({e}); saw {events:?}"));
    assert_eq!(
        events,
        [
            "restored 1 with 1".to_owned(),
            "live [1]".to_owned(),
            format!("restored 0 with {LARGE}"),
            "live [0]".to_owned(),
        ],
        "partition 1 read before partition 0, and live before partition 0 is restored"
    );
}
