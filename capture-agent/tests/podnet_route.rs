//! podnet's route strategy against the real kernel: a pod whose host has a /32 and a /128 route
//! through its veth resolves to that veth; subnet routes, routes through a host-internal veth
//! pair and missing routes do not resolve. Needs root.

use std::net::IpAddr;

use capture_agent::podnet::{
    resolve, still_valid, Method, PodNetError, PodNetwork, Strategies, StrategyError,
};
use podcap_testkit::netlab::Undo;
use podcap_testkit::pod::run;
use podcap_testkit::Pod;

fn pod_network(ips: &[IpAddr]) -> PodNetwork {
    PodNetwork {
        uid: "0b6f1a2c-0000-4000-8000-00000000a001".to_string(),
        ips: ips.to_vec(),
        mac: None,
    }
}

fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap()
}

fn route_miss(error: &PodNetError) -> &StrategyError {
    let attempts = error.attempts();
    assert_eq!(attempts.len(), 1, "{error}");
    assert_eq!(attempts[0].method, Method::Route);
    &attempts[0].error
}

#[test]
fn host_routes_v4_and_v6_resolve_to_the_pods_veth() {
    let pod = Pod::new();
    // A neighbour pod with host routes of its own, which must not be confused with ours.
    let other = Pod::new();
    for p in [&pod, &other] {
        run(
            "ip",
            &[
                "route",
                "add",
                &format!("{}/32", p.pod_v4),
                "dev",
                &p.host_if,
            ],
        );
        run(
            "ip",
            &[
                "-6",
                "route",
                "add",
                &format!("{}/128", p.pod_v6),
                "dev",
                &p.host_if,
            ],
        );
    }
    let only_route = Strategies::only(Method::Route);
    for ips in [
        vec![IpAddr::from(pod.pod_v4)],
        vec![IpAddr::from(pod.pod_v6)],
        vec![IpAddr::from(pod.pod_v4), IpAddr::from(pod.pod_v6)],
    ] {
        let found = resolve(&pod_network(&ips), &only_route).unwrap();
        assert_eq!(found.name, pod.host_if, "{ips:?}");
        assert_eq!(found.ifindex, ifindex(&pod.host_if));
        assert_eq!(found.method, Method::Route);
        assert!(still_valid(&found));
    }
    // With every strategy enabled the route answers first.
    let found = resolve(&pod_network(&[pod.pod_v4.into()]), &Strategies::default()).unwrap();
    assert_eq!(
        (found.name.as_str(), found.method),
        (pod.host_if.as_str(), Method::Route)
    );

    let other_found = resolve(&pod_network(&[other.pod_v6.into()]), &only_route).unwrap();
    assert_eq!(other_found.name, other.host_if);

    // Once the veth is gone (the pod was deleted), the answer no longer holds.
    drop(pod);
    assert!(!still_valid(&found));
}

#[test]
fn a_subnet_route_alone_is_not_found() {
    // The Pod has only its connected /25 and /64 routes to the veth: no host route.
    let pod = Pod::new();
    let error = resolve(
        &pod_network(&[pod.pod_v4.into(), pod.pod_v6.into()]),
        &Strategies::only(Method::Route),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(route_miss(&error), StrategyError::NotFound { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("no /32 host route to {}", pod.pod_v4)),
        "{message}"
    );
    assert!(
        message.contains(&format!("no /128 host route to {}", pod.pod_v6)),
        "{message}"
    );
    assert!(message.contains("check:"), "{message}");
}

#[test]
fn a_route_through_a_host_internal_veth_is_not_taken() {
    // Like Cilium's cilium_host/cilium_net: a veth pair with both ends in the host, carrying a
    // /32 route to a pod IP. It is no pod's interface.
    let pod = Pod::new();
    let n = pod.slot();
    let (a, b) = (format!("pcxh{n}a"), format!("pcxh{n}b"));
    let mut undo = Undo::new();
    undo.run(
        "ip",
        &["link", "add", &a, "type", "veth", "peer", "name", &b],
        &["ip", "link", "del", &a],
    );
    run("ip", &["link", "set", &a, "up"]);
    run("ip", &["link", "set", &b, "up"]);
    run(
        "ip",
        &["route", "add", &format!("{}/32", pod.pod_v4), "dev", &a],
    );

    let error = resolve(
        &pod_network(&[pod.pod_v4.into()]),
        &Strategies::only(Method::Route),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(route_miss(&error), StrategyError::NotFound { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "goes through {a} (veth, not a veth to another namespace)"
        )),
        "{message}"
    );
}

#[test]
fn a_pod_without_ips_is_not_found() {
    let error = resolve(&pod_network(&[]), &Strategies::only(Method::Route)).unwrap_err();
    assert!(error.to_string().contains("the pod has no IP"), "{error}");
}
