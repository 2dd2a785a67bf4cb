//! The hub admins' console under `/admin/`: server-rendered pages (no JavaScript needed) for the
//! people `[admin]` names. Who may see what is decided in [`gate`]; the pages only call into
//! [`crate::admin`], which the CLI and the API share.

pub mod access;
pub mod audit;
pub mod form;
pub mod gate;
pub mod invites;
pub mod page;
pub mod report;
pub mod tokens;
pub mod users;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum_extra::extract::CookieJar;

use crate::app::SharedState;

/// `GET /admin/`: where to go from here.
pub async fn home(State(state): State<SharedState>, jar: CookieJar, uri: Uri) -> Response {
    let who = match gate::require(&state, &jar, &uri, false).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    page::render(&state, &who, StatusCode::OK, "", "console/home.html", ())
}
