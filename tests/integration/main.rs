//! In-process integration tests: one module per endpoint or concern, named after the spec rule
//! each test checks.

mod fakes;
mod harness;

mod authorize;
mod cli;
mod config;
mod connections;
mod discovery;
mod hostile_input;
mod identity;
mod invites;
mod keys;
mod live_access;
mod logout;
mod no_secrets_in_logs;
mod pending_limits;
mod policy;
mod revoke_introspect;
mod session;
mod store_conformance;
mod token_code;
mod token_exchange;
mod token_refresh;
mod upstream_canvas;
mod upstream_github;
mod upstream_oauth2;
mod upstream_oidc;
mod userinfo;
