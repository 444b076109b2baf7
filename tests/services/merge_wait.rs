//! Waiting costs nothing: `earlykill run` with a long `--merge-wait-ms`,
//! holding an interaction back while the posted topic may still have
//! records in flight, and a timeout already due that the held merge keeps
//! from firing. The process's CPU time over part of the wait (from
//! `/proc/<pid>/stat`) stays near zero, and the merge still releases the
//! interaction when the wait is over, after which the timeout fires.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::backlog::{produce, Event};
use crate::common::tansu::Tansu;
use crate::common::{interaction, posted, MINUTE};
use earlykill::kafka::Topics;
use earlykill_core::event::InteractionKind;

/// A safety net only: every wait ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(40);
const MERGE_WAIT: Duration = Duration::from_secs(12);

/// User and system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

fn status(url: &str, variant: &str) -> Option<Value> {
    let response = ureq::get(&format!("{url}/performance-monitor/status/{variant}"))
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?;
    serde_json::from_str(&response.into_string().ok()?).ok()
}

#[test]
fn a_worker_waiting_on_the_merge_sleeps_and_the_merge_still_releases_on_time() {
    let tansu = Tansu::start();
    let topics = Topics::default();
    tansu.create_earlykill_topics(&topics, 1);
    // A post whose 10-minute window ended five minutes ago, and a view a
    // minute after it, written before start; a stop command for another
    // variant comes through the API once it runs. Then every topic has a
    // record: the post is folded, and the view (and the stop) are held
    // while the posted topic, read to its end, may still have a post in
    // flight; the post's overdue timeout waits behind them (firing it
    // first would decide without the view).
    let now = chrono::Utc::now().timestamp_millis();
    let post = posted("mw-1", now - 15 * MINUTE, 0.05);
    let view = interaction(
        "mw-view",
        "mw-1",
        InteractionKind::View,
        100,
        now - 14 * MINUTE,
    );
    produce(
        &tansu.bootstrap,
        &topics,
        &[
            (post.posted_at, 0, Event::Posted(post.clone())),
            (view.occurred_at, 0, Event::Interaction(view)),
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["run", "--bootstrap-servers", &tansu.bootstrap])
        .args(["--guarantee", "at-least-once", "--instance-id", "mw"])
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .args(["--merge-wait-ms", &MERGE_WAIT.as_millis().to_string()])
        .args(["--threads", "1", "--log-level", "warn"])
        .args(["-X", "session.timeout.ms=6000"])
        .env("EARLYKILL_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .spawn()
        .expect("start earlykill run");
    let mut child = Killed(child);
    let child = &mut child.0;
    let deadline = Instant::now() + PATIENCE;
    // The post is folded; the view is held: the session is active with no
    // views, its timeout overdue.
    let ready = Instant::now() + PATIENCE;
    while ureq::get(&format!("{url}/readyz")).call().is_err() {
        assert!(Instant::now() < ready, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    ureq::post(&format!("{url}/performance-monitor/stop/mw-other"))
        .set("Content-Type", "application/json")
        .send_string("{}")
        .expect("stop accepted");
    let mut last = None;
    let held_at = loop {
        if let Some(s) = status(&url, "mw-1") {
            if s["status"] == "active" && s["views"] == 0 {
                break Instant::now();
            }
            last = Some(s);
        }
        assert!(
            Instant::now() < deadline,
            "the post was never folded: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // CPU over three seconds of the wait (well inside it).
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_time(child.id());
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_time(child.id()) - before;
    let span = measured.elapsed();
    eprintln!("CPU while waiting on the merge: {used:?} in {span:?}");
    assert!(
        held_at.elapsed() < MERGE_WAIT,
        "the measurement outlasted the merge wait: lengthen MERGE_WAIT"
    );
    assert!(
        used < span / 5,
        "the process used {used:?} of CPU in {span:?} while it only waited"
    );
    // When the wait is over the view is folded, then the timeout fires
    // with it counted.
    let ended = loop {
        if let Some(s) = status(&url, "mw-1") {
            if s["status"] == "timed_out" {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the merge never released the view"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ended["views"], 100, "{ended}");
    assert!(
        held_at.elapsed() >= MERGE_WAIT - Duration::from_secs(2),
        "released before the merge wait was over"
    );
}

/// The process, killed however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
