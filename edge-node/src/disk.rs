//! The on-disk snapshot: what lets a restarted edge serve at once, before the writer answers.
//!
//! File `snapshot.bin` in the data directory: a fixed header (magic, format version, revision,
//! entry count, body length, CRC-32 of the header fields before it and the body), then the body:
//! postcard of a `Vec` of [`DiskEntry`]. The checksum covers the header too, so a flipped bit in
//! the revision cannot make an edge claim a state it does not hold (format 1 checksummed only the
//! body; such files are still read). Saving writes a temporary file in the same directory, fsyncs it and renames it
//! over the old one, so a crash leaves either the old or the new snapshot, never half of one.
//! Loading checks everything (header, checksum, every path and value) and reports a corrupt file
//! as an error; the caller logs it and starts empty. Nothing here panics on what the disk says.
//!
//! The [`persist`] task saves after changes, at most once per second, and once more on shutdown;
//! a snapshot the holder already has when the task starts is saved at once (the first one from
//! the writer can arrive before the task first runs), so a crash never depends on a later change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use setpoint_core::snapshot::{Entry, Snapshot};
use setpoint_core::{ConfigPath, Format, ParsedValue, Revision, Version};

use crate::holder::SnapshotHolder;

pub const FILE_NAME: &str = "snapshot.bin";
const MAGIC: &[u8; 8] = b"SETPSNAP";
const FORMAT_VERSION: u32 = 2;
/// The first format: its checksum covers the body only.
const FORMAT_BODY_CHECKSUM: u32 = 1;
/// The header bytes before the checksum field.
const CHECKED_HEADER_LEN: usize = HEADER_LEN - 4;
/// magic + version + revision + count + body length + crc.
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8 + 4;
/// The shortest time between two saves.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid snapshot: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot encode the snapshot: {0}")]
    Encode(String),
}

/// One entry as stored on disk.
#[derive(Debug, Serialize, Deserialize)]
pub struct DiskEntry {
    pub path: String,
    pub format: Format,
    pub value: String,
    pub version: Version,
    pub revision: Revision,
    pub updated_at: String,
}

/// The snapshot file inside `data_dir`.
pub fn snapshot_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Encodes `snapshot` as the file's bytes.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, DiskError> {
    let entries: Vec<DiskEntry> = snapshot
        .entries()
        .map(|e| DiskEntry {
            path: e.path.as_str().to_owned(),
            format: e.value.format(),
            value: e.value.stored().to_owned(),
            version: e.version,
            revision: e.revision,
            updated_at: e.updated_at.clone(),
        })
        .collect();
    let body = postcard::to_stdvec(&entries).map_err(|e| DiskError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&snapshot.revision().to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let crc = checksum(&out, &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// CRC-32 of the header fields (everything before the checksum) and the body.
fn checksum(header: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(body);
    hasher.finalize()
}

/// Little-endian field reader over the header.
struct Header<'a> {
    bytes: &'a [u8],
}

impl Header<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let (head, rest) = self.bytes.split_at(N.min(self.bytes.len()));
        out[..head.len()].copy_from_slice(head);
        self.bytes = rest;
        out
    }
}

/// Decodes and validates the file's bytes. `Err` carries the reason (for the log).
pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    let (header_bytes, body) = bytes.split_at(HEADER_LEN);
    let mut header = Header {
        bytes: header_bytes,
    };
    if &header.take::<8>() != MAGIC {
        return Err("wrong magic (not a Setpoint snapshot)".to_owned());
    }
    let version = u32::from_le_bytes(header.take());
    if version != FORMAT_VERSION && version != FORMAT_BODY_CHECKSUM {
        return Err(format!(
            "format version {version}; this edge reads {FORMAT_VERSION}"
        ));
    }
    let revision = i64::from_le_bytes(header.take());
    let count = u64::from_le_bytes(header.take());
    let body_len = u64::from_le_bytes(header.take());
    let crc = u32::from_le_bytes(header.take());
    if body.len() as u64 != body_len {
        return Err(format!(
            "body is {} bytes, header says {body_len} (truncated?)",
            body.len()
        ));
    }
    let expected = if version == FORMAT_BODY_CHECKSUM {
        crc32fast::hash(body)
    } else {
        checksum(&header_bytes[..CHECKED_HEADER_LEN], body)
    };
    if expected != crc {
        return Err("checksum mismatch".to_owned());
    }
    let raw: Vec<DiskEntry> =
        postcard::from_bytes(body).map_err(|e| format!("cannot decode the body: {e}"))?;
    if raw.len() as u64 != count {
        return Err(format!("{} entries, header says {count}", raw.len()));
    }
    let mut entries = Vec::with_capacity(raw.len());
    for entry in raw {
        let path =
            ConfigPath::parse(&entry.path).map_err(|e| format!("entry {:?}: {e}", entry.path))?;
        let value = ParsedValue::from_stored(entry.format, &entry.value)
            .map_err(|e| format!("entry {:?}: {e}", entry.path))?;
        entries.push(Entry {
            path,
            value,
            version: entry.version,
            revision: entry.revision,
            updated_at: entry.updated_at,
        });
    }
    Ok(Snapshot::from_entries(revision, entries))
}

