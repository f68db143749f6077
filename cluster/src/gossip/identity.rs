//! The identity a node gossips under: who it is, where to reach it, and which run of it this is.
//!
//! foca keys its membership table by [`foca::Identity::addr`] and only lets an announce through
//! when the destination's `addr()` matches the receiver's. Seeds are configured as bare socket
//! addresses, so `addr()` has to be the gossip address: a restart on the same address is a foca
//! "rename" (the higher generation wins), a restart on a new address is a new foca member. Continuity
//! by node id across addresses is the view's job (`view.rs`), not foca's.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{NodeInfo, Role};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeId {
    pub(crate) id: String,
    /// Where this node receives gossip.
    pub(crate) addr: SocketAddr,
    /// Which run of the node this is: microseconds since the epoch at start, bumped by one on
    /// every `renew`. Higher means newer.
    pub(crate) generation: u64,
    pub(crate) role: Role,
    pub(crate) region: String,
    pub(crate) http_addr: String,
    pub(crate) replication_addr: Option<String>,
}

impl NodeId {
    pub(crate) fn new(info: &NodeInfo, addr: SocketAddr) -> Self {
        Self {
            id: info.id.clone(),
            addr,
            generation: generation_now(),
            role: info.role,
            region: info.region.clone(),
            http_addr: info.http_addr.clone(),
            replication_addr: info.replication_addr.clone(),
        }
    }

    /// A stand-in for a seed we only know by address. foca accepts an announce whose destination
    /// has the receiver's `addr()`, whatever the rest of the identity says.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self {
            id: String::new(),
            addr,
            generation: 0,
            role: Role::Edge,
            region: String::new(),
            http_addr: String::new(),
            replication_addr: None,
        }
    }

    pub(crate) fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id.clone(),
            role: self.role,
            region: self.region.clone(),
            http_addr: self.http_addr.clone(),
            replication_addr: self.replication_addr.clone(),
        }
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    /// Declared down while still running (a false suspicion, a partition): come back at once as
    /// the next generation on the same address.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The newer run wins; the id only breaks ties so that every node picks the same winner.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.id) > (adversary.generation, &adversary.id)
    }
}

/// Microseconds since the Unix epoch; a clock before the epoch yields 1 (still above a seed's 0).
fn generation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn node(id: &str, generation: u64) -> NodeId {
        NodeId {
            generation,
            id: id.to_owned(),
            ..NodeId::seed(SocketAddr::from(([127, 0, 0, 1], 7946)))
        }
    }

    #[test]
    fn renew_keeps_the_address_and_wins_the_conflict() {
        let old = node("edge-1", 10);
        let new = old.renew().unwrap_or_else(|| node("unreachable", 0));
        assert_eq!(new.addr(), old.addr());
        assert_eq!(new.generation, 11);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn ties_break_the_same_way_on_both_sides() {
        let a = node("a", 5);
        let b = node("b", 5);
        assert_ne!(a.win_addr_conflict(&b), b.win_addr_conflict(&a));
    }

    #[test]
    fn a_seed_stand_in_reaches_the_real_node_address() {
        let real = NodeId::new(
            &NodeInfo {
                id: "writer".into(),
                role: Role::Writer,
                region: "eu".into(),
                http_addr: "127.0.0.1:8080".into(),
                replication_addr: None,
            },
            SocketAddr::from(([127, 0, 0, 1], 7946)),
        );
        assert_eq!(NodeId::seed(real.addr).addr(), real.addr());
        assert!(real.generation > 0);
    }
}
