//! `dev`: static users with argon2-hashed passwords, defined in config. For demos and tests.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{LoginFailure, PasswordConnector};
use crate::config::{DevConnectorConfig, DevUser};
use crate::crypto::password;
use crate::store::UpstreamIdentity;

pub struct DevConnector {
    id: String,
    users: HashMap<String, DevUser>,
}

impl DevConnector {
    pub fn new(config: &DevConnectorConfig) -> Self {
        Self { id: config.id.clone(), users: config.users.iter().map(|u| (u.username.clone(), u.clone())).collect() }
    }
}

impl DevConnector {
    fn identity(&self, u: DevUser) -> UpstreamIdentity {
        UpstreamIdentity {
            connector_id: self.id.clone(),
            subject: u.username.clone(),
            username: u.username,
            name: u.name,
            email_verified: u.email.is_some(),
            email: u.email,
            groups: u.groups,
        }
    }
}

#[async_trait]
impl PasswordConnector for DevConnector {
    async fn login(&self, username: &str, password: &str) -> Result<UpstreamIdentity, LoginFailure> {
        let user = self.users.get(username).cloned();
        let password = password.to_string();
        // Argon2 is deliberately slow: keep it off the async workers.
        let verified = tokio::task::spawn_blocking({
            let user = user.clone();
            move || match &user {
                Some(u) => password::verify_password(&u.password_hash, &password),
                None => {
                    password::burn_verification_time(&password);
                    false
                }
            }
        })
        .await
        .map_err(|e| LoginFailure::Upstream(format!("password check did not finish: {e}")))?;
        match user {
            Some(u) if verified => Ok(self.identity(u)),
            _ => Err(LoginFailure::BadCredentials),
        }
    }

    async fn lookup(&self, subject: &str) -> Result<Option<UpstreamIdentity>, LoginFailure> {
        Ok(self.users.get(subject).cloned().map(|u| self.identity(u)))
    }
}
