//! A filter rule's peer: one IPv4 or IPv6 address, or a network in CIDR notation, that the source
//! or the destination of a packet must be in.
//!
//! Peers are written as users write them in Kubernetes (`10.96.0.10`, `10.0.0.0/8`, `fd00::/8`)
//! and kept as a network: an address alone is a network of one (/32, /128). A CIDR with host bits
//! set (`10.0.0.1/8`) is refused rather than silently widened or narrowed: the error names the
//! network it probably meant. Names are never resolved: a filter must mean the same thing on every
//! node and at every moment.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::filter::FilterError;

/// The most peers one rule may list. Every peer costs in-kernel instructions on every packet
/// (about 4 for IPv4 and 18 for IPv6), so a long list is both slow and close to the kernel's
/// 4096-instruction limit; neighbouring addresses fit in one CIDR.
pub const MAX_PEERS: usize = 64;

/// The longest text of a peer: an IPv6 address with an embedded IPv4 part and a prefix
/// (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128`). Used by the API and CRD schemas.
pub const MAX_PEER_LENGTH: usize = 49;

/// A pattern every peer's text matches (hex digits, dots and colons, then an optional `/prefix`),
/// so the API server rejects obvious mistakes such as host names at admission; podcap's own
/// parser decides the rest.
pub const PEER_PATTERN: &str = r"^\s*[0-9A-Fa-f:.]+(/[0-9]{1,3})?\s*$";

/// An IPv4 or IPv6 network; a single address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(IpNet);

impl Peer {
    /// The network `address/prefix_len`; refuses a prefix longer than the address and an address
    /// with bits set past the prefix.
    pub fn new(address: IpAddr, prefix_len: u8) -> Result<Peer, FilterError> {
        let net = IpNet::new(address, prefix_len).map_err(|_| FilterError::PrefixTooLong {
            peer: format!("{address}/{prefix_len}"),
            max: max_prefix(address),
        })?;
        let network = net.trunc();
        if network.addr() != address {
            return Err(FilterError::HostBitsSet {
                written: format!("{address}/{prefix_len}"),
                network: Peer(network).to_string(),
                address: address.to_string(),
            });
        }
        Ok(Peer(net))
    }

    /// One address.
    pub fn host(address: IpAddr) -> Peer {
        Peer(IpNet::from(address))
    }

    /// The network address (the address itself for a single host).
    pub fn address(self) -> IpAddr {
        self.0.addr()
    }

    pub fn prefix_len(self) -> u8 {
        self.0.prefix_len()
    }

    pub fn is_ipv4(self) -> bool {
        self.0.addr().is_ipv4()
    }

    /// Whether this peer is one address (/32 or /128).
    pub fn is_host(self) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len()
    }

    /// Whether `address` is in this network. An IPv4 address is never in an IPv6 network (an
    /// IPv4-mapped IPv6 peer matches IPv6 packets only), as in libpcap.
    pub fn contains(self, address: IpAddr) -> bool {
        self.0.contains(&address)
    }

    /// The libpcap primitive with this peer's meaning: the source or the destination address is
    /// in the network (`ip host`, `ip net`, `ip6 host`, `ip6 net`; never a bare `host`, which in
    /// libpcap also matches ARP).
    pub fn pcap_primitive(self) -> String {
        let family = if self.is_ipv4() { "ip" } else { "ip6" };
        if self.is_host() {
            format!("{family} host {}", self.address())
        } else {
            format!("{family} net {self}")
        }
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl FromStr for Peer {
    type Err = FilterError;

    /// `10.96.0.10`, `10.0.0.0/8`, `fd00::1`, `fd00::/8`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let (address_text, prefix_text) = match trimmed.split_once('/') {
            Some((address, prefix)) => (address.trim(), Some(prefix.trim())),
            None => (trimmed, None),
        };
        let address: IpAddr = address_text
            .parse()
            .map_err(|_| FilterError::BadPeer(trimmed.to_string()))?;
        let Some(prefix_text) = prefix_text else {
            return Ok(Peer::host(address));
        };
        let max = max_prefix(address);
        // Digits only: `u8::from_str` would also take `+8`.
        if prefix_text.is_empty() || !prefix_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FilterError::BadPrefixLength {
                peer: trimmed.to_string(),
                max,
            });
        }
        match prefix_text.parse::<u8>() {
            Ok(length) => Peer::new(address, length),
            Err(_) => Err(FilterError::PrefixTooLong {
                peer: trimmed.to_string(),
                max,
            }),
        }
    }
}

