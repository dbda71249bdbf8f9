//! Raw HTTP/2 for the attack tests (RFC 9113 sections 4 and 6; HPACK RFC 7541 sections 5, 6.2.2
//! and Appendix B), over any byte stream (h2c with prior knowledge, or TLS with ALPN h2).
//!
//! The encoder writes header fields as HPACK literals without indexing, new names, no Huffman,
//! so any value (CR, LF, NUL, upper case, a pseudo-header out of place) goes on the wire exactly
//! as given. The reader frames what the peer sends and decodes the `:status` of a response's
//! HEADERS (static table index, literal, or Huffman-coded digits) and the error codes of
//! RST_STREAM and GOAWAY.
#![allow(dead_code)] // each test binary uses a different part of this module

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

// Flags
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

// Error codes
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

// SETTINGS identifiers
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// The default SETTINGS_MAX_FRAME_SIZE, which the gateway keeps.
pub const MAX_FRAME: usize = 16_384;
/// A client's SETTINGS: no dynamic table for the gateway's encoder (so `:status` can be decoded
/// without one) and no push.
pub const BASE: &[(u16, u32)] = &[(SETTINGS_HEADER_TABLE_SIZE, 0), (SETTINGS_ENABLE_PUSH, 0)];

// ------------------------------------------------------------------------------------------------
// Encoder

pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    assert!(len < 1 << 24);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The connection preface followed by a SETTINGS frame with `pairs`.
pub fn client_preface(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    settings(&mut out, pairs);
    out
}

pub fn settings(out: &mut Vec<u8>, pairs: &[(u16, u32)]) {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(out, SETTINGS, 0, 0, &p);
}

pub fn ping(out: &mut Vec<u8>, opaque: u64) {
    frame(out, PING, 0, 0, &opaque.to_be_bytes());
}

pub fn rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    frame(out, RST_STREAM, 0, stream, &code.to_be_bytes());
}

pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    frame(out, WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

pub fn priority(out: &mut Vec<u8>, stream: u32, depends_on: u32, weight: u8) {
    let mut p = depends_on.to_be_bytes().to_vec();
    p.push(weight);
    frame(out, PRIORITY, 0, stream, &p);
}

pub fn data(out: &mut Vec<u8>, stream: u32, payload: &[u8], end_stream: bool) {
    frame(
        out,
        DATA,
        u8::from(end_stream) * END_STREAM,
        stream,
        payload,
    );
}

/// HEADERS carrying `block`, split into CONTINUATION frames at MAX_FRAME; the last one has
/// END_HEADERS.
pub fn headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool) {
    let es = u8::from(end_stream) * END_STREAM;
    let chunks: Vec<&[u8]> = if block.is_empty() {
        vec![&[][..]]
    } else {
        block.chunks(MAX_FRAME).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let eh = if last { END_HEADERS } else { 0 };
        if i == 0 {
            frame(out, HEADERS, es | eh, stream, c);
        } else {
            frame(out, CONTINUATION, eh, stream, c);
        }
    }
}

/// An HPACK integer with an N-bit prefix (RFC 7541 5.1); `first` holds the pattern bits.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2).
pub fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0x00, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

/// A header block of `fields`, in order, each an `hpack_literal`.
pub fn literal_block<N: AsRef<[u8]>, V: AsRef<[u8]>>(fields: &[(N, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        hpack_literal(&mut out, n.as_ref(), v.as_ref());
    }
    out
}

// ------------------------------------------------------------------------------------------------
// Reader

/// One frame as received.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn end_stream(&self) -> bool {
        matches!(self.kind, DATA | HEADERS) && self.flags & END_STREAM != 0
    }

    /// The error code of a RST_STREAM or GOAWAY (None for other frames or a short payload).
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        be_u32(self.payload.get(at..at + 4)?)
    }

    /// The last stream id of a GOAWAY.
    pub fn last_stream(&self) -> Option<u32> {
        match self.kind {
            GOAWAY if self.payload.len() >= 8 => Some(be_u32(&self.payload[..4])? & 0x7fff_ffff),
            _ => None,
        }
    }

    /// The payload of a DATA frame without its padding.
    pub fn data(&self) -> &[u8] {
        let p = &self.payload[..];
        if self.flags & PADDED == 0 {
            return p;
        }
        let pad = p.first().copied().unwrap_or(0) as usize;
        p.get(1..p.len().saturating_sub(pad)).unwrap_or(&[])
    }

    /// The header block fragment of a HEADERS frame, without padding and priority fields.
    pub fn header_block(&self) -> Option<&[u8]> {
        let mut p = &self.payload[..];
        if self.flags & PADDED != 0 {
            let pad = usize::from(*p.first()?);
            p = p.get(1..p.len().checked_sub(pad)?)?;
        }
        if self.flags & PRIORITY_FLAG != 0 {
            p = p.get(5..)?;
        }
        Some(p)
    }

    /// The `:status` of a response HEADERS frame.
    pub fn status(&self) -> Option<u16> {
        response_status(self.header_block()?)
    }
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Reads one frame; None at EOF or on a read error. Not cancel safe: a frame cut short by a
/// timeout is lost.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<Frame> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await.ok()?;
    let len = ((head[0] as usize) << 16) | ((head[1] as usize) << 8) | head[2] as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream,
        payload,
    })
}

