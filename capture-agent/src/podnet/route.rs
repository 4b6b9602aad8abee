//! Strategy 1, routed CNIs: the host route to the pod IP.
//!
//! Calico (`10.x.y.z dev caliXXXX scope link`), Cilium in its per-endpoint-route mode (lxcXXXX)
//! and most routed plugins install, in the main table, one host route per pod IP whose output
//! device is the pod's veth. Only such exact routes count: a /32 (IPv4) or /128 (IPv6), unicast,
//! direct (no gateway, not multipath), through a pod-facing veth. A subnet route names a bridge or
//! a tunnel, a default route names the uplink, and a /32 through cilium_host names no single pod,
//! so none of those is taken. All tables are read, the main table preferred, because some plugins
//! (and policy-routing setups) keep pod routes in tables of their own.

use std::net::IpAddr;

use netlink_packet_route::route::RouteType;

use super::error::StrategyError;
use super::netlink::{Link, Netlink, Route};

const MAIN_TABLE: u32 = 254;

const HINT: &str = "`ip route show table all` for a /32 or /128 route to the pod IP through its \
    veth; bridge CNIs have none (the bridge strategy covers them)";

/// The pod-facing interface the host routes the pod's IPs to.
pub(super) fn find(netlink: &mut Netlink, ips: &[IpAddr]) -> Result<Link, StrategyError> {
    if ips.is_empty() {
        return Err(StrategyError::NotFound {
            detail: "the pod has no IP".to_string(),
            hint: "the pod's status.podIPs; a pod gets its IPs once its sandbox is up",
        });
    }
    let mut routes: [Option<Vec<Route>>; 2] = [None, None];
    let mut found = Vec::new();
    let mut notes = Vec::new();
    for ip in ips {
        let family = usize::from(ip.is_ipv6());
        let table = match &mut routes[family] {
            Some(table) => table,
            slot => slot.insert(netlink.routes(ip.is_ipv6())?),
        };
        let notes_before = notes.len();
        let mut exact: Vec<&Route> = table
            .iter()
            .filter(|route| is_host_route(route, ip))
            .collect();
        if exact.is_empty() {
            notes.push(format!("no /{} host route to {ip}", full_prefix(ip)));
            continue;
        }
        // Main table first: the routes the CNI installed for plain forwarding.
        exact.sort_by_key(|route| route.table != MAIN_TABLE);
        let mut matched = false;
        for route in exact {
            let Some(oif) = route.oif else { continue };
            match netlink.link(oif)? {
                Some(link) if link.is_pod_facing() => {
                    tracing::debug!(%ip, interface = %link.name, table = route.table, "host route");
                    found.push(link);
                    matched = true;
                    break;
                }
                Some(link) => notes.push(format!(
                    "host route to {ip} goes through {} ({}, not a veth to another namespace)",
                    link.name,
                    link.kind_name()
                )),
                None => notes.push(format!("host route to {ip} names a vanished ifindex {oif}")),
            }
        }
        if !matched && notes.len() == notes_before {
            notes.push(format!("no usable host route to {ip}"));
        }
    }
    super::single(
        found,
        || StrategyError::NotFound {
            detail: notes.join(", "),
            hint: HINT,
        },
        "the pod's IPs are routed to different veths; a stale route of a deleted pod?",
    )
}

/// A direct unicast route to exactly this address.
fn is_host_route(route: &Route, ip: &IpAddr) -> bool {
    route.destination == Some(*ip)
        && route.prefix_len == full_prefix(ip)
        && route.kind == RouteType::Unicast
        && route.gateway.is_none()
        && !route.multipath
        && route.oif.is_some()
}

fn full_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv6() {
        128
    } else {
        32
    }
}
