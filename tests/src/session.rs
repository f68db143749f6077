//! A raw client session on an edge's gRPC `Session` stream, driven by hand: the hello, the
//! updates as they come, and receipts (acknowledgements and NACKs) sent back — what an SDK does,
//! without one, so a test decides exactly what each instance reports.

use std::time::Duration;

use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::client_message::Kind as Up;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use setpoint_proto::edge::v1::server_message::Kind as Down;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Generous for two loaded cores.
const PATIENCE: Duration = Duration::from_secs(30);

/// Who the session says it is.
pub struct Hello<'a> {
    pub instance_id: &'a str,
    pub env: Option<&'a str>,
    pub prefixes: &'a [&'a str],
    pub labels: &'a [(&'a str, &'a str)],
}

pub struct Session {
    up: mpsc::Sender<pb::ClientMessage>,
    down: tonic::Streaming<pb::ServerMessage>,
}

impl Session {
    /// Opens a session on the edge at `base`; panics when the edge refuses it.
    pub async fn open(base: &str, hello: Hello<'_>, token: Option<&str>) -> Session {
        let mut grpc = EdgeClient::connect(base.to_owned())
            .await
            .expect("the edge's gRPC port answers");
        let (up, rx) = mpsc::channel(16);
        let first = pb::ClientMessage {
            kind: Some(Up::Hello(pb::ClientHello {
                instance_id: hello.instance_id.into(),
                env: hello.env.map(str::to_owned),
                prefixes: hello.prefixes.iter().map(|p| (*p).to_owned()).collect(),
                labels: hello
                    .labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                sdk: "test".into(),
                sdk_version: "0.0.1".into(),
                from_revision: None,
                resolve: false,
            })),
        };
        up.send(first).await.expect("the hello is queued");
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .expect("a token is a header value");
            request.metadata_mut().insert("authorization", value);
        }
        let down = grpc
            .session(request)
            .await
            .expect("the edge accepts the session")
            .into_inner();
        Session { up, down }
    }

    /// The next update (skipping the start and heartbeats).
    pub async fn update(&mut self) -> pb::WatchResponse {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.down.message())
                .await
                .expect("an update in time")
                .expect("the stream stays open")
                .expect("the stream does not end");
            if let Some(Down::Update(update)) = message.kind {
                return update;
            }
        }
    }

    /// Reads updates until the session holds `revision` (a write the writer acknowledged), and
    /// answers the revision it reached. The edge applies a commit a moment after the writer
    /// answers it, so a session opened right after a write may start one revision short and get
    /// the write as its next update.
    pub async fn sync_to(&mut self, revision: i64) -> i64 {
        let start = self.update().await;
        assert!(start.reset, "a session starts with its whole state");
        let mut held = start.revision;
        while held < revision {
            held = self.update().await.revision;
        }
        held
    }

    /// Acknowledges `revision`, with a NACK (path, error) when one is given.
    pub async fn receipt(&self, revision: i64, nack: Option<(&str, &str)>) {
        let failures = nack
            .map(|(path, error)| pb::Nack {
                path: path.into(),
                error: error.into(),
            })
            .into_iter()
            .collect();
        self.up
            .send(pb::ClientMessage {
                kind: Some(Up::Receipt(pb::Receipt { revision, failures })),
            })
            .await
            .expect("the receipt is queued");
    }
}
