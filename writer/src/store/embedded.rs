//! [`Store`] on one embedded redb database file. Keeps etcd's semantics (global revision,
//! mod/create revisions, watch from a revision, compaction) so the writer cannot tell the two
//! apart. Watches replay from an on-disk change log and then follow live commits.

use super::*;

pub struct EmbeddedStore {}

impl EmbeddedStore {
    /// Opens (or creates) `dir/setpoint.redb`.
    pub fn open(dir: &std::path::Path) -> Result<EmbeddedStore, StoreError> {
        todo!()
    }
}
