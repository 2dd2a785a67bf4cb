//! Admitting a person: at sign-in and at every re-check, one path.
//!
//! A connector says which upstream account someone is. This module turns that into the hub user
//! who gets the tokens — the connector's username rule, then account links (an explicit
//! `users link`, or `link_by_verified_email`) — names their groups, asks the policy about *that*
//! user, and records the outcome. The web pages ([`crate::web::login`]) and the live re-check
//! ([`crate::policy::live`]) only bring the account and act on the typed answer.

use crate::app::AppState;
use crate::clock::UnixTime;
use crate::connectors::{Connector, Membership};
use crate::groups;
use crate::policy::{self, hub_users, Decision, HubUser, ReasonCode};
use crate::store::{AccessQuery, AuditEvent, Invite, Redemption, StoreError, UpstreamIdentity, UpstreamRecord, User};
use crate::web::request_id;

/// An upstream account, as its connector just read it.
pub struct Arrival<'a> {
    pub connector: &'a Connector,
    /// As the connector gave it: `username` is still the provider's.
    pub identity: UpstreamIdentity,
    pub memberships: &'a [Membership],
    pub record: UpstreamRecord,
}

/// How a sign-in ended.
#[derive(Debug)]
pub enum SignIn {
    /// Recorded: this user gets the tokens, for the decision's reason.
    Admitted { user: Box<User>, decision: Decision },
    /// The policy refused `username` (the user who would have got the tokens); audited.
    Refused { username: String, decision: Decision },
    /// The connector's username rule cannot make a hub username of the provider's; says why.
    UsernameInvalid(String),
    /// Another user already holds the username this account would get.
    UsernameTaken(String),
}

/// The outcome of making sure a user is still who and what the tokens say.
#[derive(Debug)]
pub enum Current {
    /// Still admitted; the user as now stored (groups possibly changed).
    Admitted(Box<User>),
    /// No longer admitted: every token and session of the user has been revoked.
    Revoked { code: ReasonCode, sentence: String },
}

/// The account made into the user the policy judges, and the judgement.
struct Judged {
    identity: UpstreamIdentity,
    record: UpstreamRecord,
    decision: Decision,
}

/// Username rule, account links, groups, policy — nothing written yet.
async fn judge(
    state: &AppState,
    arrival: Arrival<'_>,
    invites: &[Invite],
) -> Result<Result<Judged, String>, StoreError> {
    let Arrival { connector, mut identity, memberships, mut record } = arrival;
    let raw_username = identity.username.clone();
    identity.username = match connector.usernames.normalize(&raw_username) {
        Ok(name) => name,
        Err(why) => return Ok(Err(why)),
    };
    record.upstream_username = Some(raw_username);
    record.link_by_verified_email = state.config.identity.link_by_verified_email;
    let mut blocked = false;
    if let Some(target) = state.store.login_target(&identity, record.link_by_verified_email).await? {
        blocked = target.blocked;
        if !target.primary {
            // A linked account signs in as the user it is linked to, under their name.
            identity.username = target.user.username;
        }
    }
    let mut decision = admit(state, connector, &mut identity, &record, memberships, invites).await?;
    if blocked {
        // An administrator's block (`hubauth deprovision --block`) outranks every admitting rule.
        decision = Decision {
            allowed: false,
            admin: false,
            code: ReasonCode::BlockedUser,
            sentence: "an administrator has blocked this account".into(),
        };
    }
    Ok(Ok(Judged { identity, record, decision }))
}

