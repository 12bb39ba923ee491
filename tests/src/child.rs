//! Child processes for tests that must `kill -9` a real process.
//!
//! Cargo does not build another crate's binaries for this crate's tests, so a child is this very test
//! executable, re-run to execute one `#[ignore]`d entry-point test with its arguments in the
//! environment. The entry point calls the binary's own `cli::main_from`, so the child runs exactly the
//! code the real binary runs.

use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::Duration;

/// The environment variable that carries a child's arguments (a JSON array).
pub const ARGS_ENV: &str = "TESTS_CHILD_ARGS";

/// In the entry-point test: the arguments this process was started with, if it is a child.
pub fn child_args() -> Option<Vec<String>> {
    let json = std::env::var(ARGS_ENV).ok()?;
    serde_json::from_str(&json).ok()
}

/// The body of an entry-point test: when this process is a child, runs `main` (a binary's own
/// `cli::main_from`) with the child's arguments behind `program`, and exits 0 on success or
/// `failure` otherwise. Returns at once when this process is not a child.
pub fn run_child(program: &str, main: impl FnOnce(Vec<String>) -> ExitCode, failure: i32) {
    let Some(args) = child_args() else { return };
    let code = main(std::iter::once(program.to_string()).chain(args).collect());
    std::process::exit(if code == ExitCode::SUCCESS {
        0
    } else {
        failure
    });
}

/// A child process that is killed (`SIGKILL`) when dropped, so a failing test leaves nothing behind.
pub struct ChildProcess {
    child: Child,
}

impl ChildProcess {
    /// Re-runs this test executable to execute only the ignored test `entry`, with `args`. Its stderr
    /// goes to `log` (appended).
    pub fn spawn_self(entry: &str, args: &[String], log: &Path) -> std::io::Result<ChildProcess> {
        Self::spawn_self_with_env(entry, args, log, &[])
    }

    /// As [`ChildProcess::spawn_self`], with extra environment variables for the child.
    pub fn spawn_self_with_env(
        entry: &str,
        args: &[String],
        log: &Path,
        env: &[(&str, &str)],
    ) -> std::io::Result<ChildProcess> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([
                "--ignored",
                "--exact",
                entry,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ARGS_ENV, serde_json::to_string(args).unwrap_or_default())
            .envs(env.iter().copied());
        Self::spawn(command, log)
    }

    /// Runs a built binary instead (for example `MANUFACTURER_SIM_BIN=target/debug/manufacturer-sim`).
    pub fn spawn_bin(bin: &Path, args: &[String], log: &Path) -> std::io::Result<ChildProcess> {
        let mut command = Command::new(bin);
        command.args(args);
        Self::spawn(command, log)
    }

    /// As [`ChildProcess::spawn_self`], letting the caller adjust the command first (for example to
    /// run it as another user).
    pub fn spawn_self_adjusted(
        entry: &str,
        args: &[String],
        log: &Path,
        adjust: impl FnOnce(&mut Command),
    ) -> std::io::Result<ChildProcess> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([
                "--ignored",
                "--exact",
                entry,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ARGS_ENV, serde_json::to_string(args).unwrap_or_default());
        adjust(&mut command);
        Self::spawn(command, log)
    }

    /// Waits up to `timeout` for the process to exit on its own; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn spawn(mut command: Command, log: &Path) -> std::io::Result<ChildProcess> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        Ok(ChildProcess { child })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited (without waiting).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status (then kills it).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
