//! Strategy 2, bridge CNIs: the bridge port that has learned the pod's MAC.
//!
//! The bridge, flannel and kindnet-like plugins attach each pod's host veth to a bridge (cni0)
//! that holds the gateway address, so every pod IP is routed to the bridge, not to a port. The
//! port is found in two steps: pod IP → MAC from the host's neighbour entry on the bridge (ARP
//! for IPv4, NDP for IPv6; skipped when the caller knows the MAC), then MAC → port from the
//! bridge's forwarding database. The FDB is read over netlink (RTM_GETNEIGH, AF_BRIDGE), which
//! gives the port's ifindex directly, where sysfs's brforward gives port numbers to map through
//! brif/*/port_no.
//!
//! Both tables are learned from traffic and age out (FDB 300 s, neighbours within minutes of
//! silence by default). A pod that has not talked yet, or not for long, is therefore asked for
//! its address first: the host sends one ARP request or neighbour solicitation for the pod IP
//! from the bridge (the kernel does it, on request over netlink: CAP_NET_ADMIN, which the agent
//! has anyway), and the pod's answer fills the neighbour table and teaches the bridge its port.
//! So a quiet pod is mapped before it sends its first packet, without entering its namespace.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlink_packet_route::link::InfoKind;
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};

use super::error::StrategyError;
use super::netlink::{Link, Neighbour, Netlink, NetlinkError};

/// A pod's MAC and the bridge it was seen on, if known.
type MacOnBridge = ([u8; 6], Option<u32>);

/// How long a quiet pod may take to answer the address request.
const RESOLVE_WAIT: Duration = Duration::from_millis(500);

const HINT: &str = "`ip neigh show <pod IP>` for the pod's MAC on the bridge and `bridge fdb show \
    br <bridge>` for a port that learned it; podcap asks for the pod's address when both are \
    empty, so a pod that does not answer ARP (not up yet, or its IP is not on this bridge) stays \
    unmapped";

/// The bridge port that has the pod's MAC: the one given, or the ones the host's neighbour
/// table has for the pod's IPs on a bridge.
pub(super) fn find(
    netlink: &mut Netlink,
    ips: &[IpAddr],
    mac: Option<[u8; 6]>,
) -> Result<Link, StrategyError> {
    let links: HashMap<u32, Link> = netlink
        .links()?
        .into_iter()
        .map(|link| (link.index, link))
        .collect();
    let mut notes = Vec::new();
    // (MAC, the bridge it was seen on, if known)
    let targets: Vec<MacOnBridge> = match mac {
        Some(mac) => vec![(mac, None)],
        None => {
            let mut seen = neighbour_macs(netlink, ips, &links, &mut Vec::new())?;
            if seen.is_empty() {
                // A quiet pod: nothing in the tables yet, or aged out. Ask for its address, so
                // its answer teaches both tables, then look again.
                ask_bridges(netlink, ips, &links, &mut notes)?;
                seen = wait_for_neighbours(netlink, ips, &links, &mut notes)?;
            }
            if seen.is_empty() {
                notes.push(format!(
                    "no neighbour entry with a MAC for {} on a bridge",
                    super::list(ips)
                ));
            }
            seen
        }
    };

    let mut found = Vec::new();
    if !targets.is_empty() {
        let fdb = netlink.fdb()?;
        for (mac, bridge) in &targets {
            let before = found.len();
            for entry in fdb.iter().filter(|entry| learned(entry, mac)) {
                let Some(port) = links.get(&entry.ifindex) else {
                    continue;
                };
                let master = entry.master.or(port.master);
                let on_bridge = master
                    .and_then(|index| links.get(&index))
                    .is_some_and(|device| device.kind == Some(InfoKind::Bridge));
                if !on_bridge || (bridge.is_some() && master != *bridge) {
                    continue;
                }
                if port.is_pod_facing() {
                    found.push(port.clone());
                } else {
                    notes.push(format!(
                        "{} is on port {} ({}, not a veth to another namespace)",
                        format_mac(mac),
                        port.name,
                        port.kind_name()
                    ));
                }
            }
            if found.len() == before {
                notes.push(format!(
                    "no bridge port has learned {}{}",
                    format_mac(mac),
                    bridge
                        .and_then(|index| links.get(&index))
                        .map(|device| format!(" on {}", device.name))
                        .unwrap_or_default()
                ));
            }
        }
    }
    super::single(
        found,
        || StrategyError::NotFound {
            detail: notes.join(", "),
            hint: HINT,
        },
        "the pod's MAC was learned on several bridge ports; a duplicate MAC or a moved pod?",
    )
}

/// The MACs the host's neighbour tables have for `ips` on a bridge, with that bridge.
fn neighbour_macs(
    netlink: &mut Netlink,
    ips: &[IpAddr],
    links: &HashMap<u32, Link>,
    notes: &mut Vec<String>,
) -> Result<Vec<MacOnBridge>, StrategyError> {
    let mut targets = Vec::new();
    for ipv6 in [false, true] {
        let wanted: Vec<&IpAddr> = ips.iter().filter(|ip| ip.is_ipv6() == ipv6).collect();
        if wanted.is_empty() {
            continue;
        }
        for entry in netlink.neighbours(ipv6)? {
            let (Some(ip), Some(mac)) = (entry.ip, entry.mac) else {
                continue;
            };
            if !wanted.contains(&&ip) || !usable(entry.state) {
                continue;
            }
            match links.get(&entry.ifindex) {
                Some(device) if device.kind == Some(InfoKind::Bridge) => {
                    tracing::debug!(%ip, mac = %format_mac(&mac), bridge = %device.name,
                        "neighbour on a bridge");
                    targets.push((mac, Some(device.index)));
                }
                Some(device) => notes.push(format!(
                    "{ip}'s neighbour entry is on {} ({}), not a bridge",
                    device.name,
                    device.kind_name()
                )),
                None => {}
            }
        }
    }
    Ok(targets)
}

