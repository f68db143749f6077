//! The outbound HTTP client of the parts that call out — the Vault provider and the alert
//! webhook: `http://`, and `https://` verified against the system's trust store plus, when one
//! is given, a private CA (PEM, one or more certificates). reqwest's rustls backend (its own
//! provider; replication's QUIC keeps ring), with rustls-platform-verifier for the system roots.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client builder speaking `http://` and `https://`; `extra_ca_pem` adds trusted roots (a
/// private CA) to the system's. Errors name what is wrong with the PEM.
pub fn client_builder(extra_ca_pem: Option<&[u8]>) -> Result<reqwest::ClientBuilder, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = extra_ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the CA file is not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("the CA file holds no PEM certificate".into());
        }
        for cert in certs {
            let cert = reqwest::Certificate::from_der(&cert)
                .map_err(|e| format!("the CA file holds a bad certificate: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// Reads a CA file for [`client_builder`], naming the file when it cannot.
pub fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_pem_certificates() {
        assert!(client_builder(None).is_ok());
        let empty = client_builder(Some(b"")).err().unwrap_or_default();
        assert!(empty.contains("no PEM certificate"), "{empty}");
        let garbage = client_builder(Some(
            b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        ))
        .err()
        .unwrap_or_default();
        assert!(garbage.contains("not PEM"), "{garbage}");
    }
}
