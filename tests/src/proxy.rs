//! A fault-injecting TCP proxy for tests: listens on 127.0.0.1:0, forwards every connection to a
//! target, and misbehaves on command.
//!
//! The faults, all switchable at run time through [`Proxy`] (its control state is shared with every
//! connection task, so a change applies to connections already open):
//! - [`Proxy::cut_after_client_bytes`]: forward exactly `n` more client→server bytes, then stop
//!   passing anything back to the client, swallow what the server still says for a short linger (so
//!   the server sees its request through), and close both sides. This is "the request arrived, the
//!   reply was lost". With `n` inside a frame, it is "the request was cut in half".
//! - [`Proxy::set_split`]: write every byte on its own, in both directions, so every frame arrives in
//!   1-byte pieces.
//! - [`Proxy::set_delay`]: hold every chunk for a while before forwarding it.
//! - [`Proxy::cut_all`]: close every open connection at once (a link failure); new connections are
//!   still accepted.
//!
//! Only 127.0.0.1 is ever bound.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a cut connection keeps draining (and discarding) the server's side before closing it,
/// so the server reads the whole request and answers into the void rather than into a reset.
const CUT_LINGER: Duration = Duration::from_millis(150);

/// What the proxy is told to do, shared by the accept loop and every connection task.
#[derive(Default)]
struct Control {
    /// Write one byte at a time.
    split: AtomicBool,
    /// Milliseconds to hold each chunk.
    delay_ms: AtomicU64,
    /// Client→server bytes still to forward before the armed cut fires; `None` when disarmed.
    /// One budget over all connections: tests arm it with one client talking.
    budget: Mutex<Option<u64>>,
    /// Cancelled and replaced by [`Proxy::cut_all`]; every connection watches the one current when
    /// it opened.
    generation: Mutex<CancellationToken>,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Connections cut by a fault so far.
    cuts: AtomicU64,
    /// Client→server bytes forwarded so far.
    up_bytes: AtomicU64,
}

impl Control {
    fn generation(&self) -> CancellationToken {
        lock(&self.generation).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running proxy. Dropping it stops accepting and closes every connection.
pub struct Proxy {
    /// "127.0.0.1:port": connect here instead of to the target.
    pub addr: String,
    control: Arc<Control>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.control.generation().cancel();
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1:0 that forwards to `target`.
    pub async fn start(target: &str) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let control = Arc::new(Control::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(
            listener,
            target.to_string(),
            control.clone(),
            stop.clone(),
        ));
        Ok(Proxy {
            addr,
            control,
            stop,
            task,
        })
    }

    /// Splits every write into 1-byte writes (both directions) while `on`.
    pub fn set_split(&self, on: bool) {
        self.control.split.store(on, Ordering::Relaxed);
    }

    /// Holds every chunk for `delay` before forwarding it (both directions).
    pub fn set_delay(&self, delay: Duration) {
        self.control
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Arms a one-shot cut: after `n` more client→server bytes (counted over all connections) have
    /// been forwarded, the connection carrying the last of them stops talking to its client, drains
    /// the server for a short linger, and closes. `n = 0` cuts at the next byte, forwarding nothing.
    pub fn cut_after_client_bytes(&self, n: u64) {
        *lock(&self.control.budget) = Some(n);
    }

    /// Whether an armed cut is still waiting for its bytes.
    pub fn cut_pending(&self) -> bool {
        lock(&self.control.budget).is_some()
    }

    /// Closes every connection open now. Later connections are forwarded normally.
    pub fn cut_all(&self) {
        let old = std::mem::take(&mut *lock(&self.control.generation));
        old.cancel();
        self.control.cuts.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::Relaxed)
    }

    /// Faults fired so far (armed cuts and [`Proxy::cut_all`] calls).
    pub fn cuts(&self) -> u64 {
        self.control.cuts.load(Ordering::Relaxed)
    }

    /// Client→server bytes forwarded so far.
    pub fn client_bytes(&self) -> u64 {
        self.control.up_bytes.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: String,
    control: Arc<Control>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        control.accepted.fetch_add(1, Ordering::Relaxed);
        let (control, target) = (control.clone(), target.clone());
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&target).await else {
                return; // Dropping `client` closes it: the target is down.
            };
            serve(client, server, control).await;
        });
    }
}

/// One proxied connection: two pumps that share a cut token.
async fn serve(client: TcpStream, server: TcpStream, control: Arc<Control>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let generation = control.generation();
    let cut = generation.child_token();
    // Set when an armed cut fired on this connection: nothing more goes back to the client.
    let swallow = Arc::new(AtomicBool::new(false));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump_up(
        client_read,
        server_write,
        control.clone(),
        cut.clone(),
        swallow.clone(),
    );
    let down = pump_down(server_read, client_write, control, cut.clone(), swallow);
    // When either direction ends, the connection is over: dropping both halves closes both sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.cancelled() => {}
    }
}

/// Client → server, honouring the armed cut budget.
async fn pump_up(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    control: Arc<Control>,
    cut: CancellationToken,
    swallow: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        delay(&control).await;
        // Take what this chunk may forward from the budget; `fire` says the cut comes after it.
        let (allowed, fire) = {
            let mut budget = lock(&control.budget);
            match *budget {
                Some(b) if (n as u64) >= b => {
                    *budget = None;
                    (b as usize, true)
                }
                Some(b) => {
                    *budget = Some(b - n as u64);
                    (n, false)
                }
                None => (n, false),
            }
        };
        if fire {
            swallow.store(true, Ordering::SeqCst);
        }
        if write(&mut to, &buf[..allowed], &control).await.is_err() {
            return;
        }
        control
            .up_bytes
            .fetch_add(allowed as u64, Ordering::Relaxed);
        if fire {
            control.cuts.fetch_add(1, Ordering::Relaxed);
            // Let the server read the request and answer into the void, then close everything.
            tokio::time::sleep(CUT_LINGER).await;
            cut.cancel();
            return;
        }
    }
}

