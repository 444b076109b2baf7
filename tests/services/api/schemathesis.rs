//! The API against its own OpenAPI document, checked by schemathesis (a
//! property-based API tester, fetched from PyPI like tansu): `earlykill
//! run` with a token on a real broker, every operation fuzzed and every
//! answer checked against the document.
//!
//! One check is left out, `positive_data_acceptance`: the server refuses
//! some schema-valid requests by rules a JSON Schema cannot state, and the
//! document says so in their descriptions: an id's length is checked in
//! UTF-8 bytes (the schema can only count characters), and `posted_at` may
//! be at most the future skew ahead of the server's clock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::kafka::PATIENCE;
use crate::common::tansu::Tansu;
use earlykill::kafka::Topics;

/// The schemathesis release the check was written against.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// Its `st` command, installed with pip the first time.
fn schemathesis() -> PathBuf {
    crate::common::pip::install("schemathesis", &[SCHEMATHESIS])
        .join("bin")
        .join("st")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn the_running_api_keeps_to_its_openapi_document_under_schemathesis() {
    let st = schemathesis();
    let tansu = Tansu::start();
    let topics = Topics::default();
    tansu.create_earlykill_topics(&topics, 2);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let token = "contract-test-token-0123456789abcdef";
    let mut child = Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["run", "--bootstrap-servers", &tansu.bootstrap])
        .args(["--guarantee", "at-least-once", "--instance-id", "contract"])
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .args(["--threads", "1", "--log-level", "warn"])
        .args(["-X", "session.timeout.ms=6000"])
        .env("EARLYKILL_HTTP_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start earlykill run");
    // Ready first: a 503 from /readyz while the group assigns is the
    // contract, but schemathesis counts every 5xx as a server error.
    let deadline = Instant::now() + PATIENCE;
    while ureq::get(&format!("{base}/readyz")).call().is_err() {
        assert!(
            Instant::now() < deadline,
            "earlykill run never became ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new(&st)
        .env(
            "PYTHONPATH",
            st.parent().and_then(Path::parent).expect("root"),
        )
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "40", "--seed", "1", "--workers", "1"])
        .args(["--request-timeout", "10"])
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let _ = child.kill();
    let _ = child.wait();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found the API and its document apart:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("generated"), "{report}");
}
