//! The terminal of one SSH session: a ratatui backend that writes to the channel.
//!
//! It draws with crossterm's escape sequences (through `CrosstermBackend` over an in-memory sink)
//! but never asks the server's own terminal anything: the size is the pty's, as the client reported
//! it, and the cursor position is the one it last set. (`CrosstermBackend::size()` would read the
//! server's tty, and `get_cursor_position` would query it.)
//!
//! Backpressure: every frame goes whole into the session's [`Outbox`], a capped buffer that one task
//! sends in chunks as the client's window allows. When a client stops reading and the cap is
//! reached, the frame is refused and the session ends: dropping part of a frame is never an option,
//! because the next frame is a diff against it.

use crossterm::cursor::{Hide, Show};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The pty's size as the client last reported it (columns in the high half, rows in the low).
#[derive(Debug, Default)]
pub struct PtySize(AtomicU32);

impl PtySize {
    /// A size of `cols` × `rows`.
    pub fn new(cols: u16, rows: u16) -> Self {
        let size = PtySize::default();
        size.set(cols, rows);
        size
    }
    /// Records a new size.
    pub fn set(&self, cols: u16, rows: u16) {
        self.0
            .store(u32::from(cols) << 16 | u32::from(rows), Ordering::Relaxed);
    }
    /// The current size.
    pub fn get(&self) -> Size {
        let v = self.0.load(Ordering::Relaxed);
        Size::new((v >> 16) as u16, v as u16)
    }
}

/// The bytes waiting to go to one client, capped.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
    cap: usize,
}

#[derive(Debug, Default)]
struct OutboxState {
    bytes: Vec<u8>,
    /// No more frames come; the sender finishes what is queued.
    closed: bool,
    /// A frame did not fit: the client stopped reading.
    overflowed: bool,
}

impl Outbox {
    /// An empty outbox holding at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Outbox {
            state: Mutex::default(),
            ready: Notify::new(),
            cap,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a whole frame, or refuses it whole when it would pass the cap.
    pub fn push(&self, frame: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        if state.bytes.len() + frame.len() > self.cap {
            state.overflowed = true;
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the client stopped reading; its output buffer is full",
            ));
        }
        state.bytes.extend_from_slice(frame);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// No more frames; the sender stops once the queue is empty.
    pub fn close(&self) {
        self.state().closed = true;
        self.ready.notify_one();
    }

    /// Whether a frame was refused because the client stopped reading.
    pub fn overflowed(&self) -> bool {
        self.state().overflowed
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.state().bytes.len()
    }

    /// Waits for up to `max` queued bytes; `None` once closed and empty.
    pub async fn next_chunk(&self, max: usize) -> Option<Vec<u8>> {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.state();
                if !state.bytes.is_empty() {
                    let n = state.bytes.len().min(max);
                    let rest = state.bytes.split_off(n);
                    let chunk = std::mem::replace(&mut state.bytes, rest);
                    return Some(chunk);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }
}

/// Collects what crossterm writes for one frame, and hands it to the outbox on flush.
#[derive(Debug)]
pub struct FrameSink {
    frame: Vec<u8>,
    outbox: Arc<Outbox>,
}

impl Write for FrameSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.frame.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.frame.is_empty() {
            return Ok(());
        }
        let result = self.outbox.push(&self.frame);
        self.frame.clear();
        result
    }
}

/// The ratatui backend of one SSH session.
pub struct SshBackend {
    inner: CrosstermBackend<FrameSink>,
    size: Arc<PtySize>,
    cursor: Position,
}

impl SshBackend {
    /// A backend writing to `outbox`, as large as `size` says.
    pub fn new(outbox: Arc<Outbox>, size: Arc<PtySize>) -> Self {
        let sink = FrameSink {
            frame: Vec::new(),
            outbox,
        };
        SshBackend {
            inner: CrosstermBackend::new(sink),
            size,
            cursor: Position::ORIGIN,
        }
    }

    /// Switches the client's terminal to the alternate screen and hides the cursor.
    pub fn enter(&mut self) -> io::Result<()> {
        crossterm::execute!(self.inner, EnterAlternateScreen, Hide)
    }

    /// Undoes [`SshBackend::enter`]: main screen, cursor visible, attributes reset.
    pub fn leave(&mut self) -> io::Result<()> {
        crossterm::execute!(
            self.inner,
            crossterm::style::ResetColor,
            crossterm::style::SetAttribute(crossterm::style::Attribute::Reset),
            Show,
            LeaveAlternateScreen
        )
    }
}

impl Backend for SshBackend {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        self.inner.hide_cursor()
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        self.inner.show_cursor()
    }

    fn get_cursor_position(&mut self) -> io::Result<Position> {
        Ok(self.cursor)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        let position = position.into();
        self.cursor = position;
        self.inner.set_cursor_position(position)
    }

    fn clear(&mut self) -> io::Result<()> {
        self.inner.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        self.inner.clear_region(clear_type)
    }

    fn size(&self) -> io::Result<Size> {
        Ok(self.size.get())
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        Ok(WindowSize {
            columns_rows: self.size.get(),
            pixels: Size::default(),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Backend::flush(&mut self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_that_passes_the_cap_is_refused_whole_and_marks_the_outbox() {
        let outbox = Outbox::new(10);
        outbox.push(b"123456").unwrap();
        assert!(outbox.push(b"78901").is_err());
        assert_eq!(outbox.queued(), 6, "nothing of the refused frame is queued");
        assert!(outbox.overflowed());
    }

    #[tokio::test]
    async fn chunks_are_at_most_the_asked_size_and_close_ends_after_the_queue() {
        let outbox = Outbox::new(1 << 20);
        outbox.push(&[7u8; 150_000]).unwrap();
        outbox.close();
        let mut sizes = Vec::new();
        while let Some(chunk) = outbox.next_chunk(64 * 1024).await {
            sizes.push(chunk.len());
        }
        assert_eq!(sizes, vec![65_536, 65_536, 18_928]);
    }

    #[test]
    fn the_backend_reports_the_pty_size_and_its_own_cursor_without_asking_a_tty() {
        let size = Arc::new(PtySize::new(80, 24));
        let mut backend = SshBackend::new(Arc::new(Outbox::new(1 << 16)), size.clone());
        assert_eq!(backend.size().unwrap(), Size::new(80, 24));
        backend.set_cursor_position((5, 7)).unwrap();
        assert_eq!(backend.get_cursor_position().unwrap(), Position::new(5, 7));
        size.set(120, 40);
        assert_eq!(
            backend.window_size().unwrap().columns_rows,
            Size::new(120, 40)
        );
    }
}
