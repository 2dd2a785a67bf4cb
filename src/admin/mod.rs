//! Operating hubauth: what hub admins do, shared by the CLI and the admin API (`api.rs`).

pub mod access;
pub mod api;
pub mod api_audit;
pub mod api_users;
pub mod deprovision;
pub mod invites;
pub mod openapi;
pub mod principal;
pub mod rename;
pub mod report;
pub mod users;

/// Who made a change, for the audit log: every change by anyone names its actor and, through the
/// console or the API, the request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// A console user's username, `token:ID` for a stored admin token, `config-token` for a
    /// static one, `cli:USER` for the operating-system user who ran a command.
    pub name: String,
    /// The request that asked for it (the `X-Request-Id` hubauth answered with).
    pub request_id: Option<String>,
}

impl Actor {
    /// The person at this command line.
    pub fn cli() -> Self {
        let name = match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
            Ok(u) if !u.is_empty() && u.len() <= 64 && !u.chars().any(char::is_control) => format!("cli:{u}"),
            _ => "cli".into(),
        };
        Actor { name, request_id: None }
    }

    /// Whoever is behind the request being handled now.
    pub fn of(principal: &principal::Principal) -> Self {
        Actor { name: principal.actor.clone(), request_id: crate::web::request_id::current() }
    }

    /// Writes `event` under this actor's name; a failure is logged, not returned (the change
    /// itself is done).
    pub async fn audit(&self, store: &dyn crate::store::Store, mut event: crate::model::AuditEvent) {
        event.actor = Some(self.name.clone());
        if event.request_id.is_none() {
            event.request_id = self.request_id.clone();
        }
        if let Err(e) = store.record_audit(&event).await {
            tracing::error!(error = %e, kind = %event.kind, "could not write the audit log");
        }
    }
}
