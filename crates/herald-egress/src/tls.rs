//! The TLS every outbound call uses: rustls with ring, the system roots and an operator CA.

use std::{path::Path, sync::Arc};

use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject as _},
};

/// Makes ring the process's rustls provider, for every client that does not bring its own
/// configuration (reqwest builds its default TLS from it, even for `http://` calls). Call it
/// before the first HTTP client is built; calling it again does nothing.
pub fn install_ring_provider() {
    // An `Err` says a provider is installed already: ring, the only one in the tree.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// An operator CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read the CA file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the CA file {path} holds no PEM certificate")]
    Empty { path: String },
    #[error("the CA file {path} holds a certificate rustls cannot use: {reason}")]
    Unusable { path: String, reason: String },
}

/// The system's roots: those rustls can use (what could not be loaded is logged).
pub(crate) fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::warn!(error = %err, "a system root certificate could not be loaded");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system root certificates rustls cannot use were left out");
    }
    roots
}

/// Adds every certificate of `path`, a PEM file, to `roots`.
pub(crate) fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let shown = path.display().to_string();
    let unreadable = |reason: String| TlsError::Unreadable { path: shown.clone(), reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: shown });
    }
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::Unusable { path: shown.clone(), reason: e.to_string() })?;
    }
    Ok(())
}

/// A client configuration on ring with `roots`, offering HTTP/2 and HTTP/1.1 by ALPN.
pub(crate) fn client_config(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("rustls with ring supports its default versions: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_cannot_be_used_says_why() {
        let dir = std::env::temp_dir().join(format!("herald-egress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut roots = RootCertStore::empty();
        let missing = dir.join("missing.pem");
        let err = add_ca_file(&mut roots, &missing).expect_err("missing");
        assert!(matches!(err, TlsError::Unreadable { .. }), "{err}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        assert!(matches!(add_ca_file(&mut roots, &empty), Err(TlsError::Empty { .. })));
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").expect("write");
        assert!(add_ca_file(&mut roots, &garbage).is_err(), "a certificate rustls cannot read");
        assert!(roots.is_empty(), "nothing added from a bad file");
        std::fs::remove_dir_all(&dir).ok();
    }
}
