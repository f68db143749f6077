//! Fleet membership: a SWIM cluster over UDP (foca).
//!
//! Every node (the writer and each edge) runs one [`Gossip`]. Its identity carries a
//! generation (start time) so a node declared down can rejoin under a renewed identity.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Writer,
    Edge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
}

/// What a node tells the fleet about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub role: Role,
    pub region: String,
    /// Where it serves HTTP/gRPC (edges) or REST (writer).
    pub http_addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub info: NodeInfo,
    pub gossip_addr: SocketAddr,
    pub state: MemberState,
}

#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub bind: SocketAddr,
    /// Seeds to announce to (retried until someone answers).
    pub join: Vec<SocketAddr>,
    pub info: NodeInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    // helper's choice
}

pub struct Gossip {}

impl Gossip {
    /// Binds the UDP socket and starts the protocol in a background task.
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        todo!()
    }
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        todo!()
    }
    /// Every member this node knows of (itself excluded), with its state; members declared down
    /// are kept (as `Down`) so operators see them.
    pub fn members(&self) -> Vec<Member> {
        todo!()
    }
    /// Leaves the cluster gracefully and stops the task.
    pub async fn shutdown(self) {
        todo!()
    }
}
