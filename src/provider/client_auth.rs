//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, and `none` for public clients (RFC 6749 §2.3).

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::params::Params;
use super::OAuthError;
use crate::config::{ClientConfig, Config};

fn percent_decode(s: &str) -> Option<String> {
    // RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
    Some(url::form_urlencoded::parse(format!("v={s}").as_bytes()).next()?.1.into_owned())
}

/// Who is calling, proven by the credentials in the request.
pub fn authenticate<'c>(
    config: &'c Config,
    headers: &HeaderMap,
    params: &Params,
) -> Result<&'c ClientConfig, OAuthError> {
    let basic = match headers.get(axum::http::header::AUTHORIZATION) {
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| OAuthError::invalid_request("the Authorization header is not readable text"))?;
            match value.split_once(' ') {
                Some((scheme, creds)) if scheme.eq_ignore_ascii_case("basic") => {
                    let fail = || {
                        let mut e = OAuthError::invalid_client("the Basic credentials are malformed");
                        e.basic_challenge = true;
                        e
                    };
                    let decoded = STANDARD.decode(creds.trim()).map_err(|_| fail())?;
                    let decoded = String::from_utf8(decoded).map_err(|_| fail())?;
                    let (id, secret) = decoded.split_once(':').ok_or_else(fail)?;
                    Some((percent_decode(id).ok_or_else(fail)?, percent_decode(secret).ok_or_else(fail)?))
                }
                // A Bearer or other scheme is not client authentication here; ignore it.
                _ => None,
            }
        }
        None => None,
    };
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");

    let (client_id, presented_secret, used_basic) = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not both Basic and client_secret",
            ))
        }
        (Some((id, secret)), None) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request("client_id in the body differs from the Basic credentials"));
            }
            (id, Some(secret), true)
        }
        (None, secret) => match body_id {
            Some(id) => (id.to_string(), secret.map(str::to_string), false),
            None => return Err(OAuthError::invalid_client("client authentication is required (client_id missing)")),
        },
    };

    let unknown = || {
        let mut e = OAuthError::invalid_client("client authentication failed");
        e.basic_challenge = used_basic;
        e
    };
    let client = config.client(&client_id).ok_or_else(unknown)?;
    match (&client.secret, presented_secret) {
        (Some(expected), Some(given)) if expected.matches(&given) => Ok(client),
        (None, None) => Ok(client),
        (None, Some(_)) => Err(OAuthError::invalid_client("this client is public and has no secret")),
        _ => Err(unknown()),
    }
}
