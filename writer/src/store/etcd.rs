//! [`Store`] on a real etcd cluster (etcd-client). Every call has a deadline so an unreachable
//! cluster is a quick [`StoreError::Unavailable`], never a hang; the client reconnects by itself.
//!
//! It owns the translation between the trait and etcd's gRPC API and failing over between the
//! cluster's members; no caching. One client per member (each dials lazily and redials after a
//! failure, so [`EtcdStore::connect`] succeeds while etcd is down). Every call goes to the member
//! that answered last; when a member cannot be reached (connection refused, a transport error),
//! the call moves to the next one within the same deadline — so with one member of three dead,
//! every call still succeeds, as etcd's own Go client does. Reads and other idempotent calls
//! also move on when a member does not answer in its share of the deadline (a hung member); a
//! transaction that may have reached a member is never sent twice (its outcome would be
//! unknown), it fails as `Unavailable` and the next call starts at another member. A member that
//! failed is tried last for a second. [`EtcdStore::members`] tells which member is up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp as EtcdCompareOp, ConnectOptions, DeleteOptions,
    EventType, GetOptions, KvClient, LeaseClient, PutOptions, SortOrder, SortTarget,
    Txn as EtcdTxn, TxnOp as EtcdTxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchResponse,
};

/// Largest gRPC message either way. etcd's own request limit is 1.5 MiB (2 MiB on the wire with
/// its gRPC overhead); the client must let such requests reach etcd so that etcd, not tonic,
/// rejects what is too large, and must accept range responses holding several large values.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How long a member that failed is tried after the others.
const MEMBER_PENALTY: Duration = Duration::from_secs(1);

/// One cluster member: its clients and when it last failed.
struct Member {
    endpoint: String,
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    /// Milliseconds after the store's start until which the member is tried last (0: healthy).
    down_until_ms: AtomicU64,
    /// Whether its last call succeeded.
    up: std::sync::atomic::AtomicBool,
}

pub struct EtcdStore {
    members: Vec<Member>,
    /// The member that answered last; calls start there.
    preferred: AtomicUsize,
    op_timeout: Duration,
    started: Instant,
}

/// Whether a call may be sent again to another member after a member did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads, compaction, lease calls: sending twice is harmless.
    Idempotent,
    /// Transactions: only when the member certainly never got the request.
    NotSent,
}

