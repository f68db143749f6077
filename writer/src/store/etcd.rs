//! [`Store`] on a real etcd cluster (etcd-client). Every call has a deadline so an unreachable
//! cluster is a quick [`StoreError::Unavailable`], never a hang; the client reconnects by itself.

use super::*;

pub struct EtcdStore {}

impl EtcdStore {
    /// `endpoints` like `127.0.0.1:2379` (with or without `http://`). Connecting is lazy: a
    /// store that is down at start makes calls fail with `Unavailable` until it comes up.
    pub async fn connect(
        endpoints: &[String],
        op_timeout: std::time::Duration,
    ) -> Result<EtcdStore, StoreError> {
        todo!()
    }
}
