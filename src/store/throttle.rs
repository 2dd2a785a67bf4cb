//! The arithmetic of a login throttle kept in the database, for backends several replicas
//! share: GCRA (the algorithm `governor` runs in memory for a single process), one theoretical
//! arrival time per key. What the limits are and when an allowance goes back is decided in
//! `password_login`; a backend only applies these steps atomically.

/// One limit an attempt must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleCharge {
    /// A keyed hash of what is limited (never the username or address itself).
    pub key: [u8; 32],
    /// Nanoseconds one attempt's allowance takes to refill.
    pub every: i64,
    /// How far past now the theoretical arrival time may be for an attempt to pass:
    /// `(burst - 1) × every`.
    pub tolerance: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleOutcome {
    /// Every limit passed and was charged.
    Taken,
    /// `charges[index]` refused, for `wait` more nanoseconds. The limits before it were
    /// charged (a refused attempt still costs the attacker's own budget); it and those after it
    /// were not.
    Refused { index: usize, wait: i64 },
}

/// One GCRA step at `now` (nanoseconds) for a key whose theoretical arrival time is `tat`
/// (`None`: a key not seen, or refilled and forgotten): the new arrival time when the attempt
/// passes, or how long until it could. The same arithmetic as `governor`'s.
pub fn gcra_step(tat: Option<i64>, now: i64, charge: &ThrottleCharge) -> Result<i64, i64> {
    let tat = tat.unwrap_or(now);
    let earliest = tat.saturating_sub(charge.tolerance);
    if now < earliest {
        Err(earliest - now)
    } else {
        Ok(tat.max(now).saturating_add(charge.every))
    }
}
