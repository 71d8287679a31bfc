//! Names outside the zone go to the pod's original resolver: the first `nameserver` of a
//! resolv.conf (skipping the sidecar itself), relayed as they came over the transport they came
//! on, with a deadline; no answer in time is SERVFAIL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::Name;
use registry_proto::dns::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long the upstream resolver has to answer (below a stub resolver's own 5 s, so the
/// client gets SERVFAIL rather than a timeout).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// The port resolv.conf nameservers listen on.
const DNS_PORT: u16 = 53;
/// Largest UDP reply relayed.
const UDP_BUFFER: usize = 65_535;

/// Why a query could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// resolv.conf named no usable nameserver.
    #[error("no upstream resolver configured")]
    NoUpstream,
    /// No answer within [`FORWARD_TIMEOUT`].
    #[error("upstream resolver {0} did not answer in time")]
    Timeout(SocketAddr),
    /// Sending or receiving failed.
    #[error("upstream resolver {0}: {1}")]
    Io(SocketAddr, std::io::Error),
}

/// The relay to the original resolver.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstream: Option<SocketAddr>,
}

impl Forwarder {
    /// Reads the first `nameserver` of `resolv_conf` that is not `own` (the sidecar's address,
    /// when a pod's resolv.conf lists it first). Without one every forwarded name is SERVFAIL.
    pub fn from_resolv_conf(resolv_conf: &Path, own: SocketAddr) -> Self {
        let upstream = match std::fs::read_to_string(resolv_conf) {
            Ok(text) => nameservers(&text).into_iter().find(|a| *a != own),
            Err(e) => {
                tracing::warn!(path = %resolv_conf.display(), error = %e, "dns: no resolv.conf; other names get SERVFAIL");
                None
            }
        };
        tracing::info!(upstream = ?upstream, "dns: names outside the zone go to the pod's resolver");
        Self { upstream }
    }

    /// Whether `request` asks for a name outside `origin` (forwarded rather than refused).
    pub fn outside(&self, request: &[u8], origin: &Name) -> bool {
        let Ok(message) = Message::from_vec(request) else { return false };
        message.queries.first().is_some_and(|q| !origin.zone_of(&q.name().to_lowercase()))
    }

    /// The upstream resolver's reply to `request`, as it came.
    pub async fn relay(&self, request: &[u8], transport: Transport) -> Result<Vec<u8>, ForwardError> {
        let upstream = self.upstream.ok_or(ForwardError::NoUpstream)?;
        let io = |e| ForwardError::Io(upstream, e);
        let exchange = async {
            match transport {
                Transport::Udp => relay_udp(upstream, request).await,
                Transport::Tcp => relay_tcp(upstream, request).await,
            }
        };
        tokio::time::timeout(FORWARD_TIMEOUT, exchange).await.map_err(|_| ForwardError::Timeout(upstream))?.map_err(io)
    }
}

async fn relay_udp(upstream: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let any = if upstream.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    socket.connect(upstream).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A stray datagram with another id is not the answer (a fresh port makes it rare).
        if n >= 2 && request.len() >= 2 && buf[..2] == request[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn relay_tcp(upstream: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(request.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

/// The `nameserver` addresses of a resolv.conf, in order (port 53; scope ids dropped).
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            let addr = addr.split_once('%').map_or(addr, |(ip, _)| ip);
            addr.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, DNS_PORT))
        })
        .collect()
}

/// A SERVFAIL reply to `request` (its id, question and RD echoed); `None` for what does not
/// decode as a query.
pub fn servfail(request: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(request).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::error_msg(query.metadata.id, query.metadata.op_code, ResponseCode::ServFail);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries);
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::RecordType;

    use super::*;

    #[test]
    fn the_nameservers_of_a_resolv_conf_in_order() {
        let text = "# generated\nsearch default.svc.cluster.local\nnameserver 10.96.0.10\n\
                    nameserver fe80::1%eth0\nnameserver not-an-ip\noptions ndots:5\n";
        let want: Vec<SocketAddr> = vec!["10.96.0.10:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()];
        assert_eq!(nameservers(text), want);
    }

    #[test]
    fn servfail_echoes_the_question_and_id() {
        let mut q = Message::query();
        q.metadata.id = 4242;
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii("example.org.").unwrap(), RecordType::A));
        let reply = Message::from_vec(&servfail(&q.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(
            (reply.metadata.id, reply.metadata.response_code, reply.metadata.recursion_desired),
            (4242, ResponseCode::ServFail, true)
        );
        assert_eq!(reply.queries, q.queries);
        assert_eq!(servfail(b"short"), None);
    }
}
