//! Certificates and mutual-TLS configs for the replication link (QUIC).
//!
//! `setpoint certs --out DIR` writes `ca.pem`, `ca.key`, `writer.pem`, `writer.key`, `edge.pem`,
//! `edge.key`. The writer's QUIC server requires client certificates signed by the CA; edges
//! verify the writer's certificate against the same CA. `setpoint certs --out DIR --regional
//! NAME` then signs `NAME.pem`/`NAME.key` with that CA: a regional edge's certificate, valid both
//! for serving other edges (its names) and as a client of its own upstream.
//!
//! Owns: generating the dev CA and leaf certificates, loading PEM material, and the rustls +
//! quinn configs (ALPN, TLS 1.3 only, ring provider chosen explicitly, keep-alive and idle
//! timeout). Must not: speak the replication protocol or depend on `setpoint-proto` (the ALPN
//! value is repeated here on purpose and checked against the frame codec by the writer's tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN of the replication protocol (`setpoint_proto::frames::ALPN`).
pub const ALPN: &[u8] = b"setpoint/1";
/// How often an idle connection sends a QUIC ping, so NATs keep it and a dead peer is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// A connection that hears nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The SAN of the dev edge certificate.
pub const EDGE_NAME: &str = "setpoint-edge";

/// Paths of one node's TLS material.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} holds no usable {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

impl TlsError {
    fn config(err: impl std::fmt::Display) -> TlsError {
        TlsError::Config(err.to_string())
    }
}

/// Writes a dev CA plus writer and edge certificates into `dir`; returns the writer's and the
/// edge's files. The writer certificate is valid for `localhost`, `127.0.0.1`, `::1` and
/// `hostnames`; the edge certificate is a client certificate named [`EDGE_NAME`].
pub fn generate_dev_certs(
    dir: &Path,
    hostnames: &[String],
) -> Result<(TlsFiles, TlsFiles), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_params = dev_ca_params()?;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let (writer_pem, writer_key) = leaf(
        server_names(hostnames),
        "setpoint-writer",
        &[ExtendedKeyUsagePurpose::ServerAuth],
        &issuer,
    )?;
    let (edge_pem, edge_key) = leaf(
        vec![EDGE_NAME.to_owned()],
        EDGE_NAME,
        &[ExtendedKeyUsagePurpose::ClientAuth],
        &issuer,
    )?;

    let ca = dir.join("ca.pem");
    write_file(&ca, &ca_pem, false)?;
    write_file(&dir.join("ca.key"), &ca_key_pem, true)?;
    let writer = TlsFiles {
        ca: ca.clone(),
        cert: dir.join("writer.pem"),
        key: dir.join("writer.key"),
    };
    write_file(&writer.cert, &writer_pem, false)?;
    write_file(&writer.key, &writer_key, true)?;
    let edge = TlsFiles {
        ca,
        cert: dir.join("edge.pem"),
        key: dir.join("edge.key"),
    };
    write_file(&edge.cert, &edge_pem, false)?;
    write_file(&edge.key, &edge_key, true)?;
    Ok((writer, edge))
}

/// QUIC server config for the writer: its certificate, client certificates required (CA).
pub fn server_config(files: &TlsFiles) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(load_roots(&files.ca)?);
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(TlsError::config)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(TlsError::config)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(TlsError::config)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport()?);
    Ok(config)
}

/// QUIC client config for an edge: its client certificate, the writer verified against the CA.
pub fn client_config(files: &TlsFiles) -> Result<quinn::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::config)?
        .with_root_certificates(load_roots(&files.ca)?)
        .with_client_auth_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(TlsError::config)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(TlsError::config)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport()?);
    Ok(config)
}

fn transport() -> Result<Arc<quinn::TransportConfig>, TlsError> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).map_err(TlsError::config)?,
    ));
    Ok(Arc::new(transport))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "Setpoint");
    name
}

