//! Password forms under attack: how many guesses each account, address and (account, address)
//! pair may make ([`throttle`]), and how many argon2 checks run at once ([`checks`]).
//! Settings: the `[password_login]` config section.

pub mod checks;
pub mod throttle;

use std::time::Duration;

use serde::Deserialize;

pub use checks::{Busy, PasswordChecks};
pub use throttle::{Attempt, LoginThrottle, Refused, RefusedFor};

/// `N attempts per window`: a burst of `attempts`, refilled evenly over `window`
/// (so after the burst, one more attempt every `window / attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptLimit {
    pub attempts: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl AttemptLimit {
    const fn new(attempts: u32, window_secs: u64) -> Self {
        Self { attempts, window: Duration::from_secs(window_secs) }
    }
}

/// `[password_login]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordLoginConfig {
    /// Attempts at one account from one client address: what a stranger can spend of someone
    /// else's account from where they are.
    pub per_account_and_address: AttemptLimit,
    /// Attempts from one client address, whatever the username (password spraying).
    pub per_address: AttemptLimit,
    /// Attempts at one account from all addresses together: the ceiling for guessing spread
    /// over many addresses. Higher than the pair limit, so one stranger cannot reach it.
    pub per_account: AttemptLimit,
    /// How many accounts, addresses and pairs the throttle remembers at most (each entry is a
    /// few dozen bytes); beyond it, attempts are refused until old entries expire.
    pub max_tracked: usize,
    /// Password checks (argon2, ~19 MiB each) running at the same time.
    pub max_concurrent_checks: usize,
    /// How long an attempt waits for a free check before it is answered "busy" (503).
    #[serde(with = "humantime_serde")]
    pub check_queue_timeout: Duration,
}

impl Default for PasswordLoginConfig {
    fn default() -> Self {
        Self {
            per_account_and_address: AttemptLimit::new(5, 5 * 60),
            per_address: AttemptLimit::new(50, 5 * 60),
            per_account: AttemptLimit::new(50, 15 * 60),
            max_tracked: 100_000,
            max_concurrent_checks: 4,
            check_queue_timeout: Duration::from_secs(5),
        }
    }
}

impl PasswordLoginConfig {
    /// The first bad value, as (key under `password_login.`, why).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, limit) in [
            ("per_account_and_address", self.per_account_and_address),
            ("per_address", self.per_address),
            ("per_account", self.per_account),
        ] {
            if limit.attempts == 0 {
                return Err((format!("{key}.attempts"), "must be at least 1".into()));
            }
            if limit.window < Duration::from_secs(1) {
                return Err((format!("{key}.window"), "must be at least one second".into()));
            }
        }
        if self.max_tracked == 0 {
            return Err(("max_tracked".into(), "must be at least 1".into()));
        }
        if !(1..=1024).contains(&self.max_concurrent_checks) {
            return Err((
                "max_concurrent_checks".into(),
                "must be between 1 and 1024 (each check holds ~19 MiB while it runs)".into(),
            ));
        }
        Ok(())
    }
}
