//! Tests of the frame codec: round trips over an in-memory stream, every way a peer's bytes can
//! be wrong, and the validation done when frames become snapshot types.

use super::*;
use proptest::prelude::*;
use setpoint_core::clients::{ClientError, ClientProgress};
use tokio::io::{AsyncWriteExt, duplex};

fn entry(path: &str, format: Format, stored: &str) -> WireEntry {
    WireEntry {
        path: path.into(),
        format,
        stored: stored.into(),
        version: 3,
        revision: 41,
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn change(path: &str, value: Option<(Format, &str)>) -> WireChange {
    WireChange {
        path: path.into(),
        version: 2,
        updated_at: "2026-01-01T00:00:00Z".into(),
        value: value.map(|(format, stored)| (format, stored.to_owned())),
    }
}

fn batch(changes: Vec<WireChange>) -> WireBatch {
    WireBatch {
        revision: 42,
        committed_at_micros: 1_700_000_000_000_000,
        changes,
    }
}

fn every_variant() -> Vec<Frame> {
    vec![
        Frame::Hello {
            node_id: "edge-1".into(),
            region: "eu-west".into(),
            revision: 0,
            http_addr: "127.0.0.1:8080".into(),
        },
        Frame::SnapshotBegin {
            revision: 41,
            entries: 2,
        },
        Frame::SnapshotChunk {
            entries: vec![
                entry("/a/b", Format::Json, r#"{"x":1}"#),
                entry("/a/c", Format::Yaml, "x: [1, 2]\n"),
            ],
        },
        Frame::SnapshotChunk { entries: vec![] },
        Frame::SnapshotEnd { revision: 41 },
        Frame::Batch(batch(vec![
            change("/a/b", Some((Format::Text, "hello\n"))),
            change("/a/c", None),
        ])),
        Frame::Heartbeat { revision: 42 },
        Frame::SourceState {
            stale: true,
            staleness_ms: 2_500,
            standby: false,
        },
        Frame::Ack { revision: 42 },
        Frame::Goodbye {
            reason: "shutting down".into(),
        },
        Frame::Relayed(RelayReport {
            edges: Some(vec![RelayedEdge {
                id: "leaf-1".into(),
                region: "eu-west".into(),
                http_addr: "127.0.0.1:8081".into(),
                upstream: "regional".into(),
                connected: true,
                applied_revision: 41,
                hop_acked: 3,
                hop_micros: 900,
            }]),
            clients: vec![],
        }),
        Frame::Progress(ProgressReport {
            progress: vec![ClientProgress {
                id: "app-1".into(),
                last_seen_ms: 1_000,
                disconnected_at_ms: None,
                delivered_revision: 42,
                applied_revision: 41,
                pending_since_ms: Some(900),
                propagation_ms: Some(1.5),
                end_to_end_ms: Some(3.0),
                nacks: 1,
                last_error: Some(ClientError {
                    path: "/app/x".into(),
                    error: "boom".into(),
                    revision: 40,
                    at_ms: 800,
                }),
            }],
        }),
    ]
}

/// Feeds `bytes` to `read_frame` as a stream that then ends.
async fn read_from(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
    let mut reader = bytes;
    read_frame(&mut reader).await
}

fn body_with_version(version: u16, frame: &Frame) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend(postcard::to_allocvec(frame).unwrap());
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend(body);
    bytes
}

#[tokio::test]
async fn every_variant_round_trips_back_to_back_over_a_stream() {
    let frames = every_variant();
    let (mut client, mut server) = duplex(64);
    let sent = frames.clone();
    let writer = tokio::spawn(async move {
        for frame in &sent {
            write_frame(&mut client, frame).await.unwrap();
        }
        client.shutdown().await.unwrap();
    });
    let mut received = Vec::new();
    while let Some(frame) = read_frame(&mut server).await.unwrap() {
        received.push(frame);
    }
    writer.await.unwrap();
    assert_eq!(received, frames);
}

#[tokio::test]
async fn encode_matches_the_documented_layout() {
    let frame = Frame::Ack { revision: 7 };
    let bytes = encode(&frame).unwrap();
    let body_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(body_len, bytes.len() - 4);
    assert_eq!(body_len, encoded_len(&frame).unwrap());
    assert_eq!(u16::from_be_bytes([bytes[4], bytes[5]]), PROTOCOL_VERSION);
    assert_eq!(postcard::from_bytes::<Frame>(&bytes[6..]).unwrap(), frame);
    assert_eq!(decode_body(&bytes[4..]).unwrap(), frame);
}

#[tokio::test]
async fn clean_end_of_stream_is_none() {
    assert!(read_from(&[]).await.unwrap().is_none());
    let one = encode(&Frame::Heartbeat { revision: 1 }).unwrap();
    let mut reader = one.as_slice();
    assert!(read_frame(&mut reader).await.unwrap().is_some());
    assert!(read_frame(&mut reader).await.unwrap().is_none());
}

#[tokio::test]
async fn a_stream_ending_inside_a_frame_is_unexpected_eof() {
    let bytes = encode(&every_variant()[2]).unwrap();
    for cut in 1..bytes.len() {
        match read_from(&bytes[..cut]).await {
            Err(FrameError::Io(error)) => {
                assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::UnexpectedEof,
                    "cut at {cut}"
                )
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_oversized_length_is_refused_before_reading_the_body() {
    for size in [u32::MAX, MAX_FRAME_BYTES as u32 + 1] {
        // Only the prefix exists: had the reader tried to allocate or read the body it would
        // report end of stream instead.
        match read_from(&size.to_be_bytes()).await {
            Err(FrameError::TooLarge { size: got, limit }) => {
                assert_eq!((got, limit), (size as usize, MAX_FRAME_BYTES));
            }
            other => panic!("{size}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn writing_an_oversized_frame_is_refused() {
    let frame = Frame::Goodbye {
        reason: "x".repeat(MAX_FRAME_BYTES),
    };
    assert!(matches!(
        encode(&frame),
        Err(FrameError::TooLarge {
            limit: MAX_FRAME_BYTES,
            ..
        })
    ));
    let mut sink = Vec::new();
    assert!(write_frame(&mut sink, &frame).await.is_err());
    assert!(sink.is_empty(), "nothing is written");
}

#[tokio::test]
async fn another_protocol_version_is_refused() {
    let bytes = body_with_version(PROTOCOL_VERSION + 1, &Frame::Ack { revision: 1 });
    assert!(matches!(
        read_from(&bytes).await,
        Err(FrameError::UnsupportedVersion(2))
    ));
    assert!(matches!(
        decode_body(&bytes[4..]),
        Err(FrameError::UnsupportedVersion(2))
    ));
}

#[tokio::test]
async fn malformed_bodies_are_decode_errors() {
    let short_body = [0, 0, 0, 1, 0];
    assert!(matches!(
        read_from(&short_body).await,
        Err(FrameError::Decode(_))
    ));
    let unknown_variant = [0, 0, 0, 3, 0, 1, 200];
    assert!(matches!(
        read_from(&unknown_variant).await,
        Err(FrameError::Decode(_))
    ));
    let mut trailing = body_with_version(PROTOCOL_VERSION, &Frame::Ack { revision: 1 });
    trailing.push(0);
    trailing[3] += 1;
    assert!(matches!(
        read_from(&trailing).await,
        Err(FrameError::Decode(message)) if message.contains("trailing")
    ));
}

#[test]
fn snapshot_types_round_trip() {
    let wire = entry("/a/b", Format::Yaml, "x: 1\n");
    let core = wire.clone().into_entry().unwrap();
    assert_eq!(core.path.as_str(), "/a/b");
    assert_eq!(core.value.structured(), &serde_json::json!({"x": 1}));
    assert_eq!(WireEntry::from_entry(&core), wire);

    let wire = batch(vec![
        change("/a/b", Some((Format::Json, "[1,2]"))),
        change("/a/c", None),
    ]);
    let core = wire.clone().into_batch().unwrap();
    assert!(matches!(core.changes[0].kind, ChangeKind::Put { .. }));
    assert_eq!(core.changes[1].kind, ChangeKind::Delete);
    assert_eq!(WireBatch::from_batch(&core), wire);
}

#[test]
fn invalid_content_is_refused() {
    let invalid_changes = [
        change("/a/../etc", None),
        change("/", None),
        change("", None),
        change("a//b", Some((Format::Text, "x"))),
        change("/a/b", Some((Format::Yaml, "a: [1"))),
        change("/a/b", Some((Format::Json, "{"))),
    ];
    for invalid in invalid_changes {
        let label = format!("{invalid:?}");
        let wire = batch(vec![change("/ok", None), invalid]);
        assert!(
            matches!(wire.into_batch(), Err(FrameError::Invalid(_))),
            "{label}"
        );
    }
    for invalid in [
        entry("/a/..", Format::Text, "x"),
        entry("/", Format::Text, "x"),
        entry("/a", Format::Yaml, "a: 1\n---\nb: 2"),
    ] {
        let label = format!("{invalid:?}");
        assert!(
            matches!(invalid.into_entry(), Err(FrameError::Invalid(_))),
            "{label}"
        );
    }
}

#[test]
fn chunks_fit_the_limit_and_keep_every_entry_in_order() {
    let entries: Vec<WireEntry> = (0..200)
        .map(|i| entry(&format!("/k/{i}"), Format::Text, &"v".repeat(i * 7)))
        .collect();
    let limit = 4096;
    let chunks: Vec<Vec<WireEntry>> = chunk_entries(entries.clone(), limit).collect();
    assert!(chunks.len() > 1);
    for chunk in &chunks {
        assert!(!chunk.is_empty());
        let frame = Frame::SnapshotChunk {
            entries: chunk.clone(),
        };
        assert!(encoded_len(&frame).unwrap() <= limit);
    }
    assert_eq!(chunks.concat(), entries);
    assert_eq!(chunk_entries(Vec::new(), limit).count(), 0);
}

#[test]
fn the_largest_entry_fits_a_frame_and_an_oversized_one_travels_alone() {
    let largest = entry(
        "/big",
        Format::Text,
        &"x".repeat(setpoint_core::MAX_VALUE_BYTES),
    );
    let chunks: Vec<_> =
        chunk_entries(vec![largest.clone(); 9], MAX_FRAME_BYTES).collect::<Vec<_>>();
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 9);
    for chunk in chunks {
        encode(&Frame::SnapshotChunk { entries: chunk }).unwrap();
    }
    let alone: Vec<_> = chunk_entries(vec![largest.clone(), largest], 100).collect();
    assert_eq!(alone.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut reader = bytes.as_slice();
            // Whatever the bytes, every read returns; keep reading until an error or the end.
            while let Ok(Some(_)) = read_frame(&mut reader).await {}
        });
        let _ = decode_body(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = ((payload.len() + 2) as u32).to_be_bytes().to_vec();
        bytes.extend(PROTOCOL_VERSION.to_be_bytes());
        bytes.extend(&payload);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let result = runtime.block_on(read_from(&bytes));
        if let Ok(Some(Frame::SnapshotChunk { entries })) = result {
            for entry in entries {
                let _ = entry.into_entry();
            }
        } else if let Ok(Some(Frame::Batch(batch))) = result {
            let _ = batch.into_batch();
        }
    }

    #[test]
    fn goodbye_round_trips(reason in "\\PC{0,64}", revision in any::<i64>()) {
        for frame in [Frame::Goodbye { reason: reason.clone() }, Frame::Ack { revision }] {
            let bytes = encode(&frame).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            prop_assert_eq!(runtime.block_on(read_from(&bytes)).unwrap(), Some(frame));
        }
    }
}
