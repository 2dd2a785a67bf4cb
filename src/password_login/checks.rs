//! A bound on argon2 checks running at once. Each check holds ~19 MiB for its duration; with
//! only tokio's blocking pool as a limit, 300 simultaneous attempts took the server to 2.8 GB.
//! Attempts past the bound wait (up to `check_queue_timeout`) for a permit, then are turned
//! away as busy. Unknown usernames take a permit too: they cost a dummy check, so their timing
//! matches a real account's.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::crypto::password;

/// Every check slot stayed taken for the whole queue timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are running; try again shortly")]
pub struct Busy;

pub struct PasswordChecks {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
    finished: AtomicU64,
}

impl Default for PasswordChecks {
    fn default() -> Self {
        let d = super::PasswordLoginConfig::default();
        Self::new(d.max_concurrent_checks, d.check_queue_timeout)
    }
}

impl PasswordChecks {
    pub fn new(max_concurrent: usize, queue_timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            queue_timeout,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
        }
    }

    /// Checks `password` against `phc`, or, with no account (`None`), spends a check on a
    /// dummy hash and answers `false`.
    pub async fn verify(self: &Arc<Self>, phc: Option<String>, password: String) -> Result<bool, VerifyError> {
        let permit = self.permit().await?;
        let this = self.clone();
        // The permit moves into the blocking task: a client that hangs up mid-check does not
        // free its slot before argon2 has actually finished.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _running = Running::start(&this);
            match phc {
                Some(phc) => password::verify_password(&phc, &password),
                None => {
                    password::burn_verification_time(&password);
                    false
                }
            }
        })
        .await
        .map_err(|e| VerifyError::Failed(e.to_string()))
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Busy),
        }
    }

    /// The most checks that ever ran at the same moment (for tests and diagnosis).
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Checks completed so far.
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("the password check did not finish: {0}")]
    Failed(String),
}

/// Counts a check while it runs.
struct Running<'a>(&'a PasswordChecks);

impl<'a> Running<'a> {
    fn start(checks: &'a PasswordChecks) -> Self {
        let now = checks.running.fetch_add(1, Ordering::SeqCst) + 1;
        checks.peak.fetch_max(now, Ordering::SeqCst);
        Self(checks)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.finished.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_checks_at_once_than_the_bound() {
        let checks = Arc::new(PasswordChecks::new(2, Duration::from_secs(60)));
        let all = (0..12).map(|_| {
            let checks = checks.clone();
            tokio::spawn(async move { checks.verify(None, "guess".into()).await.unwrap() })
        });
        for task in all.collect::<Vec<_>>() {
            assert!(!task.await.unwrap());
        }
        assert_eq!(checks.finished(), 12, "unknown accounts still cost a check");
        assert!(checks.peak_concurrency() <= 2, "peak {}", checks.peak_concurrency());
    }

    #[tokio::test]
    async fn with_no_wait_allowed_an_attempt_past_the_bound_is_busy() {
        let checks = Arc::new(PasswordChecks::new(1, Duration::ZERO));
        let first = checks.clone();
        let (a, b) = tokio::join!(first.verify(None, "a".into()), checks.verify(None, "b".into()));
        assert!(matches!(a, Ok(false)));
        assert!(matches!(b, Err(VerifyError::Busy(Busy))));
    }
}
