//! The cache file every SDK shares (format 1): what the client held, so a restarted application
//! serves its last known configuration at once, even with no edge reachable, and resumes the
//! session from its revision. Written atomically (temp file in the same directory, fsync,
//! rename): a crash leaves the old file or the new one, never half of one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::value::Value;

const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CacheFile {
    pub format: u32,
    pub env: Option<String>,
    pub prefixes: Vec<String>,
    pub revision: i64,
    pub entries: BTreeMap<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("cache file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cache file {path}: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

impl CacheFile {
    pub fn new(
        env: Option<String>,
        prefixes: Vec<String>,
        revision: i64,
        entries: BTreeMap<String, Value>,
    ) -> CacheFile {
        CacheFile {
            format: FORMAT,
            env,
            prefixes,
            revision,
            entries,
        }
    }

    /// Reads the file if it exists and was written for this environment and these prefixes:
    /// another client's file (or an unknown format) is ignored, never served.
    pub fn load(
        path: &Path,
        env: Option<&str>,
        prefixes: &[String],
    ) -> Result<Option<CacheFile>, CacheError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io(path, source)),
        };
        let file: CacheFile = serde_json::from_slice(&text).map_err(|source| CacheError::Json {
            path: path.display().to_string(),
            source,
        })?;
        let mut theirs = file.prefixes.clone();
        let mut ours = prefixes.to_vec();
        theirs.sort();
        ours.sort();
        if file.format != FORMAT || file.env.as_deref() != env || theirs != ours {
            tracing::info!(path = %path.display(), "cache file is for another format, environment or prefixes; ignored");
            return Ok(None);
        }
        Ok(Some(file))
    }

    /// Writes the file atomically: a temp file beside it, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(self).map_err(|source| CacheError::Json {
            path: path.display().to_string(),
            source,
        })?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)?;
            // The rename itself is durable only once the directory is synced.
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|source| {
            let _ = std::fs::remove_file(&temp);
            io(path, source)
        })
    }
}

fn io(path: &Path, source: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CacheFile {
        let entries = BTreeMap::from([(
            "/myapp/db/host".to_owned(),
            Value {
                value: json!("db.internal"),
                format: "json".into(),
                version: 3,
                revision: 810,
            },
        )]);
        CacheFile::new(Some("prod".into()), vec!["/myapp".into()], 812, entries)
    }

    #[test]
    fn round_trip_in_the_shared_format() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cache.json");
        sample().save(&path)?;
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        assert_eq!(
            written,
            json!({"format": 1, "env": "prod", "prefixes": ["/myapp"], "revision": 812,
                   "entries": {"/myapp/db/host": {"value": "db.internal", "format": "json",
                                                  "version": 3, "revision": 810}}})
        );
        let loaded = CacheFile::load(&path, Some("prod"), &["/myapp".into()])?;
        assert_eq!(loaded, Some(sample()));
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn another_clients_file_is_ignored() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cache.json");
        assert_eq!(
            CacheFile::load(&path, None, &["/".into()])?,
            None,
            "missing file"
        );
        sample().save(&path)?;
        assert_eq!(
            CacheFile::load(&path, None, &["/myapp".into()])?,
            None,
            "env differs"
        );
        assert_eq!(
            CacheFile::load(&path, Some("prod"), &["/".into()])?,
            None,
            "prefixes differ"
        );
        std::fs::write(&path, b"{not json")?;
        assert!(CacheFile::load(&path, Some("prod"), &["/myapp".into()]).is_err());
        Ok(())
    }
}
