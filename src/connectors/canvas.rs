//! `canvas`: Canvas LMS OAuth2. Being written; see the module docs once done.

use async_trait::async_trait;
use serde::Deserialize;

use super::http::UpstreamHttp;
use super::{ConnectorError, LoginAttempt, RedirectConnector, UpstreamLogin, UpstreamTokens};
use crate::clock::UnixTime;
use crate::config::SecretSource;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanvasConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    pub client_id: String,
    pub client_secret: SecretSource,
}

pub struct CanvasConnector;

impl CanvasConnector {
    pub fn new(_cfg: &CanvasConfig, _http: &UpstreamHttp) -> Result<Self, (&'static str, String)> {
        Err(("type", "the canvas connector is not available in this build yet".into()))
    }
}

#[async_trait]
impl RedirectConnector for CanvasConnector {
    async fn authorization_url(&self, _attempt: &LoginAttempt) -> Result<String, ConnectorError> {
        Err(ConnectorError::failed("not available"))
    }
    async fn complete(&self, _a: &LoginAttempt, _code: &str, _now: UnixTime) -> Result<UpstreamLogin, ConnectorError> {
        Err(ConnectorError::failed("not available"))
    }
    async fn refresh(&self, _t: &UpstreamTokens, _s: &str, _now: UnixTime) -> Result<UpstreamLogin, ConnectorError> {
        Err(ConnectorError::failed("not available"))
    }
}