impl EtcdStore {
    /// `endpoints` like `127.0.0.1:2379` (with or without `http://`). Connecting is lazy: a
    /// store that is down at start makes calls fail with `Unavailable` until it comes up.
    pub async fn connect(
        endpoints: &[String],
        op_timeout: Duration,
    ) -> Result<EtcdStore, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Other("no etcd endpoint given".to_owned()));
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let options = ConnectOptions::new()
                .with_connect_timeout(op_timeout)
                .with_timeout(op_timeout)
                .with_keep_alive(
                    Duration::from_secs(5),
                    op_timeout.max(Duration::from_secs(1)),
                )
                .with_keep_alive_while_idle(true);
            // With no credentials `Client::connect` only registers the endpoint with the
            // channel; it does not dial. The deadline guards against that ever changing.
            let client = tokio::time::timeout(
                op_timeout,
                Client::connect([endpoint.as_str()], Some(options)),
            )
            .await
            .map_err(|_| unavailable_timeout("connect", op_timeout))?
            .map_err(map_error)?;
            members.push(Member {
                endpoint: endpoint.clone(),
                kv: client
                    .kv_client()
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                watch: client
                    .watch_client()
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
                lease: client.lease_client(),
                down_until_ms: AtomicU64::new(0),
                up: std::sync::atomic::AtomicBool::new(true),
            });
        }
        Ok(EtcdStore {
            members,
            preferred: AtomicUsize::new(0),
            op_timeout,
            started: Instant::now(),
        })
    }

    /// Each member's endpoint and whether its last call succeeded, for metrics.
    pub fn members(&self) -> Vec<(String, bool)> {
        self.members
            .iter()
            .map(|m| (m.endpoint.clone(), m.up.load(Ordering::Acquire)))
            .collect()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The members in the order to try: the preferred one, then the others, those that failed
    /// lately last.
    fn order(&self) -> Vec<usize> {
        let count = self.members.len();
        let start = self.preferred.load(Ordering::Acquire) % count;
        let now = self.now_ms();
        let mut order: Vec<usize> = (0..count).map(|i| (start + i) % count).collect();
        order.sort_by_key(|&i| self.members[i].down_until_ms.load(Ordering::Acquire) > now);
        order
    }

    /// Runs `call` on one member after the other until one answers, within one deadline.
    async fn call<T, F, Fut>(&self, what: &str, retry: Retry, call: F) -> Result<T, StoreError>
    where
        F: Fn(&Member) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.op_timeout;
        let order = self.order();
        let mut last = unavailable_timeout(what, self.op_timeout);
        for (position, &index) in order.iter().enumerate() {
            let member = &self.members[index];
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break;
            }
            let others = order.len() - position - 1;
            // An idempotent call leaves time for the members after this one, should it hang.
            let budget = match retry {
                Retry::Idempotent if others > 0 => remaining / 2,
                _ => remaining,
            };
            match tokio::time::timeout(budget, call(member)).await {
                Ok(Ok(value)) => {
                    member.down_until_ms.store(0, Ordering::Release);
                    member.up.store(true, Ordering::Release);
                    self.preferred.store(index, Ordering::Release);
                    return Ok(value);
                }
                Ok(Err(error)) => {
                    let unsent = not_sent(&error);
                    let mapped = map_error(error);
                    let transient = matches!(mapped, StoreError::Unavailable(_));
                    if !transient {
                        return Err(mapped);
                    }
                    self.penalize(index);
                    if !unsent && retry == Retry::NotSent {
                        // It may have been applied: never send it twice.
                        return Err(mapped);
                    }
                    tracing::debug!(endpoint = %member.endpoint, %mapped, "etcd member failed; trying the next");
                    last = mapped;
                }
                Err(_) => {
                    self.penalize(index);
                    last = unavailable_timeout(what, budget);
                    if retry == Retry::NotSent {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn penalize(&self, index: usize) {
        let member = &self.members[index];
        member.up.store(false, Ordering::Release);
        let until = self.now_ms() + u64::try_from(MEMBER_PENALTY.as_millis()).unwrap_or(1000);
        member.down_until_ms.store(until, Ordering::Release);
        // The next call starts elsewhere.
        let _ = self.preferred.compare_exchange(
            index,
            (index + 1) % self.members.len(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// True when the error shows the request never reached the member (no connection), so sending
/// it elsewhere cannot apply it twice.
fn not_sent(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message().to_ascii_lowercase();
            status.code() == tonic::Code::Unavailable
                && (message.contains("connect")
                    || message.contains("connection refused")
                    || message.contains("dns error"))
        }
        _ => false,
    }
}

fn unavailable_timeout(what: &str, timeout: Duration) -> StoreError {
    StoreError::Unavailable(format!("etcd {what} did not answer within {timeout:?}"))
}

/// Sorts an etcd-client error into the trait's vocabulary by gRPC code and etcd's messages.
fn map_error(error: etcd_client::Error) -> StoreError {
    use tonic::Code;
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("requested lease not found") {
                // The caller knows which lease it asked about and fills in the id.
                StoreError::LeaseNotFound(0)
            } else if message.contains("request is too large")
                || status.code() == Code::ResourceExhausted
            {
                StoreError::TooLarge(format!("etcd: {message}"))
            } else if message.contains("required revision has been compacted") {
                // etcd does not say which revision it compacted to.
                StoreError::Compacted {
                    requested: 0,
                    compacted: 0,
                }
            } else if matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
            ) || message.contains("no leader")
                || message.contains("leader changed")
                || message.contains("timed out")
            {
                StoreError::Unavailable(format!("etcd: {:?}: {message}", status.code()))
            } else {
                StoreError::Other(format!("etcd: {:?}: {message}", status.code()))
            }
        }
        etcd_client::Error::TransportError(e) => {
            StoreError::Unavailable(format!("etcd transport: {e}"))
        }
        etcd_client::Error::IoError(e) => StoreError::Unavailable(format!("etcd io: {e}")),
        etcd_client::Error::WatchError(e) => StoreError::Unavailable(format!("etcd watch: {e}")),
        // etcd-client's own check of the first keep-alive answer (TTL <= 0).
        etcd_client::Error::LeaseKeepAliveError(e) if e.contains("not found") => {
            StoreError::LeaseNotFound(0)
        }
        etcd_client::Error::LeaseKeepAliveError(e) => {
            StoreError::Unavailable(format!("etcd lease keep-alive: {e}"))
        }
        other => StoreError::Other(format!("etcd: {other}")),
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = kv
        .key_str()
        .map_err(|e| StoreError::Other(format!("etcd returned a non-UTF-8 key: {e}")))?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Other("etcd response without a header".to_owned()))
}

fn convert_op(op: CompareOp) -> EtcdCompareOp {
    match op {
        CompareOp::Equal => EtcdCompareOp::Equal,
        CompareOp::NotEqual => EtcdCompareOp::NotEqual,
        CompareOp::Greater => EtcdCompareOp::Greater,
        CompareOp::Less => EtcdCompareOp::Less,
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn endpoints(&self) -> Vec<(String, bool)> {
        self.members()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let response = self
            .call("get", Retry::Idempotent, |m| {
                let mut kv = m.kv.clone();
                let key = key.to_owned();
                async move { kv.get(key, None).await }
            })
            .await?;
        response.kvs().first().map(convert_kv).transpose()
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult, StoreError> {
        let response = self
            .call("range", Retry::Idempotent, |m| {
                let mut kv = m.kv.clone();
                let (start, options) = range_options(request.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await?;
        Ok(RangeResult {
            kvs: response
                .kvs()
                .iter()
                .map(convert_kv)
                .collect::<Result<_, _>>()?,
            revision: header_revision(response.header())?,
            more: response.more(),
        })
    }

    async fn read(&self, reads: Vec<Read>) -> Result<ReadSet, StoreError> {
        // A transaction without compares runs its reads at one revision, in one round trip.
        let ops: Vec<EtcdTxnOp> = reads
            .into_iter()
            .map(|read| match read {
                Read::Get(key) => EtcdTxnOp::get(key, None),
                Read::Range(request) => {
                    let (start, options) = range_options(request);
                    EtcdTxnOp::get(start, Some(options))
                }
            })
            .collect();
        let count = ops.len();
        let response = self
            .call("read", Retry::Idempotent, |m| {
                let mut kv = m.kv.clone();
                let request = EtcdTxn::new().and_then(ops.clone());
                async move { kv.txn(request).await }
            })
            .await?;
        let revision = header_revision(response.header())?;
        let mut results = Vec::with_capacity(count);
        for op in response.op_responses() {
            let TxnOpResponse::Get(get) = op else {
                return Err(StoreError::Other(
                    "etcd answered a read with a write response".to_owned(),
                ));
            };
            results.push(get.kvs().iter().map(convert_kv).collect::<Result<_, _>>()?);
        }
        if results.len() != count {
            return Err(StoreError::Other(format!(
                "etcd answered {} of {count} reads",
                results.len()
            )));
        }
        Ok(ReadSet { results, revision })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let lease = txn.writes.iter().find_map(|write| match write {
            TxnOp::PutWithLease { lease, .. } => Some(*lease),
            _ => None,
        });
        let compares: Vec<EtcdCompare> = txn
            .compares
            .into_iter()
            .map(|compare| match compare {
                Compare::ModRevision { key, op, revision } => {
                    EtcdCompare::mod_revision(key, convert_op(op), revision)
                }
                Compare::ModRevisionRange {
                    start,
                    end,
                    op,
                    revision,
                } => EtcdCompare::mod_revision(start, convert_op(op), revision)
                    .with_range(range_bound(end)),
            })
            .collect();
        let writes: Vec<EtcdTxnOp> = txn
            .writes
            .into_iter()
            .map(|write| match write {
                TxnOp::Put { key, value } => EtcdTxnOp::put(key, value, None),
                TxnOp::Delete { key } => EtcdTxnOp::delete(key, None::<DeleteOptions>),
                TxnOp::PutWithLease { key, value, lease } => {
                    EtcdTxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))
                }
            })
            .collect();
        let request = EtcdTxn::new().when(compares).and_then(writes);
        let response = self
            .call("txn", Retry::NotSent, |m| {
                let mut kv = m.kv.clone();
                let request = request.clone();
                async move { kv.txn(request).await }
            })
            .await
            .map_err(|e| with_lease_id(e, lease.unwrap_or(0)))?;
        Ok(TxnOutcome {
            succeeded: response.succeeded(),
            revision: header_revision(response.header())?,
        })
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        let mut options = WatchOptions::new().with_prefix();
        if from_revision > 0 {
            options = options.with_start_revision(from_revision);
        }
        // Etcd confirms the watcher with a first message, so that "from now" really starts
        // before the caller's next write; a member that cannot confirm is passed over.
        let (stream, first) = self
            .call("watch", Retry::Idempotent, |m| {
                let mut client = m.watch.clone();
                let options = options.clone();
                let prefix = prefix.to_owned();
                async move {
                    let mut stream = client.watch(prefix, Some(options)).await?;
                    let first = stream.message().await?;
                    Ok((stream, first))
                }
            })
            .await?;
        let mut state = EtcdWatchState {
            from_revision,
            stream,
            pending: VecDeque::new(),
            done: false,
        };
        match first {
            Some(response) => state.absorb(&response),
            None => {
                return Err(StoreError::Unavailable(
                    "etcd closed the watch stream".to_owned(),
                ));
            }
        }
        if let Some(Err(error)) = state.pending.front() {
            return Err(error.clone());
        }
        Ok(Box::pin(futures::stream::unfold(
            state,
            EtcdWatchState::next,
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let compacted = self
            .call("compact", Retry::Idempotent, |m| {
                let mut kv = m.kv.clone();
                async move { kv.compact(revision, None).await }
            })
            .await;
        match compacted {
            Ok(_) => Ok(()),
            Err(StoreError::Compacted { .. }) => Err(StoreError::Compacted {
                requested: revision,
                compacted: revision,
            }),
            Err(other) => Err(other),
        }
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let response = self
            .call("get", Retry::Idempotent, |m| {
                let mut kv = m.kv.clone();
                let options = GetOptions::new().with_keys_only().with_limit(1);
                async move { kv.get(vec![0u8], Some(options)).await }
            })
            .await?;
        header_revision(response.header())
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let seconds = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let response = self
            .call("lease grant", Retry::Idempotent, |m| {
                let mut lease = m.lease.clone();
                async move { lease.grant(seconds, None).await }
            })
            .await?;
        if !response.error().is_empty() {
            return Err(StoreError::Other(format!(
                "etcd lease grant: {}",
                response.error()
            )));
        }
        Ok(response.id())
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<(), StoreError> {
        // One request on a fresh keep-alive stream: etcd-client sends it and checks the first
        // answer (TTL > 0). Renewals come every TTL/3, so a stream per renewal costs nothing
        // worth keeping a long-lived stream (and its failure modes) for.
        self.call("lease keep-alive", Retry::Idempotent, |m| {
            let mut lease = m.lease.clone();
            async move { lease.keep_alive(id).await }
        })
        .await
        .map(drop)
        .map_err(|e| with_lease_id(e, id))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.call("lease revoke", Retry::Idempotent, |m| {
            let mut lease = m.lease.clone();
            async move { lease.revoke(id).await }
        })
        .await
        .map(drop)
        .map_err(|e| with_lease_id(e, id))
    }
}

fn with_lease_id(error: StoreError, id: LeaseId) -> StoreError {
    match error {
        StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(id),
        other => other,
    }
}

/// One etcd watch, regrouped into per-revision batches.
///
/// Events are grouped by `mod_revision` within one etcd response and every group is flushed when
/// the response ends. Without the `fragment` option (never set here) etcd keeps all events of a
/// revision in one response, so this never splits a revision into two batches; waiting for the
/// next response instead would delay every batch until the following commit.
///
/// Dropping the state drops etcd-client's gRPC stream (both halves), which resets the HTTP/2
/// stream, and etcd cancels the watchers of a closed stream.
struct EtcdWatchState {
    from_revision: Revision,
    stream: etcd_client::WatchStream,
    pending: VecDeque<Result<WatchBatch, StoreError>>,
    done: bool,
}

impl EtcdWatchState {
    async fn next(mut self) -> Option<(Result<WatchBatch, StoreError>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if item.is_err() {
                    self.done = true;
                    self.pending.clear();
                }
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            match self.stream.message().await {
                Ok(Some(response)) => self.absorb(&response),
                Ok(None) => self.fail(StoreError::Unavailable("etcd ended the watch".to_owned())),
                Err(error) => self.fail(map_error(error)),
            }
        }
    }

    fn fail(&mut self, error: StoreError) {
        self.pending.push_back(Err(error));
    }

    fn absorb(&mut self, response: &WatchResponse) {
        if response.compact_revision() != 0 {
            return self.fail(StoreError::Compacted {
                requested: self.from_revision,
                compacted: response.compact_revision(),
            });
        }
        if response.canceled() {
            let reason = response.cancel_reason();
            return self.fail(StoreError::Other(format!(
                "etcd canceled the watch: {reason}"
            )));
        }
        let mut current: Option<WatchBatch> = None;
        for event in response.events() {
            let Some(kv) = event.kv() else {
                return self.fail(StoreError::Other(
                    "etcd watch event without a kv".to_owned(),
                ));
            };
            let kv = match convert_kv(kv) {
                Ok(kv) => kv,
                Err(error) => return self.fail(error),
            };
            let kind = match event.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => EventKind::Delete,
            };
            let revision = kv.mod_revision;
            match current.as_mut() {
                Some(batch) if batch.revision == revision => {
                    batch.events.push(WatchEvent { kind, kv });
                }
                _ => {
                    if let Some(batch) = current.take() {
                        self.pending.push_back(Ok(batch));
                    }
                    current = Some(WatchBatch {
                        revision,
                        events: vec![WatchEvent { kind, kv }],
                    });
                }
            }
        }
        if let Some(batch) = current {
            self.pending.push_back(Ok(batch));
        }
    }
}

/// etcd reads an empty range end as "this one key" and refuses an empty key; the trait means
/// "to the end" and "from the start". "\0" is etcd's spelling of both.
fn range_bound(key: String) -> Vec<u8> {
    if key.is_empty() {
        vec![0]
    } else {
        key.into_bytes()
    }
}

/// The start key and options of a range read.
fn range_options(request: RangeRequest) -> (Vec<u8>, GetOptions) {
    let mut options = GetOptions::new().with_range(range_bound(request.end));
    if request.limit > 0 {
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        options = options.with_limit(limit);
    }
    // Ascending key order is etcd's natural order; asking for it explicitly would make etcd
    // read the whole range before applying the limit.
    if request.descending {
        options = options.with_sort(SortTarget::Key, SortOrder::Descend);
    }
    (range_bound(request.start), options)
}
