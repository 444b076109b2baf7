//! A throwaway PostgreSQL server for the tests of one process, so the test
//! command needs nothing started by hand.
//!
//! The installed server binaries are found (`EARLYKILL_TEST_PG_BIN`, else
//! the newest `/usr/lib/postgresql/<version>/bin` as Debian installs them,
//! else `initdb` on `PATH`). A cluster is made once with `initdb` into a
//! template directory under the system temporary directory (locked, so test
//! processes running side by side share it), copied for each test process,
//! and started on a free loopback port with trust authentication and
//! durability off (a test database need not survive a power cut).
//!
//! `initdb` and `postgres` refuse to run as root. When the tests run as
//! root, both are started as the `postgres` system user, which Debian's
//! package creates, and the directories are given to that user.
//!
//! The server dies with the test process: it is started from a thread that
//! lives as long as the process, with `PR_SET_PDEATHSIG` set to SIGQUIT
//! (PostgreSQL's immediate shutdown), so even a crashed or killed test run
//! leaves nothing running. A normal exit also removes the copy; a crashed
//! run's copy is removed by the next run.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How to install a server, for the one message given when none is found.
const INSTALL_HINT: &str = "no PostgreSQL server is installed, and the database tests need one: \
     install Debian's package with `apt-get install postgresql` (any version from 13 on; its \
     binaries are found under /usr/lib/postgresql/<version>/bin), set EARLYKILL_TEST_PG_BIN to \
     a directory holding `initdb` and `postgres`, or point EARLYKILL_TEST_DATABASE_URL at a \
     running server and a role with CREATEDB";

/// The server of this process: started at the first call, then reused.
/// `Err` says why it could not be started (the same for every test).
pub fn url() -> Result<String, String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER.get_or_init(start).clone()
}

/// The running server, stopped and removed at a normal exit.
struct Running {
    pid: i32,
    dir: PathBuf,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

extern "C" fn stop_at_exit() {
    let running = RUNNING.lock().ok().and_then(|mut r| r.take());
    if let Some(Running { pid, dir }) = running {
        // SAFETY: plain system calls on a child process of ours.
        unsafe {
            libc::kill(pid, libc::SIGQUIT);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let _ = fs::remove_dir_all(dir);
    }
}

fn start() -> Result<String, String> {
    let bin = binaries().ok_or_else(|| INSTALL_HINT.to_owned())?;
    let owner = Owner::for_server()?;
    let root = std::env::temp_dir().join("earlykill-test-pg");
    fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
    remove_dead_copies(&root);
    let template = template(&bin, &owner, &root)?;
    let dir = root.join(format!("run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    run(
        Command::new("cp").arg("-a").arg(&template).arg(&dir),
        "copy the template cluster",
    )?;
    certificates(&dir)?;
    let mut last_error = String::new();
    // A port found free may be taken by another process before the server
    // binds it: try a few.
    for _ in 0..5 {
        let port = free_port()?;
        match launch(&bin, &owner, &dir, port) {
            Ok(pid) => {
                *RUNNING.lock().map_err(|e| e.to_string())? = Some(Running { pid, dir });
                // SAFETY: registers a plain extern "C" function.
                unsafe { libc::atexit(stop_at_exit) };
                return Ok(format!("postgresql://postgres@127.0.0.1:{port}/postgres"));
            }
            Err(e) => last_error = e,
        }
    }
    Err(format!(
        "could not start a throwaway PostgreSQL from {}: {last_error}",
        bin.display()
    ))
}

/// The directory of `initdb` and `postgres`.
fn binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("EARLYKILL_TEST_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_both(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| has_both(dir))
}

/// Who runs the server: this user, or `postgres` when this is root.
struct Owner {
    ids: Option<(u32, u32)>,
}

impl Owner {
    fn for_server() -> Result<Owner, String> {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            return Ok(Owner { ids: None });
        }
        let name = std::ffi::CString::new("postgres").expect("no NUL");
        // SAFETY: getpwnam returns a pointer into static storage or null; it
        // is read at once, on this thread.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            return Err(
                "the tests run as root, and PostgreSQL refuses to run as root; \
                 there is no `postgres` user to run it as (Debian's postgresql package \
                 creates one; or set EARLYKILL_TEST_DATABASE_URL)"
                    .to_owned(),
            );
        }
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(Owner {
            ids: Some((uid, gid)),
        })
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn give(&self, path: &Path) -> Result<(), String> {
        match self.ids {
            None => Ok(()),
            Some((uid, gid)) => run(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{uid}:{gid}"))
                    .arg(path),
                "give the cluster directory to the postgres user",
            ),
        }
    }
}

/// The template cluster, made by `initdb` the first time.
fn template(bin: &Path, owner: &Owner, root: &Path) -> Result<PathBuf, String> {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("pg");
    let template = root.join(format!("template-{version}"));
    let _lock = super::tied::lock(&root.join("template.lock"))?;
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    let building = root.join(format!("template-{version}.building"));
    let _ = fs::remove_dir_all(&building);
    fs::create_dir_all(&building).map_err(|e| e.to_string())?;
    owner.give(root)?;
    run(
        owner
            .command(bin.join("initdb"))
            .arg("-D")
            .arg(&building)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ]),
        "initdb a template cluster",
    )?;
    fs::rename(&building, &template).map_err(|e| e.to_string())?;
    Ok(template)
}

/// Starts the server on `port`, tied to this process, and waits until it
/// accepts connections.
fn launch(bin: &Path, owner: &Owner, dir: &Path, port: u16) -> Result<i32, String> {
    owner.give(dir)?;
    let log_path = dir.join("server.log");
    let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut command = owner.command(bin.join("postgres"));
    command
        .arg("-D")
        .arg(dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        // TLS with a certificate of the test CA (see `certificates`):
        // clients choose with sslmode, as against a managed database.
        .args(["-c", "ssl=on"])
        .arg("-c")
        .arg(format!(
            "ssl_cert_file={}",
            dir.join("server.crt").display()
        ))
        .arg("-c")
        .arg(format!("ssl_key_file={}", dir.join("server.key").display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let mut child =
        super::tied::spawn(command, libc::SIGQUIT).map_err(|e| format!("start postgres: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("postgres exited ({status}):\n{log}"));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(child.id() as i32);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("postgres did not accept connections within 60 s".to_owned());
        }
        // Polling readiness, the way pg_ctl -w does.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test CA's certificate, which signed the server's (for
/// `sslrootcert`); only once [`url`] has started the server.
#[allow(dead_code)]
pub fn ca_file() -> PathBuf {
    std::env::temp_dir()
        .join("earlykill-test-pg")
        .join(format!("run-{}", std::process::id()))
        .join("ca.crt")
}

/// A throwaway CA and a server certificate it signed, for `localhost` and
/// 127.0.0.1, made with the `openssl` command.
fn certificates(dir: &Path) -> Result<(), String> {
    let openssl = |args: &[&str], what: &str| {
        run(Command::new("openssl").current_dir(dir).args(args), what).map_err(|e| {
            format!("{e} (the database tests make a TLS certificate with the openssl command: apt-get install openssl)")
        })
    };
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=earlykill test CA",
        ],
        "make the test CA",
    )?;
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        "make the server's key",
    )?;
    fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
        "sign the server's certificate",
    )?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Removes the copies of test processes that are gone (a crashed run).
fn remove_dead_copies(root: &Path) {
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("run-")) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        return Ok(());
    }
    let mut message = Vec::new();
    let _ = write!(message, "{what} failed ({}): ", output.status);
    message.extend_from_slice(&output.stderr);
    Err(String::from_utf8_lossy(&message).into_owned())
}
