//! The gRPC API: `setpoint.edge.v1.Edge` (Get, List, Watch) over the same snapshot and watch hub
//! as HTTP, plus `grpc.health.v1.Health` and server reflection.
//!
//! Waiting for the generated code (proto-impl); until then only health is served.

use crate::Edge;

/// The gRPC routes, without a fallback (see [`crate::Edge::router`]).
pub fn routes(_edge: Edge) -> tonic::service::Routes {
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::service::Routes::from(axum::Router::new()).add_service(health)
}
