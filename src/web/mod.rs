//! What a person's browser sees: pages, the hubauth session cookie, and the login forms.

pub mod client_address;
pub mod invite;
pub mod login;
pub mod pages;
pub mod request_id;
pub mod session;
pub mod throttle;
pub mod upstream;
