//! Creating, listing and revoking workshop invites.

use std::time::Duration;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::crypto::random::{random_value, value_hash};
use crate::store::{AuditEvent, Invite, Store, StoreResult};

/// What an admin asks for.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// How long the link works, e.g. "7d" (at most 366 days).
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String, example = "7d")]
    pub expires_in: Duration,
    #[serde(default)]
    pub max_uses: Option<i64>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub connector: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A created invite and its link (shown once: only the hash is stored).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedInvite {
    pub id: String,
    pub link: String,
    #[schema(value_type = i64)]
    pub expires_at: UnixTime,
}

const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

pub fn validate(config: &Config, new: &NewInvite) -> Result<(), String> {
    if new.expires_in.is_zero() || new.expires_in > MAX_LIFETIME {
        return Err("expires_in must be between 1s and one year".into());
    }
    if new.max_uses.is_some_and(|m| m < 1) {
        return Err("max_uses must be at least 1 (leave it out for no limit)".into());
    }
    if let Some(c) = &new.connector {
        if !config.connectors.iter().any(|k| k.id() == c) {
            return Err(format!("there is no connector {c:?}"));
        }
    }
    if new.groups.iter().any(|g| g.trim().is_empty() || g.len() > 200) {
        return Err("group names must be non-empty and at most 200 characters".into());
    }
    if new.note.as_deref().is_some_and(|n| n.len() > 500) {
        return Err("the note is longer than 500 characters".into());
    }
    Ok(())
}

pub async fn create(
    store: &dyn Store,
    config: &Config,
    new: &NewInvite,
    actor: &super::Actor,
    now: UnixTime,
) -> anyhow::Result<CreatedInvite> {
    validate(config, new).map_err(|m| anyhow::anyhow!(m))?;
    let token = random_value();
    let invite = Invite {
        // Letters and digits only: the id is typed back on command lines, where a leading `-`
        // reads as an option. Not a secret (the token is), just unique.
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        token_hash: value_hash(&token),
        note: new.note.clone(),
        groups: new.groups.clone(),
        connector_id: new.connector.clone(),
        max_uses: new.max_uses,
        uses: 0,
        created_at: now,
        expires_at: now + new.expires_in.as_secs() as i64,
        revoked_at: None,
    };
    store.create_invite(&invite).await?;
    let mut detail = format!("invite {} created, expires at {}", invite.id, invite.expires_at);
    if !invite.groups.is_empty() {
        detail.push_str(&format!("; groups {}", invite.groups.join(", ")));
    }
    if let Some(m) = invite.max_uses {
        detail.push_str(&format!("; at most {m} uses"));
    }
    let event = AuditEvent {
        at: now,
        kind: "invite_created".into(),
        reason: Some(format!("invite:{}", invite.id)),
        connector_id: invite.connector_id.clone(),
        detail: Some(detail),
        ..Default::default()
    };
    actor.audit(store, event).await;
    Ok(CreatedInvite {
        id: invite.id,
        link: config.endpoint(&format!("/invite/{token}")),
        expires_at: invite.expires_at,
    })
}

/// Revokes the invite and audits it; false if there was no open invite with this id.
pub async fn revoke(store: &dyn Store, id: &str, actor: &super::Actor, now: UnixTime) -> StoreResult<bool> {
    let revoked = store.revoke_invite(id, now).await?;
    if revoked {
        let event = AuditEvent {
            at: now,
            kind: "invite_revoked".into(),
            reason: Some(format!("invite:{id}")),
            detail: Some(format!("invite {id} revoked")),
            ..Default::default()
        };
        actor.audit(store, event).await;
    }
    Ok(revoked)
}

/// An invite as admins see it (never the token).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct InviteView {
    pub id: String,
    pub note: Option<String>,
    pub groups: Vec<String>,
    pub connector: Option<String>,
    pub uses: i64,
    pub max_uses: Option<i64>,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    #[schema(value_type = i64)]
    pub expires_at: UnixTime,
    pub state: &'static str,
}

pub fn view(i: &Invite, now: UnixTime) -> InviteView {
    let state = if i.revoked_at.is_some() {
        "revoked"
    } else if i.expires_at <= now {
        "expired"
    } else if i.max_uses.is_some_and(|m| i.uses >= m) {
        "used up"
    } else {
        "open"
    };
    InviteView {
        id: i.id.clone(),
        note: i.note.clone(),
        groups: i.groups.clone(),
        connector: i.connector_id.clone(),
        uses: i.uses,
        max_uses: i.max_uses,
        created_at: i.created_at,
        expires_at: i.expires_at,
        state,
    }
}