/// Server → client; discards everything once `swallow` is set.
async fn pump_down(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    control: Arc<Control>,
    cut: CancellationToken,
    swallow: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                // The server closed; during a cut's linger keep the client hanging until the cut.
                if swallow.load(Ordering::SeqCst) {
                    cut.cancelled().await;
                }
                return;
            }
            Ok(n) => n,
        };
        if swallow.load(Ordering::SeqCst) {
            continue;
        }
        delay(&control).await;
        if swallow.load(Ordering::SeqCst) {
            continue;
        }
        if write(&mut to, &buf[..n], &control).await.is_err() {
            return;
        }
    }
}

async fn delay(control: &Control) {
    let ms = control.delay_ms.load(Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn write(to: &mut OwnedWriteHalf, bytes: &[u8], control: &Control) -> std::io::Result<()> {
    if control.split.load(Ordering::Relaxed) {
        for byte in bytes {
            to.write_all(std::slice::from_ref(byte)).await?;
            to.flush().await?;
            // Give the peer a chance to read the lone byte before the next one lands.
            tokio::task::yield_now().await;
        }
        Ok(())
    } else {
        to.write_all(bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1:0 that records how many reads each connection took.
    async fn echo() -> (String, Arc<Mutex<Vec<usize>>>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reads = Arc::new(Mutex::new(Vec::new()));
        let seen = reads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                seen.lock().unwrap().push(n);
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, reads, task)
    }

    async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut out))
            .await
            .expect("in time")
            .expect("read");
        out
    }

    #[tokio::test]
    async fn bytes_pass_through_unchanged_in_both_directions() {
        let (target, _, _task) = echo().await;
        let proxy = Proxy::start(&target).await.unwrap();
        let mut s = TcpStream::connect(&proxy.addr).await.unwrap();
        s.write_all(b"hello proxy").await.unwrap();
        assert_eq!(read_exact(&mut s, 11).await, b"hello proxy");
        assert_eq!(proxy.accepted(), 1);
        assert_eq!(proxy.client_bytes(), 11);
    }

    #[tokio::test]
    async fn split_mode_delivers_one_byte_per_read() {
        let (target, reads, _task) = echo().await;
        let proxy = Proxy::start(&target).await.unwrap();
        proxy.set_split(true);
        let mut s = TcpStream::connect(&proxy.addr).await.unwrap();
        s.write_all(b"abcdefgh").await.unwrap();
        assert_eq!(read_exact(&mut s, 8).await, b"abcdefgh");
        // The echo server saw several separate reads, not one 8-byte chunk.
        let reads = reads.lock().unwrap().clone();
        assert!(reads.len() > 1, "expected split reads, got {reads:?}");
        assert!(reads.iter().all(|&n| n < 8), "{reads:?}");
    }

    #[tokio::test]
    async fn delay_mode_holds_traffic_back() {
        let (target, _, _task) = echo().await;
        let proxy = Proxy::start(&target).await.unwrap();
        proxy.set_delay(Duration::from_millis(100));
        let mut s = TcpStream::connect(&proxy.addr).await.unwrap();
        let started = std::time::Instant::now();
        s.write_all(b"x").await.unwrap();
        read_exact(&mut s, 1).await;
        // Held once on the way in and once on the way out.
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn an_armed_cut_forwards_exactly_n_bytes_swallows_the_reply_and_closes() {
        let (target, reads, _task) = echo().await;
        let proxy = Proxy::start(&target).await.unwrap();
        let mut s = TcpStream::connect(&proxy.addr).await.unwrap();
        s.write_all(b"ab").await.unwrap();
        assert_eq!(read_exact(&mut s, 2).await, b"ab");
        proxy.cut_after_client_bytes(3);
        s.write_all(b"cdefg").await.unwrap();
        // The client gets nothing back, only the end of the stream.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed in time");
        assert!(rest.is_empty(), "the reply leaked: {rest:?}");
        // The server received exactly the 2 + 3 bytes.
        assert_eq!(reads.lock().unwrap().iter().sum::<usize>(), 5);
        assert_eq!(proxy.client_bytes(), 5);
        assert_eq!(proxy.cuts(), 1);
        assert!(!proxy.cut_pending());
        // New connections still work.
        let mut again = TcpStream::connect(&proxy.addr).await.unwrap();
        again.write_all(b"z").await.unwrap();
        assert_eq!(read_exact(&mut again, 1).await, b"z");
    }

    #[tokio::test]
    async fn cut_all_closes_open_connections_and_later_ones_still_work() {
        let (target, _, _task) = echo().await;
        let proxy = Proxy::start(&target).await.unwrap();
        let mut a = TcpStream::connect(&proxy.addr).await.unwrap();
        let mut b = TcpStream::connect(&proxy.addr).await.unwrap();
        a.write_all(b"1").await.unwrap();
        b.write_all(b"2").await.unwrap();
        read_exact(&mut a, 1).await;
        read_exact(&mut b, 1).await;
        proxy.cut_all();
        for s in [&mut a, &mut b] {
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
                .await
                .expect("closed in time");
            assert!(rest.is_empty());
        }
        let mut c = TcpStream::connect(&proxy.addr).await.unwrap();
        c.write_all(b"3").await.unwrap();
        assert_eq!(read_exact(&mut c, 1).await, b"3");
    }
}
