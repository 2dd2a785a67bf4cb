//! The login pages: the connector chooser and the password form, and completing the pending
//! authorization once the person is known (for every kind of connector).

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use minijinja::context;
use subtle::ConstantTimeEq;

use super::pages::{templates, PageError};
use super::session;
use crate::app::SharedState;
use crate::connectors::{password_memberships, Connector, ConnectorKind, LoginFailure, Membership};
use crate::crypto::random::{random_value, value_hash};
use crate::login::{self, Arrival, SignIn};
use crate::password_login::{Refused, RefusedFor};
use crate::policy::{self, Decision};
use crate::provider::authorize::{binding_matches, issue_code, AuthorizationRequest};
use crate::provider::params::Params;
use crate::store::{BrowserSession, PendingAuthorization, UpstreamIdentity, UpstreamRecord};
use crate::web::client_address::ClientAddress;
use crate::web::invite;
use crate::web::request_id;

pub fn expired() -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        "login_expired",
        "This sign-in page has expired",
        "Sign-in pages are valid for a limited time and only once.",
    )
    .with_hint("Go back to your hub and click its sign-in button again.")
}

fn other_browser() -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        "login_not_bound",
        "This sign-in page belongs to another browser tab or window",
        "For your safety, a sign-in can only be finished in the browser that started it, with cookies enabled.",
    )
    .with_hint("Go back to your hub and start signing in again from this browser.")
}

pub async fn load_pending(
    state: &SharedState,
    jar: &CookieJar,
    id: Option<&str>,
) -> Result<(PendingAuthorization, AuthorizationRequest), PageError> {
    let id = id.filter(|id| id.len() <= 100).ok_or_else(expired)?;
    let pending = state
        .store
        .pending_authorization(id, state.clock.now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not load a pending authorization");
            PageError::internal()
        })?
        .ok_or_else(expired)?;
    if !binding_matches(jar, &pending) {
        return Err(other_browser());
    }
    let request: AuthorizationRequest =
        serde_json::from_str(&pending.request_json).map_err(|_| PageError::internal())?;
    Ok((pending, request))
}

pub fn client_name(state: &SharedState, request: &AuthorizationRequest) -> String {
    if crate::console::gate::is_console(request) {
        return "the hub admins' console".into();
    }
    state.config.client(&request.client_id).map(|c| c.name.clone()).unwrap_or_else(|| request.client_id.clone())
}

fn render_form(
    state: &SharedState,
    status: StatusCode,
    pending: &PendingAuthorization,
    request: &AuthorizationRequest,
    connector: &Connector,
    username: &str,
    error: Option<&str>,
) -> Response {
    templates().render(
        status,
        "login.html",
        context! {
            client_name => client_name(state, request),
            connector_name => connector.display_name,
            connectors_count => state.connectors.all().len(),
            action => state.config.endpoint(&format!("/login/{}", connector.id)),
            chooser_url => format!("{}?request={}", state.config.endpoint("/login"), pending.id),
            request_id => pending.id,
            csrf => pending.csrf_token,
            username => username,
            error => error,
        },
    )
}

/// `GET /login?request=…[&connector=…]`: the chooser, or straight to the only connector's form.
pub async fn login_page(State(state): State<SharedState>, jar: CookieJar, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let (pending, request) = match load_pending(&state, &jar, params.get("request")).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let all = state.connectors.all();
    // The chooser's link, or the client's own preselection (`connector=` on /authorize).
    let asked = params.get("connector").or(request.connector.as_deref());
    let chosen = match asked {
        Some(id) => match state.connectors.get(id) {
            Some(c) => Some(c),
            None => {
                return PageError::bad_request(
                    "unknown_connector",
                    format!("There is no sign-in method called {id:?}."),
                )
                .into_response()
            }
        },
        None if all.len() == 1 => all.first(),
        None => None,
    };
    match chosen {
        Some(connector) => match &connector.kind {
            ConnectorKind::Password(_) => {
                let hint = request.login_hint.clone().unwrap_or_default();
                render_form(&state, StatusCode::OK, &pending, &request, connector, &hint, None)
            }
            ConnectorKind::Redirect(upstream) => super::upstream::start(&state, &pending, connector, upstream.as_ref())
                .await
                .unwrap_or_else(IntoResponse::into_response),
        },
        None => {
            let connectors: Vec<_> = all
                .iter()
                .map(|c| {
                    let icon_url =
                        c.icon.as_deref().filter(|i| i.starts_with("https://") || i.starts_with("data:image/"));
                    let icon_letter = c.display_name.chars().next().map(|ch| ch.to_uppercase().to_string());
                    context! {
                        id => c.id,
                        name => c.display_name,
                        icon => c.icon,
                        icon_url => icon_url,
                        icon_letter => icon_letter,
                        url => format!("{}?request={}&connector={}", state.config.endpoint("/login"), pending.id, c.id),
                    }
                })
                .collect();
            templates().render(
                StatusCode::OK,
                "chooser.html",
                context! { client_name => client_name(&state, &request), connectors },
            )
        }
    }
}

