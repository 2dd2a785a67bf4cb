//! Group sources: which of a person's upstream memberships become hub groups, and under which
//! names. Each connector has a list of rules (`[[connectors.groups]]`); a rule takes one kind of
//! membership, filters it, and names a group from a template such as `{org}:{team}` or
//! `course::{id}::enrollment_type::{enrollment_type}`. Static groups for named users come on top.
//! The same computation runs at every login and every refresh, from the memberships the connector
//! just read.
//!
//! Every connector names its groups in its own namespace: a group from connector `github` is
//! `github:…` (its `group_prefix`), so a GitHub organisation anyone can create, or a second OIDC
//! issuer, can never produce a name that another source's rules grant — `admins`, `hub-admins`,
//! a static group. Only password connectors, whose groups the config itself lists, and connectors
//! the operator gives `group_prefix = ""` name groups in the shared namespace. [`audit`] tells
//! `check-config` which rules a source the operator does not control could still satisfy.

pub mod audit;

use std::collections::HashSet;

use serde::Deserialize;

use crate::connectors::{Membership, MembershipState};

/// The kind of membership a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A value of the connector's `groups_claim` (OIDC / OAuth2).
    Claim,
    GithubOrg,
    GithubTeam,
    CanvasCourse,
    CanvasGroup,
}

impl Source {
    fn of(m: &Membership) -> Source {
        match m {
            Membership::Claim { .. } => Source::Claim,
            Membership::GithubOrg { .. } => Source::GithubOrg,
            Membership::GithubTeam { .. } => Source::GithubTeam,
            Membership::CanvasCourse { .. } => Source::CanvasCourse,
            Membership::CanvasGroup { .. } => Source::CanvasGroup,
        }
    }

    /// The placeholders a template for this source may use.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Source::Claim => &["value"],
            Source::GithubOrg => &["org", "role"],
            Source::GithubTeam => &["org", "team", "name"],
            Source::CanvasCourse => &[
                "id",
                "name",
                "course_code",
                "sis_course_id",
                "term",
                "term_id",
                "enrollment_type",
                "role",
                "enrollment_state",
            ],
            Source::CanvasGroup => &["id", "name", "course_id"],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Claim => "claim",
            Source::GithubOrg => "github_org",
            Source::GithubTeam => "github_team",
            Source::CanvasCourse => "canvas_course",
            Source::CanvasGroup => "canvas_group",
        }
    }
}

/// One `[[connectors.groups]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    pub from: Source,
    /// The group name, with `{field}` placeholders (see [`Source::fields`]).
    pub name: String,
    /// GitHub: include pending memberships (invitations not yet accepted). Default: active only.
    #[serde(default)]
    pub include_pending: bool,
    /// Canvas: only these enrollment states (default `["active"]`).
    #[serde(default)]
    pub enrollment_states: Vec<String>,
    /// Canvas: only these enrollment types (`student`, `teacher`, `ta`, `observer`, `designer`).
    #[serde(default)]
    pub enrollment_types: Vec<String>,
    /// Canvas: only courses in these terms (by name or id).
    #[serde(default)]
    pub terms: Vec<String>,
    /// Canvas: only these course ids (courses, and groups belonging to them).
    #[serde(default)]
    pub course_ids: Vec<u64>,
    /// Claim / GitHub: only values (claim values, org logins, `org:team`) in this list.
    #[serde(default)]
    pub only: Vec<String>,
}

/// Checks a rule's template against its source; the message names the bad placeholder.
pub fn validate_rule(rule: &GroupRule) -> Result<(), String> {
    let fields = rule.from.fields();
    let mut rest = rule.name.as_str();
    if rest.is_empty() {
        return Err("the group name template is empty".into());
    }
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("unclosed `{{` in {:?}", rule.name));
        };
        let field = &rest[start + 1..start + len];
        if !fields.contains(&field) {
            return Err(format!(
                "{{{field}}} is not a field of {} memberships; use one of {}",
                rule.from.as_str(),
                fields.iter().map(|f| format!("{{{f}}}")).collect::<Vec<_>>().join(", ")
            ));
        }
        rest = &rest[start + len + 1..];
    }
    if rest.contains('}') {
        return Err(format!("stray `}}` in {:?}", rule.name));
    }
    Ok(())
}

