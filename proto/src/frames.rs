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
use setpoint_core::clients::{ClientReport, ProgressReport};
use setpoint_core::snapshot::{Batch, Change, ChangeKind, Entry};
use setpoint_core::{ConfigPath, Format, ParsedValue, PathError, Revision, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    /// Edge → writer: its client sessions, changed since the last report (or all of them, on
    /// the first report of a connection). Appended last: older peers' variants keep their tags.
    Clients(ClientReport),
    /// Relay → its upstream, on the client report stream: the edges it feeds (and those their
    /// relays feed, recursively) and their client reports, so the writer sees the whole tree.
    Relayed(RelayReport),
    /// Upstream → edge, first (when either is true) and whenever it changes: what kind of
    /// source it is now. `stale`: a relay cut off from the writer itself, since `staleness_ms`
    /// (an edge below it is stale too instead of trusting the relay's heartbeats); `standby`: a
    /// standby writer (an edge serves from it but looks for the leader, so the leader's fleet
    /// view — rollout health gates, alerts — holds its clients). Either makes the edge probe
    /// the upstreams after this one and move to the first that answers as neither.
    SourceState {
        stale: bool,
        staleness_ms: u64,
        standby: bool,
    },
    /// Edge → its upstream, on the client report stream: what changed in clients whose whole
    /// record went out earlier on this link (a [`Frame::Clients`] names a client whole once per
    /// link, then progress carries it). Appended last: older peers' variants keep their tags; an
    /// upstream older than its edges fails on it, so writers and relays upgrade first.
    Progress(ProgressReport),
}

/// The most edges one relay report may name.
pub const MAX_RELAYED_EDGES: usize = 100_000;
/// The most client reports one relay report may carry.
pub const MAX_RELAYED_CLIENT_REPORTS: usize = 1_000;

/// What a relaying edge tells its upstream about the edges below it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayReport {
    /// Every edge below the relay, when it changed (`None`: as last reported). A list replaces
    /// what the upstream held from this relay.
    pub edges: Option<Vec<RelayedEdge>>,
    /// Client reports of edges below the relay, by edge id, in the order received.
    pub clients: Vec<(String, ClientReport)>,
}

/// One edge below a relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayedEdge {
    pub id: String,
    pub region: String,
    pub http_addr: String,
    /// The id of the edge it replicates from.
    pub upstream: String,
    pub connected: bool,
    pub applied_revision: Revision,
    /// Its own hop: batches acked and the sum of their propagation times (from its upstream's
    /// feed to its ack), in microseconds.
    pub hop_acked: u64,
    pub hop_micros: u64,
}

impl RelayReport {
    /// Checks a peer's report: bounded in edges, reports and every field.
    pub fn check(&self) -> Result<(), String> {
        const MAX_FIELD: usize = 256;
        let edges = self.edges.as_deref().unwrap_or_default();
        if edges.len() > MAX_RELAYED_EDGES || self.clients.len() > MAX_RELAYED_CLIENT_REPORTS {
            return Err("a relay report names too many edges or client reports".into());
        }
        for edge in edges {
            if edge.id.is_empty()
                || [&edge.id, &edge.region, &edge.http_addr, &edge.upstream]
                    .iter()
                    .any(|f| f.len() > MAX_FIELD)
            {
                return Err(format!("relayed edge {:.64?} is out of bounds", edge.id));
            }
        }
        for (edge, report) in &self.clients {
            if edge.is_empty() || edge.len() > MAX_FIELD {
                return Err("a relayed client report names no edge".into());
            }
            report.check()?;
        }
        Ok(())
    }
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
    /// The frame body is larger than the limit (announced by a peer, or about to be written).
    #[error("frame body is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("peer speaks replication protocol version {0}; this node speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion(u16),
    /// The body is not a well-formed frame.
    #[error("frame does not decode: {0}")]
    Decode(String),
    /// The frame decodes but its content fails validation (bad path, value not valid in its
    /// format).
    #[error("frame content is invalid: {0}")]
    Invalid(String),
    /// Reading or writing the stream failed; a stream that ends inside a frame is
    /// [`std::io::ErrorKind::UnexpectedEof`].
    #[error("frame stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame does not encode: {0}")]
    Encode(String),
}

