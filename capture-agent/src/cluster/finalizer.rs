//! This node's finalizer on a capture, and the node-derived names that must fit Kubernetes'
//! length limits.
//!
//! When the agent first writes files for a capture it adds `podcap.io/node-NODE` to
//! `metadata.finalizers`; deleting the capture then waits until every node that holds files has
//! stopped, deleted them and removed its own finalizer. The patches are JSON patches that touch
//! only this node's entry and test what they rely on (the list as seen when adding, the entry's
//! index when removing), so two nodes adding or removing theirs at the same time never drop each
//! other's, and a stale view never adds ours twice: a patch whose test fails is refused (422)
//! and the next pass tries again with the object as it is then.
//!
//! A finalizer is a qualified name: at most 63 characters after `podcap.io/`. Node names may be
//! up to 253, so a longer `node-NODE` keeps its first 47 characters and appends `-` and 10 hex
//! digits of the SHA-256 of the whole node name (stable, and distinct for distinct nodes in
//! practice). The server-side-apply field manager (at most 128 characters) is shortened the same
//! way.

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};

use capture_spec::PacketCapture;

/// Prefix of every node's finalizer.
pub const FINALIZER_PREFIX: &str = "podcap.io/node-";

const QUALIFIED_NAME_MAX: usize = 63;
const FIELD_MANAGER_MAX: usize = 128;
const HASH_HEX: usize = 10;

/// `prefix` + `node`, or when longer than `max`, a shortened node name with a hash suffix.
fn bounded(prefix: &str, node: &str, max: usize) -> String {
    let whole = format!("{prefix}{node}");
    if whole.len() <= max {
        return whole;
    }
    let hash = hex::encode(Sha256::digest(node.as_bytes()));
    let keep = max - prefix.len() - 1 - HASH_HEX;
    // Node names are ASCII (DNS subdomains); a qualified name must not end in '-' or '.'.
    let head: String = node.chars().take(keep).collect();
    let head = head.trim_end_matches(['-', '.']);
    format!("{prefix}{head}-{}", &hash[..HASH_HEX])
}

/// `podcap.io/node-NODE`, hashed when too long (see the module comment).
pub fn finalizer_name(node: &str) -> String {
    let name_part = bounded("node-", node, QUALIFIED_NAME_MAX);
    format!("podcap.io/{name_part}")
}

/// `podcap-agent/NODE`, the server-side-apply field manager of this node's status entries.
pub fn field_manager(node: &str) -> String {
    bounded("podcap-agent/", node, FIELD_MANAGER_MAX)
}

/// The JSON patch that adds `ours` to `current` (the object's finalizers as last seen).
pub fn add_patch(current: Option<&[String]>, ours: &str) -> serde_json::Value {
    match current {
        // Appending cannot drop another node's entry; the test makes sure the list is still
        // the one seen, so a stale view (a watch that has not caught up after an API server
        // outage) cannot append ours a second time: duplicate entries make the object
        // unwritable by server-side apply ("duplicate entries for key"), status included.
        Some(list) if !list.is_empty() => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": ours}
        ]),
        // Creating the list would replace one created meanwhile: only if there still is none.
        _ => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [ours]}
        ]),
    }
}

/// The JSON patch that removes `ours` from `current`, every copy of it (an older agent could
/// append it twice), testing that each is still at its index; last index first, so removing
/// one does not move the others.
pub fn remove_patch(current: &[String], ours: &str) -> Option<serde_json::Value> {
    let operations: Vec<serde_json::Value> = current
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, finalizer)| *finalizer == ours)
        .flat_map(|(index, _)| {
            let path = format!("/metadata/finalizers/{index}");
            [
                json!({"op": "test", "path": path, "value": ours}),
                json!({"op": "remove", "path": path}),
            ]
        })
        .collect();
    (!operations.is_empty()).then_some(serde_json::Value::Array(operations))
}

/// Sends one of the patches above.
pub async fn patch(
    api: &Api<PacketCapture>,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), kube::Error> {
    let operations: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::<()>::Json(operations),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_hashed() {
        assert_eq!(finalizer_name("node-a"), "podcap.io/node-node-a");
        assert_eq!(field_manager("node-a"), "podcap-agent/node-a");
        let long = format!("{}.example.internal", "worker-".repeat(20));
        let finalizer = finalizer_name(&long);
        let name_part = finalizer.strip_prefix("podcap.io/").unwrap();
        assert_eq!(name_part.len(), 63, "{finalizer}");
        assert!(name_part.starts_with("node-worker-worker-"));
        assert!(name_part.chars().last().unwrap().is_ascii_alphanumeric());
        assert_ne!(finalizer, finalizer_name(&format!("{long}x")));
        assert_eq!(finalizer, finalizer_name(&long), "stable");
        assert!(field_manager(&long).len() <= 128);
    }

    #[test]
    fn patches_touch_only_this_nodes_entry() {
        let ours = "podcap.io/node-b";
        assert_eq!(
            add_patch(None, ours),
            json!([{"op":"test","path":"/metadata/finalizers","value":null},{"op":"add","path":"/metadata/finalizers","value":[ours]}])
        );
        let current = vec!["podcap.io/node-a".to_string(), ours.to_string()];
        assert_eq!(
            add_patch(Some(&current[..1]), ours),
            json!([
                {"op":"test","path":"/metadata/finalizers","value":["podcap.io/node-a"]},
                {"op":"add","path":"/metadata/finalizers/-","value":ours}
            ])
        );
        assert_eq!(
            remove_patch(&current, ours).unwrap(),
            json!([{"op":"test","path":"/metadata/finalizers/1","value":ours},{"op":"remove","path":"/metadata/finalizers/1"}])
        );
        assert_eq!(remove_patch(&current[..1], ours), None);
        let twice = vec![
            ours.to_string(),
            "podcap.io/node-a".to_string(),
            ours.to_string(),
        ];
        assert_eq!(
            remove_patch(&twice, ours).unwrap(),
            json!([
                {"op":"test","path":"/metadata/finalizers/2","value":ours},
                {"op":"remove","path":"/metadata/finalizers/2"},
                {"op":"test","path":"/metadata/finalizers/0","value":ours},
                {"op":"remove","path":"/metadata/finalizers/0"}
            ])
        );
        // Each is a valid JSON patch.
        for patch in [add_patch(None, ours), remove_patch(&current, ours).unwrap()] {
            serde_json::from_value::<json_patch::Patch>(patch).unwrap();
        }
    }
}
