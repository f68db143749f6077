//! Replication frames between the writer and edges (QUIC stream, ALPN [`ALPN`]).
//!
//! Wire: `u32` big-endian body length, then the body = `u16` big-endian protocol version +
//! postcard-encoded [`Frame`]. A frame over [`MAX_FRAME_BYTES`], an unknown version or a body
//! that does not decode is a [`FrameError`]; the caller closes that connection and logs it —
//! nothing else. The codec sits behind this one module so it can be swapped.
//!
//! Conversions to and from `setpoint_core::snapshot` types validate everything (paths parse,
//! values decode in their format): a peer's bytes are hostile until parsed.

use serde::{Deserialize, Serialize};
use setpoint_core::snapshot::{Batch, Entry};
use setpoint_core::{Format, Revision, Version};

pub const ALPN: &[u8] = b"setpoint/1";
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest frame body; a snapshot chunk or batch is split or refused below it.
pub const MAX_FRAME_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Edge → writer, first frame: who it is and the revision it already holds (0 = nothing).
    Hello {
        node_id: String,
        region: String,
        revision: Revision,
        http_addr: String,
    },
    /// Writer → edge: a snapshot at `revision` follows, `entries` entries in chunks.
    SnapshotBegin {
        revision: Revision,
        entries: u64,
    },
    SnapshotChunk {
        entries: Vec<WireEntry>,
    },
    /// Writer → edge: the snapshot is complete; the edge swaps it in.
    SnapshotEnd {
        revision: Revision,
    },
    /// Writer → edge: one committed transaction.
    Batch(WireBatch),
    /// Writer → edge when idle: the writer's current revision (keeps staleness honest).
    Heartbeat {
        revision: Revision,
    },
    /// Edge → writer: everything up to `revision` is applied.
    Ack {
        revision: Revision,
    },
    /// Either side, before closing: why.
    Goodbye {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEntry {
    pub path: String,
    pub format: Format,
    pub stored: String,
    pub version: Version,
    pub revision: Revision,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireChange {
    pub path: String,
    pub version: Version,
    pub updated_at: String,
    /// `None` for a delete.
    pub value: Option<(Format, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireBatch {
    pub revision: Revision,
    pub committed_at_micros: i64,
    pub changes: Vec<WireChange>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    // helper's choice: too large, bad version, decode error, I/O, invalid content
}

impl WireEntry {
    pub fn from_entry(entry: &Entry) -> WireEntry {
        todo!()
    }
    /// Validates and converts (path parses, value decodes in its format).
    pub fn into_entry(self) -> Result<Entry, FrameError> {
        todo!()
    }
}

impl WireBatch {
    pub fn from_batch(batch: &Batch) -> WireBatch {
        todo!()
    }
    pub fn into_batch(self) -> Result<Batch, FrameError> {
        todo!()
    }
}

/// The frame's bytes on the wire (length prefix included).
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    todo!()
}

/// Reads one frame; `Ok(None)` at a clean end of stream before any byte of a frame.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Frame>, FrameError> {
    todo!()
}

pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> Result<(), FrameError> {
    todo!()
}
