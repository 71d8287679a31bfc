//! Many datagrams per system call (`recvmmsg`/`sendmmsg`, Linux): a DNS server under load
//! wakes up with several queries queued, and one call each way per wakeup instead of one per
//! query is most of the difference to a C server (NSD batches the same way). Also used by the
//! load tool, whose own cost must stay below the server's. Plain blocking-or-not calls on a raw
//! descriptor: the caller waits for readiness (tokio's `readable`/`writable`, or a blocking
//! socket with a receive timeout).

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// A sender or destination as the batch calls keep it (no conversion per datagram).
pub use nix::sys::socket::SockaddrStorage;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, recvmmsg, sendmmsg};

/// Datagrams per call (NSD uses 100; more only helps far beyond one core's rate).
pub const BATCH: usize = 32;
/// Largest datagram read: longer ones are cut (a query that long fails to decode anyway).
pub const DATAGRAM: usize = 4096;

/// Buffers for receiving up to [`BATCH`] datagrams at once, kept between calls. (The kernel
/// headers are built per call: they hold raw pointers, so keeping them would make a serving
/// task not `Send`; two small allocations per batch.)
pub struct RecvBatch {
    bufs: Box<[[u8; DATAGRAM]; BATCH]>,
    lens: [usize; BATCH],
    from: [Option<SockaddrStorage>; BATCH],
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self { bufs: Box::new([[0; DATAGRAM]; BATCH]), lens: [0; BATCH], from: [None; BATCH], count: 0 }
    }
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").field("count", &self.count).finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// Receives what is queued on `fd`, up to [`BATCH`] datagrams. `wait_for_one`: block (as the
    /// socket allows) for the first one, then take only what is already there; otherwise never
    /// block (`WouldBlock` when nothing is queued). Returns how many arrived.
    pub fn recv(&mut self, fd: RawFd, wait_for_one: bool) -> std::io::Result<usize> {
        self.count = 0;
        let flags = if wait_for_one { MsgFlags::MSG_WAITFORONE } else { MsgFlags::MSG_DONTWAIT };
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut iovs = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let received = recvmmsg(fd, &mut headers, iovs.iter_mut(), flags, None)?;
        for (i, msg) in received.enumerate() {
            self.lens[i] = msg.bytes.min(DATAGRAM);
            self.from[i] = msg.address;
            self.count = i + 1;
        }
        Ok(self.count)
    }

    /// Datagram `i` of the last [`recv`](Self::recv) and its sender (`None` past the count).
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<&SockaddrStorage>)> {
        if i >= self.count {
            return None;
        }
        Some((&self.bufs[i][..self.lens[i]], self.from[i].as_ref()))
    }
}

/// Sends the first up to [`BATCH`] of `datagrams` (each to its address, or to the connected
/// peer for `None`) without blocking. Returns how many left; an error means the first could
/// not be sent (`WouldBlock`: the socket buffer is full).
pub fn send(fd: RawFd, datagrams: &[(&[u8], Option<SockaddrStorage>)]) -> std::io::Result<usize> {
    let datagrams = &datagrams[..datagrams.len().min(BATCH)];
    if datagrams.is_empty() {
        return Ok(0);
    }
    let slices: Vec<[IoSlice<'_>; 1]> = datagrams.iter().map(|(d, _)| [IoSlice::new(d)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = datagrams.iter().map(|(_, a)| *a).collect();
    let no_control: [ControlMessage<'_>; 0] = [];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(datagrams.len(), None);
    let sent = sendmmsg(fd, &mut headers, &slices, &addrs, no_control, MsgFlags::MSG_DONTWAIT)?;
    Ok(sent.count())
}

/// A socket address as the batch calls take it.
pub fn sockaddr(addr: SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(addr)
}

/// A received sender as a socket address (`None` for a family other than IPv4/IPv6).
pub fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn datagrams_go_and_come_in_batches_with_their_addresses() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = Some(sockaddr(b.local_addr().unwrap()));
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let datagrams: Vec<(&[u8], Option<SockaddrStorage>)> = payloads.iter().map(|p| (&p[..], to)).collect();
        let mut sent = 0;
        while sent < datagrams.len() {
            sent += send(a.as_raw_fd(), &datagrams[sent..]).unwrap();
        }
        let mut recv = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < payloads.len() {
            let n = recv.recv(b.as_raw_fd(), true).unwrap();
            assert!(n <= BATCH);
            for i in 0..n {
                let (data, from) = recv.get(i).unwrap();
                assert_eq!(from.and_then(socket_addr), Some(a.local_addr().unwrap()));
                got.push(data.to_vec());
            }
            assert!(recv.get(n).is_none());
        }
        assert_eq!(got, payloads);
        b.set_nonblocking(true).unwrap();
        let empty = recv.recv(b.as_raw_fd(), false).unwrap_err();
        assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
    }
}
