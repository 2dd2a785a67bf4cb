//! Upstream identity sources. The rest of hubauth sees only the traits here; each upstream is one
//! file. Today there is the built-in `dev` connector (username + password from config); redirect-
//! based upstreams (OAuth2, OIDC, GitHub, Canvas) add a second trait beside [`PasswordConnector`].

mod dev;

use std::sync::Arc;

use async_trait::async_trait;

pub use dev::DevConnector;

use crate::config::ConnectorConfig;
use crate::store::UpstreamIdentity;

#[derive(Debug, thiserror::Error)]
pub enum LoginFailure {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("the login service failed: {0}")]
    Upstream(String),
}

/// A connector that checks credentials typed into hubauth's own login form.
#[async_trait]
pub trait PasswordConnector: Send + Sync {
    async fn login(&self, username: &str, password: &str) -> Result<UpstreamIdentity, LoginFailure>;
}

pub enum ConnectorKind {
    Password(Arc<dyn PasswordConnector>),
}

pub struct Connector {
    pub id: String,
    pub display_name: String,
    pub kind: ConnectorKind,
}

/// Every configured connector, in config order (the order of the login chooser).
pub struct Connectors(Vec<Connector>);

impl Connectors {
    pub fn from_config(configs: &[ConnectorConfig]) -> Self {
        Self(
            configs
                .iter()
                .map(|c| match c {
                    ConnectorConfig::Dev(dev) => Connector {
                        id: dev.id.clone(),
                        display_name: dev.name.clone().unwrap_or_else(|| "Demo accounts".into()),
                        kind: ConnectorKind::Password(Arc::new(DevConnector::new(dev))),
                    },
                })
                .collect(),
        )
    }

    pub fn get(&self, id: &str) -> Option<&Connector> {
        self.0.iter().find(|c| c.id == id)
    }

    pub fn all(&self) -> &[Connector] {
        &self.0
    }
}
