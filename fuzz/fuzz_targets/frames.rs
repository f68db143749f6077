//! Replication frames as a hostile peer sends them: a body (`decode_body`) and a byte stream of
//! length-prefixed frames (`read_frame`). A frame that decodes must encode to bytes that decode
//! to a frame encoding to the same bytes, and its content either converts into snapshot types
//! (which then apply to a snapshot) or is refused — never a panic.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use setpoint_core::clients::Fleet;
use setpoint_core::snapshot::Snapshot;
use setpoint_proto::frames::{self, Frame, WireBatch, WireEntry};

/// Frames read from one stream at most; each costs at least its 6-byte header.
const MAX_STREAM_FRAMES: usize = 64;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = frames::decode_body(data) {
        check_frame(frame);
    }
    let mut stream = data;
    for _ in 0..MAX_STREAM_FRAMES {
        match now(frames::read_frame(&mut stream)) {
            Ok(Some(frame)) => check_frame(frame),
            Ok(None) | Err(_) => break,
        }
    }
});

/// Runs a future that cannot wait: reading from a byte slice is always ready.
fn now<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading frames from memory waited"),
    }
}

fn check_frame(frame: Frame) {
    check_round_trip(&frame);
    match frame {
        Frame::SnapshotChunk { entries } => check_entries(entries),
        Frame::Batch(batch) => check_batch(batch),
        Frame::Clients(report) => {
            if report.check().is_ok() {
                let mut fleet = Fleet::new();
                fleet.apply("edge-1", report, 0);
                fleet.edge_lost("edge-1", 1);
                fleet.prune(2, 1);
            }
        }
        Frame::Progress(report) => {
            if report.check().is_ok() {
                let mut fleet = Fleet::new();
                fleet.progress("edge-1", report);
            }
        }
        _ => {}
    }
}

/// encode → decode → encode gives the same bytes. (Bytes, not frames: a client record's floats
/// may be NaN, which is not equal to itself.)
fn check_round_trip(frame: &Frame) {
    let bytes = frames::encode(frame).expect("a frame that decoded encodes");
    let (prefix, body) = bytes.split_at(4);
    let announced = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    assert_eq!(announced, body.len(), "length prefix");
    assert_eq!(
        frames::encoded_len(frame).expect("encoded_len"),
        body.len(),
        "encoded_len"
    );
    let again = frames::decode_body(body).expect("an encoded frame decodes");
    let bytes_again = frames::encode(&again).expect("re-encodes");
    assert_eq!(bytes, bytes_again, "encode(decode(encode(frame)))");
}

fn check_entries(entries: Vec<WireEntry>) {
    let mut parsed = Vec::new();
    for wire in entries {
        if let Ok(entry) = wire.into_entry() {
            let again = WireEntry::from_entry(&entry)
                .into_entry()
                .expect("a converted entry converts again");
            assert_eq!(entry, again, "entry round trip");
            parsed.push(entry);
        }
    }
    // Later entries of one path replace earlier ones, as in a snapshot the edge receives.
    let count = parsed.len();
    let snapshot = Snapshot::from_entries(1, parsed);
    assert!(
        snapshot.len() <= count,
        "a snapshot holds at most its entries"
    );
}

fn check_batch(wire: WireBatch) {
    let Ok(batch) = wire.into_batch() else {
        return;
    };
    let again = WireBatch::from_batch(&batch)
        .into_batch()
        .expect("a converted batch converts again");
    assert_eq!(batch, again, "batch round trip");
    let before = Snapshot::empty();
    if let Ok((after, applied)) = before.apply(&batch) {
        let undone = after.undo(&applied, before.revision());
        assert_eq!(undone, before, "undo gives the snapshot before the batch");
        assert_eq!(
            undone.redo(&applied),
            after,
            "redo gives the snapshot after it"
        );
    }
}
