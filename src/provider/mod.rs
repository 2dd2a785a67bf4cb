//! The OpenID Connect provider that clients such as JupyterHub talk to. One file per endpoint,
//! one file per grant under `token/`.

pub mod authorize;
pub mod claims;
pub mod client_auth;
pub mod discovery;
pub mod error;
pub mod id_token;
pub mod introspect;
pub mod logout;
pub mod params;
pub mod revoke;
pub mod scope;
pub mod token;
pub mod token_use;
pub mod userinfo;

pub use error::{ErrorCode, OAuthError};

/// RFC 8693 token type URIs hubauth understands (also used by `hubauth token`).
pub mod token_exchange_types {
    pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
    /// hubauth's own: a JupyterHub API token, checked against the hub's REST API.
    pub const JUPYTERHUB_TOKEN_TYPE: &str = "urn:hubauth:params:oauth:token-type:jupyterhub-api-token";
}
