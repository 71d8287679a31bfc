//! UDP and TCP on one port, and DNS over TLS (RFC 7858: the TCP framing inside TLS) on
//! another when configured: thin loops around `registry_proto::dns::handle`.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Cache, DnsStats};
use registry_proto::dns::batch::{self, BATCH, RecvBatch, SockaddrStorage};
use registry_proto::dns::{Transport, handle};
use registry_proto::tls::{Incoming, ServerIo};

/// A TCP connection idle this long is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Attempts at finding one ephemeral port free for both UDP and TCP.
const EPHEMERAL_TRIES: usize = 16;

/// A bound, not yet serving, DNS server.
pub struct DnsServer {
    udp: Arc<UdpSocket>,
    tcp: Incoming,
    cache: Arc<Cache>,
    stats: Arc<DnsStats>,
    max_tcp_connections: usize,
    tls: Option<Incoming>,
}

impl DnsServer {
    /// Binds UDP and TCP on `bind:port` (port 0: one ephemeral port free for both).
    pub async fn bind(
        bind: IpAddr,
        port: u16,
        max_tcp_connections: usize,
        cache: Arc<Cache>,
        stats: Arc<DnsStats>,
    ) -> std::io::Result<Self> {
        let mut tries = 0;
        loop {
            let udp = UdpSocket::bind(SocketAddr::new(bind, port)).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => {
                    let tcp = Incoming::new(tcp, None)?;
                    return Ok(Self { udp: Arc::new(udp), tcp, cache, stats, max_tcp_connections, tls: None });
                }
                Err(e) if port == 0 && tries < EPHEMERAL_TRIES => {
                    tracing::debug!(%bound, error = %e, "tcp port taken; trying another ephemeral port");
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Also serves DNS over TLS on `listener` (its handshakes run in the listener's tasks).
    #[must_use]
    pub fn with_tls(mut self, listener: Incoming) -> Self {
        self.tls = Some(listener);
        self
    }

    /// The bound address (UDP and TCP share it).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The DNS-over-TLS port's handshake counts, when on.
    pub fn tls_handshakes(&self) -> Option<Arc<registry_proto::tls::Outcomes>> {
        self.tls.as_ref().map(Incoming::handshakes)
    }

    /// The DNS-over-TLS address, when on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(Incoming::local_addr)
    }

    /// Serves until `shutdown`: one UDP worker per core, and a task per TCP or TLS connection
    /// (at most `max_tcp_connections` of both together).
    pub fn spawn(self, tasks: &TaskTracker, shutdown: CancellationToken) {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        for _ in 0..workers {
            tasks.spawn(serve_udp(
                Arc::clone(&self.udp),
                Arc::clone(&self.cache),
                Arc::clone(&self.stats),
                shutdown.clone(),
            ));
        }
        let limit = Arc::new(Semaphore::new(self.max_tcp_connections.max(1)));
        let streams = Streams { cache: self.cache, stats: self.stats, limit, tasks: tasks.clone(), shutdown };
        if let Some(tls) = self.tls {
            tasks.spawn(streams.clone().serve(tls));
        }
        tasks.spawn(streams.serve(self.tcp));
    }
}

/// Per wakeup: every queued query (up to a batch) in one `recvmmsg`, answered, and the replies
/// in one `sendmmsg`. The socket is shared with the other workers; whoever wakes takes what is
/// queued.
async fn serve_udp(socket: Arc<UdpSocket>, cache: Arc<Cache>, stats: Arc<DnsStats>, shutdown: CancellationToken) {
    let fd = socket.as_raw_fd();
    let mut queries = RecvBatch::default();
    let mut replies: Vec<(Vec<u8>, SockaddrStorage)> = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.readable() => if let Err(e) = r {
                tracing::warn!(error = %e, "dns udp socket failed");
                return;
            },
        }
        let received = match socket.try_io(Interest::READABLE, || queries.recv(fd, false)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here; the socket stays usable.
                tracing::debug!(error = %e, "dns udp receive failed");
                continue;
            }
        };
        replies.clear();
        for i in 0..received {
            let Some((query, Some(from))) = queries.get(i) else { continue };
            let Some(reply) = handle(query, Transport::Udp, cache.zone(), &*cache) else {
                stats.dropped();
                continue;
            };
            stats.answered(&reply);
            replies.push((reply.bytes, *from));
        }
        send_all(&socket, &replies).await;
    }
}

/// Sends `replies` in as few calls as the socket takes; one that cannot be sent is skipped.
async fn send_all(socket: &UdpSocket, replies: &[(Vec<u8>, SockaddrStorage)]) {
    let datagrams: Vec<(&[u8], Option<SockaddrStorage>)> = replies.iter().map(|(b, a)| (&b[..], Some(*a))).collect();
    let mut sent = 0;
    while sent < datagrams.len() {
        if socket.writable().await.is_err() {
            return;
        }
        match socket.try_io(Interest::WRITABLE, || batch::send(socket.as_raw_fd(), &datagrams[sent..])) {
            Ok(n) => sent += n.max(1),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                let to = datagrams[sent].1.as_ref().and_then(batch::socket_addr);
                tracing::debug!(?to, error = %e, "dns udp send failed");
                sent += 1;
            }
        }
    }
}

/// What every TCP or TLS connection is served with.
#[derive(Clone)]
struct Streams {
    cache: Arc<Cache>,
    stats: Arc<DnsStats>,
    limit: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Streams {
    /// A task per connection (plain TCP, or TLS once its handshake completed: the listener
    /// runs the handshakes), at most `limit` at once.
    async fn serve(self, mut listener: Incoming) {
        loop {
            let Ok(permit) = Arc::clone(&self.limit).acquire_owned().await else { return };
            let (stream, peer) = tokio::select! {
                () = self.shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Some(r) => r,
                    None => return,
                },
            };
            let (cache, stats, stop) = (Arc::clone(&self.cache), Arc::clone(&self.stats), self.shutdown.clone());
            self.tasks.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    r = serve_stream(stream, &cache, &stats) => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "dns tcp connection ended");
                        }
                    }
                }
                drop(permit);
            });
        }
    }
}

/// Length-prefixed queries (RFC 1035 §4.2.2; the same inside TLS, RFC 7858 §3.3), answered in
/// order, until EOF, an idle timeout or an error.
async fn serve_stream(mut stream: ServerIo, cache: &Cache, stats: &DnsStats) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        buf.resize(usize::from(len), 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await.map_err(std::io::Error::other)??;
        let Some(reply) = handle(&buf, Transport::Tcp, cache.zone(), cache) else {
            stats.dropped();
            continue;
        };
        stats.answered(&reply);
        let len = u16::try_from(reply.bytes.len()).map_err(std::io::Error::other)?;
        let mut framed = Vec::with_capacity(reply.bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply.bytes);
        stream.write_all(&framed).await?;
        stream.flush().await?;
    }
}
