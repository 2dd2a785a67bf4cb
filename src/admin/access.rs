//! The runtime allow-list, shared by `hubauth access` and `/admin/api/access`: checking what an
//! admin asks for, storing it, and writing every change to the audit log.
//!
//! A removed entry takes effect at the person's next re-check (`[access] recheck_after`), like a
//! membership lost upstream: their tokens and sessions end then.

use std::time::Duration;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::store::{AccessEntry, AccessSelector, AuditEvent, Store, StoreResult};

/// What an admin asks for, from the API's JSON or the CLI's flags: exactly one of `username`,
/// `email`, `login` (`CONNECTOR:LOGIN`).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// e.g. "30d"; without it the entry does not expire.
    #[serde(default, with = "humantime_serde")]
    #[schema(value_type = Option<String>, example = "30d")]
    pub expires_in: Option<Duration>,
}

const MAX_VALUE: usize = 320;
const MAX_GROUPS: usize = 50;
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// The selector named by exactly one of `username`, `email`, `login`, checked against `config`.
pub fn selector(
    config: &Config,
    username: Option<&str>,
    email: Option<&str>,
    login: Option<&str>,
) -> Result<AccessSelector, String> {
    let given = [username, email, login].iter().filter(|v| v.is_some()).count();
    if given != 1 {
        return Err("name exactly one of username, email or login (CONNECTOR:LOGIN)".into());
    }
    let check = |what: &str, v: &str| -> Result<String, String> {
        let v = v.trim();
        if v.is_empty() || v.len() > MAX_VALUE || v.chars().any(char::is_control) {
            return Err(format!("the {what} must be 1 to {MAX_VALUE} printable characters"));
        }
        Ok(v.to_string())
    };
    if let Some(u) = username {
        return Ok(AccessSelector::Username(check("username", u)?));
    }
    if let Some(e) = email {
        let e = check("e-mail address", e)?;
        match e.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !e.contains(char::is_whitespace) => {}
            _ => return Err(format!("{e:?} is not an e-mail address")),
        }
        return Ok(AccessSelector::Email(e));
    }
    let l = login.unwrap_or_default();
    let Some((connector, name)) = l.split_once(':') else {
        return Err(format!("login {l:?} must be CONNECTOR:LOGIN, e.g. github:octocat"));
    };
    if !config.connectors.iter().any(|c| c.id() == connector) {
        let ids: Vec<&str> = config.connectors.iter().map(|c| c.id()).collect();
        return Err(format!("there is no connector {connector:?} (configured: {})", ids.join(", ")));
    }
    Ok(AccessSelector::Login { connector_id: connector.to_string(), login: check("login", name)? })
}

/// The entry `new` describes, checked: who, groups, note, expiry.
pub fn entry(config: &Config, new: &NewEntry, created_by: &str, now: UnixTime) -> Result<AccessEntry, String> {
    let selector = selector(config, new.username.as_deref(), new.email.as_deref(), new.login.as_deref())?;
    if new.groups.len() > MAX_GROUPS {
        return Err(format!("at most {MAX_GROUPS} groups per entry"));
    }
    if new.groups.iter().any(|g| g.trim().is_empty() || g.len() > 200 || g.chars().any(char::is_control)) {
        return Err("group names must be non-empty, printable and at most 200 characters".into());
    }
    if new.note.as_deref().is_some_and(|n| n.len() > 500) {
        return Err("the note is longer than 500 characters".into());
    }
    if new.expires_in.is_some_and(|d| d.is_zero() || d > MAX_LIFETIME) {
        return Err("expires_in must be between 1s and ten years (leave it out for no expiry)".into());
    }
    let mut groups: Vec<String> = Vec::new();
    for g in &new.groups {
        if !groups.contains(g) {
            groups.push(g.clone());
        }
    }
    Ok(AccessEntry {
        // Letters and digits only (typed back on command lines and in URLs); unique, not secret.
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        selector,
        groups,
        note: new.note.clone().filter(|n| !n.trim().is_empty()),
        expires_at: new.expires_in.map(|d| now + d.as_secs() as i64),
        created_by: created_by.to_string(),
        created_at: now,
    })
}

/// Stores `entry` (replacing one with the same selector) and audits it as the doing of its
/// `created_by`.
pub async fn allow(
    store: &dyn Store,
    entry: &AccessEntry,
    request_id: Option<String>,
) -> StoreResult<(AccessEntry, bool)> {
    let (stored, replaced) = store.put_access_entry(entry).await?;
    let mut detail = format!(
        "by {}: {} {}",
        stored.created_by,
        if replaced { "replaced the allow-list entry for" } else { "added to the allow-list" },
        stored.selector
    );
    if !stored.groups.is_empty() {
        detail.push_str(&format!("; groups {}", stored.groups.join(", ")));
    }
    if let Some(t) = stored.expires_at {
        detail.push_str(&format!("; expires at {t}"));
    }
    audit(store, "access_allowed", &stored, &stored.created_by, stored.created_at, request_id, detail).await?;
    Ok((stored, replaced))
}

/// Removes the entry with `id` and audits it as `actor`'s doing; the removed entry, if any.
pub async fn deny(
    store: &dyn Store,
    id: &str,
    actor: &str,
    now: UnixTime,
    request_id: Option<String>,
) -> StoreResult<Option<AccessEntry>> {
    let Some(removed) = store.delete_access_entry(id).await? else {
        return Ok(None);
    };
    let detail = format!("by {actor}: removed {} from the allow-list", removed.selector);
    audit(store, "access_denied", &removed, actor, now, request_id, detail).await?;
    Ok(Some(removed))
}

async fn audit(
    store: &dyn Store,
    kind: &str,
    entry: &AccessEntry,
    actor: &str,
    at: UnixTime,
    request_id: Option<String>,
    detail: String,
) -> StoreResult<()> {
    let (username, connector_id) = match &entry.selector {
        AccessSelector::Username(u) => (Some(u.clone()), None),
        AccessSelector::Login { connector_id, .. } => (None, Some(connector_id.clone())),
        AccessSelector::Email(_) => (None, None),
    };
    store
        .record_audit(&AuditEvent {
            at,
            kind: kind.into(),
            reason: Some(format!("allow_list:{}", entry.id)),
            username,
            connector_id,
            request_id,
            detail: Some(detail),
            actor: Some(actor.into()),
            ..Default::default()
        })
        .await
}

/// Whether the configuration admits anyone by default (no admitting rule anywhere): then the
/// allow-list adds groups but restricts no one, which an admin should be told.
pub fn hub_is_open(config: &Config) -> bool {
    let g = &config.access;
    let rules = std::iter::once(g).chain(config.connectors.iter().filter_map(|c| c.access.as_ref()));
    crate::policy::admits_by_default(rules)
}

/// An entry as admins see it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EntryView {
    pub id: String,
    pub kind: &'static str,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    pub groups: Vec<String>,
    pub note: Option<String>,
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<UnixTime>,
    pub created_by: String,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    /// `active` or `expired`.
    pub state: &'static str,
}

pub fn view(e: &AccessEntry, now: UnixTime) -> EntryView {
    EntryView {
        id: e.id.clone(),
        kind: e.selector.kind(),
        value: e.selector.value().to_string(),
        connector: match &e.selector {
            AccessSelector::Login { connector_id, .. } => Some(connector_id.clone()),
            _ => None,
        },
        groups: e.groups.clone(),
        note: e.note.clone(),
        expires_at: e.expires_at,
        created_by: e.created_by.clone(),
        created_at: e.created_at,
        state: if e.live_at(now) { "active" } else { "expired" },
    }
}
