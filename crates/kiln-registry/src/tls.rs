//! The HTTP clients: rustls with the `ring` provider (no OpenSSL), trusting the Mozilla roots
//! (`webpki-roots`) plus the system's (`/etc/ssl/certs`, `SSL_CERT_FILE`); and a second client
//! for `--insecure-registry` hosts that accepts any certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::{ClientConfig, RegistryError};

/// Builds the verifying and the non-verifying HTTP client.
pub(crate) fn http_clients(
    config: &ClientConfig,
) -> Result<(reqwest::Client, reqwest::Client), RegistryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in system_bundles() {
        match CertificateDer::pem_file_iter(&path) {
            Ok(certs) => {
                let (added, ignored) =
                    roots.add_parsable_certificates(certs.filter_map(Result::ok));
                tracing::debug!(
                    "trusting {added} certificates from {} ({ignored} unusable)",
                    path.display()
                );
            }
            Err(err) => tracing::debug!("skipping certificate bundle {}: {err}", path.display()),
        }
    }
    let verified = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| RegistryError::ClientSetup(format!("TLS versions: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let unverified = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| RegistryError::ClientSetup(format!("TLS versions: {err}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Ok((build(config, verified)?, build(config, unverified)?))
}

fn build(
    config: &ClientConfig,
    mut tls: rustls::ClientConfig,
) -> Result<reqwest::Client, RegistryError> {
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(config.user_agent.clone())
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(|err| RegistryError::ClientSetup(err.to_string()))
}

/// `--insecure-registry`: the certificate is not checked (signatures still are, so the
/// handshake is well-formed).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where distributions keep their CA bundle.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's CA bundles: `$SSL_CERT_FILE`, else the first of the usual distribution paths.
fn system_bundles() -> Vec<std::path::PathBuf> {
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        return vec![file.into()];
    }
    BUNDLES
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .into_iter()
        .collect()
}
