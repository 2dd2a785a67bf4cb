//! The admin API's OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `/admin/api/openapi.json` (no credential needed: it describes, it grants nothing).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::{Modify, OpenApi};

use super::{api, api_audit, api_users};
use crate::app::SharedState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hubauth admin API",
        description = "What hub admins do, for scripts: invites, the runtime allow-list, the activity report, admin API tokens. \
                       Authenticate with `Authorization: Bearer <token>` (a static `[admin] api_tokens` value or one from \
                       `hubauth admin tokens create`); read tokens may only GET. From a browser, an admin's hubauth session \
                       works too, with the session's CSRF token in `X-CSRF-Token` for changes."
    ),
    paths(
        api::list_invites,
        api::create_invite,
        api::revoke_invite,
        api::list_access,
        api::allow_access,
        api::deny_access,
        api::activity_report,
        api::list_tokens,
        api::create_token,
        api::revoke_token,
        api_audit::list_audit,
        api_users::list,
        api_users::show,
        api_users::block,
        api_users::unblock,
        api_users::revoke_sessions,
        api_users::delete,
        api_users::bulk,
    ),
    modifiers(&Credentials)
)]
pub struct AdminApi;

struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::web::session::SESSION_COOKIE))),
        );
    }
}

/// The document for this deployment: the issuer is its server, so paths resolve under it.
pub fn document(issuer: &str) -> utoipa::openapi::OpenApi {
    let mut doc = AdminApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.servers = Some(vec![Server::new(issuer)]);
    doc
}

/// `GET /admin/api/openapi.json`.
pub async fn serve(State(state): State<SharedState>) -> Response {
    match document(&state.config.issuer).to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not render the OpenAPI document");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
