//! Gossip membership on real UDP sockets on loopback: forming a fleet, leaving, crashing,
//! restarting under a new generation, and surviving garbage.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use setpoint_cluster::gossip::{
    Gossip, GossipConfig, GossipError, Member, MemberState, NodeInfo, Role, catch_up_peers,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const PATIENCE: Duration = Duration::from_secs(10);

fn info(id: &str, role: Role) -> NodeInfo {
    NodeInfo {
        id: id.to_owned(),
        role,
        region: format!("region-of-{id}"),
        http_addr: format!("http://{id}.test:8080"),
        replication_addr: None,
    }
}

async fn start_on(bind: SocketAddr, id: &str, role: Role, join: &[SocketAddr]) -> Gossip {
    Gossip::start(GossipConfig {
        bind,
        join: join.to_vec(),
        info: info(id, role),
    })
    .await
    .unwrap()
}

/// Starts on an address a dropped node held: its aborted task releases the socket only once the
/// runtime gets to cancel it, so retry briefly while the port is still taken.
async fn restart_on(bind: SocketAddr, id: &str, role: Role, join: &[SocketAddr]) -> Gossip {
    let started = Instant::now();
    loop {
        let config = GossipConfig {
            bind,
            join: join.to_vec(),
            info: info(id, role),
        };
        match Gossip::start(config).await {
            Ok(node) => return node,
            Err(GossipError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < PATIENCE =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("cannot restart {id} on {bind}: {error}"),
        }
    }
}

async fn start(id: &str, role: Role, join: &[SocketAddr]) -> Gossip {
    start_on(LOOPBACK_ANY_PORT, id, role, join).await
}

fn member(node: &Gossip, id: &str) -> Option<Member> {
    node.members().into_iter().find(|m| m.info.id == id)
}

fn state(node: &Gossip, id: &str) -> Option<MemberState> {
    member(node, id).map(|m| m.state)
}

/// Polls `done` until it holds, failing the test with `what` after [`PATIENCE`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Shown on failure or with --nocapture: how close detection runs to the patience.
    eprintln!("{:>6} ms until {what}", started.elapsed().as_millis());
}

/// Everyone in `nodes` sees every other one (by id) in `expected` state.
fn all_see(nodes: &[(&str, &Gossip)], about: &str, expected: MemberState) -> bool {
    nodes
        .iter()
        .filter(|(id, _)| *id != about)
        .all(|(_, node)| state(node, about) == Some(expected))
}

#[tokio::test]
async fn a_fleet_forms_through_one_seed_and_sees_a_graceful_leave() {
    let writer = start("writer", Role::Writer, &[]).await;
    let seed = [writer.local_addr()];
    let edge1 = start("edge-1", Role::Edge, &seed).await;
    let edge2 = start("edge-2", Role::Edge, &seed).await;
    let edge3 = start("edge-3", Role::Edge, &seed).await;
    let nodes = [
        ("writer", &writer),
        ("edge-1", &edge1),
        ("edge-2", &edge2),
        ("edge-3", &edge3),
    ];

    wait_until("all four see each other alive", || {
        nodes
            .iter()
            .all(|(id, _)| all_see(&nodes, id, MemberState::Alive))
    })
    .await;

    for (id, node) in &nodes {
        assert_eq!(node.members().len(), 3, "{id} lists itself or a stranger");
        assert!(member(node, id).is_none(), "{id} lists itself");
    }
    let seen = member(&edge3, "writer").unwrap();
    assert_eq!(seen.info, info("writer", Role::Writer));
    assert_eq!(seen.gossip_addr, writer.local_addr());
    let seen = member(&writer, "edge-2").unwrap();
    assert_eq!(seen.info, info("edge-2", Role::Edge));
    assert_eq!(seen.gossip_addr, edge2.local_addr());

    let left = edge2.local_addr();
    edge2.shutdown().await;
    let remaining = [("writer", &writer), ("edge-1", &edge1), ("edge-3", &edge3)];
    wait_until("the others see edge-2 down after it leaves", || {
        all_see(&remaining, "edge-2", MemberState::Down)
    })
    .await;
    // Kept, with its last known details, so operators see it.
    let gone = member(&writer, "edge-2").unwrap();
    assert_eq!(gone.info, info("edge-2", Role::Edge));
    assert_eq!(gone.gossip_addr, left);
    for (id, node) in &remaining {
        for other in ["writer", "edge-1", "edge-3"] {
            if other != *id {
                assert_eq!(
                    state(node, other),
                    Some(MemberState::Alive),
                    "{id} on {other}"
                );
            }
        }
    }

    // Back on the same address (a fixed port, as in production), as a newer generation.
    let edge2 = start_on(left, "edge-2", Role::Edge, &seed).await;
    wait_until(
        "edge-2 is alive again after restarting on its old port",
        || {
            all_see(&remaining, "edge-2", MemberState::Alive)
                && all_see(&[("edge-2", &edge2)], "edge-3", MemberState::Alive)
        },
    )
    .await;

    writer.shutdown().await;
    edge1.shutdown().await;
    edge2.shutdown().await;
    edge3.shutdown().await;
}

