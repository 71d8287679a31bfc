//! The smallest HTTP/1.1 response parser the load loop needs: where a response ends, its status,
//! and whether the server closes the connection after it. Headers other than the framing ones
//! are skipped and bodies are never copied, so parsing costs a scan of the received bytes.
//!
//! The parser is re-run over the whole unconsumed buffer after every read: answers here are a
//! few hundred bytes and usually arrive in one read, so keeping state between reads would cost
//! more code than it saves.

/// A complete response at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    /// Status code of the final (non-1xx) response.
    pub(crate) status: u16,
    /// Bytes the response takes, informational responses before it included; anything after
    /// belongs to the next response.
    pub(crate) len: usize,
    /// The server closes the connection after this response.
    pub(crate) close: bool,
}

/// Why the bytes cannot be an HTTP/1.x response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The status line is not `HTTP/1.x NNN ...`.
    StatusLine,
    /// A header line has no colon.
    Header,
    /// `Content-Length` is not a number, or two of them disagree.
    ContentLength,
    /// A chunk-size line or the CRLF after a chunk is malformed.
    Chunk,
    /// The head is longer than [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// The connection ended before the response did.
    Truncated,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Self::StatusLine => "malformed status line",
            Self::Header => "malformed header line",
            Self::ContentLength => "malformed Content-Length",
            Self::Chunk => "malformed chunked body",
            Self::HeadTooLarge => "response head too large",
            Self::Truncated => "connection closed mid-response",
        };
        f.write_str(what)
    }
}

impl std::error::Error for ParseError {}

/// Longest response head accepted; a server sending more is misbehaving.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// How the body of a response is delimited (RFC 9112 §6.3).
enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body runs until the server closes the connection.
    UntilClose,
}

/// Parses the response at the start of `buf`. `Ok(None)` means more bytes are needed; `eof`
/// says no more will come (the server closed), which completes a body delimited by the close
/// and turns an incomplete response into [`ParseError::Truncated`].
pub(crate) fn parse(buf: &[u8], eof: bool) -> Result<Option<Response>, ParseError> {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let Some(head_len) = find(rest, b"\r\n\r\n").map(|p| p + 4) else {
            if rest.len() > MAX_HEAD {
                return Err(ParseError::HeadTooLarge);
            }
            return if eof { Err(ParseError::Truncated) } else { Ok(None) };
        };
        let head = Head::parse(&rest[..head_len])?;
        // 1xx answers (e.g. 100 Continue) precede the real one and have no body.
        if (100..200).contains(&head.status) {
            start += head_len;
            continue;
        }
        let body = &rest[head_len..];
        let body_len = match head.framing {
            Framing::Length(n) if body.len() >= n => Some(n),
            Framing::Length(_) => None,
            Framing::Chunked => chunked_len(body)?,
            Framing::UntilClose => eof.then_some(body.len()),
        };
        return match body_len {
            Some(n) => Ok(Some(Response {
                status: head.status,
                len: start + head_len + n,
                close: head.close || matches!(head.framing, Framing::UntilClose),
            })),
            None if eof => Err(ParseError::Truncated),
            None => Ok(None),
        };
    }
}

/// The parts of a response head the load loop needs.
struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