/// Signs `arrival` in for `client_id`, with the workshop invite the browser carries, if any.
pub async fn sign_in(
    state: &AppState,
    arrival: Arrival<'_>,
    invite: Option<&Invite>,
    client_id: &str,
) -> Result<SignIn, StoreError> {
    let connector = arrival.connector;
    let connector_id = connector.id.as_str();
    let memberships = arrival.memberships;
    let invites = invite.map(std::slice::from_ref).unwrap_or_default();
    let Judged { mut identity, record, mut decision } = match judge(state, arrival, invites).await? {
        Ok(j) => j,
        Err(why) => {
            tracing::info!(connector = connector_id, %why, "sign-in refused: the username cannot be used");
            return Ok(SignIn::UsernameInvalid(why));
        }
    };
    let now = state.clock.now();
    let mut audit = AuditEvent {
        at: now,
        connector_id: Some(connector_id.into()),
        client_id: Some(client_id.into()),
        request_id: request_id::current(),
        ..Default::default()
    };
    if !decision.allowed {
        return Ok(refuse(state, &mut audit, identity.username, decision).await);
    }
    let mut user = match state.store.record_upstream_login(&identity, &record, now).await {
        Ok(u) => u,
        Err(StoreError::UsernameTaken(name)) => return Ok(SignIn::UsernameTaken(name)),
        Err(e) => return Err(e),
    };
    if user.username != identity.username {
        // Linked to someone else between the judgement and the write: judge the user who now
        // gets the tokens.
        identity.username = user.username.clone();
        decision = admit(state, connector, &mut identity, &record, memberships, invites).await?;
        if !decision.allowed {
            state.store.revoke_user(&user.id, decision.code.as_str(), now).await?;
            return Ok(refuse(state, &mut audit, user.username, decision).await);
        }
        user = state.store.record_upstream_login(&identity, &record, now).await?;
    }
    if let Some(i) = invite {
        match state.store.redeem_invite(&i.id, &user.id, now).await? {
            Redemption::Redeemed => tracing::info!(user = %user.username, invite = %i.id, "invite used"),
            Redemption::Closed if decision.code == ReasonCode::Invite => {
                // Used up by someone else a moment ago, and nothing else admits this person.
                let closed = Decision {
                    allowed: false,
                    admin: false,
                    code: ReasonCode::NotAllowed,
                    sentence: "the invitation you used has just been used up or withdrawn".into(),
                };
                state.store.revoke_user(&user.id, "invite closed", now).await?;
                return Ok(refuse(state, &mut audit, user.username, closed).await);
            }
            Redemption::Closed => {}
        }
    }
    state.metrics.login(connector_id, true, decision.code.as_str());
    tracing::info!(user = %user.username, connector = connector_id, client_id, reason = decision.code.as_str(), "user logged in");
    audit.kind = "login".into();
    audit.reason = Some(decision.code.as_str().into());
    audit.username = Some(user.username.clone());
    audit.user_id = Some(user.id.clone());
    audit.detail = Some(decision.sentence.clone());
    write_audit(state, &audit).await;
    Ok(SignIn::Admitted { user: Box::new(user), decision })
}

async fn refuse(state: &AppState, audit: &mut AuditEvent, username: String, decision: Decision) -> SignIn {
    let connector = audit.connector_id.as_deref().unwrap_or_default();
    state.metrics.login(connector, false, decision.code.as_str());
    tracing::info!(user = %username, connector, reason = decision.code.as_str(), "sign-in refused by the access policy");
    audit.kind = "login_denied".into();
    audit.reason = Some(decision.code.as_str().into());
    audit.username = Some(username.clone());
    audit.detail = Some(decision.sentence.clone());
    write_audit(state, audit).await;
    SignIn::Refused { username, decision }
}

