//! Users as hub admins see them, shared by the console's Users pages and the admin API: a
//! filtered, paged listing; one person's detail (identities, groups and where they came from,
//! why they are admitted, sessions, activity, audit trail); block, unblock, revoke sessions,
//! delete; and the same in bulk. Every change is audited under its [`Actor`].

use serde::{Deserialize, Serialize};

use super::deprovision::{self, Action};
use super::report::parse_age;
use super::Actor;
use crate::clock::UnixTime;
use crate::store::{AuditEvent, LiveSession, Store, StoreError, UserQuery, UserRow};

/// Rows on a page unless asked otherwise, and at most.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// A bulk change touches at most this many people; "all matching" beyond it is refused.
pub const BULK_MAX: usize = 5000;
/// How much of a person's audit trail the detail shows.
pub const AUDIT_LIMIT: u32 = 50;
/// How many live sessions (of each kind) the detail shows.
pub const SESSION_LIMIT: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong (a bad duration, an unknown action, too many people); the message
    /// says how.
    #[error("{0}")]
    BadInput(String),
    #[error("there is no user {0:?}")]
    NotFound(String),
    #[error("storage is unavailable: {0}")]
    Store(#[from] StoreError),
}

/// A listing's filters as people and scripts write them: every field optional, empty means
/// "any". Durations like `90d`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    pub q: Option<String>,
    pub group: Option<String>,
    pub connector: Option<String>,
    /// Signed in or used a token within this long (e.g. `30d`).
    pub active_since: Option<String>,
    /// Neither signed in nor used a token for this long (e.g. `90d`).
    pub inactive_since: Option<String>,
    /// `yes` (or `true`) for blocked people only, `no` (`false`) for the others.
    pub blocked: Option<String>,
}

fn set(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

impl Filter {
    /// The store's query for this filter at `now`, or what is wrong with it.
    pub fn query(&self, now: UnixTime) -> Result<UserQuery, Error> {
        let since = |name: &str, v: &Option<String>| -> Result<Option<UnixTime>, Error> {
            set(v)
                .map(|s| parse_age(&s).map(|age| now.saturating_sub(age)))
                .transpose()
                .map_err(|m| Error::BadInput(format!("{name}: {m}")))
        };
        let blocked = match set(&self.blocked).as_deref() {
            None | Some("any") => None,
            Some("yes" | "true") => Some(true),
            Some("no" | "false") => Some(false),
            Some(other) => return Err(Error::BadInput(format!("blocked: {other:?} is not yes or no"))),
        };
        let q = set(&self.q);
        if q.as_ref().is_some_and(|q| q.len() > 200) {
            return Err(Error::BadInput("q: a search is at most 200 characters".into()));
        }
        Ok(UserQuery {
            q,
            group: set(&self.group),
            connector: set(&self.connector),
            active_since: since("active_since", &self.active_since)?,
            inactive_since: since("inactive_since", &self.inactive_since)?,
            blocked,
            username: None,
            after: None,
            limit: DEFAULT_LIMIT,
        })
    }

    /// Whether any filter is set (an empty filter selects everyone).
    pub fn is_empty(&self) -> bool {
        [&self.q, &self.group, &self.connector, &self.active_since, &self.inactive_since, &self.blocked]
            .iter()
            .all(|v| set(v).is_none_or(|v| v == "any"))
    }
}

/// One person in a listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserView {
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub connectors: Vec<String>,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    #[schema(value_type = Option<i64>)]
    pub last_login_at: Option<UnixTime>,
    #[schema(value_type = Option<i64>)]
    pub last_token_use_at: Option<UnixTime>,
    pub blocked: bool,
    #[schema(value_type = Option<i64>)]
    pub blocked_at: Option<UnixTime>,
    #[serde(skip)]
    pub user_id: String,
}

impl From<UserRow> for UserView {
    fn from(r: UserRow) -> Self {
        UserView {
            username: r.username,
            name: r.name,
            email: r.email,
            groups: r.groups,
            connectors: r.connectors,
            created_at: r.created_at,
            last_login_at: r.last_login_at,
            last_token_use_at: r.last_token_use_at,
            blocked: r.blocked_at.is_some(),
            blocked_at: r.blocked_at,
            user_id: r.user_id,
        }
    }
}

/// One page of a listing: `next` is the cursor (`after`) of the following page, if there is one;
/// `total` counts everyone the filter selects.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub users: Vec<UserView>,
    pub next: Option<String>,
    pub total: u64,
}

/// The page of people `filter` selects after `after`, at most `limit` (capped at [`MAX_LIMIT`]).
pub async fn list(
    store: &dyn Store,
    filter: &Filter,
    after: Option<&str>,
    limit: Option<u32>,
    now: UnixTime,
) -> Result<Page, Error> {
    let mut query = filter.query(now)?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::BadInput(format!("limit: between 1 and {MAX_LIMIT}")));
    }
    query.after = after.map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
    query.limit = limit + 1; // one more tells whether there is a next page
    let mut rows = store.users_page(&query).await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.username.clone())
    } else {
        None
    };
    let total = store.count_users(&query).await?;
    Ok(Page { users: rows.into_iter().map(UserView::from).collect(), next, total })
}

