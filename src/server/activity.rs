//! What a connection is doing, as its watchdog sees it: when a byte last moved, whether a
//! request is being answered, and since when a request head has been arriving.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::config::ServerConfig;

/// Why the watchdog closes a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Cut {
    /// Bytes of a request arrived but not a whole head, within `header_read_timeout`.
    HalfSent,
    /// Nothing in flight and nothing moving for `idle_timeout`.
    Idle,
}

/// How often a connection's watchdog looks: often enough to cut close to the limits.
pub fn tick_for(limits: &ServerConfig) -> Duration {
    (limits.header_read_timeout.min(limits.idle_timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

pub struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` that a byte was last read or written.
    last_io: AtomicU64,
    /// 1 + milliseconds after `opened` that the first byte of a not yet dispatched request
    /// arrived; 0 while none is arriving.
    head_since: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    pub fn new() -> Self {
        Self { opened: Instant::now(), last_io: 0.into(), head_since: 0.into(), in_flight: 0.into() }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn moved(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
    }

    fn received(&self) {
        let now = self.now_ms();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since.compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// A request head is complete and dispatched; the guard marks it answered when dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    pub fn check(&self, limits: &ServerConfig) -> Option<Cut> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None; // the router's request timeout bounds this
        }
        let now = self.now_ms();
        let head = self.head_since.load(Ordering::Acquire);
        if head != 0 && now.saturating_sub(head - 1) >= limits.header_read_timeout.as_millis() as u64 {
            return Some(Cut::HalfSent);
        }
        if now.saturating_sub(self.last_io.load(Ordering::Relaxed)) >= limits.idle_timeout.as_millis() as u64 {
            return Some(Cut::Idle);
        }
        None
    }
}

pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.moved();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that reports its reads and writes to an [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
