//! `application/x-www-form-urlencoded` parameters, parsed without trusting the input.
//!
//! RFC 6749 §3.1: parameters sent without a value are treated as omitted, and a parameter must
//! not appear twice. Extraction never fails on its own, so every endpoint answers bad input with
//! its own protocol error instead of a framework's plain-text 400.

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, String>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(pub String);

impl Params {
    pub fn parse(raw: &[u8]) -> Result<Self, ParamError> {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded_pairs(raw) {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(ParamError(format!("parameter `{k}` is repeated")));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

fn form_urlencoded_pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// At most `max` characters of `s` (never cutting a character in half), for echoing
/// request values in errors and logs.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_omitted_and_repeats_refused() {
        let p = Params::parse(b"a=1&b=&c=%20x").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some(" x"));
        assert!(Params::parse(b"a=1&a=2").is_err());
        assert!(Params::parse(b"%zz=%ff&&&=").is_ok());
    }
}
