//! `check-config`'s look at the group rules: for every group name a rule admits or makes an admin
//! with, which sources can produce it — and whether one of them is a name someone outside the
//! operator's control can pick (a GitHub organisation anyone can create, whatever an OIDC issuer
//! sends, a Canvas group a student names).

use regex::Regex;

use super::{GroupRule, Source};
use crate::config::{Config, ConnectorConfig, ConnectorEntry};
use crate::connectors::Membership;

/// One source that can produce a group name.
struct Producer {
    /// For the message: "connector github (GitHub organisations)".
    source: String,
    /// Why a stranger could get the name, if they could.
    self_service: Option<String>,
}

/// The characters a field's value can have (as the upstream documents them), so `{org}` cannot
/// match a name with a `:` in it.
fn field_pattern(from: Source, field: &str) -> &'static str {
    match (from, field) {
        (Source::GithubOrg | Source::GithubTeam, "org") => "[A-Za-z0-9-]+",
        (Source::GithubTeam, "team") => "[A-Za-z0-9._-]+",
        (Source::GithubOrg, "role") => "admin|member",
        (_, "id" | "term_id" | "course_id") => "[0-9]+",
        (Source::CanvasCourse, "enrollment_type") => "student|teacher|ta|observer|designer",
        (Source::CanvasCourse, "enrollment_state") => "[a-z_]+",
        _ => ".+",
    }
}

/// Fields whose value is chosen by people the operator does not control, and by whom.
fn chosen_by(from: Source, field: &str) -> Option<&'static str> {
    match (from, field) {
        (Source::Claim, "value") => Some("the provider, which sends whatever group names it likes"),
        (Source::GithubOrg | Source::GithubTeam, "org") => Some("anyone: GitHub organisations are free to create"),
        (Source::GithubTeam, "team" | "name") => Some("the owners of any GitHub organisation"),
        (Source::CanvasCourse, "name" | "course_code") => Some("a Canvas course's teachers"),
        (Source::CanvasGroup, "name") => Some("Canvas users, who can create and name groups"),
        _ => None,
    }
}

/// The kinds of membership a connector reports.
fn sources_of(kind: &ConnectorConfig) -> &'static [Source] {
    match kind {
        ConnectorConfig::Github(_) => &[Source::GithubOrg, Source::GithubTeam],
        ConnectorConfig::Canvas(_) => &[Source::CanvasCourse, Source::CanvasGroup],
        ConnectorConfig::Dev(_)
        | ConnectorConfig::Oauth2(_)
        | ConnectorConfig::Oidc(_)
        | ConnectorConfig::Google(_) => &[Source::Claim],
    }
}

/// The fields of `rule`'s template if it can produce exactly `name`.
fn template_fields(rule: &GroupRule, name: &str) -> Option<Vec<String>> {
    let mut pattern = String::from("^");
    let mut fields = Vec::new();
    let mut rest = rule.name.as_str();
    while let Some(start) = rest.find('{') {
        let len = rest[start..].find('}')?;
        pattern.push_str(&regex::escape(&rest[..start]));
        let field = &rest[start + 1..start + len];
        pattern.push_str(&format!("(?:{})", field_pattern(rule.from, field)));
        fields.push(field.to_string());
        rest = &rest[start + len + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    Regex::new(&pattern).ok()?.is_match(name).then_some(fields)
}

fn producers(config: &Config, name: &str) -> Vec<Producer> {
    let mut out = Vec::new();
    if config.static_groups.iter().any(|g| g.name == name) {
        out.push(Producer { source: "[[static_groups]]".into(), self_service: None });
    }
    if config.access.admin_group.as_deref() == Some(name) {
        out.push(Producer { source: "[access] admin_group".into(), self_service: None });
    }
    for entry in &config.connectors {
        let naming = entry.group_naming();
        if let ConnectorConfig::Dev(dev) = &entry.kind {
            // The config lists these accounts' groups: nobody else can add one.
            let claims: Vec<Membership> =
                dev.users.iter().flat_map(|u| &u.groups).map(|g| Membership::Claim { value: g.clone() }).collect();
            if naming.names(&claims).iter().any(|n| n == name) {
                out.push(Producer { source: format!("connector {} (its accounts)", entry.id()), self_service: None });
            }
            continue;
        }
        let Some(rest) = name.strip_prefix(naming.prefix.as_str()) else { continue };
        let matching: Vec<(&GroupRule, Vec<String>)> = naming
            .rules
            .iter()
            .filter(|r| sources_of(&entry.kind).contains(&r.from))
            .filter_map(|r| template_fields(r, rest).map(|f| (r, f)))
            .collect();
        let Some((first, _)) = matching.first() else { continue };
        // A prefixed name is the operator naming this source: trusting it is their choice.
        let chooser = matching
            .iter()
            .filter(|_| naming.prefix.is_empty())
            .find_map(|(r, fields)| fields.iter().find_map(|f| chosen_by(r.from, f)).map(|who| (r, who)));
        out.push(Producer {
            source: format!("connector {} ({} as {:?})", entry.id(), first.from.as_str(), first.name),
            self_service: chooser.map(|(r, who)| {
                format!(
                    "connector {} names its groups without a prefix (group_prefix = \"\"), and {:?} there is chosen by {who}",
                    entry.id(),
                    r.name
                )
            }),
        });
    }
    out
}

/// The group names rules match on, with their config keys.
fn rule_names<'a>(config: &'a Config) -> Vec<(String, &'a str)> {
    let mut names = Vec::new();
    let mut add = |key: String, list: &'a [String]| {
        for (j, n) in list.iter().enumerate() {
            names.push((format!("{key}[{j}]"), n.as_str()));
        }
    };
    add("access.allowed_groups".into(), &config.access.allowed_groups);
    add("access.admin_groups".into(), &config.access.admin_groups);
    for (i, c) in config.connectors.iter().enumerate() {
        if let Some(a) = &c.access {
            add(format!("connectors[{i}].access.allowed_groups"), &a.allowed_groups);
            add(format!("connectors[{i}].access.admin_groups"), &a.admin_groups);
        }
    }
    for c in &config.clients {
        // The hub matches these on the `groups` claim itself.
        add(format!("clients.{}.hub.allowed_groups", c.id), &c.hub.allowed_groups);
        add(format!("clients.{}.hub.admin_groups", c.id), &c.hub.admin_groups);
    }
    names
}