/// The value of `field` for a membership, if it has one (`sis_course_id` may be absent).
fn field(m: &Membership, field: &str) -> Option<String> {
    let s = |v: &str| Some(v.to_string());
    match (m, field) {
        (Membership::Claim { value }, "value") => s(value),
        (Membership::GithubOrg { org, .. }, "org") => s(org),
        (Membership::GithubOrg { role, .. }, "role") => s(role),
        (Membership::GithubTeam { org, .. }, "org") => s(org),
        (Membership::GithubTeam { team, .. }, "team") => s(team),
        (Membership::GithubTeam { name, .. }, "name") => s(name),
        (Membership::CanvasCourse { id, .. }, "id") => Some(id.to_string()),
        (Membership::CanvasCourse { name, .. }, "name") => s(name),
        (Membership::CanvasCourse { course_code, .. }, "course_code") => s(course_code),
        (Membership::CanvasCourse { sis_course_id, .. }, "sis_course_id") => sis_course_id.clone(),
        (Membership::CanvasCourse { term, .. }, "term") => term.clone(),
        (Membership::CanvasCourse { term_id, .. }, "term_id") => term_id.map(|t| t.to_string()),
        (Membership::CanvasCourse { enrollment_type, .. }, "enrollment_type") => s(enrollment_type),
        (Membership::CanvasCourse { role, .. }, "role") => s(role),
        (Membership::CanvasCourse { enrollment_state, .. }, "enrollment_state") => s(enrollment_state),
        (Membership::CanvasGroup { id, .. }, "id") => Some(id.to_string()),
        (Membership::CanvasGroup { name, .. }, "name") => s(name),
        (Membership::CanvasGroup { course_id, .. }, "course_id") => course_id.map(|c| c.to_string()),
        _ => None,
    }
}

/// Fills the template; `None` when a placeholder has no value for this membership.
fn render(template: &str, m: &Membership) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let len = rest[start..].find('}')?;
        out.push_str(&field(m, &rest[start + 1..start + len])?);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn passes(rule: &GroupRule, m: &Membership) -> bool {
    match m {
        Membership::Claim { value } => rule.only.is_empty() || rule.only.contains(value),
        Membership::GithubOrg { org, state, .. } => {
            (*state == MembershipState::Active || rule.include_pending)
                && (rule.only.is_empty() || rule.only.iter().any(|o| o.eq_ignore_ascii_case(org)))
        }
        Membership::GithubTeam { org, team, state, .. } => {
            (*state == MembershipState::Active || rule.include_pending)
                && (rule.only.is_empty()
                    || rule
                        .only
                        .iter()
                        .any(|o| o.eq_ignore_ascii_case(org) || o.eq_ignore_ascii_case(&format!("{org}:{team}"))))
        }
        Membership::CanvasCourse { id, term, term_id, enrollment_type, enrollment_state, .. } => {
            let states_ok = if rule.enrollment_states.is_empty() {
                enrollment_state == "active"
            } else {
                rule.enrollment_states.contains(enrollment_state)
            };
            let type_ok = rule.enrollment_types.is_empty() || rule.enrollment_types.contains(enrollment_type);
            let term_ok = rule.terms.is_empty()
                || rule.terms.iter().any(|t| {
                    term.as_deref() == Some(t.as_str()) || term_id.map(|i| i.to_string()).as_deref() == Some(t)
                });
            let course_ok = rule.course_ids.is_empty() || rule.course_ids.contains(id);
            states_ok && type_ok && term_ok && course_ok
        }
        Membership::CanvasGroup { course_id, .. } => {
            rule.course_ids.is_empty() || course_id.is_some_and(|c| rule.course_ids.contains(&c))
        }
    }
}

/// The rules used when a connector configures none: every active membership, named plainly.
pub fn default_rules() -> Vec<GroupRule> {
    let rule = |from, name: &str| GroupRule {
        from,
        name: name.into(),
        include_pending: false,
        enrollment_states: vec![],
        enrollment_types: vec![],
        terms: vec![],
        course_ids: vec![],
        only: vec![],
    };
    vec![
        rule(Source::Claim, "{value}"),
        rule(Source::GithubOrg, "{org}"),
        rule(Source::GithubTeam, "{org}:{team}"),
        rule(Source::CanvasCourse, "course:{id}"),
        rule(Source::CanvasGroup, "canvas-group:{id}"),
    ]
}

/// The group names of the Berkeley `canvasauthenticator`, so a hub that switches keeps the groups
/// its profiles and quotas refer to: `course::{id}`, `course::{id}::enrollment_type::{type}`
/// and `course::{id}::group::{name}`.
pub fn canvasauthenticator_preset() -> Vec<GroupRule> {
    let rule = |from, name: &str| GroupRule {
        from,
        name: name.into(),
        include_pending: false,
        enrollment_states: vec![],
        enrollment_types: vec![],
        terms: vec![],
        course_ids: vec![],
        only: vec![],
    };
    vec![
        rule(Source::CanvasCourse, "course::{id}"),
        rule(Source::CanvasCourse, "course::{id}::enrollment_type::{enrollment_type}"),
        rule(Source::CanvasGroup, "course::{course_id}::group::{name}"),
    ]
}

