//! OAuth 2.0 error responses (RFC 6749 §5.2, RFC 6750 §3, RFC 7009, RFC 7662), rendered in one place.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidToken,
    AccessDenied,
    UnsupportedResponseType,
    LoginRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    /// RFC 8707 / 8693: the requested audience or resource is not one this client may have.
    InvalidTarget,
    TemporarilyUnavailable,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// An error answered as JSON from the token, revocation and introspection endpoints, or as a
/// `WWW-Authenticate` challenge from userinfo.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// Basic auth was attempted: answer 401 with a Basic challenge (RFC 6749 §5.2).
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self { code, description: description.into(), basic_challenge: false }
    }
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }
    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure while answering an OAuth request");
        Self::new(ErrorCode::ServerError, "hubauth could not reach its storage; try again")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.code.as_str(), "error_description": self.description });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.code == ErrorCode::InvalidClient {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hubauth\""));
        }
        response
    }
}

/// Errors of a protected resource (userinfo): 401 + `WWW-Authenticate: Bearer` (RFC 6750 §3).
#[derive(Debug)]
pub enum BearerError {
    /// No token at all: a bare challenge, no error code.
    Missing,
    InvalidRequest(&'static str),
    InvalidToken(&'static str),
    Store(StoreError),
}

impl From<StoreError> for BearerError {
    fn from(e: StoreError) -> Self {
        BearerError::Store(e)
    }
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, challenge, body) = match &self {
            BearerError::Missing => (StatusCode::UNAUTHORIZED, "Bearer realm=\"hubauth\"".to_string(), None),
            BearerError::InvalidRequest(d) => (
                StatusCode::BAD_REQUEST,
                format!("Bearer realm=\"hubauth\", error=\"invalid_request\", error_description=\"{d}\""),
                Some(("invalid_request", *d)),
            ),
            BearerError::InvalidToken(d) => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer realm=\"hubauth\", error=\"invalid_token\", error_description=\"{d}\""),
                Some(("invalid_token", *d)),
            ),
            BearerError::Store(e) => {
                tracing::error!(error = %e, "storage failure while checking a bearer token");
                return OAuthError::new(ErrorCode::ServerError, "hubauth could not reach its storage; try again")
                    .into_response();
            }
        };
        let json = body
            .map(|(e, d)| serde_json::json!({ "error": e, "error_description": d }))
            .unwrap_or(serde_json::json!({}));
        let mut response = (status, Json(json)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
