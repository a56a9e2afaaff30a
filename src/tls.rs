//! TLS to NameServers and brokers that require it (Java client `useTLS`), with rustls over the
//! core's own glommio sockets: no second runtime.
//!
//! ```text
//!  connect (TCP) ─► TLS handshake within the attempt's deadline ─► frames as usual
//!  trust: the CA certificates of `ca_file` (PEM), e.g. a self-signed test CA
//!  identity (mutual TLS, optional): `client_cert_file` + `client_key_file` (PEM)
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use futures_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file of the certificate authorities to trust (a self-signed server certificate is
    /// its own CA).
    pub ca_file: PathBuf,
    /// The name the servers' certificates must carry; default: the host of each address (an IP
    /// address is checked against the certificate's IP SANs).
    pub server_name: Option<String>,
    /// PEM file of this client's certificate chain, for servers that require client
    /// certificates (Java `tls.client.certPath`; 4.9.x `tls.server.need.client.auth=require`).
    /// Set together with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
}

impl TlsOptions {
    /// TLS trusting the CAs in `ca_file`.
    pub fn trusting(ca_file: impl Into<PathBuf>) -> Self {
        TlsOptions {
            ca_file: ca_file.into(),
            server_name: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }

    /// Presents the certificate chain in `cert_file` (PEM) with its private key in `key_file`
    /// (PEM) to servers that ask for a client certificate (mutual TLS).
    ///
    /// ```no_run
    /// use rocketmq_tpc::TlsOptions;
    ///
    /// let tls = TlsOptions::trusting("/etc/rocketmq/ca.pem")
    ///     .with_client_cert("/etc/rocketmq/client.pem", "/etc/rocketmq/client.key");
    /// ```
    pub fn with_client_cert(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.client_cert_file = Some(cert_file.into());
        self.client_key_file = Some(key_file.into());
        self
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
    /// [`Error::InvalidConfig`] when the CA file cannot be read or holds no certificate, when
    /// only one of the client certificate and key is set, or when either cannot be read or
    /// does not fit the other.
    pub(crate) fn new(options: &TlsOptions) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidConfig { reason };
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs("tls.ca_file", &options.ca_file)? {
            roots
                .add(cert)
                .map_err(|e| bad(format!("tls.ca_file {}: {e}", options.ca_file.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match (&options.client_cert_file, &options.client_key_file) {
            (None, None) => config.with_no_client_auth(),
            (Some(cert_file), Some(key_file)) => {
                let chain = read_certs("tls.client_cert_file", cert_file)?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|e| bad(format!("tls.client_key_file {}: {e}", key_file.display())))?;
                config
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad(format!("TLS client certificate: {e}")))?
            }
            _ => {
                return Err(bad(
                    "tls.client_cert_file and tls.client_key_file go together: set both or neither"
                        .into(),
                ))
            }
        };
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

/// The certificates of the PEM file `path` (at least one), or a config error naming `what`.
fn read_certs(what: &str, path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bad = |reason: String| Error::InvalidConfig { reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("{what} {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "{what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(options: &TlsOptions) -> String {
        match TlsSetup::new(options) {
            Err(Error::InvalidConfig { reason }) => reason,
            Err(other) => panic!("expected InvalidConfig, got {other:?}"),
            Ok(_) => panic!("accepted {options:?}"),
        }
    }

    #[test]
    fn unreadable_or_empty_files_are_config_errors_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("tpc-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");
        assert!(refused(&TlsOptions::trusting(&missing)).contains("missing.pem"));
        assert!(refused(&TlsOptions::trusting(&empty)).contains("holds no certificate"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
