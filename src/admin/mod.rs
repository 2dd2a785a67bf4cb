//! Operating hubauth: what hub admins do, shared by the CLI and the admin API (`api.rs`).

pub mod access;
pub mod api;
pub mod deprovision;
pub mod invites;
pub mod rename;
pub mod report;