#[tokio::test]
async fn a_crashed_node_turns_suspect_then_down_and_comes_back_as_a_new_generation() {
    let writer = start("writer", Role::Writer, &[]).await;
    let seed = [writer.local_addr()];
    let edge1 = start("edge-1", Role::Edge, &seed).await;
    let edge2 = start("edge-2", Role::Edge, &seed).await;
    let nodes = [("writer", &writer), ("edge-1", &edge1), ("edge-2", &edge2)];
    wait_until("all three see each other alive", || {
        nodes
            .iter()
            .all(|(id, _)| all_see(&nodes, id, MemberState::Alive))
    })
    .await;

    // Dropping stops the task without a goodbye, like a crash.
    let old_addr = edge2.local_addr();
    drop(edge2);
    let survivors = [("writer", &writer), ("edge-1", &edge1)];
    wait_until("someone suspects the crashed edge-2", || {
        survivors
            .iter()
            .any(|(_, node)| state(node, "edge-2") == Some(MemberState::Suspect))
    })
    .await;
    wait_until("everyone declares edge-2 down", || {
        all_see(&survivors, "edge-2", MemberState::Down)
    })
    .await;

    let edge2 = start("edge-2", Role::Edge, &seed).await;
    assert_ne!(edge2.local_addr(), old_addr);
    wait_until("the restarted edge-2 is alive again everywhere", || {
        survivors.iter().all(|(_, node)| {
            member(node, "edge-2").is_some_and(|m| {
                m.state == MemberState::Alive && m.gossip_addr == edge2.local_addr()
            })
        })
    })
    .await;
    wait_until("the restarted edge-2 sees the others", || {
        all_see(&[("edge-2", &edge2)], "writer", MemberState::Alive)
            && all_see(&[("edge-2", &edge2)], "edge-1", MemberState::Alive)
    })
    .await;

    // Crash again and come straight back on the same port, before anyone declares it down:
    // the newer generation replaces the old one and nobody takes it down afterwards. A witness,
    // edge-3, crashes at the same moment and stays away: once everyone declares it down, the
    // failure detector has had all the time it needs to take the old edge-2 down too — a
    // condition to wait for instead of a sleep guessed longer than suspect-to-down.
    let edge3 = start("edge-3", Role::Edge, &seed).await;
    wait_until("everyone sees the witness edge-3 alive", || {
        all_see(&survivors, "edge-3", MemberState::Alive)
    })
    .await;
    let addr = edge2.local_addr();
    drop(edge2);
    drop(edge3);
    let edge2 = restart_on(addr, "edge-2", Role::Edge, &seed).await;
    wait_until("the quickly restarted edge-2 sees the others", || {
        all_see(&[("edge-2", &edge2)], "writer", MemberState::Alive)
            && all_see(&[("edge-2", &edge2)], "edge-1", MemberState::Alive)
    })
    .await;
    wait_until("everyone declares the witness edge-3 down", || {
        all_see(&survivors, "edge-3", MemberState::Down)
    })
    .await;
    assert!(all_see(&survivors, "edge-2", MemberState::Alive));

    writer.shutdown().await;
    edge1.shutdown().await;
    edge2.shutdown().await;
}

#[tokio::test]
async fn applied_revisions_spread_and_pick_the_peers_to_catch_up_from() {
    let regional = |id: &str| NodeInfo {
        region: "eu".to_owned(),
        replication_addr: Some(format!("{id}.test:7000")),
        ..info(id, Role::Edge)
    };
    let writer = start("writer", Role::Writer, &[]).await;
    let seed = [writer.local_addr()];
    let mut nodes = Vec::new();
    for id in ["ahead", "level", "behind"] {
        let config = GossipConfig {
            bind: LOOPBACK_ANY_PORT,
            join: seed.to_vec(),
            info: regional(id),
        };
        nodes.push(Gossip::start(config).await.unwrap());
    }
    let leaf = start("leaf", Role::Edge, &seed).await;
    for (node, revision) in nodes.iter().zip([40, 30, 20]) {
        node.set_revision(revision);
    }
    leaf.set_revision(30);
    wait_until("the writer hears every edge's revision", || {
        ["ahead", "level", "behind", "leaf"]
            .iter()
            .zip([40, 30, 20, 30])
            .all(|(id, revision)| member(&writer, id).and_then(|m| m.revision) == Some(revision))
    })
    .await;
    // A later revision replaces the earlier one everywhere.
    nodes[0].set_revision(41);
    wait_until("the leaf hears the newer revision", || {
        member(&leaf, "ahead").and_then(|m| m.revision) == Some(41)
    })
    .await;

    // Asked for region "eu" at revision 30: the peers at 41 and 30, most advanced first; not the
    // one behind, the writer, the leaf (no replication address) or the asker itself.
    let peers = catch_up_peers(&leaf.members(), "eu", 30);
    let ids: Vec<&str> = peers.iter().map(|m| m.info.id.as_str()).collect();
    assert_eq!(ids, ["ahead", "level"]);
    assert_eq!(
        peers[0].info.replication_addr.as_deref(),
        Some("ahead.test:7000")
    );
    assert!(catch_up_peers(&leaf.members(), "us", 0).is_empty());

    // A peer that went away is no candidate.
    let ahead = nodes.remove(0);
    ahead.shutdown().await;
    wait_until("the leaf sees the advanced peer down", || {
        state(&leaf, "ahead") == Some(MemberState::Down)
    })
    .await;
    let ids: Vec<String> = catch_up_peers(&leaf.members(), "eu", 30)
        .into_iter()
        .map(|m| m.info.id)
        .collect();
    assert_eq!(ids, ["level"]);
}

