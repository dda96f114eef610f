//! The address a request came from: the socket's peer, or, when the peer is a proxy the operator
//! trusts (`COFFER_TRUSTED_PROXIES`), the address the proxies say they forwarded for. Forwarding
//! headers are read right to left, so a client can prepend whatever it likes and still be named
//! by the address the first trusted proxy saw.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The client's address. `forwarded` is the `Forwarded` header (RFC 7239), `x_forwarded_for`
/// the `X-Forwarded-For` one (all lines of each, joined by commas); `Forwarded` wins when both
/// are sent. Without a trusted peer, or without headers, it is the peer.
pub fn address(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<Option<IpAddr>> = match (forwarded, x_forwarded_for) {
        (Some(forwarded), _) => forwarded.split(',').map(forwarded_for).collect(),
        (None, Some(list)) => list.split(',').map(|hop| hop_address(hop.trim())).collect(),
        (None, None) => return Some(peer),
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        // A hop that names no address ("unknown", an obfuscated name) ends the trail: the last
        // address known is the best there is.
        let Some(ip) = hop else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// The `for=` address of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        hop_address(value.trim().trim_matches('"'))
    })
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))?
                .parse()
                .ok()
        })
}

/// `COFFER_TRUSTED_PROXIES`: comma-separated networks (`10.0.0.0/8`) or single addresses.
pub fn parse_networks(text: &str) -> Option<Vec<IpNet>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_only_from_the_right() {
        let trusted = parse_networks("10.0.0.0/8, 192.0.2.7").expect("networks");
        let from = |peer: &str, forwarded, xff| address(Some(ip(peer)), forwarded, xff, &trusted);
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            from("203.0.113.9", None, Some("198.51.100.1")),
            Some(ip("203.0.113.9"))
        );
        // Behind a trusted proxy: the address it saw, not what the client prepended.
        assert_eq!(
            from("10.1.2.3", None, Some("1.1.1.1, 198.51.100.4")),
            Some(ip("198.51.100.4"))
        );
        // Through two trusted proxies.
        assert_eq!(
            from("10.1.2.3", None, Some("1.1.1.1, 198.51.100.4, 192.0.2.7")),
            Some(ip("198.51.100.4"))
        );
        // RFC 7239, quoted IPv6 with a port, and Forwarded preferred over X-Forwarded-For.
        assert_eq!(
            from(
                "10.1.2.3",
                Some(r#"for=1.1.1.1, for="[2001:db8::5]:4711";proto=https"#),
                Some("198.51.100.4")
            ),
            Some(ip("2001:db8::5"))
        );
        // A trail that names no address stops at the last address known.
        assert_eq!(
            from("10.1.2.3", Some("for=unknown"), None),
            Some(ip("10.1.2.3"))
        );
        assert_eq!(
            from("10.1.2.3", None, Some("garbage, 10.9.9.9")),
            Some(ip("10.9.9.9"))
        );
        // A trusted peer without headers is the client (a health check from the proxy host).
        assert_eq!(from("10.1.2.3", None, None), Some(ip("10.1.2.3")));
        assert!(parse_networks("10.0.0.0/33").is_none());
        assert!(parse_networks("nowhere").is_none());
    }
}
