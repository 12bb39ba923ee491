//! A real nats-server with JetStream for the tests: rendered from `deploy/nats-server.conf` with
//! 127.0.0.1, a free port and a storage folder under the test's temp dir, run as a child process
//! (killed when dropped), and restartable on the same port and storage.

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
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(std::io::Error::other(format!(
                    "nats-server did not come up; see {}",
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}