/// Asks every bridge that has a connected route to a pod IP to resolve that IP (one ARP
/// request or neighbour solicitation, see [`Netlink::resolve`]).
fn ask_bridges(
    netlink: &mut Netlink,
    ips: &[IpAddr],
    links: &HashMap<u32, Link>,
    notes: &mut Vec<String>,
) -> Result<(), StrategyError> {
    for ipv6 in [false, true] {
        let wanted: Vec<&IpAddr> = ips.iter().filter(|ip| ip.is_ipv6() == ipv6).collect();
        if wanted.is_empty() {
            continue;
        }
        let routes = netlink.routes(ipv6)?;
        for ip in wanted {
            let bridges: Vec<u32> = routes
                .iter()
                .filter(|route| route.gateway.is_none() && !route.multipath)
                .filter(|route| {
                    route
                        .destination
                        .is_some_and(|network| in_network(*ip, network, route.prefix_len))
                })
                .filter_map(|route| route.oif)
                .filter(|oif| {
                    links
                        .get(oif)
                        .is_some_and(|l| l.kind == Some(InfoKind::Bridge))
                })
                .collect();
            if bridges.is_empty() {
                notes.push(format!("no bridge has a connected route to {ip}"));
            }
            for bridge in bridges {
                if let Err(error) = netlink.resolve(bridge, *ip) {
                    let name = links.get(&bridge).map_or("?", |l| l.name.as_str());
                    notes.push(ask_failed(*ip, name, &error));
                }
            }
        }
    }
    Ok(())
}

/// The note for an address request on `bridge` that failed: the capability it needs when the
/// kernel refused it for lack of one, else the kernel's answer.
fn ask_failed(ip: IpAddr, bridge: &str, error: &NetlinkError) -> String {
    if error.is_not_permitted() {
        format!("asking for {ip}'s address on {bridge} needs CAP_NET_ADMIN: {error}")
    } else {
        format!("asking for {ip}'s address on {bridge} failed: {error}")
    }
}

/// The neighbour entries for `ips` once an answer has come in, polled for up to
/// [`RESOLVE_WAIT`]: a pod on this node answers in well under a millisecond, so the wait is long
/// only for an address nobody answers (a pod not up yet, or not on a bridge).
fn wait_for_neighbours(
    netlink: &mut Netlink,
    ips: &[IpAddr],
    links: &HashMap<u32, Link>,
    notes: &mut Vec<String>,
) -> Result<Vec<MacOnBridge>, StrategyError> {
    let deadline = Instant::now() + RESOLVE_WAIT;
    loop {
        let mut these = Vec::new();
        let seen = neighbour_macs(netlink, ips, links, &mut these)?;
        if !seen.is_empty() || Instant::now() >= deadline {
            notes.extend(these);
            return Ok(seen);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `ip` is inside `network`/`prefix_len`.
fn in_network(ip: IpAddr, network: IpAddr, prefix_len: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// A neighbour entry whose MAC can be trusted: resolved, not failed or still resolving.
fn usable(state: NeighbourState) -> bool {
    !matches!(
        state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    )
}

/// An FDB entry that says where the bridge forwards frames for `mac`: learned or static, but
/// neither the bridge's own address of a port (permanent) nor a device's own filter (self).
fn learned(entry: &Neighbour, mac: &[u8; 6]) -> bool {
    entry.mac.as_ref() == Some(mac)
        && entry.state != NeighbourState::Permanent
        && !entry.flags.contains(NeighbourFlags::Own)
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::{ask_failed, in_network, NetlinkError};

    #[test]
    fn a_refused_address_request_names_cap_net_admin_and_only_then() {
        let ip = "10.244.0.21".parse().unwrap();
        let refused = |errno| NetlinkError::Kernel {
            request: "neighbour resolve",
            source: io::Error::from_raw_os_error(errno),
        };
        assert_eq!(
            ask_failed(ip, "cni0", &refused(libc::EPERM)),
            format!(
                "asking for 10.244.0.21's address on cni0 needs CAP_NET_ADMIN: netlink neighbour \
                 resolve: {}",
                io::Error::from_raw_os_error(libc::EPERM)
            )
        );
        let other = ask_failed(ip, "cni0", &refused(libc::EINVAL));
        assert!(
            other.starts_with("asking for 10.244.0.21's address on cni0 failed: ")
                && !other.contains("CAP_"),
            "{other}"
        );
    }

    #[test]
    fn networks_contain_their_addresses() {
        let ip = |text: &str| text.parse().unwrap();
        assert!(in_network(ip("10.244.0.21"), ip("10.244.0.0"), 24));
        assert!(!in_network(ip("10.244.1.21"), ip("10.244.0.0"), 24));
        assert!(in_network(ip("10.244.1.21"), ip("0.0.0.0"), 0));
        assert!(in_network(ip("10.244.0.1"), ip("10.244.0.1"), 32));
        assert!(in_network(ip("fd00::5"), ip("fd00::"), 64));
        assert!(!in_network(ip("fd01::5"), ip("fd00::"), 64));
        assert!(!in_network(ip("fd00::5"), ip("10.0.0.0"), 8));
    }
}
