//! Striped per-path commit locks.
//!
//! Writers on one process queue per path instead of racing the store's compare-and-swap, so 100
//! concurrent PUTs to one path commit one after another without retry storms. The store's
//! compare on the pointer's mod-revision still guards against other writer processes; these
//! locks are only a fast path. A fixed number of stripes keeps memory bounded whatever the number
//! of paths.

use std::hash::{BuildHasher, Hash};

use setpoint_core::ConfigPath;
use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 256;

pub struct PathLocks {
    stripes: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for PathLocks {
    fn default() -> Self {
        PathLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }
}

impl PathLocks {
    /// Locks every stripe `paths` fall in, in ascending stripe order (so two batches can never
    /// deadlock each other).
    pub async fn lock<'a>(
        &'a self,
        paths: impl Iterator<Item = &ConfigPath>,
    ) -> Vec<MutexGuard<'a, ()>> {
        let mut indices: Vec<usize> = paths
            .map(|path| {
                let mut state = self.hasher.build_hasher();
                path.hash(&mut state);
                (std::hash::Hasher::finish(&state) as usize) % STRIPES
            })
            .collect();
        indices.sort_unstable();
        indices.dedup();
        let mut guards = Vec::with_capacity(indices.len());
        for index in indices {
            guards.push(self.stripes[index].lock().await);
        }
        guards
    }
}
