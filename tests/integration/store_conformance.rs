//! One storage suite, run against every backend. A new backend adds one line to `backends!`.

use std::sync::Arc;

use hubauth::crypto::SigningAlgorithm;
use hubauth::store::*;

fn identity(connector: &str, subject: &str, username: &str) -> UpstreamIdentity {
    UpstreamIdentity {
        connector_id: connector.into(),
        subject: subject.into(),
        username: username.into(),
        name: Some("N".into()),
        email: Some(format!("{username}@example.org")),
        email_verified: true,
        groups: vec!["g1".into()],
    }
}

fn tokens(access: &str, refresh: Option<&str>, now: i64) -> IssuedTokens {
    IssuedTokens {
        access_hash: access.into(),
        access_scope: "openid".into(),
        access_expires_at: now + 600,
        refresh: refresh.map(|r| (r.to_string(), now + 3600)),
        created_at: now,
    }
}

fn grant(user: &User, id: &str) -> Grant {
    Grant {
        id: id.into(),
        client_id: "c".into(),
        user_id: user.id.clone(),
        session_id: None,
        scope: "openid".into(),
        auth_time: 1,
        created_at: 1,
    }
}

async fn grant_for(store: &dyn Store, user: &User, id: &str, access: &str, refresh: &str) {
    store.create_grant(&grant(user, id), &tokens(access, Some(refresh), 1)).await.unwrap();
}

/// What `/healthz` asks: a fresh store answers, and keeps answering after writes.
async fn a_working_store_reports_healthy(store: Arc<dyn Store>) {
    store.health().await.unwrap();
    store.upsert_user_for_identity(&identity("dev", "s1", "ada"), 1).await.unwrap();
    store.health().await.unwrap();
}

async fn users_are_keyed_by_upstream_identity(store: Arc<dyn Store>) {
    let a = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    let again = store
        .upsert_user_for_identity(&UpstreamIdentity { groups: vec!["g2".into()], ..identity("dev", "u1", "ada") }, 2)
        .await
        .unwrap();
    assert_eq!(a.id, again.id, "same upstream identity, same sub");
    assert_eq!(again.groups, vec!["g2".to_string()], "profile refreshed at login");
    assert_eq!(again.updated_at, 2);
    // Another identity claiming the same username is refused, not merged.
    let clash = store.upsert_user_for_identity(&identity("other", "x", "ada"), 3).await;
    assert!(matches!(clash, Err(StoreError::UsernameTaken(_))));
    let b = store.upsert_user_for_identity(&identity("dev", "u2", "sam"), 3).await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(store.user_by_username("sam").await.unwrap().unwrap().id, b.id);
    assert_eq!(store.user_by_id(&a.id).await.unwrap().unwrap().username, "ada");
    assert!(store.user_by_id("missing").await.unwrap().is_none());
}

async fn redeem(store: &dyn Store, hash: &str, grant: &Grant, tokens: &IssuedTokens, now: i64) -> CodeRedemption {
    store.redeem_authorization_code(hash, grant, tokens, now).await.unwrap()
}

/// Code `h1` of client `c` for `user`, live until 61.
fn code_h1(user: &User) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: "h1".into(),
        client_id: "c".into(),
        user_id: user.id.clone(),
        session_id: None,
        request_json: "{}".into(),
        auth_time: 1,
        created_at: 1,
        expires_at: 61,
    }
}

async fn codes_redeem_once_and_a_replay_revokes_their_grant(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    store.create_authorization_code(&code_h1(&u)).await.unwrap();
    let read = store.authorization_code("h1").await.unwrap().unwrap();
    assert!(!read.spent && read.code.expires_at == 61 && read.code.user_id == u.id);
    assert!(store.authorization_code("nope").await.unwrap().is_none());

    let other_client = Grant { client_id: "other".into(), ..grant(&u, "gx") };
    let outcome = redeem(store.as_ref(), "h1", &other_client, &tokens("ax", Some("rx"), 2), 2).await;
    assert!(matches!(outcome, CodeRedemption::Unknown), "not that client's code");
    assert!(!store.authorization_code("h1").await.unwrap().unwrap().spent);

    let outcome = redeem(store.as_ref(), "h1", &grant(&u, "g1"), &tokens("a1", Some("r1"), 2), 2).await;
    assert!(matches!(outcome, CodeRedemption::Redeemed { user } if user.username == "ada"));
    assert!(store.authorization_code("h1").await.unwrap().unwrap().spent);
    assert!(store.access_token("a1", 3).await.unwrap().is_some(), "the grant and its tokens are recorded");

    // A replay, even after expiry, revokes the grant the first use recorded.
    let outcome = redeem(store.as_ref(), "h1", &grant(&u, "g2"), &tokens("a2", Some("r2"), 70), 70).await;
    match outcome {
        CodeRedemption::Replayed { grant_id } => assert_eq!(grant_id.as_deref(), Some("g1")),
        other => panic!("expected replay, got {other:?}"),
    }
    assert!(store.access_token("a1", 70).await.unwrap().is_none());
    assert!(store.refresh_token("r1", 70).await.unwrap().is_none());
    assert!(store.access_token("a2", 70).await.unwrap().is_none(), "a replay records nothing");
    let outcome = redeem(store.as_ref(), "nope", &grant(&u, "g3"), &tokens("a3", None, 3), 3).await;
    assert!(matches!(outcome, CodeRedemption::Unknown));
}

/// A live code past its expiry is not redeemed.
async fn expired_codes_do_not_redeem(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    store.create_authorization_code(&code_h1(&u)).await.unwrap();
    let outcome = redeem(store.as_ref(), "h1", &grant(&u, "g1"), &tokens("a1", None, 61), 61).await;
    assert!(matches!(outcome, CodeRedemption::Unknown));
    assert!(store.access_token("a1", 61).await.unwrap().is_none());
}

/// Rotates `old` (read just before, as the token endpoint does) issuing `tokens`
/// unconditionally, without a reuse grace.
async fn rotate(store: &dyn Store, old: &str, client: &str, tokens: IssuedTokens, now: i64) -> RefreshRotation {
    rotate_seen(store, old, client, tokens, now, 0).await
}

async fn rotate_with_grace(
    store: &dyn Store,
    old: &str,
    tokens: IssuedTokens,
    now: i64,
    grace: i64,
) -> RefreshRotation {
    rotate_seen(store, old, "c", tokens, now, grace).await
}

async fn rotate_seen(
    store: &dyn Store,
    old: &str,
    client: &str,
    tokens: IssuedTokens,
    now: i64,
    grace: i64,
) -> RefreshRotation {
    let Some(seen) = store.presented_refresh_token(old).await.unwrap() else {
        return RefreshRotation::Invalid;
    };
    store.rotate_refresh_token(seen, client, now, grace, Box::new(move |_, _| Some(tokens))).await.unwrap()
}

/// Whether `hash` is a refresh token whose login holds for client `client` at `now`.
async fn holds(store: &dyn Store, hash: &str, client: &str, now: i64) -> bool {
    store.presented_refresh_token(hash).await.unwrap().is_some_and(|p| p.holds_for(client, now))
}

/// The rotation judges the read it is handed, which may be stale by the time it runs (the
/// person is re-checked in between): a token rotated meanwhile is read again and judged as it
/// is now — the retry of a lost answer within the grace, reuse without one — and never spent
/// twice.
async fn a_rotation_judged_on_a_stale_read_reads_again(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    grant_for(store.as_ref(), &u, "g1", "a1", "r1").await;
    let stale = store.presented_refresh_token("r1").await.unwrap().unwrap();
    assert_eq!(stale.token_hash, "r1");
    assert_eq!(stale.user.id, u.id);
    assert!(matches!(
        rotate_with_grace(store.as_ref(), "r1", tokens("a2", Some("r2"), 5), 5, 30).await,
        RefreshRotation::Rotated { .. }
    ));
    let t = tokens("a3", Some("r3"), 6);
    match store.rotate_refresh_token(stale.clone(), "c", 6, 30, Box::new(move |_, _| Some(t))).await.unwrap() {
        RefreshRotation::Retried { grant, .. } => assert_eq!(grant.id, "g1"),
        other => panic!("a stale read within the grace is a retry: {other:?}"),
    }
    assert!(store.refresh_token("r2", 6).await.unwrap().is_none(), "the unseen successor is withdrawn");
    assert!(store.refresh_token("r3", 6).await.unwrap().is_some());

    grant_for(store.as_ref(), &u, "g2", "b1", "s1").await;
    let stale = store.presented_refresh_token("s1").await.unwrap().unwrap();
    assert!(matches!(
        rotate(store.as_ref(), "s1", "c", tokens("b2", Some("s2"), 5), 5).await,
        RefreshRotation::Rotated { .. }
    ));
    let t = tokens("b3", Some("s3"), 6);
    assert!(matches!(
        store.rotate_refresh_token(stale, "c", 6, 0, Box::new(move |_, _| Some(t))).await.unwrap(),
        RefreshRotation::Reused { .. }
    ));
    assert!(store.access_token("b2", 6).await.unwrap().is_none(), "family revoked");
    assert!(store.refresh_token("s3", 6).await.unwrap().is_none(), "nothing issued to the stale read");
}

