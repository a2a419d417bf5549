//! The nodes behind a connection, each with its own breaker and link state: one for a single
//! node, one per master on a cluster (found by slot in a `CLUSTER SLOTS` map read in the
//! background), so one dead shard does not switch the others off.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwapOption;

use super::{breaker::Breaker, events::Link};

/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16_384;

/// One node: its breaker, its link state, and how to reach it for a probe.
pub(crate) struct Node {
    pub(crate) breaker: Breaker,
    pub(crate) link: Link,
    /// A slot this node serves, so a probe is routed to it (`None`: the only node).
    pub(crate) probe_slot: Option<u16>,
    /// `host:port`, for logs (empty for a single node).
    pub(crate) addr: String,
}

/// Which keys an operation touches, to find the breakers that guard it.
#[derive(Clone, Copy)]
pub(crate) enum Route<'a> {
    /// One key (or keys sharing its hash tag).
    Key(&'a str),
    /// An entry and its tags: possibly several nodes.
    Keys(&'a str, &'a [String]),
    /// Only tags: possibly several nodes.
    Tags(&'a [String]),
}

/// The masters of a cluster, by slot.
pub(crate) struct SlotMap {
    /// Index into `nodes` for each slot.
    owner: Vec<u16>,
    pub(crate) nodes: Vec<Arc<Node>>,
}

/// A slot range served by a master at `addr`, as `CLUSTER SLOTS` reports it.
pub(crate) type SlotRange = (u16, u16, String);

pub(crate) enum Nodes {
    Single(Arc<Node>),
    /// Until the first slot map is read, every operation is guarded by `before_map`.
    Cluster {
        map: ArcSwapOption<SlotMap>,
        before_map: Arc<Node>,
    },
}

/// The nodes an operation touches.
pub(crate) enum Targets<'a> {
    One(&'a Node),
    Owned(Vec<Arc<Node>>),
}

impl Targets<'_> {
    pub(crate) fn each(&self, mut f: impl FnMut(&Node)) {
        match self {
            Targets::One(node) => f(node),
            Targets::Owned(nodes) => nodes.iter().for_each(|n| f(n)),
        }
    }

    /// The node, when the operation touches exactly one.
    pub(crate) fn single(&self) -> Option<&Node> {
        match self {
            Targets::One(node) => Some(node),
            Targets::Owned(nodes) if nodes.len() == 1 => Some(&nodes[0]),
            Targets::Owned(_) => None,
        }
    }
}

impl Node {
    pub(crate) fn new(breaker: Breaker, probe_slot: Option<u16>, addr: String) -> Node {
        Node {
            breaker,
            link: Link::default(),
            probe_slot,
            addr,
        }
    }
}

impl Nodes {
    /// The nodes `route` touches.
    pub(crate) fn targets(&self, route: Route<'_>) -> Targets<'_> {
        let (map, before_map) = match self {
            Nodes::Single(node) => return Targets::One(node),
            Nodes::Cluster { map, before_map } => (map.load_full(), before_map),
        };
        let Some(map) = map else {
            return Targets::One(before_map);
        };
        let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(1);
        let mut add = |key: &str| {
            let node = &map.nodes[usize::from(map.owner[usize::from(slot(key))])];
            if !nodes.iter().any(|n| Arc::ptr_eq(n, node)) {
                nodes.push(node.clone());
            }
        };
        match route {
            Route::Key(key) => add(key),
            Route::Keys(key, tags) => {
                add(key);
                tags.iter().for_each(|t| add(t));
            }
            Route::Tags(tags) => tags.iter().for_each(|t| add(t)),
        }
        Targets::Owned(nodes)
    }

    /// Every node, for status questions ("is any breaker open?").
    pub(crate) fn all(&self) -> Vec<Arc<Node>> {
        match self {
            Nodes::Single(node) => vec![node.clone()],
            Nodes::Cluster { map, before_map } => match map.load_full() {
                Some(map) => map.nodes.clone(),
                None => vec![before_map.clone()],
            },
        }
    }

    /// Installs a new slot map, keeping the state of nodes that are still there; returns
    /// whether it differs from the previous one.
    pub(crate) fn update(
        &self,
        ranges: &[SlotRange],
        new_node: impl Fn(u16, &str) -> Node,
    ) -> bool {
        let Nodes::Cluster { map, .. } = self else {
            return false;
        };
        let previous = map.load_full();
        let mut by_addr: HashMap<&str, u16> = HashMap::new();
        let mut nodes: Vec<Arc<Node>> = Vec::new();
        let mut owner = vec![0u16; SLOTS];
        for (start, end, addr) in ranges {
            let index = *by_addr.entry(addr.as_str()).or_insert_with(|| {
                let kept = previous
                    .as_ref()
                    .and_then(|m| m.nodes.iter().find(|n| n.addr == *addr).cloned());
                nodes.push(kept.unwrap_or_else(|| Arc::new(new_node(*start, addr))));
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