/// One of a person's upstream identities, with the raw memberships its last sign-in reported.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IdentityView {
    pub connector: String,
    pub subject: String,
    pub upstream_username: Option<String>,
    /// As the provider reported them (JSON), before the group rules.
    #[schema(value_type = Object)]
    pub memberships: serde_json::Value,
    #[schema(value_type = Option<i64>)]
    pub refreshed_at: Option<UnixTime>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// `browser` (a hubauth sign-in) or `grant` (what a hub holds).
    pub kind: String,
    pub id: String,
    pub connector: Option<String>,
    pub client_id: Option<String>,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<UnixTime>,
}

impl From<LiveSession> for SessionView {
    fn from(s: LiveSession) -> Self {
        SessionView {
            kind: s.kind,
            id: s.id,
            connector: s.connector_id,
            client_id: s.client_id,
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    #[schema(value_type = i64)]
    pub at: UnixTime,
    pub kind: String,
    pub reason: Option<String>,
    pub actor: Option<String>,
    pub connector: Option<String>,
    pub client_id: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

impl From<AuditEvent> for AuditView {
    fn from(e: AuditEvent) -> Self {
        AuditView {
            at: e.at,
            kind: e.kind,
            reason: e.reason,
            actor: e.actor,
            connector: e.connector_id,
            client_id: e.client_id,
            request_id: e.request_id,
            detail: e.detail,
        }
    }
}

/// Everything about one person.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Detail {
    #[serde(flatten)]
    pub user: UserView,
    pub identities: Vec<IdentityView>,
    /// The policy's reason code at their latest sign-in (e.g. `allowed_group`), from the audit log.
    pub admitted_by: Option<String>,
    #[schema(value_type = Option<i64>)]
    pub admitted_at: Option<UnixTime>,
    pub sessions: Vec<SessionView>,
    pub audit: Vec<AuditView>,
}

async fn row(store: &dyn Store, username: &str) -> Result<UserRow, Error> {
    let query = UserQuery { username: Some(username.to_owned()), limit: 1, ..Default::default() };
    store.users_page(&query).await?.pop().ok_or_else(|| Error::NotFound(username.to_owned()))
}

pub async fn detail(store: &dyn Store, username: &str, now: UnixTime) -> Result<Detail, Error> {
    let row = row(store, username).await?;
    let mut identities = Vec::new();
    for connector in &row.connectors {
        if let Some(i) = store.identity_of_user(&row.user_id, connector).await? {
            identities.push(IdentityView {
                connector: i.connector_id,
                subject: i.subject,
                upstream_username: i.upstream_username,
                memberships: serde_json::from_str(&i.memberships_json).unwrap_or(serde_json::Value::Null),
                refreshed_at: i.refreshed_at,
            });
        }
    }
    let sessions = store.live_sessions(&row.user_id, now, SESSION_LIMIT).await?;
    let audit = store.audit_events_of_user(&row.user_id, &row.username, AUDIT_LIMIT).await?;
    let login = audit.iter().find(|e| e.kind == "login");
    let (admitted_by, admitted_at) = (login.and_then(|e| e.reason.clone()), login.map(|e| e.at));
    Ok(Detail {
        user: row.into(),
        identities,
        admitted_by,
        admitted_at,
        sessions: sessions.into_iter().map(SessionView::from).collect(),
        audit: audit.into_iter().map(AuditView::from).collect(),
    })
}

/// What a change did to one person.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Outcome {
    pub username: String,
    /// `blocked`, `already_blocked`, `unblocked`, `not_blocked`, `sessions_revoked`, `deleted`,
    /// `not_found`, `skipped` (an admin's own account, for block or delete) or `failed`.
    pub outcome: String,
    pub revoked_grants: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    fn new(username: &str, outcome: &str, revoked_grants: u64) -> Self {
        Outcome { username: username.to_owned(), outcome: outcome.into(), revoked_grants, error: None }
    }

    pub fn failed(&self) -> bool {
        self.outcome == "failed"
    }
}

/// A change the console and the API make to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Block,
    Unblock,
    Revoke,
    Delete,
}