/// Within the grace, the token just rotated away may come back while its successor is unused:
/// the successor's pair is withdrawn and a new one stored. Nothing else is forgiven.
async fn the_reuse_grace_forgives_only_a_lost_answer(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    grant_for(store.as_ref(), &u, "g1", "a1", "r1").await;
    assert!(holds(store.as_ref(), "r1", "c", 2).await);
    assert!(!holds(store.as_ref(), "r1", "other", 2).await);
    assert!(matches!(
        rotate_with_grace(store.as_ref(), "r1", tokens("a2", Some("r2"), 5), 5, 30).await,
        RefreshRotation::Rotated { .. }
    ));
    assert!(holds(store.as_ref(), "r1", "c", 6).await, "spent, but its login holds");
    assert!(matches!(
        rotate_with_grace(store.as_ref(), "r1", tokens("a3", Some("r3"), 20), 20, 30).await,
        RefreshRotation::Retried { .. }
    ));
    assert!(store.access_token("a2", 20).await.unwrap().is_none(), "the lost pair is withdrawn");
    assert!(store.refresh_token("r2", 20).await.unwrap().is_none());
    assert!(store.access_token("a3", 20).await.unwrap().is_some());
    // The grace runs from the first rotation, however often it is retried.
    assert!(matches!(
        rotate_with_grace(store.as_ref(), "r1", tokens("a4", Some("r4"), 34), 34, 30).await,
        RefreshRotation::Retried { .. }
    ));
    assert!(matches!(
        rotate_with_grace(store.as_ref(), "r1", tokens("a5", Some("r5"), 35), 35, 30).await,
        RefreshRotation::Reused { .. }
    ));
    assert!(store.access_token("a4", 35).await.unwrap().is_none(), "family revoked");
    assert!(!holds(store.as_ref(), "r4", "c", 35).await);

    grant_for(store.as_ref(), &u, "g2", "b1", "s1").await;
    assert!(matches!(
        rotate_with_grace(store.as_ref(), "s1", tokens("b2", Some("s2"), 5), 5, 30).await,
        RefreshRotation::Rotated { .. }
    ));
    assert!(matches!(
        rotate_with_grace(store.as_ref(), "s2", tokens("b3", Some("s3"), 6), 6, 30).await,
        RefreshRotation::Rotated { .. }
    ));
    assert!(
        matches!(
            rotate_with_grace(store.as_ref(), "s1", tokens("b4", Some("s4"), 7), 7, 30).await,
            RefreshRotation::Reused { .. }
        ),
        "its successor was used"
    );
    assert!(store.access_token("b3", 7).await.unwrap().is_none(), "family revoked");
}

async fn refresh_rotation_and_reuse(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    grant_for(store.as_ref(), &u, "g1", "a1", "r1").await;
    match rotate(store.as_ref(), "r1", "c", tokens("a2", Some("r2"), 5), 5).await {
        RefreshRotation::Rotated { grant, user, scope } => {
            assert_eq!(grant.id, "g1");
            assert_eq!(scope, "openid");
            assert_eq!(user.id, u.id);
        }
        other => panic!("{other:?}"),
    }
    assert!(store.access_token("a2", 6).await.unwrap().is_some());
    assert!(matches!(
        rotate(store.as_ref(), "r2", "other-client", tokens("x", Some("y"), 6), 6).await,
        RefreshRotation::Invalid
    ));
    assert!(matches!(
        rotate(store.as_ref(), "r1", "c", tokens("a3", Some("r3"), 7), 7).await,
        RefreshRotation::Reused { .. }
    ));
    assert!(store.access_token("a2", 8).await.unwrap().is_none(), "family revoked");
    assert!(store.refresh_token("r2", 8).await.unwrap().is_none());
    assert!(matches!(
        rotate(store.as_ref(), "r2", "c", tokens("a4", Some("r4"), 9), 9).await,
        RefreshRotation::Invalid
    ));
    assert!(matches!(rotate(store.as_ref(), "missing", "c", tokens("a5", None, 9), 9).await, RefreshRotation::Invalid));
}

async fn a_declined_rotation_changes_nothing(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    grant_for(store.as_ref(), &u, "g1", "a1", "r1").await;
    let decline = Box::new(|grant: &Grant, user: &User| {
        assert_eq!((grant.id.as_str(), user.username.as_str()), ("g1", "ada"));
        None
    });
    let seen = store.presented_refresh_token("r1").await.unwrap().unwrap();
    let outcome = store.rotate_refresh_token(seen, "c", 5, 0, decline);
    assert!(matches!(outcome.await.unwrap(), RefreshRotation::Declined));
    assert!(store.refresh_token("r1", 6).await.unwrap().is_some(), "not spent");
    assert!(matches!(
        rotate(store.as_ref(), "r1", "c", tokens("a2", Some("r2"), 7), 7).await,
        RefreshRotation::Rotated { .. }
    ));
}

/// Writes racing each other: one that fails must leave no trace and must not take others down
/// with it (backends may commit concurrent writes together).
async fn concurrent_writes_fail_alone(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        // Every even subject asks for the username an odd one already wants: half must be refused.
        let username = format!("user{}", i / 2);
        tasks.push(tokio::spawn(async move {
            store.upsert_user_for_identity(&identity("dev", &format!("s{i}"), &username), 1).await
        }));
    }
    let (mut created, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::UsernameTaken(_)) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, refused), (20, 20));
    for n in 0..20 {
        assert!(store.user_by_username(&format!("user{n}")).await.unwrap().is_some());
    }
    // A refused identity was not half-created: it can still be given a free username.
    let mut late = 0;
    for i in 0..40 {
        if store.upsert_user_for_identity(&identity("dev", &format!("s{i}"), &format!("late{i}")), 2).await.is_ok() {
            late += 1;
        }
    }
    assert_eq!(late, 40, "every identity, refused or not, can log in under a free name");
}

async fn invites_count_people_once_and_close(store: Arc<dyn Store>) {
    let a = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    let b = store.upsert_user_for_identity(&identity("dev", "u2", "bob"), 1).await.unwrap();
    let invite = Invite {
        id: "inv1".into(),
        token_hash: "th".into(),
        note: None,
        groups: vec!["w".into()],
        connector_id: None,
        max_uses: Some(1),
        uses: 0,
        created_at: 1,
        expires_at: 100,
        revoked_at: None,
    };
    store.create_invite(&invite).await.unwrap();
    assert_eq!(store.redeem_invite("inv1", &a.id, 2).await.unwrap(), Redemption::Redeemed);
    assert_eq!(store.redeem_invite("inv1", &a.id, 3).await.unwrap(), Redemption::Redeemed, "the same person again");
    assert_eq!(store.invite_by_token("th").await.unwrap().unwrap().uses, 1, "counted once");
    assert_eq!(store.redeem_invite("inv1", &b.id, 4).await.unwrap(), Redemption::Closed, "used up");
    assert_eq!(store.invites_of_user(&a.id, 5).await.unwrap().len(), 1);
    assert!(store.invites_of_user(&b.id, 5).await.unwrap().is_empty());
    assert!(store.invites_of_user(&a.id, 100).await.unwrap().is_empty(), "expired");
    assert!(store.revoke_invite("inv1", 6).await.unwrap());
    assert!(!store.revoke_invite("inv1", 7).await.unwrap());
    assert!(store.invites_of_user(&a.id, 8).await.unwrap().is_empty(), "revoked");
    assert_eq!(store.redeem_invite("inv1", &a.id, 9).await.unwrap(), Redemption::Closed);
}

/// Many people racing for the last places of an invite: exactly as many get in as it allows,
/// and one person redeeming twice at once is counted once.
async fn invite_places_hold_under_concurrency(store: Arc<dyn Store>) {
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(
            store.upsert_user_for_identity(&identity("dev", &format!("u{i}"), &format!("p{i}")), 1).await.unwrap(),
        );
    }
    let invite = Invite {
        id: "inv2".into(),
        token_hash: "th2".into(),
        note: None,
        groups: vec![],
        connector_id: None,
        max_uses: Some(5),
        uses: 0,
        created_at: 1,
        expires_at: 100,
        revoked_at: None,
    };
    store.create_invite(&invite).await.unwrap();
    let redeem = |user_id: String| {
        let store = store.clone();
        async move { store.redeem_invite("inv2", &user_id, 2).await.unwrap() }
    };
    let mut racers: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    racers.extend(std::iter::repeat_n(users[0].id.clone(), 5));
    let outcomes = futures_util::future::join_all(racers.into_iter().map(redeem)).await;
    let people_in: std::collections::HashSet<_> = outcomes
        .iter()
        .zip(users.iter().map(|u| u.id.clone()).chain(std::iter::repeat_n(users[0].id.clone(), 5)))
        .filter(|(o, _)| **o == Redemption::Redeemed)
        .map(|(_, u)| u)
        .collect();
    assert_eq!(people_in.len(), 5, "{outcomes:?}");
    assert_eq!(store.invite_by_token("th2").await.unwrap().unwrap().uses, 5);
    for u in &users {
        let holds = !store.invites_of_user(&u.id, 3).await.unwrap().is_empty();
        assert_eq!(holds, people_in.contains(&u.id), "a redemption is recorded exactly for those counted");
    }
}

/// Uniqueness the backend enforces comes back as a typed error, not a storage failure.
async fn taken_identities_are_typed_errors(store: Arc<dyn Store>) {
    let a = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    let b = store.upsert_user_for_identity(&identity("dev", "u2", "bob"), 1).await.unwrap();
    store.link_identity(&a.id, "uni", "kc-1", 2).await.unwrap();
    store.link_identity(&a.id, "uni", "kc-1", 3).await.expect("linking it to its own user again is fine");
    match store.link_identity(&b.id, "uni", "kc-1", 4).await {
        Err(StoreError::IdentityTaken { connector_id, subject }) => {
            assert_eq!((connector_id.as_str(), subject.as_str()), ("uni", "kc-1"))
        }
        other => panic!("expected IdentityTaken, got {other:?}"),
    }
    match store.upsert_user_for_identity(&identity("dev", "u3", "ada"), 5).await {
        Err(StoreError::UsernameTaken(name)) => assert_eq!(name, "ada"),
        other => panic!("expected UsernameTaken, got {other:?}"),
    }
}

async fn token_lookups_honour_expiry_and_revocation(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    grant_for(store.as_ref(), &u, "g1", "a1", "r1").await;
    let at = store.access_token("a1", 2).await.unwrap().unwrap();
    assert_eq!(at.user.username, "ada");
    assert_eq!(at.expires_at, 601);
    assert!(store.access_token("a1", 601).await.unwrap().is_none(), "expired");
    assert!(store.revoke_access_token("a1", 3).await.unwrap());
    assert!(store.access_token("a1", 4).await.unwrap().is_none());
    assert!(store.refresh_token("r1", 4).await.unwrap().is_some(), "only the access token was revoked");
    store.revoke_grant("g1", "test", 5).await.unwrap();
    assert!(store.refresh_token("r1", 6).await.unwrap().is_none());
}