/// Length prefix of every frame.
const LENGTH_BYTES: usize = 4;
/// Version at the start of every body.
const VERSION_BYTES: usize = 2;
/// Upper bound of what a `SnapshotChunk` body adds around its entries: the version, the variant
/// tag and the entry count (varints of at most 10 bytes each).
const CHUNK_OVERHEAD_BYTES: usize = VERSION_BYTES + 10 + 10;

/// A path a peer sent, parsed; the root never holds a value.
fn parse_value_path(path: &str) -> Result<ConfigPath, FrameError> {
    let parsed =
        ConfigPath::parse(path).map_err(|e| FrameError::Invalid(format!("path {path:?}: {e}")))?;
    if parsed.is_root() {
        return Err(FrameError::Invalid(format!(
            "path {path:?}: {}",
            PathError::Root
        )));
    }
    Ok(parsed)
}

fn parse_value(path: &ConfigPath, format: Format, stored: &str) -> Result<ParsedValue, FrameError> {
    ParsedValue::from_stored(format, stored)
        .map_err(|e| FrameError::Invalid(format!("value of {path}: {e}")))
}

impl WireEntry {
    pub fn from_entry(entry: &Entry) -> WireEntry {
        WireEntry {
            path: entry.path.as_str().to_owned(),
            format: entry.value.format(),
            stored: entry.value.stored().to_owned(),
            version: entry.version,
            revision: entry.revision,
            updated_at: entry.updated_at.clone(),
        }
    }
    /// Validates and converts (path parses, value decodes in its format).
    pub fn into_entry(self) -> Result<Entry, FrameError> {
        let path = parse_value_path(&self.path)?;
        let value = parse_value(&path, self.format, &self.stored)?;
        Ok(Entry {
            path,
            value,
            version: self.version,
            revision: self.revision,
            updated_at: self.updated_at,
        })
    }
}

impl WireChange {
    pub fn from_change(change: &Change) -> WireChange {
        let value = match &change.kind {
            ChangeKind::Put { value } => Some((value.format(), value.stored().to_owned())),
            ChangeKind::Delete => None,
        };
        WireChange {
            path: change.path.as_str().to_owned(),
            version: change.version,
            updated_at: change.updated_at.clone(),
            value,
        }
    }
    /// Validates and converts: a `value` is a put, none is a delete.
    pub fn into_change(self) -> Result<Change, FrameError> {
        let path = parse_value_path(&self.path)?;
        let kind = match self.value {
            Some((format, stored)) => ChangeKind::Put {
                value: parse_value(&path, format, &stored)?,
            },
            None => ChangeKind::Delete,
        };
        Ok(Change {
            path,
            version: self.version,
            updated_at: self.updated_at,
            kind,
        })
    }
}

impl WireBatch {
    pub fn from_batch(batch: &Batch) -> WireBatch {
        WireBatch {
            revision: batch.revision,
            committed_at_micros: batch.committed_at_micros,
            changes: batch.changes.iter().map(WireChange::from_change).collect(),
        }
    }
    /// Validates every change (see [`WireChange::into_change`]); the first invalid one fails the
    /// whole batch.
    pub fn into_batch(self) -> Result<Batch, FrameError> {
        let changes = self
            .changes
            .into_iter()
            .map(WireChange::into_change)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Batch {
            revision: self.revision,
            committed_at_micros: self.committed_at_micros,
            changes,
        })
    }
}

fn postcard_size<T: Serialize + ?Sized>(value: &T) -> Result<usize, FrameError> {
    postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(
        value,
        postcard::ser_flavors::Size::default(),
    )
    .map_err(|e| FrameError::Encode(e.to_string()))
}

/// The size of `frame`'s body on the wire (version included, length prefix excluded): what
/// [`MAX_FRAME_BYTES`] limits.
pub fn encoded_len(frame: &Frame) -> Result<usize, FrameError> {
    Ok(VERSION_BYTES + postcard_size(frame)?)
}

/// The frame's bytes on the wire (length prefix included).
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let mut bytes = Vec::with_capacity(LENGTH_BYTES + encoded_len(frame)?);
    bytes.extend_from_slice(&[0; LENGTH_BYTES]);
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    let mut bytes =
        postcard::to_extend(frame, bytes).map_err(|e| FrameError::Encode(e.to_string()))?;
    let size = bytes.len() - LENGTH_BYTES;
    if size > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            size,
            limit: MAX_FRAME_BYTES,
        });
    }
    // `size` ≤ MAX_FRAME_BYTES, far below u32::MAX.
    let prefix = u32::try_from(size).map_err(|e| FrameError::Encode(e.to_string()))?;
    bytes[..LENGTH_BYTES].copy_from_slice(&prefix.to_be_bytes());
    Ok(bytes)
}

