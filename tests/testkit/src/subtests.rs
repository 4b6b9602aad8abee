//! Helpers of the tests against a real kube-apiserver: a kube client for a [`KubeApiServer`],
//! and a runner for subtests that share one apiserver (starting one takes about 8 s, so a test binary starts one and runs its
//! cases against it, each in its own namespace).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::kube::KubeApiServer;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client acting as the server's admin (group `system:masters`).
pub async fn admin_client(server: &KubeApiServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config from the kubeconfig");
    Client::try_from(config).expect("building a kube client")
}

/// A named case of [`run_subtests`].
pub type Subtest<C> = (&'static str, fn(&C));

/// Runs every case in order, each caught on its own so one failure does not hide the others,
/// printing each name, outcome and duration; panics at the end naming the failed ones.
pub fn run_subtests<C>(context: &C, cases: &[Subtest<C>]) {
    let mut failed = Vec::new();
    for (name, case) in cases {
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| case(context)));
        let elapsed = started.elapsed();
        match outcome {
            Ok(()) => eprintln!("subtest {name} ... ok ({elapsed:.1?})"),
            Err(_) => {
                eprintln!("subtest {name} ... FAILED ({elapsed:.1?})");
                failed.push(*name);
            }
        }
    }
    assert!(failed.is_empty(), "failed subtests: {}", failed.join(", "));
}
