//! The accepting side: a server config from files, and a listener whose connections finish
//! their handshake off the accept loop, so a slow or hostile client delays only itself.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use super::reload::ReloadingClientVerifier;
use super::{Credentials, Outcomes, TlsError, TrustAnchors, provider, rustls_error};

/// Longest a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// A server presenting `identity` (reloaded on change) and offering `alpn` (`h2` for gRPC,
/// `http/1.1` for HTTP). With `client_ca`, every client must present a certificate that chains
/// to it (mutual TLS; reloaded on change too); without, no client certificate is asked for.
pub fn server_config(
    identity: &Credentials,
    client_ca: Option<&TrustAnchors>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::new(ReloadingClientVerifier::new(Arc::clone(&ca.0)))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&identity.0) as Arc<dyn rustls::server::ResolvesServerCert>);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A listener's two queues: TLS handshakes in progress at once (further connections wait in
/// the kernel's backlog) and connections accepted (handshaken) but not yet taken by the server
/// (the accepting side then waits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Handshakes in progress at once.
    pub handshakes: usize,
    /// Accepted connections not yet taken.
    pub accepted: usize,
}

impl Default for Backlog {
    fn default() -> Self {
        Self { handshakes: 256, accepted: 128 }
    }
}

/// An accepted connection: plain TCP, or TLS once its handshake completed.
#[derive(Debug)]
pub enum ServerIo {
    /// No TLS on this listener.
    Plain(TcpStream),
    /// Handshake done (and, with mutual TLS, the client's certificate verified).
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ServerIo {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

/// Connections from a listener, plain or TLS, in the order their handshakes complete.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<(ServerIo, SocketAddr)>,
    local: SocketAddr,
    handshakes: Arc<Outcomes>,
    backlog: Backlog,
}

impl Incoming {
    /// Starts accepting on `listener` (TLS when `tls` is given) until this value is dropped.
    /// Every accepted TCP stream gets `TCP_NODELAY` (small request/response pairs).
    pub fn new(listener: TcpListener, tls: Option<Arc<ServerConfig>>) -> std::io::Result<Self> {
        Self::with_backlog(listener, tls, Backlog::default())
    }

    /// [`Self::new`] with queues of `backlog`'s sizes (each at least 1).
    pub fn with_backlog(
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        backlog: Backlog,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let backlog = Backlog { handshakes: backlog.handshakes.max(1), accepted: backlog.accepted.max(1) };
        let (tx, rx) = mpsc::channel(backlog.accepted);
        let handshakes = Arc::new(Outcomes::default());
        let acceptor = tls.map(TlsAcceptor::from);
        tokio::spawn(accept_loop(listener, acceptor, tx, Arc::clone(&handshakes), backlog.handshakes));
        Ok(Self { rx, local, handshakes, backlog })
    }

    /// The sizes of this listener's queues, for `/metrics`.
    pub fn backlog(&self) -> Backlog {
        self.backlog
    }

    /// This listener's handshakes (none when plain), for `/metrics`.
    pub fn handshakes(&self) -> Arc<Outcomes> {
        Arc::clone(&self.handshakes)
    }

    /// The next connection; `None` once the accept loop stopped.
    pub async fn accept(&mut self) -> Option<(ServerIo, SocketAddr)> {
        self.rx.recv().await
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The connections as a stream, as tonic's `serve_with_incoming` takes them.
    pub fn into_stream(self) -> impl tokio_stream::Stream<Item = std::io::Result<ServerIo>> + Send + 'static {
        use tokio_stream::StreamExt as _;
        tokio_stream::wrappers::ReceiverStream::new(self.rx).map(|(io, _)| Ok(io))
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<(ServerIo, SocketAddr)>,
    counts: Arc<Outcomes>,
    max_handshakes: usize,
) {
    let handshakes = Arc::new(Semaphore::new(max_handshakes));
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let Some(acceptor) = tls.clone() else {
            if tx.send((ServerIo::Plain(tcp), remote)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
        let (tx, counts) = (tx.clone(), Arc::clone(&counts));
        tokio::spawn(async move {
            let _permit = permit;
            let done = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "tls handshake refused");
                    None
                }
                Err(_) => {
                    tracing::debug!(%remote, "tls handshake timed out");
                    None
                }
            };
            counts.count(done.is_some());
            if let Some(stream) = done {
                let _ = tx.send((ServerIo::Tls(Box::new(stream)), remote)).await;
            }
        });
    }
}

#[cfg(feature = "server")]
impl tonic::transport::server::Connected for ServerIo {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
