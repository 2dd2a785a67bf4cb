//! Server-rendered pages (minijinja, auto-escaped) and the error page every handler can return.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

pub struct Templates(Environment<'static>);

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("chooser.html", include_str!("templates/chooser.html")),
            ("error.html", include_str!("templates/error.html")),
            ("denied.html", include_str!("templates/denied.html")),
            ("invite.html", include_str!("templates/invite.html")),
            ("logout.html", include_str!("templates/logout.html")),
            ("home.html", include_str!("templates/home.html")),
        ]
        .into_iter()
        .chain(crate::console::page::TEMPLATES.iter().copied())
        {
            env.add_template(name, source).expect("built-in templates are valid");
        }
        Self(env)
    }

    /// Renders a page; a template failure becomes a plain-text page, never a panic.
    pub fn render<S: Serialize>(&self, status: StatusCode, name: &str, ctx: S) -> Response {
        let body = self.0.get_template(name).and_then(|t| t.render(ctx));
        match body {
            Ok(html) => (status, no_store(), Html(html)).into_response(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "template rendering failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "hubauth could not render this page").into_response()
            }
        }
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// The built-in templates, parsed once.
pub fn templates() -> &'static Templates {
    static TEMPLATES: std::sync::LazyLock<Templates> = std::sync::LazyLock::new(Templates::new);
    &TEMPLATES
}

pub fn no_store() -> [(axum::http::HeaderName, &'static str); 2] {
    [(axum::http::header::CACHE_CONTROL, "no-store"), (axum::http::header::PRAGMA, "no-cache")]
}

/// An error shown to a person as a page (when there is no client to redirect the error to).
#[derive(Debug, Clone)]
pub struct PageError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: String,
    pub message: String,
    pub hint: Option<String>,
    /// Where "Try again" leads, when there is a sensible place.
    pub retry_url: Option<String>,
}

impl PageError {
    pub fn new(status: StatusCode, code: &'static str, title: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, code, title: title.into(), message: message.into(), hint: None, retry_url: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "This sign-in request cannot be used", message)
            .with_hint("Go back to your hub and start signing in again. If this keeps happening, tell the hub's administrators what this page says.")
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Something went wrong on our side",
            "hubauth could not finish this request. Nothing about your account was changed.",
        )
        .with_hint("Try again in a minute. If it keeps failing, tell the hub's administrators.")
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_retry(mut self, url: impl Into<String>) -> Self {
        self.retry_url = Some(url.into());
        self
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        templates().render(
            self.status,
            "error.html",
            minijinja::context! {
                title => self.title, message => self.message, hint => self.hint, code => self.code,
                retry_url => self.retry_url,
                request_id => super::request_id::current(),
            },
        )
    }
}
