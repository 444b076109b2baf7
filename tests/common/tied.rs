//! Child processes that die with the test process: a server a test starts
//! (PostgreSQL, a Kafka broker) must not outlive a crashed or killed run.
//! And a file lock, for what test processes running side by side prepare
//! once (a template cluster, a downloaded broker).
//!
//! The child gets `PR_SET_PDEATHSIG`, which follows the *thread* that
//! spawned it, so it is spawned from a thread that lives as long as the
//! process.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;

/// Spawns `command`; the child receives `signal` when this process ends.
pub fn spawn(mut command: Command, signal: i32) -> std::io::Result<Child> {
    // SAFETY: prctl is async-signal-safe; it runs in the child after any
    // user change the command makes, so the setting survives it.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (sent, spawned) = mpsc::channel();
    std::thread::Builder::new()
        .name("tied-child".into())
        .spawn(move || {
            let _ = sent.send(command.spawn());
            // The keeper: its exit would deliver the parent-death signal.
            loop {
                std::thread::park();
            }
        })?;
    spawned
        .recv()
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Takes an exclusive lock on the file at `path` (created if missing),
/// held until the returned file is dropped.
pub fn lock(path: &Path) -> Result<File, String> {
    let file = File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; it blocks until the
    // lock is free and is released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!(
            "lock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(file)
}
