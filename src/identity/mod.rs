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
    /// Longest allowed result in characters; longer names are cut (default none). Whatever
    /// this says, a name over 255 bytes is refused.
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

/// Longest hub username: what Linux (`useradd`), most filesystems and JupyterHub's database take.
pub const MAX_USERNAME_BYTES: usize = 255;
/// Upstream usernames longer than this are not even looked at (unless `max_length` cuts them).
const MAX_RAW_BYTES: usize = 4 * MAX_USERNAME_BYTES;

/// Unicode control characters (Cc) and the bidi controls that reorder how text is displayed.
fn misleads(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// An upstream name fit for an error message: quoted, escaped, and cut.
fn shown(raw: &str) -> String {
    let cut = &raw[..raw.floor_char_boundary(64)];
    if cut.len() < raw.len() {
        format!("{cut:?}… ({} bytes)", raw.len())
    } else {
        format!("{cut:?}")
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
        // Refused, not cleaned: such a name is an attempt to look like someone else in logs and
        // admin pages, never a real account name.
        if raw.chars().any(misleads) {
            return Err(format!("{} contains control or bidi characters", shown(raw)));
        }
        // A cheap bound before the work below; the result is checked against MAX_USERNAME_BYTES.
        if raw.len() > MAX_RAW_BYTES && r.max_length.is_none() {
            return Err(format!("{} is longer than {MAX_USERNAME_BYTES} bytes", shown(raw)));
        }
        let raw = &raw[..raw.floor_char_boundary(MAX_RAW_BYTES)];
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
            return Err(format!("nothing usable is left of {}", shown(raw)));
        }
        if name.len() > MAX_USERNAME_BYTES {
            return Err(format!("{} is longer than {MAX_USERNAME_BYTES} bytes", shown(raw)));
        }
        if let Some(p) = &self.pattern {
            if !p.is_match(&name) {
                return Err(format!(
                    "{name:?} (from {}) does not match the hub's username pattern {}",
                    shown(raw),
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

    /// Names that would mislead whoever reads them (`ada` + U+202E + `nimda` displays as
    /// "adaadmin"), or that no account system takes, are refused rather than cleaned.
    #[test]
    fn control_and_bidi_characters_and_overlong_names_are_refused() {
        for config in ["", "allowed = \"posix\"", "allowed = \"kubernetes\""] {
            for raw in [
                "ada\u{202E}nimda",
                "ada\u{2066}x",
                "ada\u{200F}",
                "ada\u{061C}",
                "ad\u{0007}a",
                "ada\nadmin",
                "\u{0000}ada",
            ] {
                let got = rule(config).normalize(raw);
                assert!(got.as_ref().is_err_and(|e| e.contains("control or bidi")), "{config} / {raw:?}: {got:?}");
            }
        }
        let long = "a".repeat(20_000);
        assert!(rule("").normalize(&long).unwrap_err().contains("255 bytes"));
        assert!(rule("").normalize(&"é".repeat(128)).unwrap_err().contains("255 bytes"), "bytes, not characters");
        assert_eq!(rule("").normalize(&"a".repeat(255)).unwrap().len(), 255);
        // A rule that cuts names still works on long input.
        assert_eq!(rule("max_length = 8").normalize(&long).unwrap(), "aaaaaaaa");
    }

    #[test]
    fn bad_rules_are_refused() {
        let bad = |t: &str| Normalizer::new(toml::from_str(t).unwrap()).unwrap_err();
        assert!(bad("pattern = \"([\"").contains("pattern"));
        assert!(bad("allowed = \"kubernetes\"\nreplacement = \"_\"").contains("replacement"));
        assert!(bad("max_length = 0").contains("max_length"));
    }
}
