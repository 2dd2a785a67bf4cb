//! Slows password guessing: after `MAX_FAILURES` wrong passwords for one account within
//! `WINDOW` seconds, that account's form refuses further attempts until the oldest failure ages
//! out. Kept in memory: a restart forgets it, which only ever errs on the side of letting in.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::UnixTime;

const MAX_FAILURES: usize = 5;
const WINDOW: i64 = 300;
/// Bounds memory when someone sprays many user names.
const MAX_ACCOUNTS: usize = 100_000;

#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Vec<UnixTime>>>,
}

fn key(connector: &str, username: &str) -> String {
    format!("{connector}\0{}", username.to_lowercase())
}

impl LoginThrottle {
    /// Seconds to wait before this account may try again, if it is throttled now.
    pub fn retry_after(&self, connector: &str, username: &str, now: UnixTime) -> Option<i64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(&key(connector, username))?;
        list.retain(|t| now - t < WINDOW);
        (list.len() >= MAX_FAILURES).then(|| list.first().map_or(WINDOW, |first| first + WINDOW - now).max(1))
    }

    pub fn failed(&self, connector: &str, username: &str, now: UnixTime) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ACCOUNTS {
            map.retain(|_, list| list.last().is_some_and(|t| now - t < WINDOW));
        }
        map.entry(key(connector, username)).or_default().push(now);
    }

    pub fn succeeded(&self, connector: &str, username: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&key(connector, username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_account_until_the_window_passes() {
        let t = LoginThrottle::default();
        for i in 0..5 {
            assert_eq!(t.retry_after("dev", "Ada", 100 + i), None);
            t.failed("dev", "ada", 100 + i);
        }
        assert_eq!(t.retry_after("dev", "ADA", 110), Some(290));
        assert_eq!(t.retry_after("dev", "sam", 110), None, "other accounts are not affected");
        assert_eq!(t.retry_after("other", "ada", 110), None, "per connector");
        assert_eq!(t.retry_after("dev", "ada", 401), None, "the first failure aged out");
        t.succeeded("dev", "ada");
        assert_eq!(t.retry_after("dev", "ada", 402), None);
    }
}