/// Judges `user` again from their account as the connector just re-read it; records the new
/// groups, or revokes everything the user holds.
pub async fn recheck(
    state: &AppState,
    user: &User,
    arrival: Arrival<'_>,
    now: UnixTime,
) -> Result<Current, StoreError> {
    // Invites this person used keep admitting them (and granting their groups) while they hold.
    let invites = state.store.invites_of_user(&user.id, now).await?;
    let Judged { mut identity, record, decision } = match judge(state, arrival, &invites).await? {
        Ok(j) => j,
        Err(why) => return revoke(state, user, ReasonCode::UsernameInvalid, why, now).await,
    };
    if !decision.allowed {
        return revoke(state, user, decision.code, decision.sentence, now).await;
    }
    match state.store.record_recheck(&identity, &record, now).await {
        Ok(updated) => Ok(Current::Admitted(Box::new(updated))),
        Err(StoreError::UsernameTaken(name)) => {
            // The upstream renamed the account onto a name someone else holds: keep the old one.
            tracing::warn!(user = %user.username, new_name = %name, "upstream rename collides with another user; keeping the old username");
            identity.username = user.username.clone();
            Ok(Current::Admitted(Box::new(state.store.record_recheck(&identity, &record, now).await?)))
        }
        Err(e) => Err(e),
    }
}

/// The one decision for a sign-in and for every re-check: groups from the connector's rules,
/// static groups, the invites' groups, then the policy (and the admin group for admins, and the
/// groups of the allow-list entries naming the person), all written into `identity.groups`.
/// `identity.username` is the final hub username. The hub's API is asked only when its answer
/// can change the outcome.
async fn admit(
    state: &AppState,
    connector: &Connector,
    identity: &mut UpstreamIdentity,
    record: &UpstreamRecord,
    memberships: &[Membership],
    invites: &[Invite],
) -> Result<Decision, StoreError> {
    let mut names = connector.groups.names(memberships);
    groups::add_static(&state.config.static_groups, &identity.username, &mut names);
    add_missing(&mut names, invites.iter().flat_map(|i| i.groups.iter()));
    let query = AccessQuery {
        username: identity.username.clone(),
        verified_email: identity.email.clone().filter(|_| identity.email_verified),
        connector_id: connector.id.clone(),
        login: record.upstream_username.clone(),
    };
    let entries = state.store.matching_access_entries(&query, state.clock.now()).await?;
    let mut subject = policy::Subject {
        username: &identity.username,
        groups: &names,
        memberships,
        invited: !invites.is_empty(),
        allow_list: entries.first(),
        hub_user: HubUser::NotAsked,
    };
    let (global, own) = (&state.config.access, connector.access.as_ref());
    let mut decision = policy::decide(global, own, &subject);
    if policy::needs_hub(global, own, &decision) {
        subject.hub_user = hub_users::lookup(state, &identity.username).await;
        decision = policy::decide(global, own, &subject);
    }
    if decision.admin {
        add_missing(&mut names, state.config.access.admin_group.iter());
    }
    if decision.allowed {
        // After the policy: an entry's groups are claims for the hub, not a way into
        // `allowed_groups` or `admin_groups`.
        add_missing(&mut names, entries.iter().flat_map(|e| e.groups.iter()));
    }
    identity.groups = names;
    Ok(decision)
}

fn add_missing<'a>(names: &mut Vec<String>, more: impl Iterator<Item = &'a String>) {
    for g in more {
        if !names.contains(g) {
            names.push(g.clone());
        }
    }
}

/// Ends everything `user` holds (tokens, sessions) for `code`, and says so in the audit log.
pub async fn revoke(
    state: &AppState,
    user: &User,
    code: ReasonCode,
    sentence: String,
    now: UnixTime,
) -> Result<Current, StoreError> {
    let grants = state.store.revoke_user(&user.id, code.as_str(), now).await?;
    state.metrics.revoked(code.as_str());
    tracing::info!(user = %user.username, reason = code.as_str(), grants, "access revoked");
    let event = AuditEvent {
        at: now,
        kind: "access_revoked".into(),
        reason: Some(code.as_str().into()),
        username: Some(user.username.clone()),
        user_id: Some(user.id.clone()),
        request_id: request_id::current(),
        detail: Some(sentence.clone()),
        ..Default::default()
    };
    write_audit(state, &event).await;
    Ok(Current::Revoked { code, sentence })
}

async fn write_audit(state: &AppState, event: &AuditEvent) {
    if let Err(e) = state.store.record_audit(event).await {
        tracing::error!(error = %e, "could not write the audit log");
    }
}