impl fmt::Display for Peer {
    /// An address alone for a single host, else `network/prefix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.address())
        } else {
            write!(f, "{}/{}", self.address(), self.prefix_len())
        }
    }
}

impl Serialize for Peer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Peer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PeerVisitor;
        impl Visitor<'_> for PeerVisitor {
            type Value = Peer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an IP address or CIDR as a string, e.g. \"10.96.0.10\" or \"10.0.0.0/8\"",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Peer, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(PeerVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> Peer {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks_parse() {
        assert!(peer("10.96.0.10").is_host());
        assert_eq!(peer("10.96.0.10").prefix_len(), 32);
        assert_eq!(peer("10.96.0.10/32"), peer("10.96.0.10"));
        assert_eq!(peer(" 10.0.0.0/8 ").prefix_len(), 8);
        assert_eq!(peer("fd00::/8").prefix_len(), 8);
        assert!(!peer("fd00::/8").is_ipv4());
        assert_eq!(peer("fd00::1").prefix_len(), 128);
        assert_eq!(peer("0.0.0.0/0").prefix_len(), 0);
        assert_eq!(peer("::/0").prefix_len(), 0);
        assert!(peer("10.0.0.0/8").contains("10.255.1.2".parse().unwrap()));
        assert!(!peer("10.0.0.0/8").contains("11.0.0.0".parse().unwrap()));
        assert!(!peer("0.0.0.0/0").contains("::1".parse().unwrap()));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "10.96.0.10",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "192.168.4.0/31",
            "fd00::/8",
            "fd00::1",
            "::/0",
            "fd00::/127",
        ] {
            assert_eq!(peer(text).to_string(), text);
            assert_eq!(peer(&peer(text).to_string()), peer(text));
        }
    }

    #[test]
    fn errors_say_what_to_fix() {
        let err = |t: &str| t.parse::<Peer>().unwrap_err().to_string();
        assert!(
            err("10.0.0.1/8").contains("write its network, 10.0.0.0/8"),
            "{}",
            err("10.0.0.1/8")
        );
        assert!(
            err("fd00::1/8").contains("fd00::/8"),
            "{}",
            err("fd00::1/8")
        );
        assert!(
            err("10.0.0.0/33").contains("/0-/32"),
            "{}",
            err("10.0.0.0/33")
        );
        assert!(
            err("fd00::/129").contains("/0-/128"),
            "{}",
            err("fd00::/129")
        );
        assert!(
            err("fd00::/999").contains("/0-/128"),
            "{}",
            err("fd00::/999")
        );
        assert!(
            err("10.0.0.0/x").contains("prefix length"),
            "{}",
            err("10.0.0.0/x")
        );
        assert!(
            err("10.0.0.0/").contains("prefix length"),
            "{}",
            err("10.0.0.0/")
        );
        assert!(
            err("10.0.0.0/+8").contains("prefix length"),
            "{}",
            err("10.0.0.0/+8")
        );
        assert!(
            err("kube-dns").contains("not an IP address"),
            "{}",
            err("kube-dns")
        );
        assert!(
            err("10.0.0").contains("not an IP address"),
            "{}",
            err("10.0.0")
        );
        assert!(err("").contains("not an IP address"), "{}", err(""));
        assert!(err("fe80::1%eth0").contains("not an IP address"));
    }

    #[test]
    fn pcap_primitives_never_match_arp() {
        assert_eq!(peer("10.96.0.10").pcap_primitive(), "ip host 10.96.0.10");
        assert_eq!(peer("10.0.0.0/8").pcap_primitive(), "ip net 10.0.0.0/8");
        assert_eq!(peer("fd00::1").pcap_primitive(), "ip6 host fd00::1");
        assert_eq!(peer("fd00::/8").pcap_primitive(), "ip6 net fd00::/8");
    }

    #[test]
    fn the_longest_peer_fits_the_schema_limit() {
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128";
        assert_eq!(longest.len(), MAX_PEER_LENGTH);
        assert!(longest.parse::<Peer>().is_ok());
    }
}
