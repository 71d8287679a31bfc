//! The HTTP probe (spec §13.4): `GET http://ip:port` + path with the checker's extra headers;
//! 200 is healthy, 503 and 302 fail, any other status fails now. A plain HTTP/1.1 request over a
//! tokio socket: only the status line is read, so no HTTP client crate is needed.
//!
//! Timeouts are those of Nacos' health-check HTTP client (`ProcessorHttpClientFactory`):
//! 500 ms to connect ([`tcp::CONNECT_TIMEOUT`]) and [`RESPONSE_TIMEOUT`] for the request and
//! the status line. A slow answer is a "fail", not a "fail now", so one hiccup never flips an
//! instance: three in a row do, and the scheduler backs off meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::checker::HttpChecker;
use super::outcome::Failure;
use super::tcp;

/// Time for writing the request and reading the status line (Nacos' read timeout, 500 ms).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Longest status line read; a server sending more without a line end is not speaking HTTP.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Sent unless the checker's headers name them: Nacos' checker's user agent, which applications
/// may already filter from their access logs, and `Connection: close` because the socket is
/// dropped after the status line anyway.
const DEFAULT_HEADERS: [(&str, &str); 2] = [("User-Agent", "VIPServer"), ("Connection", "close")];

/// Requests the checker's path on `target`; `Ok` only for status 200.
pub(crate) async fn check(target: SocketAddr, checker: &HttpChecker) -> Result<(), Failure> {
    let request = request(target, checker)?;
    let mut stream = tcp::connect(target).await?;
    let status = timeout(RESPONSE_TIMEOUT, exchange(&mut stream, &request))
        .await
        .map_err(|_| Failure::Timeout("HTTP status line"))??;
    if status == 200 { Ok(()) } else { Err(Failure::Status(status)) }
}

/// The request bytes. Nacos resolves the path as a URL relative to `http://ip:port/`, so an
/// empty path is `/` and a missing leading slash is added.
fn request(target: SocketAddr, checker: &HttpChecker) -> Result<Vec<u8>, Failure> {
    let path = checker.path.trim();
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Failure::Invalid(format!("path {path:?} contains whitespace or control characters")));
    }
    let slash = if path.starts_with('/') { "" } else { "/" };
    let custom = checker.header_pairs();
    let mut head = format!("GET {slash}{path} HTTP/1.1\r\n");
    let host = target.to_string();
    for (name, value) in [("Host", host.as_str())].into_iter().chain(DEFAULT_HEADERS) {
        if !custom.iter().any(|(custom, _)| custom.eq_ignore_ascii_case(name)) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in &custom {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    Ok(head.into_bytes())
}

/// Sends the request and returns the response's status code.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<u16, Failure> {
    stream.write_all(request).await.map_err(Failure::Io)?;
    let mut line = Vec::with_capacity(256);
    let mut buffer = [0; 1024];
    loop {
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            return parse_status(&line[..end]);
        }
        if line.len() > MAX_STATUS_LINE {
            return Err(Failure::Protocol("status line too long".into()));
        }
        match stream.read(&mut buffer).await.map_err(Failure::Io)? {
            0 => return Err(Failure::Protocol("connection closed before the status line".into())),
            read => line.extend_from_slice(&buffer[..read]),
        }
    }
}

/// `HTTP/1.x NNN reason` → `NNN`.
fn parse_status(line: &[u8]) -> Result<u16, Failure> {
    let bad = || Failure::Protocol(format!("not an HTTP status line: {:?}", String::from_utf8_lossy(line)));
    let line = std::str::from_utf8(line).map_err(|_| bad())?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else { return Err(bad()) };
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(bad());
    }
    code.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests;
