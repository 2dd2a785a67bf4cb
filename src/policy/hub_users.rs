//! `admit_hub_users`: whether JupyterHub has a user of this name, from its REST API
//! (`GET {api_url}/users/{name}` with a token holding `read:users`: 200 is a user, 404 is none).
//!
//! Anything else — the hub down or slow past `[jupyterhub] timeout`, 403 for a token the hub does
//! not accept or that lacks the scope, a 5xx — is [`HubUser::Unreachable`], logged with the
//! status: the policy then refuses rather than guess (see the module doc of [`crate::policy`]).

use std::time::Instant;

use crate::app::AppState;
use crate::policy::HubUser;

/// Asks the hub whether `username` is one of its users.
pub async fn lookup(state: &AppState, username: &str) -> HubUser {
    let hub = &state.config.jupyterhub;
    let (Some(api), Some(token)) = (&hub.api_url, &hub.api_token) else {
        // Config validation requires both with admit_hub_users; never admit without asking.
        tracing::error!("admit_hub_users is set but [jupyterhub] api_url or api_token is missing");
        return HubUser::Unreachable;
    };
    let Some(url) = user_url(api, username) else {
        tracing::error!(api_url = %api, "[jupyterhub] api_url cannot take a path");
        return HubUser::Unreachable;
    };
    // Counted in the upstream metrics as connector "jupyterhub".
    let http = state.http.for_connector("jupyterhub");
    let started = Instant::now();
    let client = match http.client() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the HTTP client for the JupyterHub API; admit_hub_users cannot admit");
            return HubUser::Unreachable;
        }
    };
    let request = client.get(url).header("Authorization", format!("token {}", token.expose())).send();
    let answer = match tokio::time::timeout(hub.timeout, request).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(user = %username, timeout = ?hub.timeout, "the JupyterHub API did not answer in time; admit_hub_users cannot admit");
            return HubUser::Unreachable;
        }
    };
    http.observe(started, answer.as_ref().map(|a| a.status()));
    match answer {
        Ok(a) if a.status() == reqwest::StatusCode::OK => HubUser::Known,
        Ok(a) if a.status() == reqwest::StatusCode::NOT_FOUND => HubUser::Unknown,
        Ok(a) => {
            let status = a.status().as_u16();
            let hint = match status {
                401 | 403 => " (is [jupyterhub] api_token a token the hub accepts, with the read:users scope?)",
                _ => "",
            };
            tracing::warn!(user = %username, status, "unexpected answer from the JupyterHub API{hint}; admit_hub_users cannot admit");
            HubUser::Unreachable
        }
        Err(e) => {
            tracing::warn!(user = %username, error = %e, "could not reach the JupyterHub API; admit_hub_users cannot admit");
            HubUser::Unreachable
        }
    }
}

/// `{api}/users/{username}`, the name one percent-encoded path segment (so `../` or `?` in a
/// name cannot reach another endpoint).
fn user_url(api: &str, username: &str) -> Option<url::Url> {
    let mut url = url::Url::parse(api).ok()?;
    url.path_segments_mut().ok()?.pop_if_empty().push("users").push(username);
    Some(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_username_is_one_encoded_path_segment() {
        let u = super::user_url("http://hub:8081/hub/api/", "a/../b?x").unwrap();
        assert_eq!(u.as_str(), "http://hub:8081/hub/api/users/a%2F..%2Fb%3Fx");
        let u = super::user_url("http://hub:8081/hub/api", "alice").unwrap();
        assert_eq!(u.as_str(), "http://hub:8081/hub/api/users/alice");
    }
}