/// Creates `dir` (and its parents) when missing; a directory created here is mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `snapshot` to `data_dir/snapshot.bin` atomically (temp file, fsync, rename), mode 0600.
pub fn save(data_dir: &Path, snapshot: &Snapshot) -> Result<(), DiskError> {
    let bytes = encode(snapshot)?;
    let target = snapshot_path(data_dir);
    let temp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DiskError::Io { path, source }
    };
    create_private_dir(data_dir).map_err(io(data_dir))?;
    // Every value and every account's key hashes: readable by this user only.
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io(&temp))?
    };
    file.write_all(&bytes).map_err(io(&temp))?;
    file.sync_all().map_err(io(&temp))?;
    drop(file);
    std::fs::rename(&temp, &target).map_err(io(&target))?;
    // Make the rename itself durable.
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads `data_dir/snapshot.bin`: `Ok(None)` when there is none, `Err` when it is unreadable or
/// corrupt.
pub fn load(data_dir: &Path) -> Result<Option<Snapshot>, DiskError> {
    let path = snapshot_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DiskError::Io { path, source }),
    };
    decode(&bytes)
        .map(Some)
        .map_err(|reason| DiskError::Corrupt { path, reason })
}

/// [`load`], but a missing or bad file gives `None` (a bad one is logged): the edge then starts
/// empty and waits for the writer.
pub fn load_or_log(data_dir: &Path) -> Option<Snapshot> {
    match load(data_dir) {
        Ok(Some(snapshot)) => {
            tracing::info!(
                revision = snapshot.revision(),
                entries = snapshot.len(),
                "loaded the disk snapshot"
            );
            Some(snapshot)
        }
        Ok(None) => None,
        Err(error) => {
            tracing::error!(%error, "ignoring the disk snapshot; starting empty");
            None
        }
    }
}

async fn save_current(data_dir: &Path, snapshot: Arc<Snapshot>) -> Option<Revision> {
    let revision = snapshot.revision();
    let dir = data_dir.to_owned();
    match tokio::task::spawn_blocking(move || save(&dir, &snapshot)).await {
        Ok(Ok(())) => Some(revision),
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot save the disk snapshot");
            None
        }
        Err(error) => {
            tracing::error!(%error, "the snapshot save task failed");
            None
        }
    }
}