async fn sessions_and_pending_requests(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    let s = BrowserSession {
        id: "s1".into(),
        token_hash: "th".into(),
        user_id: u.id.clone(),
        connector_id: "dev".into(),
        csrf_token: "c".into(),
        auth_time: 1,
        created_at: 1,
        expires_at: 100,
    };
    store.create_browser_session(&s).await.unwrap();
    assert_eq!(store.browser_session("th", 50).await.unwrap().unwrap().id, "s1");
    assert!(store.browser_session("th", 100).await.unwrap().is_none(), "expired");
    store.end_browser_session("s1", 60).await.unwrap();
    assert!(store.browser_session("th", 61).await.unwrap().is_none(), "ended");

    let p = PendingAuthorization {
        id: "p1".into(),
        request_json: "{\"a\":1}".into(),
        browser_binding_hash: "b".into(),
        csrf_token: "c".into(),
        client_address: String::new(),
        created_at: 1,
        expires_at: 10,
    };
    let roomy = PendingLimits { per_browser: 10, per_address: 10, total: 10 };
    assert_eq!(store.create_pending_authorization(&p, roomy).await.unwrap(), PendingAdmission::Stored);
    assert_eq!(store.pending_authorization("p1", 5).await.unwrap().unwrap().request_json, "{\"a\":1}");
    assert!(store.pending_authorization("p1", 10).await.unwrap().is_none());
    assert!(store.delete_pending_authorization("p1").await.unwrap());
    assert!(!store.delete_pending_authorization("p1").await.unwrap(), "single use");
}

fn pending(id: &str, browser: &str, address: &str, created_at: i64) -> PendingAuthorization {
    PendingAuthorization {
        id: id.into(),
        request_json: "{}".into(),
        browser_binding_hash: browser.into(),
        csrf_token: "c".into(),
        client_address: address.into(),
        created_at,
        expires_at: created_at + 100,
    }
}

async fn pending_requests_are_capped(store: Arc<dyn Store>) {
    let limits = PendingLimits { per_browser: 3, per_address: 4, total: 7 };
    let live = |id: &'static str| {
        let store = store.clone();
        async move { store.pending_authorization(id, 10).await.unwrap().is_some() }
    };
    // One browser: its oldest beyond 3 are dropped, the new one always lands.
    for (i, id) in ["b1", "b2", "b3", "b4", "b5"].into_iter().enumerate() {
        let admitted = store.create_pending_authorization(&pending(id, "browser", "", i as i64), limits).await.unwrap();
        assert_eq!(admitted, PendingAdmission::Stored);
    }
    assert_eq!(
        [live("b1").await, live("b2").await, live("b3").await, live("b4").await, live("b5").await],
        [false, false, true, true, true]
    );
    // One address, many browsers: the fifth is refused and nothing is stored for it.
    for id in ["a1", "a2", "a3", "a4"] {
        let p = pending(id, id, "192.0.2.7", 5);
        assert_eq!(store.create_pending_authorization(&p, limits).await.unwrap(), PendingAdmission::Stored);
    }
    // 7 live now: the total is reached first, then (with room in all) the address's cap.
    let p = pending("a5", "a5", "192.0.2.7", 5);
    assert_eq!(store.create_pending_authorization(&p, limits).await.unwrap(), PendingAdmission::Full);
    let roomier = PendingLimits { total: 100, ..limits };
    assert_eq!(store.create_pending_authorization(&p, roomier).await.unwrap(), PendingAdmission::AddressFull);
    assert!(!live("a5").await);
    // Lapsed ones do not count.
    let later = pending("a6", "a6", "192.0.2.7", 200);
    assert_eq!(store.create_pending_authorization(&later, roomier).await.unwrap(), PendingAdmission::Stored);
}

/// More expired rows than one purge batch: all go, over several short transactions.
async fn purge_goes_through_every_batch(store: Arc<dyn Store>) {
    let many = PURGE_BATCH as usize * 2 + 7;
    let limits = PendingLimits { per_browser: 1, per_address: u32::MAX, total: u32::MAX };
    let writes = (0..many).map(|i| {
        let store = store.clone();
        async move {
            let p = pending(&format!("p{i}"), &format!("b{i}"), "", 1);
            store.create_pending_authorization(&p, limits).await.unwrap()
        }
    });
    futures_util::future::join_all(writes).await;
    assert_eq!(store.purge_expired(1000).await.unwrap(), many as u64);
    assert!(store.pending_authorization("p0", 50).await.unwrap().is_none());
    assert_eq!(store.purge_expired(1000).await.unwrap(), 0);
}

async fn signing_keys_rotate_and_expire(store: Arc<dyn Store>) {
    let key = |kid: &str, created: i64| StoredSigningKey {
        kid: kid.into(),
        alg: SigningAlgorithm::ES256,
        private_key: StoredPrivateKey::Plain(vec![1, 2, 3]),
        created_at: created,
        rotated_at: None,
        expires_at: None,
        verify_until: None,
    };
    assert!(store.create_first_signing_key(&key("k1", 1), 1).await.unwrap(), "no key yet: created");
    assert!(!store.create_first_signing_key(&key("k1b", 2), 2).await.unwrap(), "one is active: not created");
    store.rotate_signing_key(&key("k2", 5), 5, 50, 80).await.unwrap();
    let active = |keys: &[StoredSigningKey]| -> Vec<String> {
        keys.iter().filter(|k| k.rotated_at.is_none()).map(|k| k.kid.clone()).collect()
    };
    assert_eq!(active(&store.signing_keys().await.unwrap()), vec!["k2"], "rotation retires and inserts at once");
    let keys = store.signing_keys().await.unwrap();
    let k1 = keys.iter().find(|k| k.kid == "k1").unwrap();
    assert_eq!((k1.rotated_at, k1.expires_at, k1.verify_until), (Some(5), Some(50), Some(80)));
    assert!(k1.private_key == StoredPrivateKey::Plain(vec![1, 2, 3]));
    // Sealing replaces the private half in place.
    let sealed = StoredPrivateKey::Sealed("v1.abcd.sealed".into());
    store.replace_signing_key_private("k1", &sealed).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert!(keys.iter().find(|k| k.kid == "k1").unwrap().private_key == sealed);
    assert!(keys.iter().find(|k| k.kid == "k2").unwrap().rotated_at.is_none());
    store.purge_expired(51).await.unwrap();
    assert_eq!(store.signing_keys().await.unwrap().len(), 2, "out of the JWKS, still verifying");
    store.purge_expired(81).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid, "k2");
}

async fn the_first_signing_key_is_created_once_under_concurrency(store: Arc<dyn Store>) {
    let creations = (0..20).map(|i| {
        let store = store.clone();
        async move {
            let key = StoredSigningKey {
                kid: format!("k{i}"),
                alg: SigningAlgorithm::RS256,
                private_key: StoredPrivateKey::Plain(vec![i]),
                created_at: 1,
                rotated_at: None,
                expires_at: None,
                verify_until: None,
            };
            store.create_first_signing_key(&key, 1).await.unwrap()
        }
    });
    let created = futures_util::future::join_all(creations).await;
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.rotated_at.is_none()).count(), 1);
}

async fn purge_keeps_what_is_still_usable(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    grant_for(store.as_ref(), &u, "g1", "a1", "r1").await;
    store.purge_expired(500).await.unwrap();
    assert!(store.access_token("a1", 500).await.unwrap().is_some());
    store.purge_expired(700).await.unwrap();
    assert!(store.access_token("a1", 500).await.unwrap().is_none(), "expired access token purged");
    assert!(store.refresh_token("r1", 700).await.unwrap().is_some(), "refresh token still valid");
}

/// What a login leaves with the identity (memberships, the provider's username, sealed tokens)
/// reads back the same through every lookup; a re-check refreshes it without being a sign-in.
async fn upstream_records_read_back(store: Arc<dyn Store>) {
    let record = UpstreamRecord {
        memberships_json: r#"[{"kind":"org","name":"carpentries"}]"#.into(),
        upstream_username: Some("Ada.L".into()),
        link_by_verified_email: false,
        tokens_sealed: Some("sealed-1".into()),
        tokens_expire_at: Some(500),
    };
    let ada = store.record_upstream_login(&identity("gh", "7", "ada"), &record, 10).await.unwrap();
    assert_eq!(ada.last_login_at, Some(10));
    let stored = store.upstream_of("gh", "7").await.unwrap().unwrap();
    assert_eq!(
        (stored.user_id.as_str(), stored.memberships_json.as_str(), stored.upstream_username.as_deref()),
        (ada.id.as_str(), record.memberships_json.as_str(), Some("Ada.L"))
    );
    assert_eq!(
        (stored.tokens_sealed.as_deref(), stored.tokens_expire_at, stored.refreshed_at),
        (Some("sealed-1"), Some(500), Some(10))
    );
    assert!(store.upstream_of("gh", "8").await.unwrap().is_none());
    assert_eq!(store.identity_of_user(&ada.id, "gh").await.unwrap().unwrap().subject, "7");
    assert!(store.identity_of_user(&ada.id, "google").await.unwrap().is_none());

    // A second identity, re-checked later, is the one the user was most recently seen through.
    store.link_identity(&ada.id, "google", "g-1", 20).await.unwrap();
    let recheck = UpstreamRecord { upstream_username: None, tokens_sealed: Some("sealed-g".into()), ..record.clone() };
    let again = store
        .record_recheck(
            &UpstreamIdentity { groups: vec!["g9".into()], ..identity("google", "g-1", "ada") },
            &recheck,
            30,
        )
        .await
        .unwrap();
    assert_eq!(
        (again.id.as_str(), again.last_login_at, again.updated_at),
        (ada.id.as_str(), Some(10), 30),
        "a re-check is not a sign-in"
    );
    assert_eq!(again.groups, vec!["g9".to_string()]);
    let latest = store.upstream_for_user(&ada.id).await.unwrap().unwrap();
    assert_eq!((latest.connector_id.as_str(), latest.tokens_sealed.as_deref()), ("google", Some("sealed-g")));

    // Tokens replaced after a refresh, then forgotten when the upstream session ends.
    store.update_upstream_tokens("gh", "7", Some("sealed-2"), Some(900)).await.unwrap();
    let refreshed = store.upstream_of("gh", "7").await.unwrap().unwrap();
    assert_eq!((refreshed.tokens_sealed.as_deref(), refreshed.tokens_expire_at), (Some("sealed-2"), Some(900)));
    assert_eq!(refreshed.upstream_username.as_deref(), Some("Ada.L"), "kept when a login does not say");
    store.update_upstream_tokens("gh", "7", None, None).await.unwrap();
    assert!(store.upstream_of("gh", "7").await.unwrap().unwrap().tokens_sealed.is_none());

    store.upsert_user_for_identity(&identity("dev", "s", "bob"), 40).await.unwrap();
    let all = store.all_identities().await.unwrap();
    let listed: Vec<(String, String, String)> =
        all.iter().map(|(i, name)| (name.clone(), i.connector_id.clone(), i.subject.clone())).collect();
    assert_eq!(
        listed,
        [("ada", "gh", "7"), ("ada", "google", "g-1"), ("bob", "dev", "s")].map(|(a, b, c)| (
            a.to_string(),
            b.to_string(),
            c.to_string()
        ))
    );
}

