//! Rendezvous (highest-random-weight) hashing: the owner of a key is the member with the
//! highest score `mix(hash(key), node)`. Every node computes the same owner from the same
//! member set, adding a node moves only the keys it now wins (≈ 1/(N+1)), and removing one
//! moves only the keys it owned. I/O-free.

use crate::NodeId;

/// FNV-1a 64: a fixed, documented hash, stable across Rust versions and platforms (the
/// standard library's hasher is not guaranteed to be).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

fn score(key_hash: u64, node: NodeId) -> u64 {
    mix(key_hash ^ mix(node))
}

/// The member that owns `key`, or `None` when there are no members. Ties (practically
/// impossible) go to the lower node id, so the answer never depends on iteration order.
pub fn owner(key: &str, members: impl IntoIterator<Item = NodeId>) -> Option<NodeId> {
    let key_hash = fnv1a(key.as_bytes());
    members.into_iter().map(|node| (score(key_hash, node), std::cmp::Reverse(node))).max().map(|(_, node)| node.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn keys(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("channel:{i:08x}-key")).collect()
    }

    fn owners(keys: &[String], members: &[NodeId]) -> Vec<NodeId> {
        keys.iter().map(|key| owner(key, members.iter().copied()).unwrap()).collect()
    }

    #[test]
    fn the_answer_does_not_depend_on_member_order() {
        let forward = [11, 22, 33, 44];
        let backward = [44, 33, 22, 11];
        for key in keys(1000) {
            assert_eq!(owner(&key, forward), owner(&key, backward));
        }
        assert_eq!(owner("x", []), None);
    }

    #[test]
    fn each_node_owns_about_one_nth_of_the_keys() {
        let keys = keys(100_000);
        for members in [vec![1, 2, 3], vec![7, 1_000_003, 42, 9, 123_456_789]] {
            let mut counts: HashMap<NodeId, usize> = HashMap::new();
            for node in owners(&keys, &members) {
                *counts.entry(node).or_default() += 1;
            }
            let fair = keys.len() as f64 / members.len() as f64;
            for node in &members {
                let share = counts[node] as f64 / fair;
                assert!((0.95..=1.05).contains(&share), "node {node} owns {share:.3} of its fair share");
            }
        }
    }

    #[test]
    fn adding_a_node_moves_only_what_it_takes_and_removing_one_only_what_it_had() {
        let keys = keys(100_000);
        let before = owners(&keys, &[1, 2, 3, 4]);
        let after = owners(&keys, &[1, 2, 3, 4, 5]);
        let mut moved = 0;
        for (old, new) in before.iter().zip(&after) {
            if old != new {
                assert_eq!(*new, 5, "a key only ever moves to the new node");
                moved += 1;
            }
        }
        let fraction = moved as f64 / keys.len() as f64;
        assert!((0.18..=0.22).contains(&fraction), "moved {fraction:.3}, expected about 1/5");

        let without_two = owners(&keys, &[1, 3, 4, 5]);
        for ((old, new), key) in after.iter().zip(&without_two).zip(&keys) {
            if *old != 2 {
                assert_eq!(old, new, "{key} moved although its owner stayed");
            } else {
                assert_ne!(*new, 2);
            }
        }
    }
}
