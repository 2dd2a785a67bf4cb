//! Slows password guessing, atomically: every attempt takes its allowance *before* the password
//! is checked, so 50 simultaneous guesses get the same 5 checks as 50 in a row.
//!
//! Three keyed GCRA limiters (`governor`), all of which an attempt must pass:
//! - per client address (spraying one password over many usernames);
//! - per (account, address): what a stranger can spend of someone else's account from where they
//!   are: they lock themselves out, not the owner at her own address;
//! - per account, a higher ceiling, against guessing spread over many addresses.
//!
//! Usernames are keyed as typed (lowercased), whether or not the account exists: unknown names
//! are throttled the same way and a refusal reveals nothing. Keys are hashed with a per-process
//! random key, so an entry is a fixed few dozen bytes, and the number of entries is bounded.
//! Kept in memory: a restart forgets it.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::{AttemptLimit, PasswordLoginConfig};
use crate::clock::Clock;

/// Which limit turned an attempt away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedFor {
    Address,
    AccountFromAddress,
    Account,
    /// The throttle is tracking as many keys as it may (a very wide attack).
    Saturated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub why: RefusedFor,
    /// Seconds until an attempt could pass this limit (at least 1).
    pub retry_after: u64,
}

/// The throttle's view of time: the app's clock, so tests can move it.
#[derive(Clone)]
struct AppClock(Arc<dyn Clock>);

impl governor::clock::Clock for AppClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_secs(self.0.now().max(0) as u64)
    }
}

type Limiter = RateLimiter<u64, DashMapStateStore<u64>, AppClock, NoOpMiddleware<Duration>>;

fn limiter(limit: AttemptLimit, clock: &AppClock) -> Limiter {
    let burst = NonZeroU32::new(limit.attempts).unwrap_or(NonZeroU32::MIN);
    let every = (limit.window / burst.get()).max(Duration::from_nanos(1));
    let quota = Quota::with_period(every).expect("a non-zero period").allow_burst(burst);
    RateLimiter::new(quota, DashMapStateStore::default(), clock.clone())
}

pub struct LoginThrottle {
    per_address: Limiter,
    per_pair: Limiter,
    per_account: Limiter,
    keys: std::hash::RandomState,
    max_tracked: usize,
    clock: AppClock,
    /// When expired entries were last swept (sweeps are O(entries): at most one a second).
    last_sweep: AtomicI64,
}

/// One address's key: IPv4 as is (also when IPv4-mapped), IPv6 by its /64, which one
/// customer or host usually holds whole.
fn address_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        Some(v4) => v4,
    }
}

impl LoginThrottle {
    pub fn new(config: &PasswordLoginConfig, clock: Arc<dyn Clock>) -> Self {
        let clock = AppClock(clock);
        Self {
            per_address: limiter(config.per_address, &clock),
            per_pair: limiter(config.per_account_and_address, &clock),
            per_account: limiter(config.per_account, &clock),
            keys: std::hash::RandomState::new(),
            max_tracked: config.max_tracked,
            last_sweep: AtomicI64::new(i64::MIN),
            clock,
        }
    }

    /// Takes one attempt's allowance for `username` at `connector` from `client`, or says which
    /// limit refuses it and for how long. Call before checking the password.
    pub fn attempt(&self, connector: &str, username: &str, client: Option<IpAddr>) -> Result<(), Refused> {
        self.bound_memory()?;
        let account = (connector, username.to_lowercase());
        let address = address_key(client);
        let now = governor::clock::Clock::now(&self.clock);
        let check = |limiter: &Limiter, key: u64, why: RefusedFor| {
            limiter.check_key(&key).map_err(|until| Refused {
                why,
                retry_after: until.wait_time_from(now).as_secs_f64().ceil().max(1.0) as u64,
            })
        };
        // The attacker's own budget first, so refused attempts spend nothing of the account's.
        check(&self.per_address, self.keys.hash_one(address), RefusedFor::Address)?;
        check(&self.per_pair, self.keys.hash_one((&account, address)), RefusedFor::AccountFromAddress)?;
        check(&self.per_account, self.keys.hash_one(&account), RefusedFor::Account)
    }

    /// Drops entries that have refilled (indistinguishable from new ones); when the throttle is
    /// still full after that, refuses rather than forgetting who is being throttled.
    fn bound_memory(&self) -> Result<(), Refused> {
        let all = [&self.per_address, &self.per_pair, &self.per_account];
        if all.iter().all(|l| l.len() < self.max_tracked) {
            return Ok(());
        }
        let now = self.clock.0.now();
        if self.last_sweep.swap(now, Ordering::SeqCst) != now {
            for l in all {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        if all.iter().all(|l| l.len() < self.max_tracked) {
            return Ok(());
        }
        tracing::warn!(max_tracked = self.max_tracked, "password logins refused: the login throttle is full");
        Err(Refused { why: RefusedFor::Saturated, retry_after: 60 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    fn throttle(config: PasswordLoginConfig) -> (LoginThrottle, Arc<MockClock>) {
        let clock = Arc::new(MockClock::new(1_000));
        (LoginThrottle::new(&config, clock.clone()), clock)
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    #[test]
    fn the_pair_limit_refills_one_attempt_at_a_time() {
        let (t, clock) = throttle(PasswordLoginConfig::default());
        for _ in 0..5 {
            assert_eq!(t.attempt("dev", "Ada", A), Ok(()));
        }
        let refused = t.attempt("dev", "ADA", A).unwrap_err();
        assert_eq!(refused, Refused { why: RefusedFor::AccountFromAddress, retry_after: 60 });
        assert_eq!(t.attempt("dev", "ada", B), Ok(()), "another address");
        assert_eq!(t.attempt("other", "ada", A), Ok(()), "another connector");
        clock.advance(60);
        assert_eq!(t.attempt("dev", "ada", A), Ok(()));
        assert!(t.attempt("dev", "ada", A).is_err());
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_key(Some(one)), address_key(Some(other)));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(Some(mapped)), address_key(A));
    }

    #[test]
    fn a_full_throttle_sweeps_refilled_entries_then_refuses() {
        let config = PasswordLoginConfig { max_tracked: 3, ..Default::default() };
        let (t, clock) = throttle(config);
        for user in ["a", "b", "c"] {
            assert_eq!(t.attempt("dev", user, A), Ok(()));
        }
        assert_eq!(t.attempt("dev", "d", A).unwrap_err().why, RefusedFor::Saturated);
        clock.advance(3600);
        assert_eq!(t.attempt("dev", "d", A), Ok(()), "refilled entries were forgotten");
    }
}
