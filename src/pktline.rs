//! Git's pkt-line framing, as the `proc-receive` hook protocol uses it: a four-digit hex
//! length (counting itself) before each line, `0000` (flush) ending a section.

use std::io::{self, Read, Write};

/// The longest packet git sends or accepts, its four length digits included.
const MAX_PACKET: usize = 65520;

/// One packet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// A line, without its trailing newline.
    Data(Vec<u8>),
    /// `0000`: the end of a section.
    Flush,
}

/// Why the other side's packets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("the connection ended in the middle of the protocol")]
    Ended,
    #[error("a packet with a bad length header {0:?}")]
    BadLength(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads the next packet; a clean end of input before a packet begins is
/// [`PacketError::Ended`], as it is anywhere in this protocol.
pub fn read(input: &mut (impl Read + ?Sized)) -> Result<Packet, PacketError> {
    let mut header = [0u8; 4];
    read_exact(input, &mut header)?;
    let text = String::from_utf8_lossy(&header).into_owned();
    let len = usize::from_str_radix(&text, 16).map_err(|_| PacketError::BadLength(text.clone()))?;
    match len {
        0 => Ok(Packet::Flush),
        // 0001 (delimiter) and 0002 (response end) are protocol v2 only.
        1..=4 => Err(PacketError::BadLength(text)),
        _ if len > MAX_PACKET => Err(PacketError::BadLength(text)),
        _ => {
            let mut data = vec![0u8; len - 4];
            read_exact(input, &mut data)?;
            if data.last() == Some(&b'\n') {
                data.pop();
            }
            Ok(Packet::Data(data))
        }
    }
}

/// Reads the lines of one section, up to its flush.
pub fn read_section(input: &mut (impl Read + ?Sized)) -> Result<Vec<Vec<u8>>, PacketError> {
    let mut lines = Vec::new();
    loop {
        match read(input)? {
            Packet::Data(line) => lines.push(line),
            Packet::Flush => return Ok(lines),
        }
    }
}

fn read_exact(input: &mut (impl Read + ?Sized), buf: &mut [u8]) -> Result<(), PacketError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => PacketError::Ended,
        _ => PacketError::Io(e),
    })
}

/// Writes `line` as one packet, with the newline git's own writers add. A line too long
/// for one packet is cut to fit (only free text, a refusal's reason, can be that long).
pub fn write(output: &mut (impl Write + ?Sized), line: &[u8]) -> io::Result<()> {
    let line = &line[..line.len().min(MAX_PACKET - 5)];
    write!(output, "{:04x}", line.len() + 5)?;
    output.write_all(line)?;
    output.write_all(b"\n")
}

/// Writes a flush packet, ending a section.
pub fn flush(output: &mut (impl Write + ?Sized)) -> io::Result<()> {
    output.write_all(b"0000")?;
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_flushes_round_trip() {
        let mut out = Vec::new();
        write(&mut out, b"version=1\0push-options").unwrap();
        flush(&mut out).unwrap();
        assert_eq!(out, b"001bversion=1\0push-options\n0000");
        let mut input = &out[..];
        assert_eq!(
            read_section(&mut input).unwrap(),
            vec![b"version=1\0push-options".to_vec()]
        );
        assert!(matches!(read(&mut input), Err(PacketError::Ended)));
    }

    #[test]
    fn bad_headers_and_cut_packets_are_errors_not_panics() {
        for bad in [&b"zzzz"[..], b"0003", b"fff1", b"0009abc", b"00"] {
            let mut input = bad;
            assert!(read(&mut input).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_overlong_line_is_cut_to_one_packet() {
        let mut out = Vec::new();
        write(&mut out, &vec![b'x'; MAX_PACKET * 2]).unwrap();
        assert_eq!(out.len(), MAX_PACKET);
        assert_eq!(&out[..4], b"fff0");
    }
}
