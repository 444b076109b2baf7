//! Several `earlykill run` processes as one service, on a real
//! Kafka-protocol broker over TCP (tansu): three instances in one group,
//! 300 variants posted through the API, then every instance's `active`
//! (all pages) and the status of sampled variants, asked of each instance
//! in turn; then one instance killed with SIGKILL, and the answers of the
//! others checked to be complete or to name what they lack, never wrong,
//! until the group has rebalanced and they are complete again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::tansu::Tansu;
use earlykill::kafka::Topics;
use earlykill_core::monitor::{holdout, Holdout};

const PARTITIONS: i32 = 6;
const VARIANTS: usize = 300;
/// A safety net only: every wait below ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(120);

struct Instance {
    name: String,
    url: String,
    child: Child,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SHADOW: &str = "strict:kill-threshold=0.9";
const HOLDOUT_SHARE: &str = "0.3";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start(bootstrap: &str, name: &str) -> Instance {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["run", "--bootstrap-servers", bootstrap])
        .args(["--guarantee", "at-least-once", "--instance-id", name])
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .args(["--threads", "1", "--log-level", "warn"])
        // A shadow policy and a hold-out share: every instance answers
        // for them too, whoever owns the variant.
        .args(["--shadow-policy", SHADOW, "--holdout-share", HOLDOUT_SHARE])
        // tansu holds a group's first join for half the session timeout;
        // dynamic membership, so a killed member's partitions move after
        // the session timeout (tansu 0.6 does not honour KIP-345).
        .args([
            "-X",
            "session.timeout.ms=6000",
            "--static-membership",
            "false",
        ])
        .env("EARLYKILL_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .spawn()
        .expect("start earlykill run");
    Instance {
        name: name.to_owned(),
        url: format!("http://127.0.0.1:{port}"),
        child,
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
}

/// `GET`: the status code and the JSON body (`Null` when there is none).
fn get(url: &str) -> (u16, Value) {
    let (code, response) = match agent().get(url).call() {
        Ok(response) => (response.status(), response),
        Err(ureq::Error::Status(code, response)) => (code, response),
        Err(e) => return (0, json!({ "transport": e.to_string() })),
    };
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(&mut response.into_reader(), &mut body);
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Waits until `done` holds, polling; panics with `what` after PATIENCE.
fn until<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every page of the group's active sessions from `url`: the ids, and
/// whether any page was partial (with the partitions it covered).
struct Listing {
    ids: BTreeSet<String>,
    partial: bool,
    covered: BTreeSet<i32>,
    missing: BTreeSet<i32>,
    total: u64,
}

fn list(url: &str, limit: usize) -> Option<Listing> {
    let mut listing = Listing {
        ids: BTreeSet::new(),
        partial: false,
        covered: (0..PARTITIONS).collect(),
        missing: BTreeSet::new(),
        total: 0,
    };
    let mut after: Option<String> = None;
    loop {
        let mut page_url = format!("{url}/performance-monitor/active?limit={limit}");
        if let Some(after) = &after {
            page_url.push_str(&format!("&after={after}"));
        }
        let (code, page) = get(&page_url);
        if code != 200 {
            assert!(
                code == 503 || code == 0,
                "a reachable instance answered {code}: {page}"
            );
            return None;
        }
        listing.total = page["total"].as_u64().expect("total");
        if page["partial"] == true {
            listing.partial = true;
            let missing: BTreeSet<i32> = page["missing_partitions"]
                .as_array()
                .expect("missing_partitions")
                .iter()
                .map(|p| p.as_i64().unwrap() as i32)
                .collect();
            assert!(
                !missing.is_empty(),
                "partial without missing partitions: {page}"
            );
            listing.missing.extend(&missing);
        }
        let partitions: BTreeSet<i32> = page["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p.as_i64().unwrap() as i32)
            .collect();
        listing.covered = listing.covered.intersection(&partitions).copied().collect();
        for session in page["sessions"].as_array().expect("sessions") {
            assert_eq!(session["status"], "active", "{session}");
            listing
                .ids
                .insert(session["variant_id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Some(listing),
        }
    }
}

#[test]
fn three_instances_answer_as_one_service_and_say_what_a_killed_one_leaves_out() {
    let tansu = Tansu::start();
    let topics = Topics::default();
    tansu.create_earlykill_topics(&topics, PARTITIONS);
    tansu.create_topics(&[("earlykill.shadow-decisions", 1, false)]);
    let mut instances: Vec<Instance> = ["a", "b", "c"]
        .iter()
        .map(|name| start(&tansu.bootstrap, &format!("cluster-{name}")))
        .collect();
    for instance in &instances {
        until(&format!("{} ready", instance.name), || {
            (get(&format!("{}/readyz", instance.url)).0 == 200).then_some(())
        });
    }

    // 300 variants posted through the API of each instance in turn; the
    // answer says the partition each went to.
    let now = chrono::Utc::now().timestamp_millis();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for i in 0..VARIANTS {
        let variant = format!("cv-{i:04}");
        let instance = &instances[i % instances.len()];
        let partition = post(&instance.url, &variant, now);
        partition_of.insert(variant, partition);
    }
    let all: BTreeSet<String> = partition_of.keys().cloned().collect();
    let owners: BTreeSet<i32> = partition_of.values().copied().collect();
    assert!(
        owners.len() > 1,
        "the posts spread over partitions: {owners:?}"
    );

    // Every instance lists every active session, complete.
    for instance in &instances {
        let listing = until(&format!("{} lists all {VARIANTS}", instance.name), || {
            list(&instance.url, 64).filter(|l| !l.partial && l.ids.len() == VARIANTS)
        });
        assert_eq!(listing.ids, all, "{}", instance.name);
        assert_eq!(listing.total, VARIANTS as u64, "{}", instance.name);
    }
    // Each instance holds only its own share; a local listing says so.
    let mut local_total = 0;
    for instance in &instances {
        let (code, page) = get(&format!(
            "{}/performance-monitor/active?scope=local&limit=1000",
            instance.url
        ));
        assert_eq!(code, 200);
        let count = page["sessions"].as_array().unwrap().len();
        assert!(
            count < VARIANTS,
            "{} holds {count} of {VARIANTS} alone",
            instance.name
        );
        local_total += count;
    }
    assert_eq!(local_total, VARIANTS, "the instances' shares add up");

    // Where each partition stands, on every instance's /metrics: the
    // partitions it owns have a clock, are not stalled, and trail the wall
    // clock by no more than the test has run (the posts are from now).
    let mut clocks = 0;
    for instance in &instances {
        let text = agent()
            .get(&format!("{}/metrics", instance.url))
            .call()
            .expect("metrics")
            .into_string()
            .expect("text");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = |l: &str| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
            if line.starts_with("earlykill_partition_clock_seconds{") {
                clocks += 1;
                assert!(
                    (value(line) * 1000.0 - now as f64).abs() < 600_000.0,
                    "{line}"
                );
            }
            if line.starts_with("earlykill_partition_behind_seconds{") {
                assert!(value(line) < 600.0, "{line}");
            }
            if line.starts_with("earlykill_partition_stalled{") {
                assert_eq!(value(line), 0.0, "{line}");
            }
        }
    }
    assert!(
        clocks >= owners.len(),
        "{clocks} partition clocks exported for {owners:?}"
    );

    // Sampled statuses: live from every instance, whoever owns them.
    let sample: Vec<&String> = all.iter().step_by(VARIANTS / 15).collect();
    assert_eq!(sample.len(), 15);
    for instance in &instances {
        for variant in &sample {
            let (code, status) = get(&format!(
                "{}/performance-monitor/status/{variant}",
                instance.url
            ));
            assert_eq!(code, 200, "{} on {variant}: {status}", instance.name);
            assert_eq!(
                status["source"], "live",
                "{} on {variant}: {status}",
                instance.name
            );
            assert_eq!(status["status"], "active");
            assert_eq!(&status["variant_id"], *variant);
            assert!(status["instance"].is_string(), "{status}");
            // The owner's shadow verdicts and hold-out flag come along.
            let share = Holdout::parts_per_million(HOLDOUT_SHARE.parse().unwrap());
            assert_eq!(
                status["held_out"].as_bool().unwrap_or(false),
                holdout::in_share(variant, share),
                "{} on {variant}: {status}",
                instance.name
            );
            let policies: Vec<&str> = status["shadow"]
                .as_array()
                .map(|s| s.iter().filter_map(|v| v["policy"].as_str()).collect())
                .unwrap_or_default();
            let mut expected = vec!["strict"];
            if holdout::in_share(variant, share) {
                expected.insert(0, "holdout");
            }
            assert_eq!(
                policies, expected,
                "{} on {variant}: {status}",
                instance.name
            );
        }
    }

    // One instance killed: the others' answers are complete, or name the
    // partitions they lack and list exactly the sessions of the others;
    // then, once the group has moved its partitions, complete again.
    let killed = instances.remove(1);
    let killed_name = killed.name.clone();
    drop(killed); // SIGKILL, and reaped
    let mut saw_partial = false;
    for instance in &instances {
        until(
            &format!("{} complete after {killed_name} died", instance.name),
            || {
                // One page holds them all, so its partitions describe it whole.
                let listing = list(&instance.url, 1000)?;
                assert!(listing.ids.is_subset(&all), "unknown sessions listed");
                assert!(
                    listing.covered.is_disjoint(&listing.missing),
                    "{}: a partition both covered and missing",
                    instance.name
                );
                for id in &listing.ids {
                    assert!(
                        listing.covered.contains(&partition_of[id]),
                        "{} listed {id} of partition {}, which its answer does not cover",
                        instance.name,
                        partition_of[id]
                    );
                }
                if listing.partial {
                    saw_partial = true;
                    None
                } else {
                    assert_eq!(
                        listing.ids, all,
                        "{} said complete but lacks sessions",
                        instance.name
                    );
                    Some(())
                }
            },
        );
        for variant in &sample {
            let (code, status) = get(&format!(
                "{}/performance-monitor/status/{variant}",
                instance.url
            ));
            assert_eq!(code, 200, "{} on {variant}: {status}", instance.name);
            assert_eq!(status["source"], "live");
        }
    }
    eprintln!("after the kill, a partial answer was seen: {saw_partial}");
}

/// The partition's clock in seconds and how far it trails the wall clock,
/// from an instance's /metrics.
fn partition_time(url: &str, partition: i32) -> Option<(f64, f64)> {
    let text = agent()
        .get(&format!("{url}/metrics"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    let label = format!("{{partition=\"{partition}\"}}");
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{label}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some((
        value("earlykill_partition_clock_seconds")?,
        value("earlykill_partition_behind_seconds")?,
    ))
}

/// Posts through `url`'s API, returning the partition it went to.
fn post(url: &str, variant: &str, posted_at: i64) -> i32 {
    let body = json!({
        "variant_id": variant,
        "persona_id": "persona-1",
        "post_id": format!("post-{variant}"),
        "expected_engagement_rate": 0.05,
        "posted_at": posted_at,
        "timeout_minutes": 120,
    });
    let response = agent()
        .post(&format!("{url}/performance-monitor/start-monitoring"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .expect("start-monitoring accepted");
    let accepted: Value = serde_json::from_str(&response.into_string().unwrap()).unwrap();
    accepted["partition"].as_i64().unwrap() as i32
}

#[test]
fn a_partitions_clock_and_how_far_it_trails_follow_its_input() {
    let tansu = Tansu::start();
    let topics = Topics::default();
    tansu.create_earlykill_topics(&topics, 1);
    tansu.create_topics(&[("earlykill.shadow-decisions", 1, false)]);
    let instance = start(&tansu.bootstrap, "clock-a");
    until("ready", || {
        (get(&format!("{}/readyz", instance.url)).0 == 200).then_some(())
    });
    // A post from 40 minutes ago: the clock reaches it and trails the wall
    // clock by 40 minutes (nothing is due for two hours, so the idle clock
    // does not move it).
    let now = chrono::Utc::now().timestamp_millis();
    let old = now - 40 * 60_000;
    assert_eq!(post(&instance.url, "late-1", old), 0);
    let (clock, behind) = until("the clock at the old post", || {
        partition_time(&instance.url, 0).filter(|(clock, _)| (*clock * 1000.0) as i64 >= old)
    });
    assert_eq!((clock * 1000.0).round() as i64, old);
    assert!((2350.0..2600.0).contains(&behind), "trailing {behind} s");
    // A post from now: the clock catches up, and trails by seconds.
    let fresh = chrono::Utc::now().timestamp_millis();
    post(&instance.url, "fresh-1", fresh);
    let (_, behind) = until("the clock at the fresh post", || {
        partition_time(&instance.url, 0).filter(|(clock, _)| (*clock * 1000.0) as i64 >= fresh)
    });
    assert!(behind < 60.0, "trailing {behind} s after catching up");
    let (code, ready) = get(&format!("{}/readyz", instance.url));
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["checks"]["partitions"]["ok"], true, "{ready}");
}