#[tokio::test]
async fn a_node_started_before_its_seed_joins_once_the_seed_is_up() {
    // A socket holds the seed's port until the seed starts; it hears the early node's announces
    // and never answers. Two of them (an announce and its retry) show the early node tried and
    // kept trying while no seed was up — awaited, not guessed with a sleep.
    let silent_seed = UdpSocket::bind(LOOPBACK_ANY_PORT).await.unwrap();
    let seed_addr = silent_seed.local_addr().unwrap();
    let early = start("edge-early", Role::Edge, &[seed_addr]).await;
    let mut datagram = vec![0; 65_536];
    for attempt in ["an announce", "a retried announce"] {
        let (_, from) = tokio::time::timeout(PATIENCE, silent_seed.recv_from(&mut datagram))
            .await
            .unwrap_or_else(|_| panic!("{attempt} from the early node within {PATIENCE:?}"))
            .unwrap();
        assert_eq!(from, early.local_addr());
    }
    assert!(early.members().is_empty());
    drop(silent_seed);

    let writer = restart_on(seed_addr, "writer", Role::Writer, &[]).await;
    wait_until("the early edge and the late seed see each other", || {
        state(&early, "writer") == Some(MemberState::Alive)
            && state(&writer, "edge-early") == Some(MemberState::Alive)
    })
    .await;

    early.shutdown().await;
    writer.shutdown().await;
}

#[tokio::test]
async fn garbage_datagrams_do_not_break_a_node() {
    let writer = start("writer", Role::Writer, &[]).await;
    let target = writer.local_addr();

    // Capture a genuine foca packet: an announce sent to a socket posing as a seed.
    let fake_seed = UdpSocket::bind(LOOPBACK_ANY_PORT).await.unwrap();
    let announcer = start(
        "edge-announcer",
        Role::Edge,
        &[fake_seed.local_addr().unwrap()],
    )
    .await;
    let mut genuine = vec![0_u8; 2048];
    let (len, _) = tokio::time::timeout(PATIENCE, fake_seed.recv_from(&mut genuine))
        .await
        .unwrap()
        .unwrap();
    genuine.truncate(len);
    drop(announcer);

    let attacker = UdpSocket::bind(LOOPBACK_ANY_PORT).await.unwrap();
    let mut hostile: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0],
        vec![0xff; 7],
        vec![0xff; 1400],
        vec![0xab; 9000],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    hostile.extend((0..genuine.len()).map(|cut| genuine[..cut].to_vec()));
    hostile.extend((0..genuine.len()).map(|at| {
        let mut flipped = genuine.clone();
        flipped[at] ^= 0xff;
        flipped
    }));
    let mut trailing = genuine.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    hostile.push(trailing);
    for datagram in &hostile {
        attacker.send_to(datagram, target).await.unwrap();
    }

    // Still gossiping: a real node joins through it and both see each other.
    let edge = start("edge-1", Role::Edge, &[target]).await;
    wait_until("a node joins through the node under attack", || {
        state(&writer, "edge-1") == Some(MemberState::Alive)
            && state(&edge, "writer") == Some(MemberState::Alive)
    })
    .await;

    edge.shutdown().await;
    writer.shutdown().await;
}

#[tokio::test]
async fn start_rejects_what_peers_could_not_use() {
    let unspecified = Gossip::start(GossipConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        join: Vec::new(),
        info: info("edge-1", Role::Edge),
    })
    .await;
    assert!(matches!(unspecified, Err(GossipError::UnspecifiedBind(_))));

    let nameless = Gossip::start(GossipConfig {
        bind: LOOPBACK_ANY_PORT,
        join: Vec::new(),
        info: info("", Role::Edge),
    })
    .await;
    assert!(matches!(nameless, Err(GossipError::EmptyId)));

    let mut huge = info("edge-1", Role::Edge);
    huge.region = "x".repeat(1000);
    let too_large = Gossip::start(GossipConfig {
        bind: LOOPBACK_ANY_PORT,
        join: Vec::new(),
        info: huge,
    })
    .await;
    assert!(matches!(too_large, Err(GossipError::InfoTooLarge { .. })));
}
