//! The address a request came from, as the caps on unauthenticated work count it.
//!
//! The peer address of the connection (the server loop records it, see [`crate::server`]).
//! Behind a reverse proxy every request shares the proxy's address, so per-address caps are
//! sized for that (see `[session] max_pending_per_address`).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

impl ClientAddress {
    /// What limits count by: an IPv4 address, or the /64 of an IPv6 one (one subscriber gets a
    /// whole /64, so single addresses would be free for the taking). Empty when unknown.
    pub fn key(&self) -> String {
        match self.0.map(|ip| ip.to_canonical()) {
            None => String::new(),
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let key = |s: &str| ClientAddress(Some(s.parse().unwrap())).key();
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(ClientAddress(None).key(), "");
    }
}
