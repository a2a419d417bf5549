//! The nodes behind a connection, each with its own breaker and link state: one for a single
//! node, one per master on a cluster (found by slot in a `CLUSTER SLOTS` map read in the
//! background), so one dead shard does not switch the others off.

use std::{collections::HashMap, ops::Deref, sync::Arc};

use arc_swap::ArcSwapOption;

use super::{breaker::Breaker, events::Link};
use crate::store::SlotRange;

/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16_384;

/// The owner index of a slot that no master serves in the map.
const UNOWNED: u16 = u16::MAX;

/// One node: its breaker, its link state, and its address (empty for a single node, and for
/// the breaker that guards a cluster until its slot map is known).
pub(crate) struct Node {
    pub(crate) breaker: Breaker,
    pub(crate) link: Link,
    /// `host:port` as `CLUSTER SLOTS` reports it: where its probe is sent.
    pub(crate) addr: String,
}

/// The masters of a cluster, by slot.
pub(crate) struct SlotMap {
    /// Index into `nodes` for each slot ([`UNOWNED`] for none).
    owner: Vec<u16>,
    pub(crate) nodes: Vec<Arc<Node>>,
}

pub(crate) enum Nodes {
    Single(Arc<Node>),
    /// Until the first slot map is read, every operation is guarded by `before_map`.
    Cluster {
        map: ArcSwapOption<SlotMap>,
        before_map: Arc<Node>,
    },
}

/// The node an operation goes to: borrowed for a single node (no reference count touched on
/// the hot path), shared for a cluster master (the map may be replaced meanwhile).
pub(crate) enum NodeRef<'a> {
    Borrowed(&'a Node),
    Shared(Arc<Node>),
}

impl Deref for NodeRef<'_> {
    type Target = Node;

    fn deref(&self) -> &Node {
        match self {
            NodeRef::Borrowed(node) => node,
            NodeRef::Shared(node) => node,
        }
    }
}

impl Node {
    pub(crate) fn new(breaker: Breaker, addr: String) -> Node {
        Node {
            breaker,
            link: Link::default(),
            addr,
        }
    }
}

impl Nodes {
    /// The node that serves `key`.
    pub(crate) fn node_for(&self, key: &str) -> NodeRef<'_> {
        match self {
            Nodes::Single(node) => NodeRef::Borrowed(node),
            Nodes::Cluster { map, before_map } => match &*map.load() {
                Some(map) => match map
                    .nodes
                    .get(usize::from(map.owner[usize::from(slot(key))]))
                {
                    Some(node) => NodeRef::Shared(node.clone()),
                    // A slot no master serves (the map had a gap).
                    None => NodeRef::Borrowed(before_map),
                },
                None => NodeRef::Borrowed(before_map),
            },
        }
    }

    /// Whether `node` is one operations still go to (a cluster master may leave the map).
    pub(crate) fn contains(&self, node: &Node) -> bool {
        match self {
            Nodes::Single(single) => std::ptr::eq(Arc::as_ptr(single), node),
            Nodes::Cluster { map, before_map } => match &*map.load() {
                Some(map) => map.nodes.iter().any(|n| std::ptr::eq(Arc::as_ptr(n), node)),
                None => std::ptr::eq(Arc::as_ptr(before_map), node),
            },
        }
    }

    /// Calls `f` with every node operations go to now.
    pub(crate) fn each(&self, mut f: impl FnMut(&Node)) {
        match self {
            Nodes::Single(node) => f(node),
            Nodes::Cluster { map, before_map } => match &*map.load() {
                Some(map) => map.nodes.iter().for_each(|n| f(n)),
                None => f(before_map),
            },
        }
    }

    /// The shared handle of a node, for a task that outlives the call (its prober).
    pub(crate) fn shared(&self, node: &Node) -> Option<Arc<Node>> {
        match self {
            Nodes::Single(single) => {
                std::ptr::eq(Arc::as_ptr(single), node).then(|| single.clone())
            }
            Nodes::Cluster { map, before_map } => match &*map.load() {
                Some(map) => map
                    .nodes
                    .iter()
                    .find(|n| std::ptr::eq(Arc::as_ptr(n), node))
                    .cloned(),
                None => std::ptr::eq(Arc::as_ptr(before_map), node).then(|| before_map.clone()),
            },
        }
    }

    /// Installs a new slot map, keeping the state of nodes that are still there; returns
    /// whether it differs from the previous one.
    pub(crate) fn update(&self, ranges: &[SlotRange], new_node: impl Fn(&str) -> Node) -> bool {
        let Nodes::Cluster { map, .. } = self else {
            return false;
        };
        let previous = map.load_full();
        let mut by_addr: HashMap<&str, u16> = HashMap::new();
        let mut nodes: Vec<Arc<Node>> = Vec::new();
        let mut owner = vec![UNOWNED; SLOTS];
        for (start, end, addr) in ranges {
            let index = *by_addr.entry(addr.as_str()).or_insert_with(|| {
                let kept = previous
                    .as_ref()
                    .and_then(|m| m.nodes.iter().find(|n| n.addr == *addr).cloned());
                nodes.push(kept.unwrap_or_else(|| Arc::new(new_node(addr))));
                u16::try_from(nodes.len() - 1).unwrap_or(u16::MAX)
            });
            let (start, end) = (usize::from(*start), usize::from(*end).min(SLOTS - 1));
            for slot in owner.iter_mut().take(end + 1).skip(start) {
                *slot = index;
            }
        }
        if nodes.is_empty() {
            return false;
        }
        let changed = previous.as_ref().is_none_or(|p| {
            p.owner != owner
                || p.nodes.len() != nodes.len()
                || p.nodes.iter().zip(&nodes).any(|(a, b)| !Arc::ptr_eq(a, b))
        });
        if changed {
            map.store(Some(Arc::new(SlotMap { owner, nodes })));
        }
        changed
    }
}

/// The cluster slot of a key: CRC16 (XMODEM) of its hash tag (the first non-empty `{...}`), or
/// of the whole key, modulo 16384.
pub(crate) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let crc = tagged.unwrap_or(bytes).iter().fold(0u16, |crc, &byte| {
        let mut crc = crc ^ (u16::from(byte) << 8);
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    });
    crc % SLOTS as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(
            slot("foo{}{bar}"),
            slot("foo{}{bar}"),
            "an empty tag hashes the key"
        );
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    }
}
