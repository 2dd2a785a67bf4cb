//! Rendering a console page: the shared layout (navigation, who is signed in, the request id)
//! around each page's own context. Every console page is `no-store` (through
//! [`crate::web::pages::Templates::render`]) and renders no token or secret.

use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{context, Value};
use serde::Serialize;

use crate::admin::principal::Principal;
use crate::app::AppState;
use crate::web::pages::templates;

/// The console's sections, in the order the navigation shows them: (path under `/admin/`,
/// label, what it is for).
pub const SECTIONS: &[(&str, &str, &str)] = &[
    ("", "Home", "where to start"),
    ("users", "Users", "find people, see why they are admitted, block, revoke or delete them, in bulk too"),
    ("access", "Allow-list", "admit people beside the configured rules, with groups and an expiry"),
    ("invites", "Invites", "workshop links: create, see their uses, revoke"),
    ("audit", "Audit log", "who changed what, and every sign-in and refusal"),
    ("report", "Activity", "who is still active, and what their storage costs"),
    ("tokens", "API tokens", "tokens for scripts: create, see their last use, revoke"),
];

/// The (templates') built-in console templates, registered with the login pages' so they share
/// one environment and one look.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("console/layout.html", include_str!("templates/layout.html")),
    ("console/home.html", include_str!("templates/home.html")),
    ("console/access.html", include_str!("templates/access.html")),
    ("console/invites.html", include_str!("templates/invites.html")),
    ("console/invite_created.html", include_str!("templates/invite_created.html")),
    ("console/audit.html", include_str!("templates/audit.html")),
    ("console/report.html", include_str!("templates/report.html")),
    ("console/tokens.html", include_str!("templates/tokens.html")),
    ("console/token_created.html", include_str!("templates/token_created.html")),
    ("console/users.html", include_str!("templates/users.html")),
    ("console/user.html", include_str!("templates/user.html")),
    ("console/users_confirm.html", include_str!("templates/users_confirm.html")),
    ("console/users_result.html", include_str!("templates/users_result.html")),
];

/// An absolute path to a console page, e.g. `path(state, "users")` → `/hubauth/admin/users`.
pub fn path(state: &AppState, section: &str) -> String {
    format!("{}{}{section}", state.config.path_prefix(), super::gate::CONSOLE_PATH)
}

/// Renders `template` with the layout's context (`section` is the current navigation entry).
/// `csrf` is in the context for the page's forms.
pub fn render<S: Serialize>(
    state: &AppState,
    who: &Principal,
    status: StatusCode,
    section: &str,
    template: &str,
    page: S,
) -> Response {
    let nav: Vec<Value> = SECTIONS
        .iter()
        .map(|(s, label, about)| {
            context! { href => path(state, s), label => *label, about => *about, current => *s == section }
        })
        .collect();
    let ctx = context! {
        nav => nav,
        actor => &who.actor,
        role => who.role,
        can_change => who.role.can_change(),
        csrf => who.csrf_token(),
        console => path(state, ""),
        request_id => crate::web::request_id::current(),
        ..Value::from_serialize(&page)
    };
    templates().render(status, template, ctx)
}
