//! Scopes hubauth understands, and how a requested scope string is narrowed to them.

pub const SUPPORTED: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

/// Unknown scopes are dropped (OpenID Connect Core §5.4: ignore what you don't understand).
pub fn normalize(requested: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        if SUPPORTED.contains(&s) && !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

pub fn has(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// True when every scope in `requested` was part of `granted`.
pub fn is_subset(requested: &str, granted: &str) -> bool {
    requested.split(' ').filter(|s| !s.is_empty()).all(|s| has(granted, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_unknown_and_duplicates() {
        assert_eq!(normalize("openid  foo profile openid groups"), "openid profile groups");
        assert!(is_subset("openid groups", "openid profile groups"));
        assert!(!is_subset("openid email", "openid profile"));
    }
}