/// Who an identity would sign in as, changing nothing: its link, or (opt-in) the one user with
/// its verified address; the first identity names the user.
async fn login_targets_follow_links_and_verified_addresses(store: Arc<dyn Store>) {
    let ada_gh = identity("gh", "7", "ada");
    assert!(store.login_target(&ada_gh, true).await.unwrap().is_none(), "nobody yet");
    let ada = store.upsert_user_for_identity(&ada_gh, 1).await.unwrap();
    let target = store.login_target(&ada_gh, false).await.unwrap().unwrap();
    assert!(target.primary && target.user.id == ada.id);

    // Same verified address at another provider: joins only with linking by e-mail on.
    let ada_google = UpstreamIdentity { email: ada.email.clone(), ..identity("google", "g-1", "ada.lovelace") };
    assert!(store.login_target(&ada_google, false).await.unwrap().is_none());
    let joined = store.login_target(&ada_google, true).await.unwrap().unwrap();
    assert!(!joined.primary && joined.user.id == ada.id);
    assert!(store.user_by_username("ada.lovelace").await.unwrap().is_none(), "a look-up writes nothing");
    let unverified = UpstreamIdentity { email_verified: false, ..ada_google.clone() };
    assert!(store.login_target(&unverified, true).await.unwrap().is_none());

    // A linked second identity signs in as the user, under the user's name.
    let linked = UpstreamRecord { link_by_verified_email: true, ..Default::default() };
    let via_google = store.record_upstream_login(&ada_google, &linked, 2).await.unwrap();
    assert_eq!((via_google.id.as_str(), via_google.username.as_str()), (ada.id.as_str(), "ada"));
    assert!(!store.login_target(&ada_google, false).await.unwrap().unwrap().primary);

    // Two users with one address: ambiguous, neither is chosen.
    store
        .upsert_user_for_identity(&UpstreamIdentity { email: ada.email.clone(), ..identity("dev", "x", "imposter") }, 3)
        .await
        .unwrap();
    let third = UpstreamIdentity { email: ada.email.clone(), ..identity("canvas", "c-2", "al") };
    assert!(store.login_target(&third, true).await.unwrap().is_none());
}

/// The `state` of a trip to a provider: readable while live, taken once; a sign-in keeps only
/// its newest few trips.
async fn upstream_attempts_are_taken_once(store: Arc<dyn Store>) {
    let attempt = |state: &str, created_at: i64| UpstreamAttempt {
        state_hash: state.into(),
        pending_id: "p1".into(),
        connector_id: "gh".into(),
        pkce_verifier: format!("v-{state}"),
        nonce: "n".into(),
        created_at,
        expires_at: created_at + 100,
    };
    store.create_upstream_attempt(&attempt("s1", 1)).await.unwrap();
    assert_eq!(store.upstream_attempt("s1", 50).await.unwrap().unwrap().pkce_verifier, "v-s1");
    assert!(store.upstream_attempt("s1", 50).await.unwrap().is_some(), "a look-up leaves it");
    assert!(store.upstream_attempt("s1", 101).await.unwrap().is_none(), "expired");
    assert_eq!(store.take_upstream_attempt("s1", 50).await.unwrap().unwrap().state_hash, "s1");
    assert!(store.take_upstream_attempt("s1", 50).await.unwrap().is_none(), "single use");
    assert!(store.upstream_attempt("s1", 50).await.unwrap().is_none());
    store.create_upstream_attempt(&attempt("old", 1)).await.unwrap();
    assert!(store.take_upstream_attempt("old", 101).await.unwrap().is_none(), "an expired one does not work");

    for i in 0..6 {
        store.create_upstream_attempt(&attempt(&format!("t{i}"), 10 + i)).await.unwrap();
    }
    let mut kept = Vec::new();
    for i in 0..6 {
        if store.upstream_attempt(&format!("t{i}"), 20).await.unwrap().is_some() {
            kept.push(i);
        }
    }
    assert_eq!(kept, [2, 3, 4, 5], "the newest four trips of one sign-in");
}

async fn service_tokens_live_until_revoked_or_expired(store: Arc<dyn Store>) {
    let t = ServiceToken {
        token_hash: "st".into(),
        client_id: "svc".into(),
        scope: "read".into(),
        created_at: 1,
        expires_at: 100,
    };
    store.create_service_token(&t).await.unwrap();
    assert_eq!(store.service_token("st", 50).await.unwrap(), Some(t.clone()));
    assert!(store.service_token("st", 100).await.unwrap().is_none(), "expired");
    assert!(store.service_token("other", 50).await.unwrap().is_none());
    assert!(store.revoke_service_token("st", 60).await.unwrap());
    assert!(!store.revoke_service_token("st", 61).await.unwrap(), "once");
    assert!(store.service_token("st", 62).await.unwrap().is_none(), "revoked");
}

/// Revoking a person ends every grant (so every token) and every browser session of theirs,
/// and nobody else's.
async fn revoking_a_user_ends_their_grants_and_sessions(store: Arc<dyn Store>) {
    let ada = store.upsert_user_for_identity(&identity("dev", "a", "ada"), 1).await.unwrap();
    let bob = store.upsert_user_for_identity(&identity("dev", "b", "bob"), 1).await.unwrap();
    grant_for(store.as_ref(), &ada, "g1", "a1", "r1").await;
    grant_for(store.as_ref(), &ada, "g2", "a2", "r2").await;
    grant_for(store.as_ref(), &bob, "g3", "a3", "r3").await;
    let session = |id: &str, user: &User| BrowserSession {
        id: id.into(),
        token_hash: format!("t-{id}"),
        user_id: user.id.clone(),
        connector_id: "dev".into(),
        csrf_token: "c".into(),
        auth_time: 1,
        created_at: 1,
        expires_at: 1000,
    };
    store.create_browser_session(&session("sa", &ada)).await.unwrap();
    store.create_browser_session(&session("sb", &bob)).await.unwrap();
    assert_eq!(store.revoke_user(&ada.id, "blocked", 5).await.unwrap(), 2);
    assert!(
        store.access_token("a1", 6).await.unwrap().is_none() && store.refresh_token("r2", 6).await.unwrap().is_none()
    );
    assert!(store.browser_session("t-sa", 6).await.unwrap().is_none());
    assert!(store.access_token("a3", 6).await.unwrap().is_some(), "others keep theirs");
    assert!(store.browser_session("t-sb", 6).await.unwrap().is_some());
    assert_eq!(store.revoke_user(&ada.id, "again", 7).await.unwrap(), 0);
}

async fn the_audit_log_reads_newest_first(store: Arc<dyn Store>) {
    for (i, kind) in ["login", "login_denied", "logout"].into_iter().enumerate() {
        let event = AuditEvent {
            at: 10 + i as i64,
            kind: kind.into(),
            reason: Some("r".into()),
            username: Some("ada".into()),
            request_id: Some(format!("req-{i}")),
            ..Default::default()
        };
        store.record_audit(&event).await.unwrap();
    }
    let events = store.audit_events(2).await.unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["logout", "login_denied"]);
    assert_eq!(events[0].request_id.as_deref(), Some("req-2"));
    assert_eq!(store.audit_events(10).await.unwrap().len(), 3);
}

async fn invites_list_newest_first(store: Arc<dyn Store>) {
    for (id, created_at) in [("i1", 1), ("i2", 3), ("i3", 2)] {
        let invite = Invite {
            id: id.into(),
            token_hash: format!("h-{id}"),
            note: None,
            groups: vec!["ws".into()],
            connector_id: None,
            max_uses: None,
            uses: 0,
            created_at,
            expires_at: 100,
            revoked_at: None,
        };
        store.create_invite(&invite).await.unwrap();
    }
    let ids: Vec<String> = store.invites().await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["i2", "i3", "i1"]);
}

/// A person's lock is released when dropped and can be taken again.
async fn user_locks_are_released_when_dropped(store: Arc<dyn Store>) {
    let wait = std::time::Duration::from_secs(5);
    let first = store.lock_user("u1", wait).await.unwrap();
    let other = store.lock_user("u2", wait).await.unwrap();
    drop(first);
    let again = tokio::time::timeout(wait, store.lock_user("u1", wait)).await.expect("not stuck").unwrap();
    drop((again, other));
}