/// Reads one frame like `read_frame`, and ACKs it first when it is the peer's SETTINGS or PING
/// (a peer whose SETTINGS go unanswered may end the connection).
pub async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Option<Frame> {
    let f = read_frame(s).await?;
    if matches!(f.kind, SETTINGS | PING) && f.flags & ACK == 0 {
        let mut ack = Vec::new();
        let echo = if f.kind == PING { &f.payload[..] } else { &[] };
        frame(&mut ack, f.kind, ACK, 0, echo);
        let _ = s.write_all(&ack).await;
    }
    Some(f)
}

fn hpack_int_decode(b: &[u8], pos: &mut usize, prefix_bits: u8) -> Option<usize> {
    let max = (1usize << prefix_bits) - 1;
    let mut v = (*b.get(*pos)? as usize) & max;
    *pos += 1;
    if v < max {
        return Some(v);
    }
    let mut m = 0;
    loop {
        let x = *b.get(*pos)?;
        *pos += 1;
        v += ((x & 0x7f) as usize) << m;
        m += 7;
        if x & 0x80 == 0 {
            return Some(v);
        }
        if m > 28 {
            return None;
        }
    }
}

/// Huffman-decodes a string of digits (RFC 7541 Appendix B: '0'-'2' are 5-bit codes 0-2,
/// '3'-'9' 6-bit codes 25-31); None for anything else.
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let total = bytes.len() * 8;
    let bit = |i: usize| u32::from((bytes[i / 8] >> (7 - i % 8)) & 1);
    let peek = |pos: usize, n: usize| -> Option<u32> {
        (pos + n <= total).then(|| (0..n).fold(0, |a, k| (a << 1) | bit(pos + k)))
    };
    let mut pos = 0;
    let mut out = String::new();
    loop {
        if total - pos < 8 && (pos..total).all(|i| bit(i) == 1) {
            return Some(out); // EOS padding
        }
        let v5 = peek(pos, 5)?;
        if v5 <= 2 {
            out.push(char::from(b'0' + v5 as u8));
            pos += 5;
            continue;
        }
        let v6 = peek(pos, 6)?;
        if (25..=31).contains(&v6) {
            out.push(char::from(b'3' + (v6 - 25) as u8));
            pos += 6;
            continue;
        }
        return None;
    }
}

/// The `:status` of a response header block, which comes first (RFC 9113 8.3): an indexed
/// static-table entry, or a literal with a static-table name, plain or Huffman-coded. Only the
/// static table is known, so a client that wants every status decoded sets
/// SETTINGS_HEADER_TABLE_SIZE to 0 (`BASE`).
pub fn response_status(block: &[u8]) -> Option<u16> {
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let mut pos = 0;
    while *block.get(pos)? & 0xe0 == 0x20 {
        hpack_int_decode(block, &mut pos, 5)?; // dynamic table size update
    }
    let b = block[pos];
    let name = if b & 0x80 != 0 {
        let i = hpack_int_decode(block, &mut pos, 7)?;
        return (8..=14).contains(&i).then(|| STATIC[i - 8]);
    } else if b & 0xc0 == 0x40 {
        hpack_int_decode(block, &mut pos, 6)?
    } else {
        hpack_int_decode(block, &mut pos, 4)?
    };
    if !(8..=14).contains(&name) {
        return None;
    }
    let huffman = *block.get(pos)? & 0x80 != 0;
    let len = hpack_int_decode(block, &mut pos, 7)?;
    let raw = block.get(pos..pos + len)?;
    let text = if huffman {
        huffman_digits(raw)?
    } else {
        String::from_utf8(raw.to_vec()).ok()?
    };
    text.parse().ok()
}
