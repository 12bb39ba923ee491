//! A throwaway PostgreSQL 15 for tests: `initdb` into a temporary directory (as the `postgres` user
//! when the tests run as root, since PostgreSQL refuses to run as root), listening on 127.0.0.1 only,
//! on a free port. Stopped by pid when dropped, also when a test fails.

use crate::child::free_port;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where PostgreSQL's programs are: `PG_BIN`, else Debian's `/usr/lib/postgresql/<version>/bin`
/// (newest first), else the `PATH`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var("PG_BIN").ok().filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Whether the cluster tests can run here (PostgreSQL, HAProxy and nats-server installed); if not,
/// why and how to get them.
pub fn missing() -> Option<String> {
    let mut missing = Vec::new();
    if bin_dir().is_none() {
        missing.push("postgresql");
    }
    if which("haproxy").is_none() {
        missing.push("haproxy");
    }
    if crate::nats::binary().is_none() {
        missing.push("nats-server");
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "cluster tests skipped: they need {} (scripts/test installs them; or apt-get install {})",
        missing.join(", "),
        missing.join(" ")
    ))
}

/// The path of a program on the `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The uid and gid of the `postgres` user, when this process is root.
fn postgres_user() -> Option<(u32, u32)> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A running throwaway PostgreSQL.
pub struct PgServer {
    /// Its data directory (inside `dir`).
    pub data: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PgServer {
    /// initdb and start. Panics (failing the test) if PostgreSQL is not installed.
    pub fn start() -> PgServer {
        let mut server = PgServer::init();
        server.launch();
        server
    }

    fn init() -> PgServer {
        let bin = bin_dir().expect("PostgreSQL is not installed (see pg::missing)");
        let dir = tempfile::tempdir().expect("temp dir");
        let user = postgres_user();
        let data = dir.path().join("pgdata");
        if let Some((uid, gid)) = user {
            let _ = Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(dir.path())
                .status();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut initdb, user);
        let status = initdb.status().expect("run initdb");
        assert!(status.success(), "initdb failed");
        PgServer {
            data,
            port: free_port(),
            dir,
            bin,
            user,
            child: None,
        }
    }

    /// One server for the whole test process, for the harness switch (see
    /// [`crate::harness::store_switch`]). It runs under a guard shell that stops it when this process
    /// ends in any way (its stdin is a pipe from this process), since a static is never dropped.
    pub fn shared() -> &'static PgServer {
        static SHARED: std::sync::OnceLock<PgServer> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let mut server = PgServer::init();
            server.launch_guarded();
            server
        })
    }

    /// A fresh database on the shared server, named uniquely in this process; its URL.
    pub fn fresh_database() -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let server = PgServer::shared();
        let name = format!(
            "t{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        server.create_database(&name);
        server.url(&name)
    }

    fn launch_guarded(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("postgres log");
        let script = "\"$0\" \"$@\" & pid=$!; read _; kill -QUIT $pid; wait $pid";
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .arg(self.bin.join("postgres"))
            .args(self.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log);
        as_user(&mut command, self.user);
        self.child = Some(command.spawn().expect("start postgres"));
        self.wait_ready(Duration::from_secs(30));
    }

    fn args(&self) -> Vec<String> {
        vec![
            "-D".into(),
            self.data.display().to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            format!("port={}", self.port),
            "-c".into(),
            format!("unix_socket_directories={}", self.dir.path().display()),
            "-c".into(),
            "synchronous_commit=on".into(),
            "-c".into(),
            "fsync=on".into(),
            "-c".into(),
            "max_connections=300".into(),
            "-c".into(),
            "shared_buffers=128MB".into(),
        ]
    }

    /// The URL of database `name` (see [`PgServer::create_database`]).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("postgres log");
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        as_user(&mut command, self.user);
        self.child = Some(command.spawn().expect("start postgres"));
        self.wait_ready(Duration::from_secs(30));
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let ok = Command::new(self.bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PostgreSQL did not start; see {}", self.log().display());
    }

    /// Stops it (fast shutdown: open transactions are rolled back) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it and starts it again on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Creates a database (the distributor creates its schema in it).
    pub fn create_database(&self, name: &str) {
        let status = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-q",
            ])
            .args(["-c", &format!("CREATE DATABASE \"{name}\"")])
            .stdout(Stdio::null())
            .status()
            .expect("run psql");
        assert!(status.success(), "CREATE DATABASE {name} failed");
    }

    /// PostgreSQL's programs (for `pgbench`).
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin.join(program)
    }

    /// The directory it runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, which also ends every backend (SIGKILL would orphan them).
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