impl Change {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "block" => Ok(Change::Block),
            "unblock" => Ok(Change::Unblock),
            "revoke" | "revoke-sessions" | "revoke_sessions" => Ok(Change::Revoke),
            "delete" => Ok(Change::Delete),
            other => Err(Error::BadInput(format!("action: {other:?} is not block, unblock, revoke or delete"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Block => "block",
            Change::Unblock => "unblock",
            Change::Revoke => "revoke",
            Change::Delete => "delete",
        }
    }
}

fn event(kind: &str, username: &str, user_id: &str, now: UnixTime, detail: String) -> AuditEvent {
    AuditEvent {
        at: now,
        kind: kind.into(),
        username: Some(username.into()),
        user_id: Some(user_id.into()),
        detail: Some(detail),
        ..Default::default()
    }
}

/// Applies `change` to one person. Block and delete go through [`deprovision::run`] (revoke
/// first, then block or delete, audited as `user_blocked` / `user_deleted`).
/// An admin cannot block or delete themselves (they would lock themselves out of the console);
/// such a request comes back `skipped`.
pub async fn apply(store: &dyn Store, username: &str, change: Change, actor: &Actor, now: UnixTime) -> Outcome {
    if matches!(change, Change::Block | Change::Delete) && actor.name == username {
        let error = Some(format!("you cannot {} yourself", change.as_str()));
        return Outcome { error, ..Outcome::new(username, "skipped", 0) };
    }
    match apply_one(store, username, change, actor, now).await {
        Ok(o) => o,
        Err(e) => Outcome { error: Some(e.to_string()), ..Outcome::new(username, "failed", 0) },
    }
}

async fn apply_one(
    store: &dyn Store,
    username: &str,
    change: Change,
    actor: &Actor,
    now: UnixTime,
) -> Result<Outcome, StoreError> {
    let action = match change {
        Change::Block => Action::Block,
        Change::Delete => Action::Delete,
        Change::Unblock | Change::Revoke => {
            let Some(user) = store.user_by_username(username).await? else {
                return Ok(Outcome::new(username, "not_found", 0));
            };
            return Ok(if change == Change::Unblock {
                if store.unblock_user(&user.id).await? {
                    let e = event("user_unblocked", username, &user.id, now, format!("unblocked by {}", actor.name));
                    actor.audit(store, e).await;
                    Outcome::new(username, "unblocked", 0)
                } else {
                    Outcome::new(username, "not_blocked", 0)
                }
            } else {
                let n = store.revoke_user(&user.id, "revoked by an admin", now).await?;
                let detail = format!("sessions revoked by {}; {n} grant(s) revoked", actor.name);
                actor.audit(store, event("sessions_revoked", username, &user.id, now, detail)).await;
                Outcome::new(username, "sessions_revoked", n)
            });
        }
    };
    let names = [username.to_owned()];
    let out = deprovision::run(store, &names, action, None, true, actor, || now).await;
    let local = out.into_iter().next().map(|o| o.local);
    Ok(match local {
        Some(deprovision::Local::Blocked { revoked_grants }) => Outcome::new(username, "blocked", revoked_grants),
        Some(deprovision::Local::AlreadyBlocked { revoked_grants }) => {
            Outcome::new(username, "already_blocked", revoked_grants)
        }
        Some(deprovision::Local::Deleted { revoked_grants }) => Outcome::new(username, "deleted", revoked_grants),
        Some(deprovision::Local::NotFound) => Outcome::new(username, "not_found", 0),
        Some(deprovision::Local::Failed { error }) => {
            Outcome { error: Some(error), ..Outcome::new(username, "failed", 0) }
        }
        Some(_) | None => Outcome { error: Some("nothing was done".into()), ..Outcome::new(username, "failed", 0) },
    })
}

/// Who a bulk change is for: named people, or everyone a filter selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Usernames(Vec<String>),
    Matching(Filter),
}

/// The people `selection` names, in order, without duplicates: at most [`BULK_MAX`], else an
/// error saying how to narrow it. Named people who are not users stay (they come out `not_found`).
pub async fn resolve(store: &dyn Store, selection: &Selection, now: UnixTime) -> Result<Vec<String>, Error> {
    match selection {
        Selection::Usernames(names) => {
            let mut seen = std::collections::HashSet::new();
            let names: Vec<String> =
                names.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty() && seen.insert(n.clone())).collect();
            if names.is_empty() {
                return Err(Error::BadInput("no one is selected".into()));
            }
            if names.len() > BULK_MAX {
                return Err(Error::BadInput(format!(
                    "{} people are selected; a bulk change takes at most {BULK_MAX}",
                    names.len()
                )));
            }
            Ok(names)
        }
        Selection::Matching(filter) => {
            let mut query = filter.query(now)?;
            let total = store.count_users(&query).await?;
            if total > BULK_MAX as u64 {
                return Err(Error::BadInput(format!(
                    "{total} people match; a bulk change takes at most {BULK_MAX}: narrow the filter"
                )));
            }
            if total == 0 {
                return Err(Error::BadInput("no one matches this filter".into()));
            }
            query.limit = BULK_MAX as u32;
            Ok(store.users_page(&query).await?.into_iter().map(|r| r.username).collect())
        }
    }
}

/// Applies `change` to each of `usernames` on its own (one failing does not stop the others).
pub async fn bulk(
    store: &dyn Store,
    usernames: &[String],
    change: Change,
    actor: &Actor,
    now: impl Fn() -> UnixTime,
) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(usernames.len());
    for name in usernames {
        out.push(apply(store, name, change, actor, now()).await);
    }
    out
}
