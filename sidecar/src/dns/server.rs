//! UDP and TCP on one port of 127.0.0.1: a task per query (a forwarded one waits on the
//! upstream resolver), bounded; a task per TCP connection answering its queries in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use registry_proto::dns::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Resolver;

/// Queries in flight at once (UDP and TCP connections each take one).
const IN_FLIGHT: usize = 256;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Largest UDP query read.
const UDP_BUFFER: usize = 4096;

/// Binds UDP and TCP on `addr` (port 0: one ephemeral port free for both).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if addr.port() == 0 && tries < 16 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Serves both until `stop`.
pub fn spawn(
    (udp, tcp): (UdpSocket, TcpListener),
    resolver: Arc<Resolver>,
    tasks: &mut JoinSet<()>,
    stop: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    tasks.spawn(serve_udp(Arc::new(udp), Arc::clone(&resolver), Arc::clone(&limit), stop.clone()));
    tasks.spawn(serve_tcp(tcp, resolver, limit, stop));
}

async fn serve_udp(socket: Arc<UdpSocket>, resolver: Arc<Resolver>, limit: Arc<Semaphore>, stop: CancellationToken) {
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let (n, from) = tokio::select! {
            () = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "dns udp receive failed");
                    continue;
                }
            },
        };
        // Full: the query is dropped, as a busy server's would be; the client retries.
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else { continue };
        let (request, socket, resolver) = (buf[..n].to_vec(), Arc::clone(&socket), Arc::clone(&resolver));
        tokio::spawn(async move {
            if let Some(reply) = resolver.answer(&request, Transport::Udp).await
                && let Err(e) = socket.send_to(&reply, from).await
            {
                tracing::debug!(%from, error = %e, "dns udp send failed");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>, limit: Arc<Semaphore>, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "dns tcp accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else { continue };
        let (resolver, stop) = (Arc::clone(&resolver), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                r = serve_tcp_connection(stream, &resolver) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "dns tcp connection ended");
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Length-prefixed queries, answered in order, until EOF, an idle timeout or an error.
async fn serve_tcp_connection(mut stream: TcpStream, resolver: &Arc<Resolver>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        let mut request = vec![0u8; usize::from(len)];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut request)).await.map_err(std::io::Error::other)??;
        let Some(reply) = resolver.answer(&request, Transport::Tcp).await else { continue };
        let len = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