/// Decodes a frame body (version + postcard), as read after its length prefix.
pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let Some((version, payload)) = body.split_first_chunk::<VERSION_BYTES>() else {
        return Err(FrameError::Decode(format!(
            "body is {} bytes, shorter than its version",
            body.len()
        )));
    };
    check_version(*version)?;
    decode_payload(payload)
}

fn check_version(version: [u8; VERSION_BYTES]) -> Result<(), FrameError> {
    match u16::from_be_bytes(version) {
        PROTOCOL_VERSION => Ok(()),
        other => Err(FrameError::UnsupportedVersion(other)),
    }
}

fn decode_payload(payload: &[u8]) -> Result<Frame, FrameError> {
    let (frame, rest) = postcard::take_from_bytes::<Frame>(payload)
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the frame",
            rest.len()
        )));
    }
    Ok(frame)
}

/// Reads one frame; `Ok(None)` at a clean end of stream before any byte of a frame.
///
/// The announced length is checked against [`MAX_FRAME_BYTES`] before anything is allocated, so
/// a hostile prefix costs nothing. After an error the stream is out of step: close it.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut prefix = [0; LENGTH_BYTES];
    // A read of 0 into a non-empty buffer is end of stream; anything else starts a frame that
    // must then be completed.
    let first = reader.read(&mut prefix).await?;
    if first == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut prefix[first..]).await?;
    let size = u32::from_be_bytes(prefix) as usize;
    if size > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            size,
            limit: MAX_FRAME_BYTES,
        });
    }
    let Some(payload_size) = size.checked_sub(VERSION_BYTES) else {
        return Err(FrameError::Decode(format!(
            "body is {size} bytes, shorter than its version"
        )));
    };
    let mut version = [0; VERSION_BYTES];
    reader.read_exact(&mut version).await?;
    check_version(version)?;
    let mut payload = vec![0; payload_size];
    reader.read_exact(&mut payload).await?;
    decode_payload(&payload).map(Some)
}

/// Encodes and writes one frame, then flushes. A frame over [`MAX_FRAME_BYTES`] is refused
/// before anything is written.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> Result<(), FrameError> {
    let bytes = encode(frame)?;
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

/// Splits snapshot entries into the `entries` of successive [`Frame::SnapshotChunk`]s whose
/// bodies each stay within `max_body_bytes` (normally [`MAX_FRAME_BYTES`]).
///
/// Lazy, so a large snapshot is never held twice. An entry too large to fit any chunk on its own
/// still gets a chunk of its own, which [`encode`] then refuses; with [`MAX_FRAME_BYTES`] that
/// cannot happen, as a stored value is at most 1 MiB.
pub fn chunk_entries<I>(entries: I, max_body_bytes: usize) -> Chunks<I::IntoIter>
where
    I: IntoIterator<Item = WireEntry>,
{
    Chunks {
        entries: entries.into_iter().peekable(),
        budget: max_body_bytes.saturating_sub(CHUNK_OVERHEAD_BYTES),
    }
}

/// Iterator returned by [`chunk_entries`].
pub struct Chunks<I: Iterator<Item = WireEntry>> {
    entries: std::iter::Peekable<I>,
    /// Bytes the entries of one chunk may take.
    budget: usize,
}

impl<I: Iterator<Item = WireEntry>> Iterator for Chunks<I> {
    type Item = Vec<WireEntry>;

    fn next(&mut self) -> Option<Vec<WireEntry>> {
        let mut chunk = Vec::new();
        let mut used: usize = 0;
        while let Some(entry) = self.entries.peek() {
            // Serializing plain strings and integers cannot fail; an error would only make the
            // entry look too large, so it travels alone and `encode` reports the problem.
            let size = postcard_size(entry).unwrap_or(usize::MAX);
            if !chunk.is_empty() && used.saturating_add(size) > self.budget {
                break;
            }
            used = used.saturating_add(size);
            chunk.extend(self.entries.next());
        }
        (!chunk.is_empty()).then_some(chunk)
    }
}

#[cfg(test)]
mod tests;
