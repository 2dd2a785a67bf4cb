//! Which user claims a scope releases (OpenID Connect Core §5.4, plus `groups`).

use serde_json::{Map, Value};

use super::scope;
use crate::store::User;

pub fn user_claims(user: &User, granted_scope: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), user.id.clone().into());
    if scope::has(granted_scope, "profile") {
        claims.insert("preferred_username".into(), user.username.clone().into());
        claims.insert("name".into(), user.name.clone().unwrap_or_else(|| user.username.clone()).into());
        claims.insert("updated_at".into(), user.updated_at.into());
    }
    if scope::has(granted_scope, "email") {
        if let Some(email) = &user.email {
            claims.insert("email".into(), email.clone().into());
            claims.insert("email_verified".into(), user.email_verified.into());
        }
    }
    if scope::has(granted_scope, "groups") {
        claims.insert("groups".into(), user.groups.clone().into());
    }
    claims
}
