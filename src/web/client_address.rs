//! Who is on the other end: the TCP peer, or — only when that peer is a configured trusted
//! proxy (`trusted_proxies`) — the client that proxy names in `X-Forwarded-For`. A header
//! from anyone else is ignored: it is whatever the sender wants it to be.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::app::SharedState;

/// `trusted_proxies`: addresses and CIDR ranges of the reverse proxies in front of hubauth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses config entries (`10.0.0.1`, `10.0.0.0/8`, `fd00::/8`); the error names the bad one.
    pub fn parse(entries: &[String]) -> Result<Self, (usize, String)> {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let net = entry.parse::<IpNet>().or_else(|_| entry.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                (i, format!("{entry:?} is not an IP address or CIDR range (e.g. \"10.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\")"))
            })?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// How many `X-Forwarded-For` hops are looked at, from the right: more proxies than this in a
/// row is not a real deployment.
const MAX_HOPS: usize = 16;

/// The client's address: walking `X-Forwarded-For` from the right (the hop our proxy added)
/// past trusted proxies, the first address that is not one. Unreadable hops end the walk at
/// the last trusted address, so garbage never names a client.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> Option<IpAddr> {
    let mut client = canonical(peer?);
    if !trusted.trusts(client) {
        return Some(client);
    }
    let values: Vec<&str> = headers.get_all("x-forwarded-for").iter().map(|v| v.to_str().unwrap_or("")).collect();
    for hop in values.iter().flat_map(|v| v.split(',')).rev().take(MAX_HOPS).collect::<Vec<_>>().into_iter() {
        let hop = hop.trim();
        let Some(ip) = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip())) else {
            break;
        };
        client = canonical(ip);
        if !trusted.trusts(client) {
            break;
        }
    }
    Some(client)
}

/// Extracts the client address (`None` when the server was not started with connection info,
/// as in in-process tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    /// What limits count by: an IPv4 address, or the /64 of an IPv6 one (one subscriber gets a
    /// whole /64, so single addresses would be free for the taking). Empty when unknown.
    pub fn key(&self) -> String {
        match self.0.map(canonical) {
            None => String::new(),
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

impl FromRequestParts<SharedState> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(Self(client_ip(peer, &parts.headers, &state.config.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn with_xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]).unwrap();
        let h = with_xff(&["198.51.100.9"]);
        assert_eq!(client_ip(ip("203.0.113.1"), &h, &trusted), ip("203.0.113.1"), "untrusted peer");
        assert_eq!(client_ip(ip("192.0.2.1"), &h, &trusted), ip("198.51.100.9"));
        assert_eq!(client_ip(ip("::ffff:10.1.2.3"), &h, &trusted), ip("198.51.100.9"), "IPv4-mapped peer");
        assert_eq!(client_ip(ip("203.0.113.1"), &h, &TrustedProxies::default()), ip("203.0.113.1"));
        assert_eq!(client_ip(None, &h, &trusted), None);
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_hop_from_the_right() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        // The client forged the first entry; our proxies appended the rest.
        let h = with_xff(&["1.1.1.1, 198.51.100.9", "10.0.0.5"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.9"));
        let h = with_xff(&["[2001:db8::1]:4711, 10.0.0.7:80"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::1"));
        let h = with_xff(&["198.51.100.9, not-an-address"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"), "garbage names nobody");
        assert_eq!(client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let key = |s: &str| ClientAddress(Some(s.parse().unwrap())).key();
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(ClientAddress(None).key(), "");
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(TrustedProxies::parse(&["10.0.0.1".into(), "10.0.0.0/99".into()]).unwrap_err().0, 1);
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
