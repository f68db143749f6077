//! The background task that owns foca, the UDP socket and foca's timers.
//!
//! One task, one `select!`: datagrams go to `handle_data`, due timers to `handle_timer`, a
//! ticker re-announces to the seeds while we know no one, and the shutdown signal makes us leave.
//! After every call into foca the accumulated runtime is drained (send, schedule, log) and the
//! membership view is refreshed from foca's full state, since suspicion raises no notification.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::Member;
use super::identity::NodeId;
use super::status::{STATUS_INTERVAL, STATUS_REFRESH, Status, StatusHandler, Statuses};
use super::view::View;

/// How often we announce to the seeds while we know no live member.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(500);

/// Large enough for any UDP datagram, so an oversized one reaches foca whole and is rejected
/// there instead of being silently truncated into something that might decode.
const RECV_BUFFER: usize = 65_536;

const fn fan_out(count: usize) -> NonZeroUsize {
    match NonZeroUsize::new(count) {
        Some(count) => count,
        None => NonZeroUsize::MIN,
    }
}

/// foca settings for a LAN (or loopback) fleet, tuned for quick failure detection:
///
/// - every node probes one random member every 500 ms and waits 200 ms for a direct ack before
///   asking others to probe indirectly (LAN round trips are well under a millisecond; the slack
///   is for a busy host);
/// - a member that fails a probe is `Suspect` for 3 s (six probe periods: time to hear about it
///   and refute) and then `Down`;
/// - updates also spread by gossip to 3 members every 200 ms, and each node announces to one
///   member every 5 s (finds members it missed) and to down members every 10 s (heals
///   partitions);
/// - down members are told so, which makes a wrongly downed node renew its generation and
///   rejoin at once.
///
/// So a graceful leave is seen within about a second, and a crashed node is `Suspect` after
/// roughly 0.5–1.5 s and `Down` about 3.5–5 s after the crash.
pub(crate) fn foca_config() -> foca::Config {
    foca::Config {
        probe_period: Duration::from_millis(500),
        probe_rtt: Duration::from_millis(200),
        suspect_to_down_after: Duration::from_secs(3),
        notify_down_members: true,
        periodic_gossip: Some(foca::PeriodicParams {
            frequency: Duration::from_millis(200),
            num_members: fan_out(3),
        }),
        periodic_announce: Some(foca::PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: fan_out(1),
        }),
        periodic_announce_to_down_members: Some(foca::PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: fan_out(2),
        }),
        // The rest as in `simple()`: 3 indirect probes, each update sent 10 times, 1400-byte
        // packets, down members forgotten by foca after a day (the view keeps them anyway).
        ..foca::Config::simple()
    }
}

pub(crate) struct Driver {
    foca: Foca<NodeId, PostcardCodec, StdRng, StatusHandler>,
    runtime: AccumulatingRuntime<NodeId>,
    socket: UdpSocket,
    seeds: Vec<SocketAddr>,
    timers: BinaryHeap<Reverse<(Instant, Timer<NodeId>)>>,
    view: View,
    published: watch::Sender<Vec<Member>>,
    /// Every node's newest status, written by foca's handler.
    statuses: Statuses,
    /// The `Statuses` version the view last took in.
    statuses_seen: u64,
    /// This node's applied revision, as the owner last set it.
    revision: watch::Receiver<Option<i64>>,
    /// What this node last broadcast (its seq, revision and when).
    last_status: Option<(u64, i64, Instant)>,
}

impl Driver {
    pub(crate) fn new(
        identity: NodeId,
        rng: StdRng,
        socket: UdpSocket,
        seeds: Vec<SocketAddr>,
        published: watch::Sender<Vec<Member>>,
        revision: watch::Receiver<Option<i64>>,
    ) -> Self {
        let seeds = seeds
            .into_iter()
            .filter(|seed| *seed != identity.addr)
            .collect();
        let view = View::new(identity.id.clone());
        let statuses = Statuses::default();
        let handler = StatusHandler(statuses.clone());
        Self {
            foca: Foca::with_custom_broadcast(identity, foca_config(), rng, PostcardCodec, handler),
            runtime: AccumulatingRuntime::new(),
            socket,
            seeds,
            timers: BinaryHeap::new(),
            view,
            published,
            statuses,
            statuses_seen: 0,
            revision,
            last_status: None,
        }
    }