impl Head {
    /// Parses a head that ends with its CRLFCRLF.
    fn parse(head: &[u8]) -> Result<Self, ParseError> {
        let mut lines = head.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = lines.next().ok_or(ParseError::StatusLine)?;
        let (http10, status) = status_line_parts(status_line).ok_or(ParseError::StatusLine)?;
        let (mut length, mut chunked, mut close, mut keep_alive) = (None, false, false, false);
        for line in lines.filter(|l| !l.is_empty()) {
            let colon = line.iter().position(|b| *b == b':').ok_or(ParseError::Header)?;
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or(ParseError::ContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError::ContentLength);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // Chunked must be the last coding when present (RFC 9112 §6.1).
                chunked = value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else if chunked {
            // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        // HTTP/1.0 closes unless asked to keep the connection.
        Ok(Self { status, framing, close: close || (http10 && !keep_alive) })
    }
}

/// `HTTP/1.x NNN reason` → (is HTTP/1.0, status).
fn status_line_parts(line: &[u8]) -> Option<(bool, u16)> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let code = rest.strip_prefix(b" ")?.get(..3)?;
    if !matches!(minor, b'0' | b'1') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.get(4).is_some_and(|b| *b != b' ') {
        return None;
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    Some((minor == b'0', status))
}

/// Length of a complete chunked body (chunks, last chunk, trailers, final CRLF) at the start
/// of `body`, or `None` if it is not complete yet.
fn chunked_len(body: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut pos = 0;
    loop {
        let Some(eol) = find(&body[pos..], b"\r\n") else { return Ok(None) };
        let line = &body[pos..pos + eol];
        // Chunk extensions after ';' are allowed and ignored.
        let size_hex = line.split(|b| *b == b';').next().unwrap_or(line).trim_ascii();
        let size = std::str::from_utf8(size_hex)
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or(ParseError::Chunk)?;
        pos += eol + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(eol) = find(&body[pos..], b"\r\n") else { return Ok(None) };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        let end = pos.checked_add(size).ok_or(ParseError::Chunk)?;
        if body.len() < end + 2 {
            return Ok(None);
        }
        if &body[end..end + 2] != b"\r\n" {
            return Err(ParseError::Chunk);
        }
        pos = end + 2;
    }
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENGTH: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";

    fn complete(buf: &[u8]) -> Response {
        parse(buf, false).unwrap().unwrap()
    }

    #[test]
    fn content_length_delimits_the_body() {
        assert_eq!(complete(LENGTH), Response { status: 200, len: LENGTH.len(), close: false });
    }

    #[test]
    fn chunked_body_ends_after_the_last_chunk_and_trailers() {
        assert_eq!(complete(CHUNKED), Response { status: 200, len: CHUNKED.len(), close: false });
    }

    #[test]
    fn a_response_split_across_reads_completes_only_with_its_last_byte() {
        for whole in [LENGTH, CHUNKED] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut], false), Ok(None), "cut at {cut}");
            }
            assert_eq!(complete(whole).len, whole.len());
        }
    }

    #[test]
    fn pipelined_bytes_after_a_response_are_left_for_the_next() {
        let mut buf = CHUNKED.to_vec();
        buf.extend_from_slice(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        buf.extend_from_slice(&LENGTH[..10]);
        let first = complete(&buf);
        assert_eq!(first.len, CHUNKED.len());
        let second = complete(&buf[first.len..]);
        assert_eq!((second.status, second.close), (404, true));
        let rest = &buf[first.len + second.len..];
        assert_eq!(rest, &LENGTH[..10]);
        assert_eq!(parse(rest, false), Ok(None));
    }

    #[test]
    fn connection_close_and_http10_mean_the_server_closes() {
        let r = complete(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n");
        assert!(r.close);
        assert!(complete(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
        assert!(!complete(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").close);
    }

    #[test]
    fn informational_responses_are_skipped_and_204_has_no_body() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(complete(buf), Response { status: 204, len: buf.len(), close: false });
    }

    #[test]
    fn a_body_without_length_ends_when_the_server_closes() {
        let buf = b"HTTP/1.1 500 Oops\r\n\r\nsome text";
        assert_eq!(parse(buf, false), Ok(None));
        assert_eq!(parse(buf, true), Ok(Some(Response { status: 500, len: buf.len(), close: true })));
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: [(&[u8], ParseError); 7] = [
            (b"HTTP/2 200 OK\r\n\r\n", ParseError::StatusLine),
            (b"HTTP/1.1 20x OK\r\n\r\n", ParseError::StatusLine),
            (b"garbage\r\n\r\n", ParseError::StatusLine),
            (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", ParseError::Header),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ParseError::ContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", ParseError::ContentLength),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ParseError::Chunk),
        ];
        for (buf, want) in cases {
            assert_eq!(parse(buf, false), Err(want), "{}", String::from_utf8_lossy(buf));
        }
        let bad_chunk_end = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n";
        assert_eq!(parse(bad_chunk_end, false), Err(ParseError::Chunk));
        assert_eq!(parse(&LENGTH[..LENGTH.len() - 1], true), Err(ParseError::Truncated));
        assert_eq!(parse(&vec![b'a'; MAX_HEAD + 1], false), Err(ParseError::HeadTooLarge));
    }
}
