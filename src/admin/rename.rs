//! `hubauth users plan-rename`: what a change of username rule would do, before anyone switches.
//!
//! For every person hubauth knows (their first identity decides their name), the new rule is
//! applied to the name their provider gave; the plan lists old → new with problems flagged:
//! two people landing on one name, a name the rule refuses, a new name a different hub user
//! already has (from a JupyterHub user list export), and hub users hubauth has never seen.

use std::collections::{HashMap, HashSet};

use crate::identity::Normalizer;
use crate::store::StoredUpstream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub connector_id: String,
    pub subject: String,
    pub upstream_username: String,
    pub current: String,
    pub new: String,
    pub status: &'static str,
    pub note: String,
}

/// `identities`: every identity with its user's current username, each user's first identity
/// first. `rules`: the new rule per connector id. `hub_users`: names from the hub, if given.
pub fn plan(
    identities: &[(StoredUpstream, String)],
    rules: &HashMap<String, Normalizer>,
    hub_users: Option<&[String]>,
) -> Vec<PlanRow> {
    let mut seen_users = HashSet::new();
    let mut rows = Vec::new();
    for (identity, current) in identities {
        if !seen_users.insert(identity.user_id.clone()) {
            continue; // a linked second identity does not name the user
        }
        let upstream = identity.upstream_username.clone().unwrap_or_else(|| current.clone());
        let mut row = PlanRow {
            connector_id: identity.connector_id.clone(),
            subject: identity.subject.clone(),
            upstream_username: upstream.clone(),
            current: current.clone(),
            new: String::new(),
            status: "unchanged",
            note: if identity.upstream_username.is_none() {
                "no upstream name on record; the current name was used".into()
            } else {
                String::new()
            },
        };
        match rules.get(&identity.connector_id) {
            None => {
                row.new = current.clone();
                row.status = "connector_removed";
                row.note = "the new configuration has no such connector".into();
            }
            Some(rule) => match rule.normalize(&upstream) {
                Ok(new) => {
                    row.status = if &new == current { "unchanged" } else { "renamed" };
                    row.new = new;
                }
                Err(why) => {
                    row.status = "invalid";
                    row.note = why;
                }
            },
        }
        rows.push(row);
    }

    // Two people on one new name; or a new name that is someone else's current one and stays so.
    let mut by_new: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if !r.new.is_empty() {
            by_new.entry(r.new.as_str()).or_default().push(i);
        }
    }
    let mut flag: Vec<(usize, String)> = Vec::new();
    for (name, idx) in &by_new {
        if idx.len() > 1 {
            let who: Vec<String> = idx.iter().map(|&i| rows[i].current.clone()).collect();
            for &i in idx {
                flag.push((i, format!("{} people would become {name}: {}", idx.len(), who.join(", "))));
            }
        }
    }
    for (i, note) in flag {
        rows[i].status = "collision";
        rows[i].note = note;
    }

    if let Some(hub) = hub_users {
        let known_current: HashSet<String> = rows.iter().map(|r| r.current.clone()).collect();
        let hub_set: HashSet<&str> = hub.iter().map(String::as_str).collect();
        for r in rows.iter_mut().filter(|r| r.status == "renamed") {
            // The hub has the new name already, and it is not this person's: their home and
            // server would land on someone else's.
            if hub_set.contains(r.new.as_str()) && !known_current.contains(&r.new) {
                r.status = "hub_conflict";
                r.note = format!("the hub already has a user {} whom hubauth does not know", r.new);
            }
        }
        let mut extra: Vec<&String> = hub.iter().filter(|h| !known_current.contains(*h)).collect();
        extra.sort();
        extra.dedup();
        for h in extra {
            rows.push(PlanRow {
                connector_id: String::new(),
                subject: String::new(),
                upstream_username: String::new(),
                current: h.clone(),
                new: String::new(),
                status: "hub_only",
                note: "on the hub but never signed in through hubauth".into(),
            });
        }
    }
    rows
}

pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn to_csv(rows: &[PlanRow]) -> String {
    let mut out = String::from("connector,subject,upstream_username,current_username,new_username,status,note\n");
    for r in rows {
        let fields = [&r.connector_id, &r.subject, &r.upstream_username, &r.current, &r.new, r.status, &r.note];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// A JupyterHub user list: the JSON of `GET /hub/api/users` (objects with `name`), a JSON list
/// of names, or plain text with one name per line.
pub fn parse_hub_users(text: &str) -> Result<Vec<String>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| format!("not valid JSON: {e}"))?;
        let items = v.as_array().ok_or("expected a JSON list")?;
        items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Object(o) => o
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| "an entry has no \"name\"".to_string()),
                _ => Err("entries must be names or user objects".to_string()),
            })
            .collect()
    } else {
        Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Allowed, EmailDomain, UsernameRule};

    fn identity(user: &str, connector: &str, subject: &str, upstream: Option<&str>) -> StoredUpstream {
        StoredUpstream {
            user_id: user.into(),
            connector_id: connector.into(),
            subject: subject.into(),
            memberships_json: "[]".into(),
            upstream_username: upstream.map(str::to_string),
            tokens_sealed: None,
            tokens_expire_at: None,
            refreshed_at: None,
        }
    }

    #[test]
    fn a_plan_flags_renames_collisions_invalid_names_and_hub_conflicts() {
        let rule = UsernameRule { email: EmailDomain::Strip, allowed: Allowed::Posix, ..Default::default() };
        let mut rules = HashMap::new();
        rules.insert("google".to_string(), Normalizer::new(rule).unwrap());
        let ids = vec![
            (identity("u1", "google", "1", Some("ada@uni.example")), "ada@uni.example".to_string()),
            (identity("u2", "google", "2", Some("bob@uni.example")), "bob@uni.example".to_string()),
            (identity("u3", "google", "3", Some("bob@partner.org")), "bob@partner.org".to_string()),
            (identity("u4", "google", "4", Some("@@@")), "@@@".to_string()),
            (identity("u5", "gone", "5", Some("eve")), "eve".to_string()),
            (identity("u6", "google", "6", Some("zoe@uni.example")), "zoe@uni.example".to_string()),
            (identity("u1", "github", "99", Some("ADA-GH")), "ada@uni.example".to_string()),
        ];
        let hub = vec!["ada@uni.example".to_string(), "zoe".to_string(), "old-student".to_string()];
        let rows = plan(&ids, &rules, Some(&hub));
        let by = |cur: &str| rows.iter().find(|r| r.current == cur).unwrap();
        assert_eq!((by("ada@uni.example").new.as_str(), by("ada@uni.example").status), ("ada", "renamed"));
        assert_eq!(by("bob@uni.example").status, "collision");
        assert_eq!(by("bob@partner.org").status, "collision");
        assert!(by("bob@partner.org").note.contains("2 people would become bob"));
        assert_eq!(by("@@@").status, "invalid");
        assert_eq!(by("eve").status, "connector_removed");
        assert_eq!(by("zoe@uni.example").status, "hub_conflict");
        assert_eq!(by("old-student").status, "hub_only");
        assert_eq!(rows.iter().filter(|r| r.current == "ada@uni.example").count(), 1, "a linked identity adds no row");
        let csv = to_csv(&rows);
        assert!(csv.starts_with("connector,subject,"));
        assert!(csv.contains("\"2 people would become bob: bob@uni.example, bob@partner.org\""));
    }

    #[test]
    fn hub_user_lists_are_read_in_the_usual_shapes() {
        assert_eq!(parse_hub_users(r#"[{"name": "a", "admin": false}, {"name": "b"}]"#).unwrap(), vec!["a", "b"]);
        assert_eq!(parse_hub_users(r#"["a", "b"]"#).unwrap(), vec!["a", "b"]);
        assert_eq!(parse_hub_users("a\n\n# comment\nb\n").unwrap(), vec!["a", "b"]);
        assert!(parse_hub_users("[{\"admin\": true}]").is_err());
    }
}
