//! Smoke tests of the generated edge gRPC code: the messages encode, the embedded descriptor set
//! describes `edge.proto`, and the generated server and client talk over a real socket.

use prost::Message;
use setpoint_proto::FILE_DESCRIPTOR_SET;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use setpoint_proto::edge::v1::edge_server::{Edge, EdgeServer};
use setpoint_proto::edge::v1::{
    Entry, Event, ExportRequest, ExportResponse, GetRequest, GetResponse, ListRequest,
    ListResponse, ResolveRequest, ResolveResponse, WatchRequest, WatchResponse, event,
};
use tonic::codegen::tokio_stream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Just enough of `google.protobuf.FileDescriptorSet` to read file and package names.
#[derive(Clone, PartialEq, Message)]
struct DescriptorSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<FileDescriptor>,
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptor {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
}

#[test]
fn messages_encode_and_the_descriptor_set_describes_edge_proto() {
    let request = GetRequest {
        path: "/a/b".into(),
        env: Some("prod".into()),
        version: None,
    };
    assert_eq!(
        GetRequest::decode(request.encode_to_vec().as_slice()).unwrap(),
        request
    );

    assert!(!FILE_DESCRIPTOR_SET.is_empty());
    let set = DescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let edge = set
        .file
        .iter()
        .find(|file| file.name.as_deref() == Some("edge.proto"))
        .unwrap();
    assert_eq!(edge.package.as_deref(), Some("setpoint.edge.v1"));
}

fn entry(path: &str) -> Entry {
    Entry {
        path: path.into(),
        value: r#""v""#.into(),
        format: "text".into(),
        version: 1,
        revision: 9,
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

struct Fixed;

#[tonic::async_trait]
impl Edge for Fixed {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let path = request.into_inner().path;
        if path != "/a" {
            return Err(Status::not_found(path));
        }
        Ok(Response::new(GetResponse {
            entry: Some(entry(&path)),
            revision: 9,
            stale: false,
        }))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        Ok(Response::new(ListResponse {
            children: vec!["a".into()],
            entries: vec![],
            revision: 9,
        }))
    }

    async fn resolve(
        &self,
        _: Request<ResolveRequest>,
    ) -> Result<Response<ResolveResponse>, Status> {
        Err(Status::unimplemented("not in this fixture"))
    }

    async fn export(&self, _: Request<ExportRequest>) -> Result<Response<ExportResponse>, Status> {
        Err(Status::unimplemented("not in this fixture"))
    }

    type WatchStream = tokio_stream::Iter<std::vec::IntoIter<Result<WatchResponse, Status>>>;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let event = Event {
            r#type: event::Type::Delete.into(),
            path: "/a".into(),
            old_value: Some(r#""v""#.into()),
            new_value: None,
            version: 2,
            revision: 10,
            format: "text".into(),
        };
        Ok(Response::new(tokio_stream::iter(vec![Ok(WatchResponse {
            revision: 10,
            events: vec![event],
            reset: false,
            state: vec![],
        })])))
    }

    type SessionStream = tokio_stream::Iter<
        std::vec::IntoIter<Result<setpoint_proto::edge::v1::ServerMessage, Status>>,
    >;

    async fn session(
        &self,
        _: Request<tonic::Streaming<setpoint_proto::edge::v1::ClientMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        Err(Status::unimplemented("not in this fixture"))
    }
}

#[tokio::test]
async fn generated_server_and_client_talk() {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EdgeServer::new(Fixed))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );

    let mut client = EdgeClient::connect(format!("http://{addr}")).await.unwrap();
    let got = client
        .get(GetRequest {
            path: "/a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.entry, Some(entry("/a")));
    let missing = client
        .get(GetRequest {
            path: "/b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let listed = client.list(ListRequest::default()).await.unwrap();
    assert_eq!(listed.into_inner().children, vec!["a"]);
    let mut watch = client
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.events[0].r#type(), event::Type::Delete);
    assert!(watch.message().await.unwrap().is_none());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