/// Saves the holder's snapshot after every change, at most once per [`SAVE_INTERVAL`], and once
/// more when `shutdown` completes. Returns after that final save.
pub async fn persist(
    holder: Arc<SnapshotHolder>,
    data_dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut changes = holder.changes();
    changes.mark_unchanged();
    let mut saved: Option<Revision> = None;
    // What the holder applied before this task first ran is seen by no `changed()`: save it now.
    // (A snapshot just loaded from disk is written once more; that costs one save at start.)
    let mut unsaved = holder.is_ready();
    tokio::pin!(shutdown);
    loop {
        if !unsaved {
            tokio::select! {
                () = &mut shutdown => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        unsaved = false;
        if let Some(revision) = save_current(&data_dir, holder.current()).await {
            saved = Some(revision);
        }
        // Debounce: changes during this pause are folded into the next save.
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(SAVE_INTERVAL) => {}
        }
    }
    let current = holder.current();
    if saved != Some(current.revision()) || changes.has_changed().unwrap_or(false) {
        save_current(&data_dir, current).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, format: Format, stored: &str, version: Version) -> Entry {
        Entry {
            path: ConfigPath::parse(path).unwrap(),
            value: ParsedValue::from_stored(format, stored).unwrap(),
            version,
            revision: version as Revision + 1,
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn sample() -> Snapshot {
        Snapshot::from_entries(
            42,
            [
                entry("/a/b", Format::Json, r#"{"x":1}"#, 3),
                entry("/a/c", Format::Yaml, "k: v\n", 1),
                entry("/z", Format::Text, "hello", 7),
            ],
        )
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        save(dir.path(), &sample()).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded, sample());
        assert!(!dir.path().join("snapshot.bin.tmp").exists());
    }

    #[test]
    fn truncated_and_corrupted_files_are_rejected() {
        let bytes = encode(&sample()).unwrap();
        for cut in [0, 5, HEADER_LEN, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x55;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(decode(&magic).unwrap_err().contains("magic"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(snapshot_path(dir.path()), &flipped).unwrap();
        assert!(matches!(load(dir.path()), Err(DiskError::Corrupt { .. })));
        assert!(load_or_log(dir.path()).is_none());
    }

    #[test]
    fn entries_are_validated_even_with_a_good_checksum() {
        let bad = vec![DiskEntry {
            path: "/a/../b".into(),
            format: Format::Json,
            value: "1".into(),
            version: 1,
            revision: 1,
            updated_at: String::new(),
        }];
        let body = postcard::to_stdvec(&bad).unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&1i64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        let crc = checksum(&bytes, &body);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&body);
        assert!(decode(&bytes).unwrap_err().contains("/a/../b"));
    }

    #[test]
    fn the_snapshot_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("edge-data");
        save(&dir, &sample()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&snapshot_path(&dir)), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn the_checksum_covers_the_header() {
        let bytes = encode(&sample()).unwrap();
        // Every header byte before the checksum: the revision, the count, the length.
        for position in 12..CHECKED_HEADER_LEN {
            let mut flipped = bytes.clone();
            flipped[position] ^= 0x01;
            assert!(
                decode(&flipped).is_err(),
                "byte {position} flipped unnoticed"
            );
        }
        let mut revision = bytes.clone();
        revision[12] ^= 0x01;
        assert!(decode(&revision).unwrap_err().contains("checksum"));
    }

    #[test]
    fn a_format_1_file_is_still_read() {
        let snapshot = sample();
        let current = encode(&snapshot).unwrap();
        let body = &current[HEADER_LEN..];
        let mut old = current[..CHECKED_HEADER_LEN].to_vec();
        old[8..12].copy_from_slice(&FORMAT_BODY_CHECKSUM.to_le_bytes());
        old.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        old.extend_from_slice(body);
        let read = decode(&old).unwrap();
        assert_eq!(read.revision(), snapshot.revision());
        assert_eq!(read.len(), snapshot.len());
    }

    #[test]
    fn cold_start_of_100k_entries() {
        let snapshot = Snapshot::from_entries(
            100_001,
            (0..100_000).map(|i| {
                entry(
                    &format!("/app{}/svc/key{i}", i % 100),
                    Format::Json,
                    r#"{"on":true}"#,
                    1,
                )
            }),
        );
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &snapshot).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.len(), 100_000);
        assert_eq!(loaded.revision(), 100_001);
    }

    /// Issue 10: this test stopped the persister at once, so only the save on shutdown was ever
    /// checked — a persister that saved only on shutdown passed, and a crashed edge (SIGKILL,
    /// no shutdown) would restart from nothing. It now waits for the save that follows changes
    /// while the persister runs, then checks the one on shutdown.
    #[tokio::test]
    async fn persister_saves_after_changes_and_on_shutdown() {
        use setpoint_core::snapshot::{Batch, Change, ChangeKind};
        let dir = tempfile::tempdir().unwrap();
        let holder = SnapshotHolder::new(Snapshot::empty(), true);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(persist(holder.clone(), dir.path().to_owned(), async {
            let _ = stopped.await;
        }));
        let apply = |revision: Revision| {
            holder
                .apply(&Batch {
                    revision,
                    committed_at_micros: 0,
                    changes: vec![Change {
                        path: ConfigPath::parse("/a").unwrap(),
                        version: revision as Version,
                        updated_at: String::new(),
                        kind: ChangeKind::Put {
                            value: ParsedValue::from_stored(Format::Text, "v").unwrap(),
                        },
                    }],
                })
                .unwrap();
        };
        // On this single-threaded runtime, yielding lets the persister run to its first wait, so
        // the changes below reach it as changes (the other path has its own test below).
        tokio::task::yield_now().await;
        for revision in 2..5 {
            apply(revision);
        }
        // Saved while running (within a few save intervals; generous for a loaded machine).
        let saved_revision = || {
            load(dir.path())
                .ok()
                .flatten()
                .map(|snapshot| snapshot.revision())
        };
        let deadline = tokio::time::Instant::now() + SAVE_INTERVAL * 20;
        while saved_revision() != Some(4) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no save of revision 4 while running; on disk: {:?}",
                saved_revision()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A change just before shutdown is in the debounce pause: the shutdown save has it.
        apply(5);
        stop.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(saved_revision(), Some(5));
    }

    /// Issue 10: the edge starts its replication subscriber before the persister, so the first
    /// snapshot could be applied before the persister first ran; it then waited for the *next*
    /// change, and a quiet writer meant an edge that crashed (SIGKILL) restarted from nothing.
    #[tokio::test]
    async fn a_snapshot_applied_before_the_persister_starts_is_saved_without_another_change() {
        let dir = tempfile::tempdir().unwrap();
        let holder = SnapshotHolder::new(Snapshot::empty(), true);
        holder.replace(sample());
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(persist(holder.clone(), dir.path().to_owned(), async {
            let _ = stopped.await;
        }));
        let deadline = tokio::time::Instant::now() + SAVE_INTERVAL * 20;
        loop {
            if let Ok(Some(saved)) = load(dir.path()) {
                assert_eq!(saved.revision(), sample().revision());
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the snapshot the holder started with was never saved"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
    }
}