/// `POST /login/{connector}`: check the form, log the person in, and answer the client.
pub async fn login_submit(
    State(state): State<SharedState>,
    ClientAddress(client): ClientAddress,
    jar: CookieJar,
    Path(connector_id): Path<String>,
    body: Bytes,
) -> Response {
    match submit(&state, jar, client, &connector_id, &body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn submit(
    state: &SharedState,
    jar: CookieJar,
    client: Option<IpAddr>,
    connector_id: &str,
    body: &[u8],
) -> Result<Response, Response> {
    let params = Params::parse(body).map_err(|e| PageError::bad_request("invalid_request", e.0).into_response())?;
    let (pending, request) =
        load_pending(state, &jar, params.get("request")).await.map_err(IntoResponse::into_response)?;
    let csrf_ok: bool = params.get("csrf").unwrap_or("").as_bytes().ct_eq(pending.csrf_token.as_bytes()).into();
    if !csrf_ok {
        return Err(PageError::bad_request("csrf", "The form was not sent by this sign-in page.").into_response());
    }
    let connector = state.connectors.get(connector_id).ok_or_else(|| {
        PageError::bad_request("unknown_connector", format!("There is no sign-in method called {connector_id:?}."))
            .into_response()
    })?;
    let identity = match &connector.kind {
        ConnectorKind::Password(p) => {
            let username = params.get("username").unwrap_or("");
            let password = params.get("password").unwrap_or("");
            if username.len() > 256 || password.len() > 1024 {
                return Err(render_form(
                    state,
                    StatusCode::BAD_REQUEST,
                    &pending,
                    &request,
                    connector,
                    "",
                    Some("That username or password is too long."),
                ));
            }
            // The allowance is taken before the check, so parallel guesses cannot overrun it.
            let attempt = match state.login_throttle.attempt(connector_id, username, client).await {
                Ok(attempt) => attempt,
                Err(refused) if refused.why == RefusedFor::Unavailable => {
                    let page = PageError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_unavailable",
                        "Sign-in is unavailable",
                        "hubauth cannot reach its database right now, so it cannot check passwords.",
                    )
                    .with_hint("Wait a few seconds and send the form again.");
                    return Err(with_retry_after(page.into_response(), refused.retry_after));
                }
                Err(refused) => {
                    tracing::warn!(
                        connector = connector_id,
                        client = %client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
                        why = ?refused.why,
                        "password login refused: too many attempts"
                    );
                    let page = render_form(
                        state,
                        StatusCode::TOO_MANY_REQUESTS,
                        &pending,
                        &request,
                        connector,
                        username,
                        Some(&too_many_attempts(refused)),
                    );
                    return Err(with_retry_after(page, refused.retry_after));
                }
            };
            let outcome = p.login(username, password).await;
            if !matches!(outcome, Err(LoginFailure::BadCredentials)) {
                state.login_throttle.not_a_wrong_guess(attempt).await;
            }
            match outcome {
                Ok(identity) => identity,
                Err(LoginFailure::BadCredentials) => {
                    tracing::info!(connector = connector_id, "failed password login");
                    return Err(render_form(
                        state,
                        StatusCode::UNAUTHORIZED,
                        &pending,
                        &request,
                        connector,
                        username,
                        Some("Wrong username or password."),
                    ));
                }
                Err(LoginFailure::Upstream(reason)) => {
                    tracing::warn!(connector = connector_id, %reason, "login service failed");
                    return Err(PageError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        format!("{} is not answering properly", connector.display_name),
                        "hubauth could not check your sign-in with this service.",
                    )
                    .with_hint("Try again in a few minutes, or choose another way to sign in.")
                    .into_response());
                }
                Err(LoginFailure::Busy) => {
                    tracing::warn!(connector = connector_id, "password login refused: every password check is busy");
                    let page = PageError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "busy",
                        "Too many sign-ins at once",
                        "hubauth is checking many passwords right now and could not check yours in time.",
                    )
                    .with_hint("Wait a few seconds and send the form again.");
                    return Err(with_retry_after(page.into_response(), BUSY_RETRY_AFTER));
                }
            }
        }
        ConnectorKind::Redirect(_) => {
            return Err(PageError::bad_request("wrong_connector", "This sign-in method does not use a password form.")
                .into_response())
        }
    };
    let (memberships, record) = password_memberships(&identity);
    finish_login(state, jar, &pending, &request, connector, identity, &memberships, &record).await
}

/// Seconds a "busy" answer asks the browser to wait.
const BUSY_RETRY_AFTER: u64 = 5;

fn with_retry_after(mut page: Response, seconds: u64) -> Response {
    page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    page
}