    pub(crate) async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        let mut buf = vec![0_u8; RECV_BUFFER];
        let mut announce = tokio::time::interval(ANNOUNCE_RETRY);
        announce.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut status = tokio::time::interval(STATUS_INTERVAL);
        status.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                _ = &mut shutdown => break,
                received = self.socket.recv_from(&mut buf) => {
                    self.on_datagram(received, &buf).await;
                }
                () = sleep_until(next_timer) => self.fire_due_timers().await,
                _ = announce.tick() => self.announce_if_alone().await,
                _ = status.tick() => self.broadcast_status().await,
            }
        }
        self.leave().await;
    }

    async fn on_datagram(&mut self, received: io::Result<(usize, SocketAddr)>, buf: &[u8]) {
        match received {
            Ok((len, from)) => {
                let data = buf.get(..len).unwrap_or_default();
                if let Err(error) = self.foca.handle_data(data, &mut self.runtime) {
                    tracing::debug!(%from, len, %error, "ignoring gossip datagram");
                }
                self.drain().await;
            }
            // A peer that went away answers our last packets with ICMP port unreachable, which
            // Linux reports on the next receive. Nothing is lost: keep listening.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) =>
            {
                tracing::debug!(%error, "gossip peer unreachable");
            }
            Err(error) => {
                tracing::warn!(%error, "gossip receive failed");
                // Whatever it is, don't spin on it.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Hands every due timer to foca, in foca's preferred order when several are due at once.
    async fn fire_due_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, timer))) = self.timers.pop() {
                due.push(timer);
            }
        }
        due.sort();
        for timer in due {
            if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(%error, "gossip timer failed");
            }
        }
        self.drain().await;
    }

    /// An announce is a single datagram and the seed may not be up yet: repeat it for as long
    /// as we know no live member (at start, and again if everyone else goes away).
    async fn announce_if_alone(&mut self) {
        if self.foca.num_members() > 0 {
            return;
        }
        for seed in &self.seeds {
            if let Err(error) = self.foca.announce(NodeId::seed(*seed), &mut self.runtime) {
                tracing::debug!(%seed, %error, "gossip announce failed");
            }
        }
        self.drain().await;
    }

    /// Broadcasts this node's revision when it changed since the last broadcast, or when
    /// [`STATUS_REFRESH`] has passed (members that joined since learn it too).
    async fn broadcast_status(&mut self) {
        let Some(revision) = *self.revision.borrow() else {
            return;
        };
        let now = Instant::now();
        let seq = match self.last_status {
            Some((_, sent, at)) if sent == revision && now - at < STATUS_REFRESH => return,
            Some((seq, ..)) => seq + 1,
            None => 0,
        };
        let identity = self.foca.identity();
        let status = Status {
            id: identity.id.clone(),
            generation: identity.generation,
            seq,
            revision,
        };
        let data = match postcard::to_allocvec(&status) {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(%error, "cannot encode this node's status");
                return;
            }
        };
        self.last_status = Some((seq, revision, now));
        if let Err(error) = self.foca.add_broadcast(&data) {
            tracing::debug!(%error, "cannot queue this node's status");
            return;
        }
        // Send it now rather than waiting for the next message it could ride on.
        if let Err(error) = self.foca.broadcast(&mut self.runtime) {
            tracing::debug!(%error, "cannot broadcast this node's status");
        }
        self.drain().await;
    }

    async fn leave(&mut self) {
        if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(%error, "gossip leave failed");
        }
        // Only the goodbyes matter now; timers and notifications die with the task.
        while let Some((to, data)) = self.runtime.to_send() {
            self.send(to.addr, &data).await;
        }
    }

    /// Carries out what foca asked for during the last call, then republishes the view.
    async fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.send(to.addr, &data).await;
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.push(Reverse((now + after, timer)));
        }
        while let Some(notification) = self.runtime.to_notify() {
            log_notification(&notification);
        }
        self.refresh_view();
    }

    async fn send(&self, to: SocketAddr, data: &[u8]) {
        if let Err(error) = self.socket.send_to(data, to).await {
            tracing::debug!(%to, %error, "gossip send failed");
        }
    }

    fn refresh_view(&mut self) {
        let mut changed = false;
        for member in self.foca.iter_membership_state() {
            changed |= self.view.observe(member.id(), member.state());
        }
        let statuses = self.statuses.lock();
        if changed || statuses.version != self.statuses_seen {
            self.statuses_seen = statuses.version;
            changed |= self.view.observe_statuses(statuses.by_id.values());
        }
        drop(statuses);
        if changed {
            self.published.send_replace(self.view.members());
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn log_notification(notification: &OwnedNotification<NodeId>) {
    match notification {
        OwnedNotification::MemberUp(id) => {
            tracing::info!(node = %id.id, addr = %id.addr, generation = id.generation, "member up");
        }
        OwnedNotification::MemberDown(id) => {
            tracing::info!(node = %id.id, addr = %id.addr, generation = id.generation, "member down");
        }
        OwnedNotification::Rejoin(id) => {
            tracing::info!(
                generation = id.generation,
                "declared down; rejoined as a new generation"
            );
        }
        OwnedNotification::Idle => tracing::info!("no live gossip members left"),
        other => tracing::debug!(notification = ?other, "gossip notification"),
    }
}
