//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, and `none` for public clients (RFC 6749 §2.3).

use axum::http::HeaderMap;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::params::Params;
use super::OAuthError;
use crate::config::{ClientConfig, Config};

/// A credential from the Basic header as RFC 6749 §2.3.1 has it (form-urlencoded before base64),
/// and as sent verbatim by the many clients that skip that step (requests' `HTTPBasicAuth`,
/// OAuthenticator's `basic_auth`): a secret with `+` or `%` must work either way.
struct BasicCredential {
    decoded: String,
    raw: String,
}

impl BasicCredential {
    fn new(raw: &str) -> Option<Self> {
        let decoded = url::form_urlencoded::parse(format!("v={raw}").as_bytes()).next()?.1.into_owned();
        Some(Self { decoded, raw: raw.to_owned() })
    }

    /// A value that arrived already decoded (a form field): one reading only.
    fn verbatim(value: &str) -> Self {
        Self { decoded: value.to_owned(), raw: value.to_owned() }
    }

    /// The readings to try, the RFC's first.
    fn readings(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.decoded.as_str()).chain((self.raw != self.decoded).then_some(self.raw.as_str()))
    }
}

/// Base64 as clients really send it: the standard alphabet or the URL-safe one (older authlib),
/// with or without padding.
fn decode_base64(value: &str) -> Option<Vec<u8>> {
    let lenient = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, lenient)
        .decode(value)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, lenient).decode(value))
        .ok()
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
                    let decoded = decode_base64(creds.trim()).ok_or_else(fail)?;
                    let decoded = String::from_utf8(decoded).map_err(|_| fail())?;
                    let (id, secret) = decoded.split_once(':').ok_or_else(fail)?;
                    Some((BasicCredential::new(id).ok_or_else(fail)?, BasicCredential::new(secret).ok_or_else(fail)?))
                }
                // A Bearer or other scheme is not client authentication here; ignore it.
                _ => None,
            }
        }
        None => None,
    };
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");

    let (client, presented_secret, used_basic) = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not both Basic and client_secret",
            ))
        }
        (Some((id, secret)), None) => {
            let client = id.readings().find_map(|id| config.client(id));
            if let (Some(client), Some(body_id)) = (client, body_id) {
                if body_id != client.id {
                    return Err(OAuthError::invalid_request(
                        "client_id in the body differs from the Basic credentials",
                    ));
                }
            }
            (client, Some(secret), true)
        }
        (None, secret) => match body_id {
            Some(id) => (config.client(id), secret.map(BasicCredential::verbatim), false),
            None => return Err(OAuthError::invalid_client("client authentication is required (client_id missing)")),
        },
    };

    let unknown = || {
        let mut e = OAuthError::invalid_client("client authentication failed");
        e.basic_challenge = used_basic;
        e
    };
    let client = client.ok_or_else(unknown)?;
    match (&client.secret, presented_secret) {
        (Some(expected), Some(given)) if given.readings().any(|g| expected.matches(g)) => Ok(client),
        (None, None) => Ok(client),
        (None, Some(_)) => Err(OAuthError::invalid_client("this client is public and has no secret")),
        _ => Err(unknown()),
    }
}
