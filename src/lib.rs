//! hubauth: an OpenID Connect identity broker for JupyterHub.
//!
//! The crate is organised by concept: `provider` speaks OAuth 2.0 / OpenID Connect to clients
//! such as JupyterHub, `connectors` talk to upstream identity providers, `store` persists state,
//! `crypto` holds keys and secrets, `web` renders the pages a person sees.

pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod console;
pub mod crypto;
pub mod custody;
pub mod groups;
pub mod identity;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod model;
pub mod password_login;
pub mod policy;
pub mod provider;
pub mod server;
pub mod store;
pub mod systemd;
pub mod web;
