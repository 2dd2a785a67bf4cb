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
pub mod userinfo;

pub use error::{ErrorCode, OAuthError};
