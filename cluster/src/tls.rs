//! Certificates and mutual-TLS configs for the replication link (QUIC).
//!
//! `setpoint certs --out DIR` writes `ca.pem`, `ca.key`, `writer.pem`, `writer.key`, `edge.pem`,
//! `edge.key`. The writer's QUIC server requires client certificates signed by the CA; edges
//! verify the writer's certificate against the same CA.

use std::path::{Path, PathBuf};

/// Paths of one node's TLS material.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    // helper's choice
}

/// Writes a dev CA plus writer and edge certificates into `dir`; returns the writer's and the
/// edge's files. The writer certificate is valid for `localhost`, `127.0.0.1` and `hostnames`.
pub fn generate_dev_certs(
    dir: &Path,
    hostnames: &[String],
) -> Result<(TlsFiles, TlsFiles), TlsError> {
    todo!()
}

/// QUIC server config for the writer: its certificate, client certificates required (CA).
pub fn server_config(files: &TlsFiles) -> Result<quinn::ServerConfig, TlsError> {
    todo!()
}

/// QUIC client config for an edge: its client certificate, the writer verified against the CA.
pub fn client_config(files: &TlsFiles) -> Result<quinn::ClientConfig, TlsError> {
    todo!()
}
