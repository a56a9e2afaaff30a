//! TLS to NameServers and brokers that require it (Java client `useTLS`), with rustls over the
//! core's own glommio sockets: no second runtime.
//!
//! ```text
//!  connect (TCP) ─► TLS handshake within the attempt's deadline ─► frames as usual
//!  trust: the CA certificates of `ca_file` (PEM), e.g. a self-signed test CA
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use futures_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::error::Error;

/// How to reach servers over TLS.
///
/// # Example
///
/// ```no_run
/// use rocketmq_tpc::{Producer, TlsOptions};
///
/// # fn main() -> Result<(), rocketmq_tpc::Error> {
/// let producer = Producer::builder()
///     .namesrv("127.0.0.1:9876")
///     .producer_group("secured")
///     .tls(TlsOptions::trusting("/etc/rocketmq/ca.pem"))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file of the certificate authorities to trust (a self-signed server certificate is
    /// its own CA).
    pub ca_file: PathBuf,
    /// The name the servers' certificates must carry; default: the host of each address (an IP
    /// address is checked against the certificate's IP SANs).
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// TLS trusting the CAs in `ca_file`.
    pub fn trusting(ca_file: impl Into<PathBuf>) -> Self {
        TlsOptions {
            ca_file: ca_file.into(),
            server_name: None,
        }
    }
}

/// What every connection needs to start TLS.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub connector: futures_rustls::TlsConnector,
    pub server_name: Option<String>,
}

impl TlsSetup {
    /// Builds the client configuration once per producer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the CA file cannot be read or holds no certificate.
    pub(crate) fn new(options: &TlsOptions) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidConfig { reason };
        let mut roots = rustls::RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&options.ca_file)
            .map_err(|e| bad(format!("tls.ca_file {}: {e}", options.ca_file.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("tls.ca_file {}: {e}", options.ca_file.display())))?;
        if certs.is_empty() {
            return Err(bad(format!(
                "tls.ca_file {} holds no certificate",
                options.ca_file.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("tls.ca_file {}: {e}", options.ca_file.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsSetup {
            connector: futures_rustls::TlsConnector::from(Arc::new(config)),
            server_name: options.server_name.clone(),
        })
    }

    /// The name to check the certificate of `host` against.
    pub(crate) fn name_for(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_owned()).map_err(|e| format!("TLS server name {name:?}: {e}"))
    }
}
