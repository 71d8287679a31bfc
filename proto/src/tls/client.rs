//! The connecting side: a client config from files, and a tonic connector that dials TCP and
//! runs the handshake, so a `Channel` speaks TLS (`Endpoint::connect_with_connector`).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;

use super::files;
use super::reload::ReloadingServerVerifier;
use super::{Credentials, TlsError, TrustAnchors, provider, rustls_error};

/// A client trusting the anchors of `ca` (reloaded on change), presenting `identity` when
/// given (mutual TLS), offering `alpn`.
pub fn client_config(
    ca: &TrustAnchors,
    identity: Option<&Credentials>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(ReloadingServerVerifier::new(Arc::clone(&ca.0)));
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity.0.clone()),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client trusting only the certificates in `ca_pem` (fixed: for callers that hold the CA in
/// memory, like the operator, which reads it from a Secret on every reconcile), without a
/// client certificate, offering `alpn`.
pub fn client_config_trusting(ca_pem: &[u8], alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?
        .with_root_certificates(anchors_in(ca_pem)?)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The trust anchors in a CA bundle held in memory: an error unless it holds at least one
/// certificate that rustls accepts as an anchor (what [`client_config_trusting`] and the CA
/// files need, so a caller can check a CA before handing it on).
pub fn anchors_in(ca_pem: &[u8]) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    files::roots(Path::new("(CA in memory)"), ca_pem)
}

/// Dials the URI's `host:port` over TCP (names resolved on every connect) and completes a TLS
/// handshake that checks the server's certificate names that host, or the fixed server name
/// given (clients that dial resolved addresses of a Service name).
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    server_name: Option<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector with `config` (see [`client_config`]; offer `h2` for gRPC).
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self { tls: TlsConnector::from(config), server_name: None }
    }

    /// The name every server's certificate must carry, whatever address is dialled.
    #[must_use]
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Connects to `host:port` and completes the handshake with `host` (or the fixed name) as
    /// the server name.
    pub async fn connect(&self, host: &str, port: u16) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        // `[::1]` in a URI; the bare address for the name and the socket.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let expected = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(expected.to_owned()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, TlsError::ServerName(expected.to_owned()))
        })?;
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        self.tls.connect(name, tcp).await
    }
}

impl tonic::codegen::Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, TlsError::ServerName(uri.to_string()))
            })?;
            let port = uri.port_u16().unwrap_or(443);
            this.connect(host, port).await.map(TokioIo::new)
        })
    }
}
