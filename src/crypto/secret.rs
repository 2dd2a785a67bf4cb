//! A value that must never reach a log.

use subtle::ConstantTimeEq;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison. Both sides are hashed first so the comparison also hides length.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = super::random::sha256(self.0.as_bytes());
        let b = super::random::sha256(candidate.as_bytes());
        a.ct_eq(&b).into()
    }
}

/// Whether two values are equal, in time that does not depend on where they differ (both are
/// hashed first, so not on their lengths either).
pub fn equal(a: &str, b: &str) -> bool {
    let (a, b) = (super::random::sha256(a.as_bytes()), super::random::sha256(b.as_bytes()));
    a.ct_eq(&b).into()
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn matches_only_the_same_value() {
        let s = Secret::new("hunter2");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches(""));
        assert!(!s.matches("hunter22"));
    }
}
