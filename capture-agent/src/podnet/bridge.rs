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
//! silence by default), so a pod that has been quiet for long is not found here; the netns
//! strategy still finds it.

use std::collections::HashMap;
use std::net::IpAddr;

use netlink_packet_route::link::InfoKind;
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};

use super::error::StrategyError;
use super::netlink::{Link, Neighbour, Netlink};

const HINT: &str = "`ip neigh show <pod IP>` for the pod's MAC on the bridge and `bridge fdb show \
    br <bridge>` for a port that learned it; both fill only while the pod talks, and age out";

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
    let mut targets: Vec<([u8; 6], Option<u32>)> = Vec::new();
    match mac {
        Some(mac) => targets.push((mac, None)),
        None => {
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
            if targets.is_empty() {
                notes.push(format!(
                    "no neighbour entry with a MAC for {} on a bridge",
                    super::list(ips)
                ));
            }
        }
    }

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
