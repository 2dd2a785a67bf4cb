//! Slows password guessing, atomically: every attempt takes its allowance *before* the password
//! is checked, so 50 simultaneous guesses get the same 5 checks as 50 in a row. An attempt that
//! turns out not to be a wrong guess (the right password, or no check at all) gives its
//! allowance back: the limits count wrong passwords and checks still running.
//!
//! Three keyed GCRA limiters, all of which an attempt must pass, in this order:
//! - per client address (spraying one password over many usernames);
//! - per (account, address): what a stranger can spend of someone else's account from where they
//!   are: they lock themselves out, not the owner at her own address;
//! - per account, a higher ceiling, against guessing spread over many addresses.
//!
//! Usernames are keyed as typed (lowercased), whether or not the account exists: unknown names
//! are throttled the same way and a refusal reveals nothing. Keys are hashed, so an entry is a
//! fixed few dozen bytes, and the number of entries is bounded.
//!
//! Where the limiters live follows the store: a database several replicas share (PostgreSQL)
//! keeps them ([`Store::shares_login_throttle`]), so the replicas count as one broker and a
//! restart forgets nothing; keys are then an HMAC under a key every replica derives alike.
//! Otherwise one process owns the database and they stay in its memory (`governor`, keys hashed
//! with a per-process random key): no write per attempt, and a restart forgets them. The
//! limits and what gives an allowance back are decided here either way.

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
use crate::clock::{Clock, UnixTime};
use crate::crypto::Sealer;
use crate::store::{Store, ThrottleCharge, ThrottleOutcome};

/// Which limit turned an attempt away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedFor {
    Address,
    AccountFromAddress,
    Account,
    /// The throttle is tracking as many keys as it may (a very wide attack).
    Saturated,
    /// The shared throttle could not be reached (the database is away): attempts are refused,
    /// not let through unthrottled.
    Unavailable,
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
        let (every, _) = gcra_params(limit);
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
pub struct Attempt(Taken);

#[derive(Debug)]
enum Taken {
    Local { address: u64, pair: u64, account: u64 },
    Shared(Vec<ThrottleCharge>),
}

pub struct LoginThrottle {
    backend: Backend,
    max_tracked: usize,
    clock: AppClock,
}

enum Backend {
    Local(Local),
    Shared(Shared),
}

/// In this process's memory.
struct Local {
    per_address: Limit,
    per_pair: Limit,
    per_account: Limit,
    keys: std::hash::RandomState,
    /// When expired entries were last swept (sweeps are O(entries): at most one a second).
    last_sweep: AtomicI64,
}

/// In the store, shared by every replica.
struct Shared {
    store: Arc<dyn Store>,
    /// Keys rows by HMAC: the same on every replica, and a database dump holds no username
    /// or address.
    key: Box<aws_lc_rs::hmac::Key>,
    /// (every, tolerance) in nanoseconds, per limit in [`ORDER`].
    limits: [(i64, i64); 3],
    tracked: tokio::sync::Mutex<Tracked>,
}

/// What this replica knows of the shared table's size (see [`LoginThrottle::bound_shared`]).
#[derive(Default)]
struct Tracked {
    counted_at: Option<UnixTime>,
    /// The last count, plus what this replica may have added since.
    entries: u64,
    /// The last count found it full (after forgetting refilled entries).
    full: bool,
}

/// The limits in the order an attempt takes them: the attacker's own budget first, so refused
/// attempts spend nothing of the account's (and hammering past a limit keeps costing the
/// hammerer).
const ORDER: [RefusedFor; 3] = [RefusedFor::Address, RefusedFor::AccountFromAddress, RefusedFor::Account];

/// What the shared keys are derived for; a new version would start a fresh table of keys.
const SHARED_KEY_PURPOSE: &str = "hubauth login throttle v1";

/// How long a refusal for an unreachable throttle asks the browser to wait.
const UNAVAILABLE_RETRY_AFTER: u64 = 5;