/// Of many redemptions of one code at once, exactly one issues tokens, and every other one
/// revokes what it issued.
async fn racing_code_redemptions_issue_once(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    store.create_authorization_code(&code_h1(&u)).await.unwrap();
    let racers = (0..16).map(|i| {
        let (store, u) = (store.clone(), u.clone());
        async move {
            let g = grant(&u, &format!("g{i}"));
            store
                .redeem_authorization_code("h1", &g, &tokens(&format!("a{i}"), Some(&format!("r{i}")), 2), 2)
                .await
                .unwrap()
        }
    });
    let outcomes = futures_util::future::join_all(racers).await;
    let won = outcomes.iter().filter(|o| matches!(o, CodeRedemption::Redeemed { .. })).count();
    assert_eq!(won, 1, "{outcomes:?}");
    for i in 0..16 {
        assert!(
            store.access_token(&format!("a{i}"), 3).await.unwrap().is_none(),
            "the winner's tokens are revoked by the replays"
        );
    }
}

async fn rotate_fresh(
    store: &dyn Store,
    old: &str,
    client: &str,
    t: IssuedTokens,
    now: i64,
    since: i64,
) -> Option<RefreshRotation> {
    store.rotate_fresh_refresh_token(old, client, now, since, &t).await.unwrap()
}

/// The one-step refresh rotates only a token that needs nothing else (unspent, its client's,
/// live grant, unexpired, person checked recently enough), with the grant's scope; in every
/// other case it changes nothing and leaves the decision to the general path.
async fn a_fresh_rotation_takes_only_the_plain_case(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 10).await.unwrap();
    let g = Grant { scope: "openid profile".into(), ..grant(&u, "g1") };
    store.create_grant(&g, &tokens("a1", Some("r1"), 10)).await.unwrap();
    let narrow = IssuedTokens { access_scope: "ignored".into(), ..tokens("a2", Some("r2"), 12) };
    assert!(
        rotate_fresh(store.as_ref(), "r1", "c", narrow.clone(), 12, 11).await.is_none(),
        "person not checked since 11"
    );
    assert!(
        rotate_fresh(store.as_ref(), "r1", "other", narrow.clone(), 12, 10).await.is_none(),
        "another client's token"
    );
    assert!(rotate_fresh(store.as_ref(), "r1", "c", narrow.clone(), 1000 * 3600, 10).await.is_none(), "expired");
    assert!(rotate_fresh(store.as_ref(), "nope", "c", narrow.clone(), 12, 10).await.is_none(), "unknown");
    assert!(holds(store.as_ref(), "r1", "c", 12).await);
    assert!(store.presented_refresh_token("r1").await.unwrap().unwrap().used_at.is_none(), "nothing spent so far");
    match rotate_fresh(store.as_ref(), "r1", "c", narrow.clone(), 12, 10).await {
        Some(RefreshRotation::Rotated { grant, user, scope }) => {
            assert_eq!((grant.id.as_str(), user.id.as_str(), scope.as_str()), ("g1", u.id.as_str(), "openid profile"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.access_token("a2", 13).await.unwrap().unwrap().scope, "openid profile", "the grant's scope");
    assert!(store.refresh_token("r2", 13).await.unwrap().is_some());
    // Spent: not for this path, and not revoked by it either (the general path judges reuse).
    assert!(rotate_fresh(store.as_ref(), "r1", "c", tokens("a3", Some("r3"), 14), 14, 10).await.is_none());
    assert!(store.access_token("a2", 14).await.unwrap().is_some(), "the family is untouched");
    assert!(store.access_token("a3", 14).await.unwrap().is_none());
    store.revoke_grant("g1", "test", 15).await.unwrap();
    assert!(
        rotate_fresh(store.as_ref(), "r2", "c", tokens("a4", Some("r4"), 16), 16, 10).await.is_none(),
        "revoked grant"
    );
}

/// Of many one-step rotations of one token at once, exactly one rotates.
async fn racing_fresh_rotations_rotate_once(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    grant_for(store.as_ref(), &u, "g1", "a0", "r0").await;
    let racers = (0..16).map(|i| {
        let store = store.clone();
        async move {
            rotate_fresh(store.as_ref(), "r0", "c", tokens(&format!("x{i}"), Some(&format!("n{i}")), 5), 5, 1).await
        }
    });
    let outcomes = futures_util::future::join_all(racers).await;
    let rotated: Vec<usize> =
        (0..16).filter(|&i| matches!(outcomes[i], Some(RefreshRotation::Rotated { .. }))).collect();
    assert_eq!(rotated.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 15, "{outcomes:?}");
    for i in 0..16 {
        let stored = store.refresh_token(&format!("n{i}"), 6).await.unwrap().is_some();
        assert_eq!(stored, rotated == [i], "only the winner's successor exists");
    }
}

/// Of many rotations of one refresh token at once, exactly one succeeds; the next is reuse,
/// which revokes the family (the winner's new token included), and the rest find it revoked.
async fn racing_refresh_rotations_rotate_once(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    grant_for(store.as_ref(), &u, "g1", "a0", "r0").await;
    let racers = (0..16).map(|i| {
        let store = store.clone();
        async move { rotate(store.as_ref(), "r0", "c", tokens(&format!("x{i}"), Some(&format!("n{i}")), 5), 5).await }
    });
    let outcomes = futures_util::future::join_all(racers).await;
    let rotated = outcomes.iter().filter(|o| matches!(o, RefreshRotation::Rotated { .. })).count();
    let reused = outcomes.iter().filter(|o| matches!(o, RefreshRotation::Reused { .. })).count();
    // Once reuse has revoked the grant, later presentations find no live grant at all.
    let refused = outcomes.iter().filter(|o| matches!(o, RefreshRotation::Invalid)).count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    assert!(reused >= 1 && reused + refused == 15, "{outcomes:?}");
    for i in 0..16 {
        assert!(store.refresh_token(&format!("n{i}"), 6).await.unwrap().is_none(), "the family is revoked");
    }
}

/// One person's first sign-in arriving twice at once (two tabs, two replicas) makes one user.
async fn racing_first_logins_make_one_user(store: Arc<dyn Store>) {
    let racers = (0..8).map(|_| {
        let store = store.clone();
        async move { store.upsert_user_for_identity(&identity("gh", "7", "ada"), 1).await.unwrap().id }
    });
    let ids = futures_util::future::join_all(racers).await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(store.all_identities().await.unwrap().len(), 1);
}

async fn sqlite() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    Some((Arc::new(SqliteStore::open(&url).await.unwrap()), dir))
}

/// A store on a database of its own; `None` (the reason printed) without a test server.
async fn postgres() -> Option<(Arc<dyn Store>, crate::pg::TestDatabase)> {
    let db = crate::pg::database().await?;
    let config = hubauth::config::StorageConfig { url: db.url.clone(), ..Default::default() };
    Some((Arc::new(PostgresStore::open(&config, true).await.unwrap()), db))
}

/// What the metrics' gauges read: users, who was active since when, live sessions, and every
/// user's groups (by username, users without groups left out), all in one call.
async fn usage_counts_users_sessions_and_memberships(store: Arc<dyn Store>) {
    let empty = store.usage(1000, &[500, 900], true).await.unwrap();
    assert_eq!(empty, Usage { users: 0, active_users: vec![0, 0], live_browser_sessions: 0, memberships: vec![] });

    let zed = store.upsert_user_for_identity(&identity("dev", "u1", "zed"), 600).await.unwrap();
    store.upsert_user_for_identity(&identity("dev", "u2", "ada"), 950).await.unwrap();
    let none = UpstreamIdentity { groups: vec![], ..identity("dev", "u3", "bob") };
    store.upsert_user_for_identity(&none, 100).await.unwrap();
    let two = UpstreamIdentity { groups: vec!["g1".into(), "g2".into()], ..identity("dev", "u2", "ada") };
    store.upsert_user_for_identity(&two, 960).await.unwrap();
    for (id, expires_at) in [("live", 2000), ("expired", 1000), ("ended", 2000)] {
        let s = BrowserSession {
            id: id.into(),
            token_hash: format!("th-{id}"),
            user_id: zed.id.clone(),
            connector_id: "dev".into(),
            csrf_token: "c".into(),
            auth_time: 1,
            created_at: 1,
            expires_at,
        };
        store.create_browser_session(&s).await.unwrap();
    }
    store.end_browser_session("ended", 990).await.unwrap();

    let usage = store.usage(1000, &[500, 900], true).await.unwrap();
    assert_eq!(usage.users, 3);
    assert_eq!(usage.active_users, vec![2, 1], "zed at 600, ada at 960, bob at 100");
    assert_eq!(usage.live_browser_sessions, 1, "neither expired nor ended");
    assert_eq!(
        usage.memberships,
        vec![
            ("ada".to_string(), vec!["g1".to_string(), "g2".to_string()]),
            ("zed".to_string(), vec!["g1".to_string()])
        ]
    );
    let without = store.usage(1000, &[], false).await.unwrap();
    assert_eq!((without.users, without.active_users.len(), without.memberships.len()), (3, 0, 0));
}

fn access_entry(id: &str, selector: AccessSelector, at: i64) -> AccessEntry {
    AccessEntry {
        id: id.into(),
        selector,
        groups: vec!["w1".into()],
        note: Some("workshop".into()),
        expires_at: None,
        created_by: "cli:root".into(),
        created_at: at,
    }
}

fn query(username: &str, email: Option<&str>, connector: &str, login: Option<&str>) -> AccessQuery {
    AccessQuery {
        username: username.into(),
        verified_email: email.map(Into::into),
        connector_id: connector.into(),
        login: login.map(Into::into),
    }
}

/// Every method of the allow-list: put (new and replacing, keeping the id), look-ups by
/// selector, listing, matching by each kind (case-insensitively, never across connectors,
/// never expired), and delete.
async fn the_allow_list_matches_live_entries_by_each_kind(store: Arc<dyn Store>) {
    let login = |c: &str, l: &str| AccessSelector::Login { connector_id: c.into(), login: l.into() };
    let (a, replaced) =
        store.put_access_entry(&access_entry("e1", AccessSelector::Username("Alice".into()), 1)).await.unwrap();
    assert!(!replaced);
    assert_eq!(a, access_entry("e1", AccessSelector::Username("Alice".into()), 1));
    store.put_access_entry(&access_entry("e2", AccessSelector::Email("Bob@Example.org".into()), 2)).await.unwrap();
    store.put_access_entry(&access_entry("e3", login("github", "OctoCat"), 3)).await.unwrap();
    let expiring =
        AccessEntry { expires_at: Some(100), ..access_entry("e4", AccessSelector::Username("carol".into()), 4) };
    store.put_access_entry(&expiring).await.unwrap();

    // Replacing keeps the id and takes everything else from the new entry.
    let newer = AccessEntry {
        groups: vec!["w2".into(), "w3".into()],
        note: None,
        expires_at: Some(500),
        created_by: "admin-api".into(),
        ..access_entry("e9", AccessSelector::Username("ALICE".into()), 5)
    };
    let (stored, replaced) = store.put_access_entry(&newer).await.unwrap();
    assert!(replaced, "the same username in another case is the same entry");
    assert_eq!(stored, AccessEntry { id: "e1".into(), ..newer.clone() });
    let read = store.access_entry(&AccessSelector::Username("alice".into())).await.unwrap().unwrap();
    assert_eq!(read, stored);
    assert!(store.access_entry(&AccessSelector::Email("alice".into())).await.unwrap().is_none(), "kinds are apart");
    assert!(store.access_entry(&login("gitlab", "octocat")).await.unwrap().is_none(), "connectors are apart");

    let all: Vec<String> = store.access_entries().await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(all, ["e2", "e3", "e4", "e1"], "oldest first (a replaced entry is as new as its replacement)");

    let ids = |v: Vec<AccessEntry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let m = |q: AccessQuery, now: i64| {
        let store = store.clone();
        async move { ids(store.matching_access_entries(&q, now).await.unwrap()) }
    };
    assert_eq!(m(query("alice", None, "dev", None), 10).await, ["e1"]);
    assert_eq!(m(query("alice", None, "dev", None), 500).await, Vec::<String>::new(), "expired at 500");
    assert_eq!(m(query("x", Some("bob@example.ORG"), "dev", None), 10).await, ["e2"]);
    assert_eq!(m(query("x", None, "dev", None), 10).await, Vec::<String>::new(), "no verified address, no match");
    assert_eq!(m(query("x", None, "github", Some("octocat")), 10).await, ["e3"]);
    assert_eq!(m(query("x", None, "gitlab", Some("octocat")), 10).await, Vec::<String>::new(), "another connector");
    assert_eq!(m(query("octocat", None, "dev", None), 10).await, Vec::<String>::new(), "a login is not a username");
    assert_eq!(m(query("bob@example.org", None, "dev", None), 10).await, Vec::<String>::new());
    assert_eq!(m(query("carol", None, "dev", None), 99).await, ["e4"]);
    assert_eq!(m(query("carol", None, "dev", None), 100).await, Vec::<String>::new(), "expires_at is exclusive");
    assert_eq!(
        m(query("carol", Some("bob@example.org"), "github", Some("OCTOCAT")), 10).await,
        ["e2", "e3", "e4"],
        "every kind at once, oldest first"
    );

    let removed = store.delete_access_entry("e3").await.unwrap().unwrap();
    assert_eq!(removed.selector, login("github", "OctoCat"));
    assert_eq!(removed.groups, ["w1"]);
    assert!(store.delete_access_entry("e3").await.unwrap().is_none(), "gone");
    assert!(store.access_entry(&login("github", "octocat")).await.unwrap().is_none());
    assert_eq!(m(query("x", None, "github", Some("octocat")), 10).await, Vec::<String>::new());
    assert_eq!(store.access_entries().await.unwrap().len(), 3);
}

/// Two admins adding the same person at once leave one entry.
async fn racing_puts_leave_one_entry(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let e = access_entry(&format!("r{i}"), AccessSelector::Username("dana".into()), 1);
            store.put_access_entry(&e).await.unwrap()
        }));
    }
    let mut new = 0;
    for t in tasks {
        if !t.await.unwrap().1 {
            new += 1;
        }
    }
    assert_eq!(new, 1, "one put created it, the others replaced it");
    assert_eq!(store.access_entries().await.unwrap().len(), 1);
}

