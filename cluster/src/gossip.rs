//! Fleet membership: a SWIM cluster over UDP (foca).
//!
//! Every node (the writer and each edge) runs one [`Gossip`]. It owns a UDP socket and a
//! background task that drives foca; [`Gossip::members`] reads the latest published view without
//! waiting on that task.
//!
//! Design:
//!
//! - **Identity with a generation** (`identity.rs`). A node gossips as its id, role, region and
//!   HTTP address plus its gossip address and a generation (start time in microseconds). foca
//!   keys members by gossip address, and a down identity can never come back, so a node that is
//!   wrongly declared down renews itself as the next generation, and a restarted node arrives as
//!   a newer one. Generations come from the wall clock: a node restarted after its clock went
//!   backwards stays hidden behind its older run.
//! - **One task owns everything mutable** (`driver.rs`): foca, the socket and foca's timers (a
//!   deadline heap polled in the same `select!`, so timers are delivered in order and never
//!   outlive the task). It re-announces to the seeds every 500 ms for as long as it knows no
//!   live member, so start order does not matter.
//! - **The view is kept by node id** (`view.rs`): the newest generation wins; a member declared
//!   down stays listed as `Down` until a newer generation of the same id shows up.
//! - **Progress travels as custom broadcasts** (`status.rs`): each node's applied revision
//!   ([`Gossip::set_revision`]), at most once a second when it changed and every 5 s anyway, so an
//!   edge cut off from its upstreams can pick the most advanced live peer of its region to catch
//!   up from ([`catch_up_peers`]).
//!
//! What it must not do: trust the network. Datagrams are unauthenticated; anything that does not
//! decode is logged at debug and dropped, and nothing a peer sends may panic the task. Membership
//! says who is reachable, not who is allowed: authorization belongs to mutual TLS (`tls`). It
//! also does no blocking work on the caller's thread.

mod driver;
mod identity;
mod status;
mod view;

use std::net::SocketAddr;

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use driver::Driver;
use identity::NodeId;

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
    /// Where it serves the replication protocol to other edges (`host:port`, UDP), if it does
    /// (a regional edge): peers of its region may catch up from it.
    pub replication_addr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub info: NodeInfo,
    pub gossip_addr: SocketAddr,
    pub state: MemberState,
    /// The revision it last said it has applied (`None` until its first status arrives).
    pub revision: Option<i64>,
}

/// The members an edge of `region` at `revision` may catch up from: alive edges of the same
/// region that serve replication and last said they hold at least `revision`, most advanced
/// first. A peer that holds exactly as much still helps: it may reach an upstream this edge
/// cannot, and it streams on from there.
pub fn catch_up_peers(members: &[Member], region: &str, revision: i64) -> Vec<Member> {
    let mut peers: Vec<Member> = members
        .iter()
        .filter(|m| {
            m.state == MemberState::Alive
                && m.info.role == Role::Edge
                && m.info.region == region
                && m.info.replication_addr.is_some()
                && m.revision.is_some_and(|r| r >= revision)
        })
        .cloned()
        .collect();
    peers.sort_by(|a, b| b.revision.cmp(&a.revision).then(a.info.id.cmp(&b.info.id)));
    peers
}

#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Also the address peers reach this node at, so it must be a concrete IP (not `0.0.0.0`);
    /// port 0 picks a free port.
    pub bind: SocketAddr,
    /// Seeds to announce to (retried until someone answers).
    pub join: Vec<SocketAddr>,
    pub info: NodeInfo,
}

/// The most a node's identity may take on the wire. A gossip packet (1400 bytes) carries the
/// sender's and the receiver's identities in its header plus at least one member update.
const MAX_IDENTITY_BYTES: usize = 400;

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip must bind a concrete IP address that peers can reach, not {0}")]
    UnspecifiedBind(SocketAddr),
    #[error("the node id must not be empty")]
    EmptyId,
    #[error("node info takes {size} bytes on the wire; at most {MAX_IDENTITY_BYTES} fit")]
    InfoTooLarge { size: usize },
    #[error("cannot encode node info: {0}")]
    Encode(#[from] postcard::Error),
    #[error("cannot bind the gossip socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the bound gossip address: {0}")]
    LocalAddr(std::io::Error),
    #[error("cannot seed the random number generator: {0}")]
    Entropy(String),
}

/// A running membership agent.
///
/// [`Gossip::shutdown`] leaves gracefully. Dropping a `Gossip` instead stops the task on the
/// spot without telling anyone, as a crash would: peers then suspect it and declare it down. The
/// socket is released once the runtime has cancelled the task, a moment after the drop.
///
/// With the timings in `driver::foca_config`, peers see a graceful leave as `Down` within about a
/// second, and a crashed node as `Suspect` within about 1.5 s and `Down` 3 s after that.
pub struct Gossip {
    local_addr: SocketAddr,
    members: watch::Receiver<Vec<Member>>,
    revision: watch::Sender<Option<i64>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Gossip {
    /// Binds the UDP socket and starts the protocol in a background task.
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        if config.bind.ip().is_unspecified() {
            return Err(GossipError::UnspecifiedBind(config.bind));
        }
        if config.info.id.is_empty() {
            return Err(GossipError::EmptyId);
        }
        let rng = StdRng::try_from_rng(&mut SysRng)
            .map_err(|error| GossipError::Entropy(error.to_string()))?;
        let socket = UdpSocket::bind(config.bind)
            .await
            .map_err(|source| GossipError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = socket.local_addr().map_err(GossipError::LocalAddr)?;

        let identity = NodeId::new(&config.info, local_addr);
        let size = postcard::to_allocvec(&identity)?.len();
        if size > MAX_IDENTITY_BYTES {
            return Err(GossipError::InfoTooLarge { size });
        }

        let (published, members) = watch::channel(Vec::new());
        let (revision, revision_rx) = watch::channel(None);
        let (shutdown, shutdown_rx) = oneshot::channel();
        let driver = Driver::new(identity, rng, socket, config.join, published, revision_rx);
        let task = tokio::spawn(driver.run(shutdown_rx));
        tracing::info!(node = %config.info.id, %local_addr, "gossip started");

        Ok(Gossip {
            local_addr,
            members,
            revision,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every member this node knows of (itself excluded), with its state; members declared down
    /// are kept (as `Down`) so operators see them.
    pub fn members(&self) -> Vec<Member> {
        self.members.borrow().clone()
    }

    /// Tells the fleet the revision this node has applied (broadcast soon, coalesced).
    pub fn set_revision(&self, revision: i64) {
        self.revision.send_if_modified(|held| {
            let changed = *held != Some(revision);
            *held = Some(revision);
            changed
        });
    }

    /// Leaves the cluster gracefully and stops the task.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The task may already be gone (it panicked); then there is nobody to tell.
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "gossip task ended abnormally");
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
