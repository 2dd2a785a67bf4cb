//! Who a person is at the hub: the username rule that turns an upstream's username (an e-mail
//! address, a login with dots and capitals) into one that works as a POSIX account name, a
//! Kubernetes label or whatever the hub's spawner needs — and refuses, with a reason, what cannot
//! be made to fit.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[connectors.username]`: the normalisation pipeline, applied in this order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsernameRule {
    /// Lowercase first (default true; JupyterHub lowercases too).
    #[serde(default = "yes")]
    pub lowercase: bool,
    /// For e-mail addresses: `keep` the domain (default) or `strip` it.
    #[serde(default)]
    pub email: EmailDomain,
    /// Per-domain replacement for `@domain`, applied before `email`: e.g. `"uni.example" = ""`,
    /// `"partner.org" = "-partner"`. A listed domain wins over `email`.
    #[serde(default)]
    pub email_domains: BTreeMap<String, String>,
    /// Which characters may stay: `any` (default), `posix` (a-z 0-9 . _ -), `kubernetes`
    /// (a-z 0-9 -, as in a DNS label).
    #[serde(default)]
    pub allowed: Allowed,
    /// What replaces a character that may not stay (default `-`); runs of it collapse to one and
    /// it is trimmed from both ends.
    #[serde(default = "dash")]
    pub replacement: String,
    /// Longest allowed result; longer names are cut (default none).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// A final check the result must pass, e.g. `^[a-z][a-z0-9-]{0,31}$`.
    #[serde(default)]
    pub pattern: Option<String>,
}

fn yes() -> bool {
    true
}
fn dash() -> String {
    "-".into()
}

impl Default for UsernameRule {
    fn default() -> Self {
        Self {
            lowercase: true,
            email: EmailDomain::Keep,
            email_domains: BTreeMap::new(),
            allowed: Allowed::Any,
            replacement: dash(),
            max_length: None,
            pattern: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailDomain {
    #[default]
    Keep,
    Strip,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allowed {
    #[default]
    Any,
    Posix,
    Kubernetes,
}

impl Allowed {
    fn keeps(self, c: char) -> bool {
        match self {
            Allowed::Any => !c.is_control() && !c.is_whitespace() && c != '/',
            Allowed::Posix => c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
            Allowed::Kubernetes => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        }
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Normalizer {
    rule: UsernameRule,
    pattern: Option<regex::Regex>,
}

impl Normalizer {
    pub fn new(rule: UsernameRule) -> Result<Self, String> {
        let pattern = match &rule.pattern {
            Some(p) => {
                Some(regex::Regex::new(p).map_err(|e| format!("`pattern` is not a valid regular expression: {e}"))?)
            }
            None => None,
        };
        if rule.replacement.chars().any(|c| !rule.allowed.keeps(c)) {
            return Err(format!("`replacement` {:?} is itself not allowed by `allowed`", rule.replacement));
        }
        if rule.max_length == Some(0) {
            return Err("`max_length` must be at least 1".into());
        }
        Ok(Self { rule, pattern })
    }

    /// The hub username for an upstream username, or why there is none.
    pub fn normalize(&self, raw: &str) -> Result<String, String> {
        let r = &self.rule;
        let mut name = raw.trim().to_string();
        if r.lowercase {
            name = name.to_lowercase();
        }
        if let Some((local, domain)) = name.rsplit_once('@') {
            let domain_key = domain.to_ascii_lowercase();
            if let Some(suffix) = r.email_domains.get(&domain_key) {
                name = format!("{local}{suffix}");
            } else if r.email == EmailDomain::Strip {
                name = local.to_string();
            }
        }
        if r.allowed != Allowed::Any {
            let mut out = String::with_capacity(name.len());
            for c in name.chars() {
                if r.allowed.keeps(c) {
                    out.push(c);
                } else if !out.ends_with(&r.replacement) {
                    out.push_str(&r.replacement);
                }
            }
            name = out;
        } else {
            name = name.chars().filter(|c| r.allowed.keeps(*c)).collect();
        }
        if !r.replacement.is_empty() {
            while name.starts_with(&r.replacement) {
                name = name[r.replacement.len()..].to_string();
            }
            while name.ends_with(&r.replacement) {
                name.truncate(name.len() - r.replacement.len());
            }
        }
        if let Some(max) = r.max_length {
            if name.chars().count() > max {
                name = name.chars().take(max).collect();
                while !r.replacement.is_empty() && name.ends_with(&r.replacement) {
                    name.truncate(name.len() - r.replacement.len());
                }
            }
        }
        if name.is_empty() {
            return Err(format!("nothing usable is left of {raw:?}"));
        }
        if let Some(p) = &self.pattern {
            if !p.is_match(&name) {
                return Err(format!(
                    "{name:?} (from {raw:?}) does not match the hub's username pattern {}",
                    p.as_str()
                ));
            }
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Normalizer {
        Normalizer::new(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn the_pipeline_cases() {
        let cases: Vec<(&str, &str, Result<&str, &str>)> = vec![
            ("", "Ada.Lovelace", Ok("ada.lovelace")),
            ("lowercase = false", "Ada", Ok("Ada")),
            ("", "ada@uni.example", Ok("ada@uni.example")),
            ("email = \"strip\"", "Ada.Lovelace@Uni.Example", Ok("ada.lovelace")),
            (
                "email_domains = { \"uni.example\" = \"\", \"partner.org\" = \"-partner\" }",
                "bob@partner.org",
                Ok("bob-partner"),
            ),
            ("email_domains = { \"uni.example\" = \"\" }", "bob@uni.example", Ok("bob")),
            (
                "email_domains = { \"uni.example\" = \"\" }\nallowed = \"posix\"",
                "eve@elsewhere.org",
                Ok("eve-elsewhere.org"),
            ),
            ("allowed = \"posix\"", "Jean-Luc Picard!", Ok("jean-luc-picard")),
            ("allowed = \"kubernetes\"", "first.last_name@x.org", Ok("first-last-name-x-org")),
            ("allowed = \"kubernetes\"\nemail = \"strip\"", "--ÄÖ--@x", Err("nothing usable")),
            ("allowed = \"posix\"\nmax_length = 8", "christopher.robin", Ok("christop")),
            ("allowed = \"posix\"\nmax_length = 6", "chris-robin", Ok("chris")),
            ("allowed = \"posix\"\nreplacement = \"_\"", "a b  c", Ok("a_b_c")),
            ("pattern = \"^[a-z][a-z0-9]*$\"", "9lives", Err("does not match")),
            ("pattern = \"^[a-z][a-z0-9]*$\"", "cat9", Ok("cat9")),
            ("", "  spaced  ", Ok("spaced")),
            ("", "a/b", Ok("ab")),
        ];
        for (config, raw, want) in cases {
            let got = rule(config).normalize(raw);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{config} / {raw}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{config} / {raw}: {g}"),
                _ => panic!("{config} / {raw}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bad_rules_are_refused() {
        let bad = |t: &str| Normalizer::new(toml::from_str(t).unwrap()).unwrap_err();
        assert!(bad("pattern = \"([\"").contains("pattern"));
        assert!(bad("allowed = \"kubernetes\"\nreplacement = \"_\"").contains("replacement"));
        assert!(bad("max_length = 0").contains("max_length"));
    }
}