/// The refusal as the person reads it: which limit, and when to come back.
fn too_many_attempts(refused: Refused) -> String {
    let whose = match refused.why {
        RefusedFor::Address => "from your network",
        RefusedFor::AccountFromAddress => "for this account from your network",
        RefusedFor::Account => "for this account",
        RefusedFor::Saturated | RefusedFor::Unavailable => "on this server right now",
    };
    let wait = match refused.retry_after {
        s if s < 120 => format!("{s} second{}", if s == 1 { "" } else { "s" }),
        s => format!("{} minutes", s.div_ceil(60)),
    };
    format!("Too many sign-in attempts {whose}. Try again in {wait}.")
}

/// The person is known: admit them (see [`crate::login`]), end the pending request (once), start
/// the browser session and send the browser back to the client with a code.
#[allow(clippy::too_many_arguments)]
pub async fn finish_login(
    state: &SharedState,
    jar: CookieJar,
    pending: &PendingAuthorization,
    request: &AuthorizationRequest,
    connector: &Connector,
    identity: UpstreamIdentity,
    memberships: &[Membership],
    upstream: &UpstreamRecord,
) -> Result<Response, Response> {
    // A workshop invite carried by this browser admits and adds its groups.
    let invite = invite::carried(state, &jar, &connector.id).await;
    let arrival = Arrival { connector, identity, memberships, record: upstream.clone() };
    let outcome = login::sign_in(state, arrival, invite.as_ref(), &request.client_id).await.map_err(|e| {
        tracing::error!(error = %e, "could not record the sign-in");
        PageError::internal().into_response()
    })?;
    let user = match outcome {
        SignIn::Admitted { user, .. } => user,
        SignIn::Refused { username, decision } => {
            return Err(denied_page(state, request, connector, &username, &decision, &pending.id))
        }
        SignIn::UsernameInvalid(why) => {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "username_invalid",
                format!("Your {} username cannot be used here", connector.display_name),
                format!("The hub needs usernames of a certain form, and {why}."),
            )
            .with_hint("Tell the hub's administrators what this page says; they can link your account to a username that works.")
            .into_response());
        }
        SignIn::UsernameTaken(name) => {
            return Err(PageError::new(
                StatusCode::CONFLICT,
                "username_conflict",
                "This username is already taken",
                format!("Another account already uses the username {name:?}, so hubauth will not merge the two."),
            )
            .with_hint("Ask the hub's administrators to link the accounts if they belong to the same person.")
            .into_response())
        }
    };
    // Single use: whoever deletes the pending request first finishes it.
    match state.store.delete_pending_authorization(&pending.id).await {
        Ok(true) => {}
        Ok(false) => return Err(expired().into_response()),
        Err(_) => return Err(PageError::internal().into_response()),
    }
    let now = state.clock.now();
    let token = random_value();
    let browser = BrowserSession {
        id: uuid::Uuid::new_v4().to_string(),
        token_hash: value_hash(&token),
        user_id: user.id.clone(),
        connector_id: connector.id.clone(),
        csrf_token: random_value(),
        auth_time: now,
        created_at: now,
        expires_at: now + state.config.session.lifetime.as_secs() as i64,
    };
    if let Err(e) = state.store.create_browser_session(&browser).await {
        tracing::error!(error = %e, "could not store the browser session");
        return Err(PageError::internal().into_response());
    }
    let jar = jar
        .add(session::cookie(state, session::SESSION_COOKIE, token, state.config.session.lifetime.as_secs() as i64))
        .add(session::removal(state, session::LOGIN_COOKIE))
        .add(session::removal(state, invite::INVITE_COOKIE));
    let redirect =
        issue_code(state, request, &user, Some(&browser.id), now).await.map_err(IntoResponse::into_response)?;
    Ok((jar, redirect).into_response())
}

/// The explainable refusal: who signed in, which rule refused them, where the policy is and whom
/// to ask, and the request id that finds the audit entry.
fn denied_page(
    state: &SharedState,
    request: &AuthorizationRequest,
    connector: &Connector,
    username: &str,
    decision: &Decision,
    pending_id: &str,
) -> Response {
    let access = &state.config.access;
    let contact_is_url =
        access.contact.as_deref().is_some_and(|c| c.starts_with("https://") || c.starts_with("http://"));
    templates().render(
        StatusCode::FORBIDDEN,
        "denied.html",
        context! {
            client_name => client_name(state, request),
            username => username,
            connector_name => connector.display_name,
            sentence => decision.sentence,
            code => decision.code.as_str(),
            policy_url => access.policy_url,
            contact => access.contact,
            contact_is_url => contact_is_url,
            invite_hint => decision.code == policy::ReasonCode::NotAllowed,
            other_connectors => state.connectors.all().len() > 1,
            chooser_url => format!("{}?request={pending_id}", state.config.endpoint("/login")),
            request_id => request_id::current(),
        },
    )
}