/// Named presets for `groups_preset = "…"`.
pub fn preset(name: &str) -> Option<Vec<GroupRule>> {
    match name {
        "default" => Some(default_rules()),
        "canvasauthenticator" => Some(canvasauthenticator_preset()),
        _ => None,
    }
}

/// How one connector's memberships become hub group names: its rules, in its namespace.
#[derive(Debug, Clone)]
pub struct Naming {
    pub rules: Vec<GroupRule>,
    /// Put before every name (default `<connector id>:`; empty for password connectors).
    pub prefix: String,
}

impl Naming {
    /// The group names for `memberships`, without duplicates.
    pub fn names(&self, memberships: &[Membership]) -> Vec<String> {
        let mut names = compute(&self.rules, memberships);
        if !self.prefix.is_empty() {
            for n in &mut names {
                n.insert_str(0, &self.prefix);
            }
        }
        names
    }
}

/// Checks a configured `group_prefix`: short, printable, and (when set) ending in a separator so
/// `github:` can never run into a name.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > 64 {
        return Err("is longer than 64 bytes".into());
    }
    if prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    if !prefix.is_empty() && prefix.ends_with(|c: char| c.is_alphanumeric()) {
        return Err(format!(
            "{prefix:?} should end in a separator such as ':' or '/' (e.g. {:?})",
            format!("{prefix}:")
        ));
    }
    Ok(())
}

/// Adds the configured static groups of `username` (case-insensitive) to `groups`.
pub fn add_static(statics: &[crate::config::StaticGroup], username: &str, groups: &mut Vec<String>) {
    for s in statics {
        if s.users.iter().any(|u| u.eq_ignore_ascii_case(username)) && !groups.contains(&s.name) {
            groups.push(s.name.clone());
        }
    }
}