/// Everything `check-config` should warn about in how groups are named and matched.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (key, name) in rule_names(config) {
        let found = producers(config, name);
        for p in found.iter().filter_map(|p| p.self_service.as_deref()) {
            out.push(format!(
                "{key} = {name:?} can be satisfied by someone you do not control: {p}. Keep the connector's \
                 default prefix so its names cannot collide with other sources', or match the upstream \
                 membership itself (allowed_organizations, allowed_courses, the rule's `only`)"
            ));
        }
        if found.len() > 1 {
            let sources: Vec<&str> = found.iter().map(|p| p.source.as_str()).collect();
            out.push(format!(
                "{key} = {name:?} can come from {}: people from each of these sources are treated alike",
                sources.join(" and from ")
            ));
        }
        if found.is_empty() {
            let hint = config
                .connectors
                .iter()
                .map(ConnectorEntry::group_naming)
                .filter(|n| !n.prefix.is_empty())
                .map(|n| format!("{}{name}", n.prefix))
                .find(|qualified| !producers(config, qualified).is_empty())
                .map(|q| format!("; groups from connectors carry the connector's prefix: did you mean {q:?}?"))
                .unwrap_or_default();
            out.push(format!(
                "{key} = {name:?}: no connector, static group or account produces this group, so only an \
                 invite can grant it{hint}"
            ));
        }
    }
    for (field, kind, count) in [
        ("allowed_organizations", "github", count_kind(config, |k| matches!(k, ConnectorConfig::Github(_)))),
        ("allowed_courses", "canvas", count_kind(config, |k| matches!(k, ConnectorConfig::Canvas(_)))),
    ] {
        let set = match field {
            "allowed_organizations" => !config.access.allowed_organizations.is_empty(),
            _ => !config.access.allowed_courses.is_empty(),
        };
        if set && count > 1 {
            out.push(format!(
                "access.{field} applies to all {count} {kind} connectors alike (an organisation or course id \
                 on one instance is someone else's on another); put it in each connector's [connectors.access]"
            ));
        }
    }
    out
}

fn count_kind(config: &Config, is: impl Fn(&ConnectorConfig) -> bool) -> usize {
    config.connectors.iter().filter(|c| is(&c.kind)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::default_rules;

    fn rule(from: Source, name: &str) -> GroupRule {
        GroupRule { from, name: name.into(), ..default_rules()[0].clone() }
    }

    #[test]
    fn templates_match_only_names_their_fields_can_spell() {
        assert_eq!(template_fields(&rule(Source::GithubOrg, "{org}"), "hub-admins"), Some(vec!["org".into()]));
        assert_eq!(template_fields(&rule(Source::GithubOrg, "{org}"), "hub:admins"), None, "no ':' in an org");
        assert!(template_fields(&rule(Source::GithubTeam, "{org}:{team}"), "acme:admins").is_some());
        assert!(template_fields(&rule(Source::CanvasCourse, "course:{id}"), "course:12").is_some());
        assert!(template_fields(&rule(Source::CanvasCourse, "course:{id}"), "course:x").is_none());
        assert!(template_fields(&rule(Source::Claim, "kc-{value}"), "kc-staff").is_some());
        assert!(template_fields(&rule(Source::Claim, "kc-{value}"), "staff").is_none());
    }
}
