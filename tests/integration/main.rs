//! In-process integration tests: one module per endpoint or concern, named after the spec rule
//! each test checks.

mod fakes;
mod harness;
mod pg;

mod access_list;
mod activity_report;
mod admins;
mod at_rest;
mod authorize;
mod cli;
mod config;
mod connections;
mod console_users;
mod custody;
mod deprovision;
mod discovery;
mod group_namespaces;
mod hostile_input;
mod identity;
mod invites;
mod keys;
mod linked_accounts;
mod live_access;
mod log_injection;
mod logout;
mod metrics;
mod no_secrets_in_logs;
mod password_login;
mod pending_limits;
mod policy;
mod postgres;
mod revoke_introspect;
mod session;
mod store_conformance;
mod throttle_replicas;
mod token_code;
mod token_exchange;
mod token_refresh;
mod upstream_canvas;
mod upstream_github;
mod upstream_oauth2;
mod upstream_oidc;
mod upstream_oidc_keys;
mod userinfo;