/// A leaf certificate for `names`, signed by `issuer`: (certificate PEM, key PEM).
/// Signs a regional edge's certificate with the dev CA in `dir` (made by
/// [`generate_dev_certs`]) into `dir/NAME.pem` and `dir/NAME.key`: valid for serving other edges
/// under `localhost`, `127.0.0.1`, `::1` and `hostnames` (the host of the replication address
/// it advertises must be among them) and as a client of its own upstream.
pub fn issue_regional_cert(
    dir: &Path,
    name: &str,
    hostnames: &[String],
) -> Result<TlsFiles, TlsError> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name || ["ca", "writer", "edge"].contains(&name) {
        return Err(TlsError::Config(format!(
            "a regional certificate name is 1-64 of [A-Za-z0-9_-] and not ca, writer or edge; got {name:?}"
        )));
    }
    let ca = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let ca_key_pem = std::fs::read_to_string(&ca_key_path).map_err(|source| TlsError::Io {
        path: ca_key_path.clone(),
        source,
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|_| TlsError::Pem {
        path: ca_key_path,
        what: "CA private key",
    })?;
    // The issuer is known by its name and key: the same name the dev CA was made with.
    let issuer = Issuer::new(dev_ca_params()?, ca_key);
    let (pem, key) = leaf(
        server_names(hostnames),
        name,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        &issuer,
    )?;
    let files = TlsFiles {
        ca,
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    write_file(&files.cert, &pem, false)?;
    write_file(&files.key, &key, true)?;
    Ok(files)
}

fn dev_ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("Setpoint dev CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Loopback names plus `hostnames`, without repeats.
fn server_names(hostnames: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for host in hostnames {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    names
}

fn leaf(
    names: Vec<String>,
    common_name: &str,
    usages: &[ExtendedKeyUsagePurpose],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), TlsError> {
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(io)?;
    // `mode` only applies to a new file: tighten an existing one too.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(contents.as_bytes()).map_err(io)
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem {
            path: path.to_path_buf(),
            what: "certificate",
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Pem {
        path: path.to_path_buf(),
        what: "private key",
    })
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(TlsError::config)?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn server(files: &TlsFiles) -> quinn::Endpoint {
        quinn::Endpoint::server(
            server_config(files).unwrap(),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        )
        .unwrap()
    }

    fn client(files: &TlsFiles) -> quinn::Endpoint {
        let mut endpoint =
            quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        endpoint.set_default_client_config(client_config(files).unwrap());
        endpoint
    }

    #[test]
    fn generates_every_file_with_private_keys_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, edge) = generate_dev_certs(dir.path(), &["writer.internal".into()]).unwrap();
        for name in [
            "ca.pem",
            "ca.key",
            "writer.pem",
            "writer.key",
            "edge.pem",
            "edge.key",
        ] {
            assert!(dir.path().join(name).is_file(), "{name} is written");
        }
        assert_eq!(writer.ca, edge.ca);
        #[cfg(unix)]
        for key in [&writer.key, &edge.key, &dir.path().join("ca.key")] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is 0600", key.display());
        }
        server_config(&writer).unwrap();
        client_config(&edge).unwrap();
    }

    /// A server with `server_files` echoes one stream to a client with `client_files` dialling
    /// it as `name`; returns the ALPN they agreed on.
    async fn echo_once(server_files: &TlsFiles, client_files: &TlsFiles, name: &str) -> Vec<u8> {
        let server = server(server_files);
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let connection = server.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = connection.accept_bi().await.unwrap();
            let got = recv.read_to_end(64).await.unwrap();
            send.write_all(&got).await.unwrap();
            send.finish().unwrap();
            let _ = connection.closed().await;
        });
        let client = client(client_files);
        let connection = client.connect(addr, name).unwrap().await.unwrap();
        let alpn = connection
            .handshake_data()
            .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol)
            .unwrap_or_default();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(b"ping").await.unwrap();
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(64).await.unwrap(), b"ping", "{name}");
        connection.close(0u32.into(), b"done");
        accept.await.unwrap();
        alpn
    }

    #[tokio::test]
    async fn an_edge_signed_by_the_ca_connects_with_the_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, edge) = generate_dev_certs(dir.path(), &[]).unwrap();
        assert_eq!(echo_once(&writer, &edge, "localhost").await, ALPN);
    }

    #[tokio::test]
    async fn a_regional_certificate_serves_edges_and_is_a_client_of_its_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, edge) = generate_dev_certs(dir.path(), &[]).unwrap();
        let regional =
            issue_regional_cert(dir.path(), "eu-regional", &["regional.test".into()]).unwrap();
        assert!(regional.cert.ends_with("eu-regional.pem"));
        // Serving a leaf (which dials it by one of its names), and as a client of the writer.
        echo_once(&regional, &edge, "regional.test").await;
        echo_once(&writer, &regional, "localhost").await;
    }

    #[test]
    fn a_regional_certificate_needs_the_ca_and_a_plain_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            issue_regional_cert(dir.path(), "eu", &[]),
            Err(TlsError::Io { .. })
        ));
        generate_dev_certs(dir.path(), &[]).unwrap();
        for bad in ["", "writer", "../x", "a b"] {
            assert!(
                matches!(
                    issue_regional_cert(dir.path(), bad, &[]),
                    Err(TlsError::Config(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_edge_from_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let (writer, _) = generate_dev_certs(dir.path(), &[]).unwrap();
        let (_, stranger) = generate_dev_certs(other.path(), &[]).unwrap();
        // The stranger trusts the real CA (so it would accept the writer) but presents a
        // certificate from its own CA.
        let stranger = TlsFiles {
            ca: writer.ca.clone(),
            ..stranger
        };
        let server = server(&writer);
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn(async move { server.accept().await.unwrap().await.map(|_| ()) });
        let client = client(&stranger);
        let connected = match client.connect(addr, "localhost").unwrap().await {
            Err(_) => false,
            // TLS 1.3: the client may finish before the server has judged its certificate; the
            // server's refusal then closes the connection at once.
            Ok(connection) => match connection.open_bi().await {
                Err(_) => false,
                Ok((mut send, mut recv)) => {
                    let _ = send.write_all(b"ping").await;
                    let _ = send.finish();
                    recv.read_to_end(64).await.is_ok()
                }
            },
        };
        assert!(!connected, "the stranger's connection must not work");
        assert!(
            accept.await.unwrap().is_err(),
            "the server refuses the handshake"
        );
    }
}
