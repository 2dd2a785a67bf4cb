//! `dev`: static users with argon2-hashed passwords, defined in config. For demos and tests.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{LoginFailure, PasswordConnector};
use crate::config::{DevConnectorConfig, DevUser};
use crate::password_login::checks::{PasswordChecks, VerifyError};
use crate::store::UpstreamIdentity;

pub struct DevConnector {
    id: String,
    users: HashMap<String, DevUser>,
    checks: Arc<PasswordChecks>,
}

impl DevConnector {
    pub fn new(config: &DevConnectorConfig, checks: Arc<PasswordChecks>) -> Self {
        Self {
            id: config.id.clone(),
            users: config.users.iter().map(|u| (u.username.clone(), u.clone())).collect(),
            checks,
        }
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
        // An unknown user still costs a (dummy) check, inside the same bound: timing tells nothing.
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self.checks.verify(hash, password.to_string()).await.map_err(|e| match e {
            VerifyError::Busy(_) => LoginFailure::Busy,
            VerifyError::Failed(why) => LoginFailure::Upstream(why),
        })?;
        match user {
            Some(u) if verified => Ok(self.identity(u)),
            _ => Err(LoginFailure::BadCredentials),
        }
    }

    async fn lookup(&self, subject: &str) -> Result<Option<UpstreamIdentity>, LoginFailure> {
        Ok(self.users.get(subject).cloned().map(|u| self.identity(u)))
    }
}
