//! A private tmux server for terminal tests: its own socket in a temp dir (a developer's own tmux
//! is never touched), any number of sessions of a given size, keys in and screens out. The server
//! is killed when dropped, also when a test fails half-way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One private tmux server.
pub struct TmuxServer {
    socket: PathBuf,
}

/// One session (one pane) on a [`TmuxServer`].
pub struct Pane {
    socket: PathBuf,
    /// The session name, used as the tmux target.
    pub target: String,
}

fn tmux(socket: &Path) -> Command {
    let mut c = Command::new("tmux");
    c.arg("-S").arg(socket);
    c
}

/// Whether tmux can be run here.
pub fn installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl TmuxServer {
    /// A server whose socket lives in `dir`.
    pub fn new(dir: &Path) -> TmuxServer {
        TmuxServer {
            socket: dir.join("tmux.sock"),
        }
    }

    /// Starts a detached session `name` of `width` × `height` running `command` (through `sh -c`).
    pub fn start(&self, name: &str, width: u16, height: u16, command: &str) -> Pane {
        let status = tmux(&self.socket)
            .args(["new-session", "-d", "-s", name, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Pane {
            socket: self.socket.clone(),
            target: name.to_string(),
        }
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = tmux(&self.socket).arg("kill-server").output();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Pane {
    /// Sends keys by tmux name (`Enter`, `Tab`, `C-n`).
    pub fn keys(&self, keys: &[&str]) {
        let status = tmux(&self.socket)
            .args(["send-keys", "-t", &self.target])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Types text literally.
    pub fn text(&self, text: &str) {
        let status = tmux(&self.socket)
            .args(["send-keys", "-t", &self.target, "-l", text])
            .status()
            .expect("tmux send-keys -l");
        assert!(status.success());
    }

    /// The screen as text.
    pub fn screen(&self) -> String {
        self.capture(&[])
    }

    /// The screen with its attributes as escape sequences (`capture-pane -e`).
    pub fn screen_with_escapes(&self) -> String {
        self.capture(&["-e"])
    }

    fn capture(&self, extra: &[&str]) -> String {
        let out = tmux(&self.socket)
            .args(["capture-pane", "-p", "-t", &self.target])
            .args(extra)
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tmux format for this pane, for example `#{alternate_on}` or `#{pane_pid}`.
    pub fn format(&self, format: &str) -> String {
        let out = tmux(&self.socket)
            .args(["display-message", "-p", "-t", &self.target, format])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Resizes the window.
    pub fn resize(&self, width: u16, height: u16) {
        let status = tmux(&self.socket)
            .args(["resize-window", "-t", &self.target, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .status()
            .expect("tmux resize-window");
        assert!(status.success());
    }

    /// Polls the screen until every needle shows, or panics with the last screen after `timeout`.
    pub async fn wait_for(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {needles:?}; the screen was:\n{screen}",
                self.target
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