/// GCRA's two numbers for a limit: the time one attempt's allowance takes to refill, and the
/// burst as how far ahead of now the arrival time may run (what `governor` derives from its
/// quota).
fn gcra_params(limit: AttemptLimit) -> (Duration, Duration) {
    let burst = limit.attempts.max(1);
    let every = (limit.window / burst).max(Duration::from_nanos(1));
    (every, every * (burst - 1))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
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
    /// The throttle for `store`: kept in it when it is shared by replicas, else in memory.
    /// Shared keys are derived from `HUBAUTH_CRYPT_KEY` (`sealer`) when there is one.
    pub fn new(
        config: &PasswordLoginConfig,
        clock: Arc<dyn Clock>,
        store: &Arc<dyn Store>,
        sealer: Option<&Sealer>,
    ) -> Self {
        if !store.shares_login_throttle() {
            return Self::in_memory(config, clock);
        }
        // Without a crypt key the rows are still fixed-size hashes, but anyone reading the
        // database could test guesses (an address, a username) against them.
        let key = match sealer {
            Some(sealer) => sealer.derive_key(SHARED_KEY_PURPOSE).to_vec(),
            None => crate::crypto::random::sha256(format!("{SHARED_KEY_PURPOSE}, no crypt key").as_bytes()),
        };
        let params = |limit| {
            let (every, tolerance) = gcra_params(limit);
            (nanos(every), nanos(tolerance))
        };
        let shared = Shared {
            store: store.clone(),
            key: Box::new(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key)),
            limits: [config.per_address, config.per_account_and_address, config.per_account].map(params),
            tracked: Default::default(),
        };
        Self { backend: Backend::Shared(shared), max_tracked: config.max_tracked, clock: AppClock(clock) }
    }

    /// A throttle in this process's memory only.
    pub fn in_memory(config: &PasswordLoginConfig, clock: Arc<dyn Clock>) -> Self {
        let clock = AppClock(clock);
        let local = Local {
            per_address: Limit::new(config.per_address, &clock),
            per_pair: Limit::new(config.per_account_and_address, &clock),
            per_account: Limit::new(config.per_account, &clock),
            keys: std::hash::RandomState::new(),
            last_sweep: AtomicI64::new(i64::MIN),
        };
        Self { backend: Backend::Local(local), max_tracked: config.max_tracked, clock }
    }

    /// Takes one attempt's allowance for `username` at `connector` from `client`, or says which
    /// limit refuses it and for how long. Call before checking the password.
    pub async fn attempt(&self, connector: &str, username: &str, client: Option<IpAddr>) -> Result<Attempt, Refused> {
        let account = (connector, username.to_lowercase());
        let address = address_key(client);
        match &self.backend {
            Backend::Local(local) => self.attempt_local(local, &account, address),
            Backend::Shared(shared) => self.attempt_shared(shared, &account, address).await,
        }
    }

    /// The attempt was not a wrong guess (the right password, or it could not be checked):
    /// its allowance goes back, so signing in costs nothing.
    pub async fn not_a_wrong_guess(&self, attempt: Attempt) {
        match (&self.backend, attempt.0) {
            (Backend::Local(local), Taken::Local { address, pair, account }) => {
                local.per_address.give_back(address);
                local.per_pair.give_back(pair);
                local.per_account.give_back(account);
            }
            (Backend::Shared(shared), Taken::Shared(charges)) => {
                // Lost, the allowance stays spent until it refills: the safe side.
                if let Err(e) = shared.store.give_back_login_allowance(&charges).await {
                    tracing::warn!(error = %e, "could not give a password attempt's allowance back");
                }
            }
            _ => {}
        }
    }

    fn attempt_local(&self, local: &Local, account: &(&str, String), address: IpAddr) -> Result<Attempt, Refused> {
        self.bound_memory(local)?;
        let (address, pair, account) =
            (local.keys.hash_one(address), local.keys.hash_one((account, address)), local.keys.hash_one(account));
        let now = governor::clock::Clock::now(&self.clock);
        let check = |limit: &Limit, key: u64, why: RefusedFor| {
            limit
                .limiter
                .check_key(&key)
                .map_err(|until| Refused { why, retry_after: retry_after(until.wait_time_from(now)) })
        };
        check(&local.per_address, address, ORDER[0])?;
        check(&local.per_pair, pair, ORDER[1])?;
        check(&local.per_account, account, ORDER[2])?;
        Ok(Attempt(Taken::Local { address, pair, account }))
    }

    async fn attempt_shared(
        &self,
        shared: &Shared,
        account: &(&str, String),
        address: IpAddr,
    ) -> Result<Attempt, Refused> {
        let now = self.clock.0.now();
        let now_ns = now.max(0).saturating_mul(1_000_000_000);
        self.bound_shared(shared, now, now_ns).await?;
        let keys = [shared.hash_address(address), shared.hash_pair(account, address), shared.hash_account(account)];
        let charges: Vec<ThrottleCharge> = keys
            .into_iter()
            .zip(shared.limits)
            .map(|(key, (every, tolerance))| ThrottleCharge { key, every, tolerance })
            .collect();
        match shared.store.take_login_allowance(&charges, now_ns).await {
            Ok(ThrottleOutcome::Taken) => Ok(Attempt(Taken::Shared(charges))),
            Ok(ThrottleOutcome::Refused { index, wait }) => Err(Refused {
                why: ORDER.get(index).copied().unwrap_or(RefusedFor::Saturated),
                retry_after: retry_after(Duration::from_nanos(wait.max(0) as u64)),
            }),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Drops entries that have refilled (indistinguishable from new ones); when the throttle is
    /// still full after that, refuses rather than forgetting who is being throttled.
    fn bound_memory(&self, local: &Local) -> Result<(), Refused> {
        let all = [&local.per_address, &local.per_pair, &local.per_account];
        if all.iter().all(|l| l.len() < self.max_tracked) {
            return Ok(());
        }
        let now = self.clock.0.now();
        if local.last_sweep.swap(now, Ordering::SeqCst) != now {
            for l in all {
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
        }
        if all.iter().all(|l| l.len() < self.max_tracked) {
            return Ok(());
        }
        tracing::warn!(max_tracked = self.max_tracked, "password logins refused: the login throttle is full");
        Err(saturated())
    }

    /// The shared table holds at most `max_tracked` entries per limit (three times that in
    /// all). Counting it is a scan, so a replica counts at most once a second and adds what it
    /// may itself have inserted since; only when that estimate reaches the cap does it count
    /// again at once (forgetting refilled entries), and refuses when the table really is full.
    async fn bound_shared(&self, shared: &Shared, now: UnixTime, now_ns: i64) -> Result<(), Refused> {
        let cap = (self.max_tracked as u64).saturating_mul(ORDER.len() as u64);
        let mut tracked = shared.tracked.lock().await;
        if tracked.counted_at != Some(now) || (tracked.entries >= cap && !tracked.full) {
            let entries = shared.store.login_throttle_entries(now_ns, cap).await.map_err(|e| unavailable(&e))?;
            *tracked = Tracked { counted_at: Some(now), entries, full: entries >= cap };
            if tracked.full {
                tracing::warn!(max_tracked = self.max_tracked, "password logins refused: the login throttle is full");
            }
        }
        if tracked.entries >= cap {
            return Err(saturated());
        }
        tracked.entries += ORDER.len() as u64;
        Ok(())
    }
}

fn saturated() -> Refused {
    Refused { why: RefusedFor::Saturated, retry_after: 60 }
}

/// Fail closed: a login needs the database anyway, and an unreachable throttle must not mean
/// unlimited guesses.
fn unavailable(e: &crate::store::StoreError) -> Refused {
    tracing::warn!(error = %e, "password login refused: the shared login throttle is unavailable");
    Refused { why: RefusedFor::Unavailable, retry_after: UNAVAILABLE_RETRY_AFTER }
}

impl Shared {
    /// HMAC of a tag naming the limit and the length-prefixed parts, so no two keys of
    /// different limits or parts can collide.
    fn hash(&self, tag: u8, parts: &[&[u8]]) -> [u8; 32] {
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.key);
        context.update(&[tag]);
        for part in parts {
            context.update(&(part.len() as u32).to_be_bytes());
            context.update(part);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(context.sign().as_ref());
        key
    }

    fn hash_address(&self, address: IpAddr) -> [u8; 32] {
        self.hash(b'a', &[&address_bytes(address)])
    }

    fn hash_pair(&self, (connector, username): &(&str, String), address: IpAddr) -> [u8; 32] {
        self.hash(b'p', &[connector.as_bytes(), username.as_bytes(), &address_bytes(address)])
    }

    fn hash_account(&self, (connector, username): &(&str, String)) -> [u8; 32] {
        self.hash(b'u', &[connector.as_bytes(), username.as_bytes()])
    }
}

fn address_bytes(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;
    use crate::store::throttle::gcra_step;

    fn throttle(config: PasswordLoginConfig) -> (LoginThrottle, Arc<MockClock>) {
        let clock = Arc::new(MockClock::new(1_000));
        (LoginThrottle::in_memory(&config, clock.clone()), clock)
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    #[tokio::test]
    async fn the_pair_limit_refills_one_attempt_at_a_time() {
        let (t, clock) = throttle(PasswordLoginConfig::default());
        for _ in 0..5 {
            assert!(t.attempt("dev", "Ada", A).await.is_ok());
        }
        let refused = t.attempt("dev", "ADA", A).await.unwrap_err();
        assert_eq!(refused, Refused { why: RefusedFor::AccountFromAddress, retry_after: 60 });
        assert!(t.attempt("dev", "ada", B).await.is_ok(), "another address");
        assert!(t.attempt("other", "ada", A).await.is_ok(), "another connector");
        clock.advance(60);
        assert!(t.attempt("dev", "ada", A).await.is_ok());
        assert!(t.attempt("dev", "ada", A).await.is_err());
    }

    #[tokio::test]
    async fn attempts_that_were_not_wrong_guesses_give_their_allowance_back() {
        let (t, _) = throttle(PasswordLoginConfig::default());
        for _ in 0..20 {
            let attempt = t.attempt("dev", "ada", A).await.expect("signing in again and again is fine");
            t.not_a_wrong_guess(attempt).await;
        }
        for _ in 0..5 {
            let _wrong = t.attempt("dev", "ada", A).await.unwrap();
        }
        assert!(t.attempt("dev", "ada", A).await.is_err(), "wrong guesses still count");
    }

    /// The shared throttle's arithmetic (`gcra_step`, and a give-back that moves the arrival
    /// time back by one period) answers exactly as `governor` does, through any mix of
    /// attempts, give-backs and waiting.
    #[test]
    fn the_shared_arithmetic_answers_as_governor_does() {
        for limit in
            [AttemptLimit::new(5, 300), AttemptLimit::new(50, 900), AttemptLimit::new(3, 7), AttemptLimit::new(1, 1)]
        {
            let clock = Arc::new(MockClock::new(1_000));
            let governed = Limit::new(limit, &AppClock(clock.clone()));
            let (every, tolerance) = gcra_params(limit);
            let charge = ThrottleCharge { key: [0; 32], every: nanos(every), tolerance: nanos(tolerance) };
            let (mut tat, mut outstanding, mut refused) = (None, 0, 0);
            let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(limit.attempts);
            for _ in 0..3000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 6 {
                    // Up to two refill periods: sometimes the key refills, sometimes not.
                    0 => clock.advance((seed >> 8) as i64 % (2 * every.as_secs() as i64 + 2)),
                    1 if outstanding > 0 => {
                        governed.give_back(7);
                        tat = tat.map(|t: i64| t - charge.every);
                        outstanding -= 1;
                    }
                    _ => {
                        let now = governor::clock::Clock::now(&AppClock(clock.clone()));
                        let theirs = governed.limiter.check_key(&7).map_err(|until| until.wait_time_from(now));
                        let ours = gcra_step(tat, nanos(now), &charge).map(|next| tat = Some(next));
                        match (theirs, ours) {
                            (Ok(()), Ok(())) => outstanding += 1,
                            (Err(wait), Err(our_wait)) => {
                                assert_eq!(nanos(wait), our_wait, "{limit:?}");
                                refused += 1;
                            }
                            (theirs, ours) => panic!("{limit:?}: governor {theirs:?}, ours {ours:?}"),
                        }
                    }
                }
            }
            assert!(refused > 0 && outstanding > 0, "{limit:?}: the sequence reached the limit and passed it");
        }
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_key(Some(one)), address_key(Some(other)));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(Some(mapped)), address_key(A));
    }

    #[tokio::test]
    async fn a_full_throttle_sweeps_refilled_entries_then_refuses() {
        let config = PasswordLoginConfig { max_tracked: 3, ..Default::default() };
        let (t, clock) = throttle(config);
        for user in ["a", "b", "c"] {
            assert!(t.attempt("dev", user, A).await.is_ok());
        }
        assert_eq!(t.attempt("dev", "d", A).await.unwrap_err().why, RefusedFor::Saturated);
        clock.advance(3600);
        assert!(t.attempt("dev", "d", A).await.is_ok(), "refilled entries were forgotten");
    }
}
