//! The client address a request is counted against, pure.
//!
//! Spin gives the direct peer in the `spin-client-addr` header (`ip:port`). Behind the ingress
//! that peer is the proxy, so `X-Forwarded-For` is believed, but only when the peer is one of
//! the configured `trusted_proxies`: then the list is walked from the right (the entry the
//! nearest proxy appended) past every trusted proxy, and the first address that is not one is
//! the client. Entries to its left were written by the client itself and are ignored, as is
//! the whole header when the peer is not trusted: a client cannot choose its own address.

use std::net::{IpAddr, Ipv6Addr};

/// One trusted proxy: an address with a prefix length (a plain address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(s: &str) -> Result<Self, String> {
        let (addr, bits) = s.split_once('/').map_or((s, None), |(a, b)| (a, Some(b)));
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("trusted_proxies: `{s}` is not an IP address or CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.map_or(Some(max), |b| b.parse::<u8>().ok().filter(|b| *b <= max));
        let bits = bits.ok_or_else(|| format!("trusted_proxies: bad prefix length in `{s}`"))?;
        // A plain mapped address (`::ffff:10.0.0.1`) means the IPv4 one, as for clients.
        let net = if bits == 128 { net.to_canonical() } else { net };
        let bits = if net.is_ipv4() { bits.min(32) } else { bits };
        Ok(Self { net, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    a[..full] == b[..full]
        && (rest == 0 || {
            let mask = 0xffu8 << (8 - rest);
            a[full] & mask == b[full] & mask
        })
}

/// The `trusted_proxies` variable: comma-separated IPs and CIDRs; empty trusts nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn parse(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// `ip:port`, `[v6]:port` or a bare address.
fn parse_peer(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The client's address from the peer (`spin-client-addr`) and `X-Forwarded-For` (every
/// value of the header, comma-joined); `None` when the peer is unknown.
pub fn client_ip(
    peer: Option<&str>,
    forwarded_for: Option<&str>,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    // An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address.
    let mut client = parse_peer(peer?)?.to_canonical();
    if !trusted.trusts(client) {
        return Some(client);
    }
    for hop in forwarded_for.unwrap_or_default().rsplit(',') {
        let Some(ip) = parse_peer(hop).map(|ip| ip.to_canonical()) else {
            // Garbage can only come from beyond the last trusted hop: stop at that hop.
            break;
        };
        client = ip;
        if !trusted.trusts(ip) {
            break;
        }
    }
    Some(client)
}

/// The name the per-address limit counts under: the IPv4 address, or the /64 of an IPv6
/// address (one subscriber usually holds a whole /64, so counting single IPv6 addresses would
/// give a client 2^64 windows).
pub fn subject(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        None => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// Rows of a peer, an `X-Forwarded-For` and the client they name; "" is absent.
    fn assert_clients(trusted: &str, rows: &[(&str, &str, &str)]) {
        let t = TrustedProxies::parse(trusted).unwrap();
        fn some(s: &str) -> Option<&str> {
            (!s.is_empty()).then_some(s)
        }
        for (peer, forwarded, client) in rows {
            let got = client_ip(some(peer), some(forwarded), &t);
            assert_eq!(got, some(client).and_then(ip), "{peer} {forwarded}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let rows = [
            ("203.0.113.5:51000", "198.51.100.7", "203.0.113.5"),
            ("", "198.51.100.7", ""),
        ];
        assert_clients("", &rows);
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        // The client forged the leftmost entry; the ingress appended the real address.
        let forged = "1.1.1.1, 198.51.100.7, 10.9.9.9";
        let rows = [
            ("10.1.2.3:8080", forged, "198.51.100.7"),
            ("192.0.2.10:1", "198.51.100.8", "198.51.100.8"),
            // A trusted peer without the header, or with garbage next to it, stays the client.
            ("10.1.2.3:1", "", "10.1.2.3"),
            ("10.1.2.3:1", "not-an-ip", "10.1.2.3"),
            ("192.0.2.11:1", "198.51.100.8", "192.0.2.11"),
        ];
        assert_clients(" 10.0.0.0/8 , 192.0.2.10 ", &rows);
    }

    #[test]
    fn ipv6_peers_and_mapped_ipv4_addresses_parse() {
        let rows = [
            ("[2001:db8::1]:443", "[2001:db9::7]:1234", "2001:db9::7"),
            ("[::ffff:192.0.2.1]:443", "", "192.0.2.1"),
        ];
        assert_clients("2001:db8::/32", &rows);
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_ipv4_clients_by_their_address() {
        let of = |s| subject(ip(s));
        assert_eq!(of("2001:db8:1:2:aaaa::1"), of("2001:db8:1:2:bbbb::2"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_eq!(of("192.0.2.1"), "192.0.2.1");
        assert_eq!(subject(None), "unknown");
    }

    #[test]
    fn bad_trusted_proxies_are_refused() {
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(TrustedProxies::parse(""), Ok(TrustedProxies::default()));
        let t = TrustedProxies::parse("10.0.0.0/9").unwrap();
        assert!(t.trusts("10.127.0.1".parse().unwrap()));
        assert!(!t.trusts("10.128.0.1".parse().unwrap()));
    }
}