/// The group names `rules` give for `memberships` (before the connector's prefix), without
/// duplicates, in the order the rules and then the upstream list them (so a claim's order is kept).
pub fn compute(rules: &[GroupRule], memberships: &[Membership]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for rule in rules {
        for m in memberships.iter().filter(|m| Source::of(m) == rule.from) {
            if passes(rule, m) {
                if let Some(name) = render(&rule.name, m) {
                    if seen.insert(name.clone()) {
                        names.push(name);
                    }
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course(id: u64, code: &str, kind: &str, state: &str, term: &str) -> Membership {
        Membership::CanvasCourse {
            id,
            name: format!("Course {id}"),
            course_code: code.into(),
            sis_course_id: None,
            term: Some(term.into()),
            term_id: Some(7),
            enrollment_type: kind.into(),
            role: format!("{}Enrollment", kind),
            enrollment_state: state.into(),
        }
    }

    fn rule(from: Source, name: &str) -> GroupRule {
        GroupRule {
            from,
            name: name.into(),
            include_pending: false,
            enrollment_states: vec![],
            enrollment_types: vec![],
            terms: vec![],
            course_ids: vec![],
            only: vec![],
        }
    }

    fn github() -> Vec<Membership> {
        vec![
            Membership::GithubOrg { org: "carpentries".into(), state: MembershipState::Active, role: "member".into() },
            Membership::GithubOrg { org: "workshop".into(), state: MembershipState::Pending, role: "member".into() },
            Membership::GithubTeam {
                org: "carpentries".into(),
                team: "instructors".into(),
                name: "Instructors".into(),
                state: MembershipState::Active,
            },
            Membership::GithubTeam {
                org: "workshop".into(),
                team: "attendees".into(),
                name: "Attendees".into(),
                state: MembershipState::Pending,
            },
        ]
    }

    #[test]
    fn templates_name_groups_per_source_and_skip_pending_unless_asked() {
        let cases: Vec<(GroupRule, Vec<&str>)> = vec![
            (rule(Source::GithubOrg, "{org}"), vec!["carpentries"]),
            (rule(Source::GithubTeam, "{org}:{team}"), vec!["carpentries:instructors"]),
            (rule(Source::GithubTeam, "gh-{name}"), vec!["gh-Instructors"]),
            (
                GroupRule { include_pending: true, ..rule(Source::GithubTeam, "{org}:{team}") },
                vec!["carpentries:instructors", "workshop:attendees"],
            ),
            (
                GroupRule { only: vec!["workshop".into()], include_pending: true, ..rule(Source::GithubOrg, "{org}") },
                vec!["workshop"],
            ),
            (rule(Source::CanvasCourse, "{org}"), vec![]),
        ];
        for (r, want) in cases {
            assert_eq!(compute(std::slice::from_ref(&r), &github()), want, "{}", r.name);
        }
    }

    #[test]
    fn canvas_filters_by_state_type_term_and_course() {
        let ms = vec![
            course(1, "PHYS101", "student", "active", "Fall 2026"),
            course(2, "MATH201", "teacher", "active", "Fall 2026"),
            course(3, "HIST100", "student", "completed", "Spring 2026"),
            course(4, "CHEM110", "student", "invited", "Fall 2026"),
            Membership::CanvasGroup { id: 90, name: "Lab A".into(), course_id: Some(1) },
            Membership::CanvasGroup { id: 91, name: "Club".into(), course_id: None },
        ];
        let r = |name: &str| rule(Source::CanvasCourse, name);
        let cases: Vec<(GroupRule, Vec<&str>)> = vec![
            (r("course:{id}"), vec!["course:1", "course:2"]),
            (r("course:{course_code}:{enrollment_type}"), vec!["course:PHYS101:student", "course:MATH201:teacher"]),
            (GroupRule { enrollment_types: vec!["teacher".into()], ..r("staff:{id}") }, vec!["staff:2"]),
            (GroupRule { enrollment_states: vec!["completed".into()], ..r("alumni:{id}") }, vec!["alumni:3"]),
            (
                GroupRule {
                    enrollment_states: vec!["active".into(), "invited".into()],
                    terms: vec!["Fall 2026".into()],
                    ..r("{id}")
                },
                vec!["1", "2", "4"],
            ),
            (GroupRule { course_ids: vec![2, 3], ..r("{id}") }, vec!["2"]),
            (r("{sis_course_id}"), vec![]),
            (rule(Source::CanvasGroup, "canvas-group:{id}"), vec!["canvas-group:90", "canvas-group:91"]),
            (GroupRule { course_ids: vec![1], ..rule(Source::CanvasGroup, "g:{name}") }, vec!["g:Lab A"]),
        ];
        for (rule, want) in cases {
            assert_eq!(compute(std::slice::from_ref(&rule), &ms), want, "{}", rule.name);
        }
    }

    #[test]
    fn the_canvasauthenticator_preset_reproduces_berkeleys_names() {
        let ms = vec![
            course(1234, "PHYS101", "student", "active", "Fall"),
            course(5678, "DATA8", "ta", "active", "Fall"),
            Membership::CanvasGroup { id: 5, name: "Project Team 3".into(), course_id: Some(1234) },
        ];
        assert_eq!(
            compute(&canvasauthenticator_preset(), &ms),
            vec![
                "course::1234",
                "course::5678",
                "course::1234::enrollment_type::student",
                "course::5678::enrollment_type::ta",
                "course::1234::group::Project Team 3",
            ]
        );
    }

    #[test]
    fn claim_values_can_be_prefixed_and_filtered() {
        let ms =
            vec![Membership::Claim { value: "physics".into() }, Membership::Claim { value: "offline_access".into() }];
        assert_eq!(compute(&[rule(Source::Claim, "kc:{value}")], &ms), vec!["kc:physics", "kc:offline_access"]);
        assert_eq!(
            compute(&[GroupRule { only: vec!["physics".into()], ..rule(Source::Claim, "{value}") }], &ms),
            vec!["physics"]
        );
    }

    #[test]
    fn a_connector_prefix_keeps_its_names_apart_from_everyone_elses() {
        let naming = Naming { rules: default_rules(), prefix: "github:".into() };
        assert_eq!(naming.names(&github()), vec!["github:carpentries", "github:carpentries:instructors"]);
        let plain = Naming { prefix: String::new(), ..naming };
        assert_eq!(plain.names(&github()), vec!["carpentries", "carpentries:instructors"]);
        assert!(validate_prefix("github:").is_ok() && validate_prefix("").is_ok());
        assert!(validate_prefix("github").unwrap_err().contains("separator"));
        assert!(validate_prefix("a b:").is_err());
    }

    #[test]
    fn templates_are_checked_against_their_source() {
        assert!(validate_rule(&rule(Source::GithubTeam, "{org}:{team}")).is_ok());
        let err = validate_rule(&rule(Source::GithubOrg, "{org}:{team}")).unwrap_err();
        assert!(err.contains("{team} is not a field of github_org"), "{err}");
        assert!(validate_rule(&rule(Source::Claim, "{value")).unwrap_err().contains("unclosed"));
        assert!(validate_rule(&rule(Source::Claim, "value}")).unwrap_err().contains("stray"));
        assert!(validate_rule(&rule(Source::Claim, "")).is_err());
        for rules in [default_rules(), canvasauthenticator_preset()] {
            assert!(rules.iter().all(|r| validate_rule(r).is_ok()));
        }
    }
}