/// The activity report's rows: identities, last sign-in and token use, live sessions.
async fn activity_lists_every_user_with_what_they_did(store: Arc<dyn Store>) {
    let ada = store.upsert_user_for_identity(&identity("github", "g1", "ada"), 10).await.unwrap();
    store.link_identity(&ada.id, "dev", "d1", 11).await.unwrap();
    let sam = store.upsert_user_for_identity(&identity("dev", "d2", "sam"), 12).await.unwrap();
    grant_for(store.as_ref(), &ada, "ga", "a-access", "a-refresh").await;
    let session = BrowserSession {
        id: "s1".into(),
        token_hash: "th".into(),
        user_id: sam.id.clone(),
        connector_id: "dev".into(),
        csrf_token: "c".into(),
        auth_time: 12,
        created_at: 12,
        expires_at: 5000,
    };
    store.create_browser_session(&session).await.unwrap();

    let rows = store.activity(100).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.username.as_str()).collect::<Vec<_>>(), ["ada", "sam"], "by username");
    let (a, s) = (&rows[0], &rows[1]);
    assert_eq!(a.user_id, ada.id);
    assert_eq!(a.connectors, ["dev", "github"]);
    assert_eq!(a.groups, ["g1"]);
    assert_eq!((a.created_at, a.last_login_at, a.last_token_use_at, a.blocked_at), (10, Some(10), None, None));
    assert!(a.hub_session_live && !a.sso_session_live);
    assert_eq!(s.last_login_at, Some(12));
    assert!(!s.hub_session_live && s.sso_session_live);

    // Token use is kept to the minute: a second write within it changes nothing.
    store.note_token_use(&ada.id, 200).await.unwrap();
    store.note_token_use(&ada.id, 200 + TOKEN_USE_RESOLUTION - 1).await.unwrap();
    assert_eq!(store.activity(300).await.unwrap()[0].last_token_use_at, Some(200));
    store.note_token_use(&ada.id, 200 + TOKEN_USE_RESOLUTION).await.unwrap();
    assert_eq!(store.activity(300).await.unwrap()[0].last_token_use_at, Some(200 + TOKEN_USE_RESOLUTION));
    store.note_token_use("nobody", 300).await.unwrap();

    // The access token expires at 601 and the refresh token at 3601 (see `tokens`).
    assert!(store.activity(3000).await.unwrap()[0].hub_session_live, "the refresh token still works");
    assert!(!store.activity(3601).await.unwrap()[0].hub_session_live);
    store.revoke_user(&ada.id, "test", 400).await.unwrap();
    assert!(!store.activity(400).await.unwrap()[0].hub_session_live, "a revoked grant is no session");
}

async fn blocked_and_deleted_users(store: Arc<dyn Store>) {
    let sealed = UpstreamRecord {
        tokens_sealed: Some("sealed-upstream-tokens".into()),
        tokens_expire_at: Some(99),
        ..Default::default()
    };
    let ada = store.record_upstream_login(&identity("dev", "d1", "ada"), &sealed, 10).await.unwrap();
    let sam = store.record_upstream_login(&identity("dev", "d2", "sam"), &sealed, 10).await.unwrap();
    assert!(!store.login_target(&identity("dev", "d1", "ada"), false).await.unwrap().unwrap().blocked);
    assert!(store.block_user(&ada.id, 20).await.unwrap());
    assert!(!store.block_user(&ada.id, 30).await.unwrap(), "already blocked");
    assert!(!store.block_user("nobody", 30).await.unwrap());
    assert!(store.login_target(&identity("dev", "d1", "ada"), false).await.unwrap().unwrap().blocked);
    assert_eq!(store.activity(40).await.unwrap()[0].blocked_at, Some(20), "the first block stays");
    let upstream = store.upstream_of("dev", "d1").await.unwrap().unwrap();
    assert_eq!((upstream.tokens_sealed, upstream.tokens_expire_at), (None, None), "nothing left to exchange");
    assert!(store.upstream_of("dev", "d2").await.unwrap().unwrap().tokens_sealed.is_some(), "sam's stay");

    // Everything of sam's goes; ada's stays.
    grant_for(store.as_ref(), &sam, "gs", "s-access", "s-refresh").await;
    grant_for(store.as_ref(), &ada, "ga", "a-access", "a-refresh").await;
    let code = AuthorizationCode {
        code_hash: "code".into(),
        client_id: "c".into(),
        user_id: sam.id.clone(),
        session_id: None,
        request_json: "{}".into(),
        auth_time: 1,
        created_at: 1,
        expires_at: 100,
    };
    store.create_authorization_code(&code).await.unwrap();
    let session = BrowserSession {
        id: "s1".into(),
        token_hash: "th".into(),
        user_id: sam.id.clone(),
        connector_id: "dev".into(),
        csrf_token: "c".into(),
        auth_time: 1,
        created_at: 1,
        expires_at: 5000,
    };
    store.create_browser_session(&session).await.unwrap();
    let invite = Invite {
        id: "i1".into(),
        token_hash: "ih".into(),
        note: None,
        groups: vec![],
        connector_id: None,
        max_uses: Some(5),
        uses: 0,
        created_at: 1,
        expires_at: 1000,
        revoked_at: None,
    };
    store.create_invite(&invite).await.unwrap();
    assert_eq!(store.redeem_invite("i1", &sam.id, 5).await.unwrap(), Redemption::Redeemed);

    assert!(store.delete_user(&sam.id).await.unwrap());
    assert!(!store.delete_user(&sam.id).await.unwrap(), "already gone");
    assert!(store.user_by_id(&sam.id).await.unwrap().is_none());
    assert!(store.upstream_of("dev", "d2").await.unwrap().is_none());
    assert!(store.access_token("s-access", 2).await.unwrap().is_none());
    assert!(store.refresh_token("s-refresh", 2).await.unwrap().is_none());
    assert!(store.authorization_code("code").await.unwrap().is_none());
    assert!(store.browser_session("th", 2).await.unwrap().is_none());
    assert!(store.access_token("a-access", 2).await.unwrap().is_some(), "other users keep theirs");
    assert_eq!(store.activity(40).await.unwrap().len(), 1);
    // The same account signing in again is a new user.
    let again = store.upsert_user_for_identity(&identity("dev", "d2", "sam"), 50).await.unwrap();
    assert_ne!(again.id, sam.id);
}

