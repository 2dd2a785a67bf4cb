//! Slows password guessing, atomically: every attempt takes its allowance *before* the password
//! is checked, so 50 simultaneous guesses get the same 5 checks as 50 in a row. An attempt that
//! turns out not to be a wrong guess (the right password, or no check at all) gives its
//! allowance back: the limits count wrong passwords and checks still running.
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
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
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

/// The limiter's state, shared with [`Limit`] so an allowance can be given back (governor
/// itself only takes).
#[derive(Clone, Default)]
struct SharedStore(Arc<DashMapStateStore<u64>>);

impl StateStore for SharedStore {
    type Key = u64;
    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below)
    }
    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One limit: a GCRA limiter (`governor`) and the store behind it.
struct Limit {
    limiter: RateLimiter<u64, SharedStore, AppClock, NoOpMiddleware<Duration>>,
    store: SharedStore,
    /// The time one attempt's allowance takes to refill.
    every: Duration,
}

impl Limit {
    fn new(limit: AttemptLimit, clock: &AppClock) -> Self {
        let burst = NonZeroU32::new(limit.attempts).unwrap_or(NonZeroU32::MIN);
        let every = (limit.window / burst.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(every).expect("a non-zero period").allow_burst(burst);
        let store = SharedStore::default();
        Self { limiter: RateLimiter::new(quota, store.clone(), clock.clone()), store, every }
    }

    /// Gives back one attempt's allowance: the theoretical arrival time moves back by what
    /// one attempt moved it forward.
    fn give_back(&self, key: u64) {
        let every = Nanos::from(self.every);
        let _ = self.store.measure_and_replace(&key, |tat| {
            Ok::<_, std::convert::Infallible>(((), tat.unwrap_or_default().saturating_sub(every)))
        });
    }

    fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// An attempt that passed the throttle; hand it back with [`LoginThrottle::not_a_wrong_guess`]
/// unless the password turned out wrong.
#[must_use]
#[derive(Debug)]
pub struct Attempt {
    address: u64,
    pair: u64,
    account: u64,
}

pub struct LoginThrottle {
    per_address: Limit,
    per_pair: Limit,
    per_account: Limit,
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
            per_address: Limit::new(config.per_address, &clock),
            per_pair: Limit::new(config.per_account_and_address, &clock),
            per_account: Limit::new(config.per_account, &clock),
            keys: std::hash::RandomState::new(),
            max_tracked: config.max_tracked,
            last_sweep: AtomicI64::new(i64::MIN),
            clock,
        }
    }

    /// Takes one attempt's allowance for `username` at `connector` from `client`, or says which
    /// limit refuses it and for how long. Call before checking the password.
    pub fn attempt(&self, connector: &str, username: &str, client: Option<IpAddr>) -> Result<Attempt, Refused> {
        self.bound_memory()?;
        let account = (connector, username.to_lowercase());
        let address = address_key(client);
        let keys = Attempt {
            address: self.keys.hash_one(address),
            pair: self.keys.hash_one((&account, address)),
            account: self.keys.hash_one(&account),
        };
        let now = governor::clock::Clock::now(&self.clock);
        let check = |limit: &Limit, key: u64, why: RefusedFor| {
            limit.limiter.check_key(&key).map_err(|until| Refused {
                why,
                retry_after: until.wait_time_from(now).as_secs_f64().ceil().max(1.0) as u64,
            })
        };
        // The attacker's own budget first, so refused attempts spend nothing of the account's
        // (and hammering past a limit keeps costing the hammerer).
        check(&self.per_address, keys.address, RefusedFor::Address)?;
        check(&self.per_pair, keys.pair, RefusedFor::AccountFromAddress)?;
        check(&self.per_account, keys.account, RefusedFor::Account)?;
        Ok(keys)
    }

    /// The attempt was not a wrong guess (the right password, or it could not be checked):
    /// its allowance goes back, so signing in costs nothing.
    pub fn not_a_wrong_guess(&self, attempt: Attempt) {
        self.per_address.give_back(attempt.address);
        self.per_pair.give_back(attempt.pair);
        self.per_account.give_back(attempt.account);
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
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
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
            assert!(t.attempt("dev", "Ada", A).is_ok());
        }
        let refused = t.attempt("dev", "ADA", A).unwrap_err();
        assert_eq!(refused, Refused { why: RefusedFor::AccountFromAddress, retry_after: 60 });
        assert!(t.attempt("dev", "ada", B).is_ok(), "another address");
        assert!(t.attempt("other", "ada", A).is_ok(), "another connector");
        clock.advance(60);
        assert!(t.attempt("dev", "ada", A).is_ok());
        assert!(t.attempt("dev", "ada", A).is_err());
    }

    #[test]
    fn attempts_that_were_not_wrong_guesses_give_their_allowance_back() {
        let (t, _) = throttle(PasswordLoginConfig::default());
        for _ in 0..20 {
            let attempt = t.attempt("dev", "ada", A).expect("signing in again and again is fine");
            t.not_a_wrong_guess(attempt);
        }
        for _ in 0..5 {
            let _wrong = t.attempt("dev", "ada", A).unwrap();
        }
        assert!(t.attempt("dev", "ada", A).is_err(), "wrong guesses still count");
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
            assert!(t.attempt("dev", user, A).is_ok());
        }
        assert_eq!(t.attempt("dev", "d", A).unwrap_err().why, RefusedFor::Saturated);
        clock.advance(3600);
        assert!(t.attempt("dev", "d", A).is_ok(), "refilled entries were forgotten");
    }
}
