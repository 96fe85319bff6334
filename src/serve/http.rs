//! The little HTTP/1.1 that `serve` speaks: one request per connection, headers capped
//! and read against a deadline, a body only ever streamed (never held whole), and a
//! response that closes the connection. Webhooks and scrapes need no more.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The most a request line and its headers may take.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request line and headers, and then its body.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A request line and headers; the body is still on the connection.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    /// The request target, as sent (`/webhook/group/repo.git`).
    pub target: String,
    /// Header names in lower case, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Bytes of the body read with the head.
    pub(super) early_body: Vec<u8>,
}

impl Head {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What ended a request before it could be answered normally: the status to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    Timeout,
    /// The connection closed or failed: nobody to answer.
    Gone,
}

/// Reads the request line and headers within [`DEADLINE`] and [`MAX_HEAD`].
pub fn read_head(stream: &mut TcpStream) -> Result<Head, Refusal> {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD {
            return Err(Refusal::BadRequest);
        }
        let n = read_before(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(Refusal::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| Refusal::BadRequest)?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) = (
        request.next(),
        request.next(),
        request.next(),
        request.next(),
    ) else {
        return Err(Refusal::BadRequest);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refusal::BadRequest);
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Refusal::BadRequest)?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        early_body: buf[end + 4..].to_vec(),
    })
}

/// The body's length as announced; `Err` when it is not a plain Content-Length (a
/// chunked body, which webhook senders do not use, or a malformed or repeated header).
pub fn content_length(head: &Head) -> Result<u64, Refusal> {
    if head.header("transfer-encoding").is_some() {
        return Err(Refusal::BadRequest);
    }
    let mut lengths = head.headers.iter().filter(|(n, _)| n == "content-length");
    match (lengths.next(), lengths.next()) {
        (None, _) => Ok(0),
        (Some((_, v)), None) => v.parse().map_err(|_| Refusal::BadRequest),
        (Some(_), Some(_)) => Err(Refusal::BadRequest),
    }
}

/// Tells a client that waits before sending its body (`Expect: 100-continue`, as curl
/// does for larger bodies) to send it.
pub fn accept_body(stream: &mut TcpStream, head: &Head) {
    if head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}

/// Streams exactly `length` bytes of the body into `sink`, within [`DEADLINE`]; nothing
/// is kept.
pub fn stream_body(
    stream: &mut TcpStream,
    head: &Head,
    length: u64,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(), Refusal> {
    let deadline = Instant::now() + DEADLINE;
    let early = &head.early_body[..head
        .early_body
        .len()
        .min(usize::try_from(length).unwrap_or(usize::MAX))];
    sink(early);
    let mut left = length - early.len() as u64;
    let mut chunk = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = read_before(stream, &mut chunk[..want], deadline)?;
        if n == 0 {
            return Err(Refusal::Gone);
        }
        sink(&chunk[..n]);
        left -= n as u64;
    }
    Ok(())
}

fn read_before(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, Refusal> {
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(Refusal::Timeout)?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| Refusal::Gone)?;
        match stream.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Refusal::Timeout)
            }
            Err(_) => return Err(Refusal::Gone),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends a response and closes the connection. What the client sent and we did not
/// read is drained briefly first, so that closing does not reset the connection before
/// the client reads the answer (a 413 sent while the client still sends its body).
pub fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = stream.set_write_timeout(Some(DEADLINE));
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 16 * 1024];
    let mut drained = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while drained < 1024 * 1024 && Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// Sends a plain text answer.
pub fn respond_text(stream: &mut TcpStream, status: u16, text: &str) {
    respond(stream, status, "text/plain; charset=utf-8", text.as_bytes());
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}