async fn admin_tokens_are_found_by_hash_revoked_once_and_note_use_coarsely(store: Arc<dyn Store>) {
    let token = |id: &str, hash: &str, at: i64| AdminToken {
        id: id.into(),
        token_hash: hash.into(),
        name: format!("job {id}"),
        scope: if id == "t1" { AdminScope::Read } else { AdminScope::Write },
        created_by: "cli:op".into(),
        created_at: at,
        expires_at: Some(at + 100),
        revoked_at: None,
        last_used_at: None,
    };
    store.create_admin_token(&token("t1", "h1", 10)).await.unwrap();
    store.create_admin_token(&token("t2", "h2", 20)).await.unwrap();
    assert!(store.create_admin_token(&token("t3", "h1", 30)).await.is_err(), "a hash is one token's");
    assert_eq!(store.admin_token_by_hash("h1").await.unwrap(), Some(token("t1", "h1", 10)));
    assert!(store.admin_token_by_hash("h9").await.unwrap().is_none());
    let all: Vec<String> = store.admin_tokens().await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(all, ["t2", "t1"], "newest first");

    store.note_admin_token_use("t1", 50).await.unwrap();
    store.note_admin_token_use("t1", 80).await.unwrap();
    assert_eq!(store.admin_token_by_hash("h1").await.unwrap().unwrap().last_used_at, Some(50), "within a minute");
    store.note_admin_token_use("t1", 111).await.unwrap();
    assert_eq!(store.admin_token_by_hash("h1").await.unwrap().unwrap().last_used_at, Some(111));

    assert!(store.revoke_admin_token("t2", 60).await.unwrap());
    assert!(!store.revoke_admin_token("t2", 70).await.unwrap(), "once");
    assert!(!store.revoke_admin_token("nope", 70).await.unwrap());
    let t2 = store.admin_token_by_hash("h2").await.unwrap().unwrap();
    assert_eq!(t2.revoked_at, Some(60));
    assert!(!t2.live_at(61));
    assert!(store.admin_token_by_hash("h1").await.unwrap().unwrap().live_at(109));
    assert!(!store.admin_token_by_hash("h1").await.unwrap().unwrap().live_at(110), "expired");
}

async fn audit_events_keep_their_actor(store: Arc<dyn Store>) {
    let event = AuditEvent { at: 5, kind: "x".into(), actor: Some("ada".into()), ..Default::default() };
    store.record_audit(&event).await.unwrap();
    store.record_audit(&AuditEvent { at: 6, kind: "login".into(), ..Default::default() }).await.unwrap();
    let read = store.audit_events(10).await.unwrap();
    assert_eq!(read[1], event);
    assert_eq!(read[0].actor, None);
}

/// The console's audit log: filters in the store, newest first, paged by id.
async fn audit_pages_filter_and_page_by_id(store: Arc<dyn Store>) {
    for i in 0..12i64 {
        let event = AuditEvent {
            at: 100 + i,
            kind: if i % 3 == 0 { "access_allowed" } else { "login" }.into(),
            actor: (i % 2 == 0).then(|| "ada".to_string()),
            username: Some(if i < 6 { "bob" } else { "cy" }.into()),
            ..Default::default()
        };
        store.record_audit(&event).await.unwrap();
    }
    let all = store.audit_page(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 12);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first, by id");
    assert_eq!(all[0].event.at, 111);

    // Paging: the cursor is the last id seen; pages neither overlap nor skip.
    let first = store.audit_page(&AuditQuery { limit: 5, ..Default::default() }).await.unwrap();
    let second =
        store.audit_page(&AuditQuery { limit: 5, before: Some(first[4].id), ..Default::default() }).await.unwrap();
    let third =
        store.audit_page(&AuditQuery { limit: 5, before: Some(second[4].id), ..Default::default() }).await.unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (5, 5, 2));
    let paged: Vec<i64> = first.iter().chain(&second).chain(&third).map(|r| r.id).collect();
    assert_eq!(paged, all.iter().map(|r| r.id).collect::<Vec<_>>());

    let ats = |q: AuditQuery| {
        let store = store.clone();
        async move { store.audit_page(&q).await.unwrap().iter().map(|r| r.event.at).collect::<Vec<_>>() }
    };
    let kind = Some("access_allowed".to_string());
    assert_eq!(ats(AuditQuery { kind: kind.clone(), ..Default::default() }).await, vec![109, 106, 103, 100]);
    assert_eq!(
        ats(AuditQuery { kind, actor: Some("ada".into()), ..Default::default() }).await,
        vec![106, 100],
        "filters combine"
    );
    assert_eq!(
        ats(AuditQuery { username: Some("bob".into()), since: Some(103), ..Default::default() }).await,
        vec![105, 104, 103]
    );
    assert_eq!(ats(AuditQuery { since: Some(104), until: Some(106), ..Default::default() }).await, vec![106, 105, 104]);
    assert!(ats(AuditQuery { actor: Some("nobody".into()), ..Default::default() }).await.is_empty());
    // A filter is a value, never SQL.
    assert!(ats(AuditQuery { kind: Some("login' OR '1'='1".into()), ..Default::default() }).await.is_empty());
    // The limit is bounded: 0 means the default, a huge one the maximum.
    assert_eq!(AuditQuery { limit: 0, ..Default::default() }.bounded_limit(), AUDIT_PAGE_DEFAULT);
    assert_eq!(AuditQuery { limit: u32::MAX, ..Default::default() }.bounded_limit(), AUDIT_PAGE_MAX);
    assert_eq!(store.audit_page(&AuditQuery { limit: 1, ..Default::default() }).await.unwrap().len(), 1);
}

/// The console's listing: every filter in SQL, keyset pages by username, counts.
async fn users_are_listed_filtered_and_paged(store: Arc<dyn Store>) {
    let mut ids = std::collections::HashMap::new();
    for (i, name) in ["carol", "ada", "bob", "dave", "Eve"].iter().enumerate() {
        let mut who = identity(if i % 2 == 0 { "dev" } else { "github" }, name, name);
        who.groups = if i < 2 { vec!["admins".into()] } else { vec!["students".into()] };
        who.name = Some(format!("Person {}", name.to_uppercase()));
        let u = store.upsert_user_for_identity(&who, 100 * (i as i64 + 1)).await.unwrap();
        ids.insert(*name, u.id);
    }
    store.note_token_use(&ids["bob"], 1000).await.unwrap();
    assert!(store.block_user(&ids["dave"], 50).await.unwrap());
    let q = |f: &dyn Fn(&mut UserQuery)| {
        let mut q = UserQuery { limit: 100, ..Default::default() };
        f(&mut q);
        q
    };
    let names = |rows: Vec<UserRow>| rows.into_iter().map(|r| r.username).collect::<Vec<_>>();
    let all = store.users_page(&q(&|_| {})).await.unwrap();
    assert_eq!(names(all.clone()), ["Eve", "ada", "bob", "carol", "dave"], "byte order on both backends");
    let bob = all.iter().find(|r| r.username == "bob").unwrap();
    assert_eq!((bob.connectors.clone(), bob.groups.clone()), (vec!["dev".to_string()], vec!["students".to_string()]));
    assert_eq!((bob.last_login_at, bob.last_token_use_at), (Some(300), Some(1000)));
    assert_eq!(bob.email.as_deref(), Some("bob@example.org"));

    // Paging: two at a time, each page after the last username of the one before.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .users_page(&q(&|q| {
                q.limit = 2;
                q.after = after.clone();
            }))
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.username.clone());
        seen.extend(names(page));
    }
    assert_eq!(seen, ["Eve", "ada", "bob", "carol", "dave"]);

    let find = |f: &'static dyn Fn(&mut UserQuery)| {
        let store = store.clone();
        async move { names(store.users_page(&q(f)).await.unwrap()) }
    };
    assert_eq!(find(&|q| q.q = Some("E".into())).await, ["Eve", "ada", "bob", "carol", "dave"], "e-mail holds an e");
    assert_eq!(find(&|q| q.q = Some("person a".into())).await, ["ada"], "the name, case-insensitively");
    assert_eq!(find(&|q| q.q = Some("eve@EXAMPLE".into())).await, ["Eve"]);
    assert_eq!(find(&|q| q.q = Some("%".into())).await, Vec::<String>::new(), "no wildcards");
    assert_eq!(find(&|q| q.group = Some("admins".into())).await, ["ada", "carol"]);
    assert_eq!(find(&|q| q.group = Some("admin".into())).await, Vec::<String>::new(), "whole groups only");
    assert_eq!(find(&|q| q.connector = Some("github".into())).await, ["ada", "dave"]);
    assert_eq!(find(&|q| q.blocked = Some(true)).await, ["dave"]);
    assert_eq!(find(&|q| q.blocked = Some(false)).await.len(), 4);
    assert_eq!(find(&|q| q.active_since = Some(400)).await, ["Eve", "bob", "dave"], "bob by his token use");
    assert_eq!(find(&|q| q.inactive_since = Some(400)).await, ["ada", "carol"]);
    assert_eq!(find(&|q| q.username = Some("bob".into())).await, ["bob"]);
    let both = q(&|q| {
        q.group = Some("students".into());
        q.active_since = Some(400);
        q.blocked = Some(false);
        q.after = Some("Eve".into());
        q.limit = 1;
    });
    assert_eq!(names(store.users_page(&both).await.unwrap()), ["bob"]);
    assert_eq!(store.count_users(&both).await.unwrap(), 2, "counts ignore the cursor and the limit");
    assert_eq!(store.count_users(&q(&|_| {})).await.unwrap(), 5);

    assert!(store.unblock_user(&ids["dave"]).await.unwrap());
    assert!(!store.unblock_user(&ids["dave"]).await.unwrap(), "not blocked any more");
    assert!(!store.unblock_user("nobody").await.unwrap());
    assert_eq!(find(&|q| q.blocked = Some(true)).await, Vec::<String>::new());
}

