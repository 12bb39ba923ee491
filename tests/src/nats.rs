//! A real nats-server with JetStream for the tests: rendered from `deploy/nats-server.conf` with
//! 127.0.0.1, a free port and a storage folder under the test's temp dir, run as a child process
//! (killed when dropped), and restartable on the same port and storage. [`NatsServer::shared`] is one
//! server for the whole test process (the harness's PostgreSQL switch: cluster nodes need a broker).

use crate::child::{free_port, ChildProcess};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where Debian puts nats-server; `PATH` is searched too.
const DEBIAN_PATH: &str = "/usr/sbin/nats-server";

/// The nats-server binary, if installed.
pub fn binary() -> Option<PathBuf> {
    let debian = PathBuf::from(DEBIAN_PATH);
    if debian.is_file() {
        return Some(debian);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    })
}

/// `None` when nats-server is installed; otherwise prints one line saying why the calling test
/// does nothing, and returns `Some(())` so that it can return at once.
pub fn skip_without_nats_server(test: &str) -> Option<()> {
    match binary() {
        Some(_) => None,
        None => {
            eprintln!("skipped {test}: nats-server is not installed (scripts/test installs it with apt-get)");
            Some(())
        }
    }
}

/// A running nats-server.
pub struct NatsServer {
    child: Option<ChildProcess>,
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
}

impl NatsServer {
    /// Renders the config into `dir` (storage in `dir/jetstream`), starts the server and waits until
    /// it takes connections.
    pub fn start(dir: &Path) -> std::io::Result<NatsServer> {
        let bin = binary().ok_or_else(|| std::io::Error::other("nats-server is not installed"))?;
        let (config, port) = render(dir)?;
        let mut server = NatsServer {
            child: None,
            bin,
            config,
            log: dir.join("nats-server.log"),
            port,
        };
        server.restart()?;
        Ok(server)
    }

    /// One server for the whole test process: a node on PostgreSQL does not start without a broker,
    /// so the harness switch (see [`crate::harness::store_switch`]) gives every node this one. It runs
    /// under a guard shell that stops it when this process ends in any way (its stdin is a pipe from
    /// this process), since a static is never dropped. Its URL. Panics when nats-server is missing.
    pub fn shared_url() -> String {
        static SHARED: std::sync::OnceLock<(std::process::Child, String)> =
            std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                let bin = binary().expect(
                    "nats-server is not installed (the PostgreSQL switch needs it; scripts/test installs it)",
                );
                let dir = std::env::temp_dir().join(format!("tests-nats-{}", std::process::id()));
                let (config, port) = render(&dir).expect("render nats-server.conf");
                let log = std::fs::File::create(dir.join("nats-server.log")).expect("nats log");
                // The guard: nats-server in the background, killed when this process's end of the
                // pipe closes; its files removed then.
                let script = "\"$0\" \"$@\" & pid=$!; read _; kill -9 $pid; wait $pid; rm -rf \"$DIR\"";
                let child = std::process::Command::new("sh")
                    .args(["-c", script])
                    .arg(&bin)
                    .args(["-js", "-c"])
                    .arg(&config)
                    .env("DIR", &dir)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start nats-server");
                wait_accepting(port, &dir.join("nats-server.log")).expect("nats-server up");
                (child, format!("nats://127.0.0.1:{port}"))
            })
            .1
            .clone()
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildProcess::id)
    }

    /// `kill -9`: no chance to sync or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill9();
        }
    }

    /// Starts the server (again) on the same port and storage, and waits until it takes
    /// connections.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill9();
        let args = vec![
            "-js".to_string(),
            "-c".to_string(),
            self.config.display().to_string(),
        ];
        self.child = Some(ChildProcess::spawn_bin(&self.bin, &args, &self.log)?);
        wait_accepting(self.port, &self.log)
    }
}

/// Writes `dir/nats-server.conf` from the template (127.0.0.1, a free port, storage in
/// `dir/jetstream`); its path and the port.
fn render(dir: &Path) -> std::io::Result<(PathBuf, u16)> {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats-server.conf");
    let port = free_port();
    let store = dir.join("jetstream");
    std::fs::create_dir_all(&store)?;
    let config = dir.join("nats-server.conf");
    let text = std::fs::read_to_string(&template)?
        .replace("@HOST@", "127.0.0.1")
        .replace("@PORT@", &port.to_string())
        .replace("@STORE_DIR@", &store.display().to_string());
    std::fs::write(&config, text)?;
    Ok((config, port))
}

/// Waits (up to 30 s) until the server on `port` takes connections.
fn wait_accepting(port: u16, log: &Path) -> std::io::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(std::io::Error::other(format!(
                "nats-server did not come up; see {}",
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