/// A person's live sessions: browser sessions neither ended nor expired, grants with a usable
/// token; revoking ends them all.
async fn live_sessions_are_listed_until_revoked(store: Arc<dyn Store>) {
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    let other = store.upsert_user_for_identity(&identity("dev", "u2", "bob"), 1).await.unwrap();
    for (id, user, expires) in [("s1", &u, 100), ("s2", &u, 10), ("s3", &other, 100)] {
        let s = BrowserSession {
            id: id.into(),
            token_hash: format!("th-{id}"),
            user_id: user.id.clone(),
            connector_id: "dev".into(),
            csrf_token: "c".into(),
            auth_time: 1,
            created_at: 1,
            expires_at: expires,
        };
        store.create_browser_session(&s).await.unwrap();
    }
    grant_for(store.as_ref(), &u, "g1", "a1", "r1").await;
    grant_for(store.as_ref(), &other, "g2", "a2", "r2").await;
    let live = store.live_sessions(&u.id, 50, 10).await.unwrap();
    let kinds: Vec<_> = live.iter().map(|s| (s.kind.as_str(), s.id.as_str())).collect();
    assert_eq!(kinds, [("browser", "s1"), ("grant", "g1")]);
    assert_eq!(live[1].client_id.as_deref(), Some("c"));
    assert_eq!(live[0].connector_id.as_deref(), Some("dev"));
    assert!(store.live_sessions(&u.id, 5000, 10).await.unwrap().is_empty(), "all expired by then");
    assert_eq!(store.revoke_user(&u.id, "test", 51).await.unwrap(), 1);
    assert!(store.live_sessions(&u.id, 52, 10).await.unwrap().is_empty());
    assert_eq!(store.live_sessions(&other.id, 52, 10).await.unwrap().len(), 2, "others keep theirs");
}

/// A person's audit trail: by id, or by username where an event has no id; newest first, bounded.
async fn a_users_audit_trail_is_theirs_newest_first(store: Arc<dyn Store>) {
    let ev = |at: i64, kind: &str, user: Option<&str>, id: Option<&str>| AuditEvent {
        at,
        kind: kind.into(),
        username: user.map(str::to_owned),
        user_id: id.map(str::to_owned),
        ..Default::default()
    };
    for e in [
        ev(1, "login_denied", Some("ada"), None),
        ev(2, "login", Some("ada"), Some("id-ada")),
        ev(3, "login", Some("bob"), Some("id-bob")),
        ev(4, "renamed", Some("ada2"), Some("id-ada")),
        ev(5, "login_denied", Some("ada"), Some("id-other")),
    ] {
        store.record_audit(&e).await.unwrap();
    }
    let trail = store.audit_events_of_user("id-ada", "ada", 10).await.unwrap();
    assert_eq!(trail.iter().map(|e| e.at).collect::<Vec<_>>(), [4, 2, 1]);
    let trail = store.audit_events_of_user("id-ada", "ada", 2).await.unwrap();
    assert_eq!(trail.iter().map(|e| e.at).collect::<Vec<_>>(), [4, 2]);
    assert!(store.audit_events_of_user("nobody", "nobody", 10).await.unwrap().is_empty());
}

macro_rules! backends {
    ($($backend:ident),*) => {
        $(
            mod $backend {
                macro_rules! case {
                    ($name:ident) => {
                        #[tokio::test]
                        async fn $name() {
                            let Some((store, _guard)) = super::$backend().await else { return };
                            super::$name(store).await;
                        }
                    };
                }
                case!(a_working_store_reports_healthy);
                case!(users_are_keyed_by_upstream_identity);
                case!(codes_redeem_once_and_a_replay_revokes_their_grant);
                case!(expired_codes_do_not_redeem);
                case!(refresh_rotation_and_reuse);
                case!(a_declined_rotation_changes_nothing);
                case!(the_reuse_grace_forgives_only_a_lost_answer);
                case!(a_rotation_judged_on_a_stale_read_reads_again);
                case!(a_fresh_rotation_takes_only_the_plain_case);
                case!(racing_fresh_rotations_rotate_once);
                case!(concurrent_writes_fail_alone);
                case!(token_lookups_honour_expiry_and_revocation);
                case!(invites_count_people_once_and_close);
                case!(invite_places_hold_under_concurrency);
                case!(taken_identities_are_typed_errors);
                case!(sessions_and_pending_requests);
                case!(signing_keys_rotate_and_expire);
                case!(the_first_signing_key_is_created_once_under_concurrency);
                case!(purge_keeps_what_is_still_usable);
                case!(pending_requests_are_capped);
                case!(purge_goes_through_every_batch);
                case!(upstream_records_read_back);
                case!(login_targets_follow_links_and_verified_addresses);
                case!(upstream_attempts_are_taken_once);
                case!(service_tokens_live_until_revoked_or_expired);
                case!(revoking_a_user_ends_their_grants_and_sessions);
                case!(the_audit_log_reads_newest_first);
                case!(invites_list_newest_first);
                case!(user_locks_are_released_when_dropped);
                case!(racing_code_redemptions_issue_once);
                case!(racing_refresh_rotations_rotate_once);
                case!(racing_first_logins_make_one_user);
                case!(usage_counts_users_sessions_and_memberships);
                case!(the_allow_list_matches_live_entries_by_each_kind);
                case!(racing_puts_leave_one_entry);
                case!(activity_lists_every_user_with_what_they_did);
                case!(blocked_and_deleted_users);
                case!(admin_tokens_are_found_by_hash_revoked_once_and_note_use_coarsely);
                case!(audit_events_keep_their_actor);
                case!(audit_pages_filter_and_page_by_id);
                case!(users_are_listed_filtered_and_paged);
                case!(live_sessions_are_listed_until_revoked);
                case!(a_users_audit_trail_is_theirs_newest_first);
            }
        )*
    };
}

backends!(sqlite, postgres);

#[tokio::test]
async fn sqlite_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let id = {
        let store = SqliteStore::open(&url).await.unwrap();
        store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap().id
    };
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(store.user_by_id(&id).await.unwrap().unwrap().username, "ada");
}

/// Space freed by a purge goes back to the file system: new files use incremental vacuum, and
/// a file made before that (auto_vacuum off) is switched over when opened.
#[tokio::test]
async fn sqlite_hands_purged_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch("CREATE TABLE made_before (x); INSERT INTO made_before VALUES (1);").unwrap();
    assert_eq!(old.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0)).unwrap(), 0, "off, as before");
    drop(old);
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url).await.unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let pragma = |name: &str| raw.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(pragma("auto_vacuum"), 2, "switched to incremental");
    let fresh = dir.path().join("fresh.db");
    let _fresh_store = SqliteStore::open(&format!("sqlite://{}", fresh.display())).await.unwrap();
    let fresh = rusqlite::Connection::open(&fresh).unwrap();
    assert_eq!(fresh.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0)).unwrap(), 2, "new files too");

    let limits = PendingLimits { per_browser: 1, per_address: u32::MAX, total: u32::MAX };
    for i in 0..2000 {
        let mut p = pending(&format!("p{i}"), &format!("b{i}"), "", 1);
        p.request_json = "x".repeat(2000);
        store.create_pending_authorization(&p, limits).await.unwrap();
    }
    let full = pragma("page_count");
    store.purge_expired(1000).await.unwrap();
    assert_eq!(pragma("freelist_count"), 0, "no free pages left behind");
    assert!(pragma("page_count") < full / 4, "the file shrank: {} of {full} pages", pragma("page_count"));
}

/// Under steady writes with reads alongside, the write-ahead log must be checkpointed and
/// started over, not grow with every write for as long as the load lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&format!("sqlite://{}", db.display())).await.unwrap());
    let u = store.upsert_user_for_identity(&identity("dev", "u1", "ada"), 1).await.unwrap();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..20_000 {
                let _ = store.user_by_username("ada").await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    // ~40 MiB of pages written in all: far beyond one checkpoint's worth.
    for i in 0..4000 {
        let writes: Vec<_> = (0..4)
            .map(|j| {
                let (store, u) = (store.clone(), u.clone());
                tokio::spawn(async move {
                    let n = i * 4 + j;
                    grant_for(store.as_ref(), &u, &format!("g{n}"), &format!("a{n}"), &format!("r{n}")).await;
                })
            })
            .collect();
        for w in writes {
            w.await.unwrap();
        }
    }
    reader.await.unwrap();
    let wal = std::fs::metadata(dir.path().join("store.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal < 24 * 1024 * 1024, "WAL grew to {wal} bytes");
    assert!(store.access_token("a15999", 2).await.unwrap().is_some());
}

/// One process owns a SQLite file, so there is no rolling upgrade to allow for: a file written by
/// a newer hubauth is refused with a clear message (and left alone), and with `migrate = false` an
/// older one is too.
#[tokio::test]
async fn sqlite_refuses_a_schema_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let url = format!("sqlite://{}", path.display());
    drop(SqliteStore::open(&url).await.unwrap());
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = SqliteStore::open(&url).await.err().expect("refused").to_string();
    assert!(err.contains("schema version 99") && err.contains("newer than this hubauth"), "{err}");
    let version: i64 =
        rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 99, "not touched");

    let fresh = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let err = SqliteStore::open_with(&fresh, Migrate::Refuse).await.err().expect("refused").to_string();
    assert!(err.contains("hubauth db migrate"), "{err}");
}
