//! RocketMQ's stored-message byte layout, message ids, tag hash codes and property strings.
//!
//! The CommitLog keeps every record in exactly the layout Java RocketMQ writes
//! (`research/protocol.md` §2.4), so that pull responses, HA transfer and VIEW_MESSAGE can
//! hand out stored bytes without re-encoding and Java clients can decode them. All integers
//! are big-endian. The layout, with IPv4 hosts:
//!
//! ```text
//! 0 TOTALSIZE i32 | 4 MAGICCODE i32 | 8 BODYCRC i32 | 12 QUEUEID i32 | 16 FLAG i32
//! 20 QUEUEOFFSET i64 | 28 PHYSICALOFFSET i64 | 36 SYSFLAG i32 | 40 BORNTIMESTAMP i64
//! 48 BORNHOST ip+port(i32) (20 bytes if SYSFLAG & 0x10) | STORETIMESTAMP i64
//! STOREHOST (20 bytes if SYSFLAG & 0x20) | RECONSUMETIMES i32 | PREPARED TX OFFSET i64
//! BODYLEN i32 + BODY | TOPICLEN (u8, or i16 with the V2 magic) + TOPIC | PROPLEN i16 + PROPS
//! ```
//!
//! This module is pure (no I/O) so it can be unit- and property-tested in isolation.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Magic of a V1 record (topic length in one byte).
pub const MAGIC_V1: i32 = 0xDAA320A7_u32 as i32;
/// Magic of a V2 record (topic longer than 127 bytes, topic length in two bytes).
pub const MAGIC_V2: i32 = 0xDAA320AB_u32 as i32;
/// Magic of the end-of-file blank marker written before rolling to the next CommitLog file.
pub const BLANK_MAGIC: i32 = 0xCBD43194_u32 as i32;
/// Size of the blank marker (`[i32 remaining][i32 BLANK_MAGIC]`); every file keeps room for it.
pub const END_FILE_MIN_BLANK_LENGTH: usize = 8;

/// SYSFLAG bit: the born host is IPv6 (16-byte address).
pub const FLAG_BORNHOST_V6: i32 = 0x10;
/// SYSFLAG bit: the store host is IPv6 (16-byte address).
pub const FLAG_STOREHOST_V6: i32 = 0x20;
/// SYSFLAG transaction bits (prepared `0x4`, commit `0x8`, rollback `0xC`).
pub const TRANSACTION_MASK: i32 = 0xC;

/// Largest properties string a record can carry (its length is an i16).
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;
/// Largest topic a V2 record can carry (its length is an i16).
pub const MAX_TOPIC_LEN: usize = i16::MAX as usize;

/// Property separating a key from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Property separating two key/value pairs.
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// Property holding the message tag.
pub const PROPERTY_TAGS: &str = "TAGS";
/// Property holding the space-separated business keys.
pub const PROPERTY_KEYS: &str = "KEYS";
/// Property holding the client-generated unique id.
pub const PROPERTY_UNIQ_KEY: &str = "UNIQ_KEY";
/// Property telling the store whether the producer waits for the flush (default true).
pub const PROPERTY_WAIT: &str = "WAIT";

/// Offsets of fixed header fields.
pub mod offsets {
    /// TOTALSIZE.
    pub const TOTAL_SIZE: usize = 0;
    /// MAGICCODE.
    pub const MAGIC: usize = 4;
    /// BODYCRC.
    pub const BODY_CRC: usize = 8;
    /// QUEUEID.
    pub const QUEUE_ID: usize = 12;
    /// FLAG.
    pub const FLAG: usize = 16;
    /// QUEUEOFFSET.
    pub const QUEUE_OFFSET: usize = 20;
    /// PHYSICALOFFSET.
    pub const PHYSICAL_OFFSET: usize = 28;
    /// SYSFLAG.
    pub const SYS_FLAG: usize = 36;
    /// BORNTIMESTAMP.
    pub const BORN_TIMESTAMP: usize = 40;
    /// BORNHOST.
    pub const BORN_HOST: usize = 48;
}

/// Errors decoding a stored record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The buffer ends before the record (or a field of it) does.
    #[error("record truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// MAGICCODE is neither V1 nor V2 (nor the blank marker where one is allowed).
    #[error("bad magic code {0:#010x}")]
    BadMagic(u32),
    /// TOTALSIZE disagrees with the lengths of the fields inside the record.
    #[error("bad total size {0}")]
    BadSize(i32),
    /// BODYCRC does not match the body.
    #[error("body CRC mismatch: stored {stored}, computed {computed}")]
    BadCrc {
        /// CRC stored in the record.
        stored: i32,
        /// CRC of the body bytes.
        computed: i32,
    },
    /// The topic is not valid UTF-8.
    #[error("topic is not UTF-8")]
    BadTopic,
    /// A field does not fit the layout (e.g. properties longer than 32767 bytes).
    #[error("field {0} too large for the record layout")]
    FieldTooLarge(&'static str),
}

impl CodecError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            CodecError::Truncated { .. } => "RECORD_TRUNCATED",
            CodecError::BadMagic(_) => "RECORD_BAD_MAGIC",
            CodecError::BadSize(_) => "RECORD_BAD_SIZE",
            CodecError::BadCrc { .. } => "RECORD_BAD_CRC",
            CodecError::BadTopic => "RECORD_BAD_TOPIC",
            CodecError::FieldTooLarge(_) => "RECORD_FIELD_TOO_LARGE",
        }
    }
}

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code units, wrapping.
pub fn java_string_hash_code(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}

/// ConsumeQueue tags code of a TAGS value: its Java hash code widened to i64 (0 if none).
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(t) if !t.is_empty() => i64::from(java_string_hash_code(t)),
        _ => 0,
    }
}

/// RocketMQ's body CRC: CRC32 masked to 31 bits (`UtilAll.crc32`).
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// Encodes properties as `k\u0001v\u0002…` (keys in map order).
pub fn encode_properties(props: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in props {
        out.push_str(k);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// Decodes a `k\u0001v\u0002…` string. Pairs without a separator are skipped.
pub fn decode_properties(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(PROPERTY_SEPARATOR) {
        if let Some((k, v)) = pair.split_once(NAME_VALUE_SEPARATOR) {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// Looks up one property without building a map. Works on bytes: both separators are ASCII,
/// so every split point is a character boundary (same result as splitting the `str`, without
/// the per-character decoding, which showed up in append profiles).
pub fn property<'a>(props: &'a str, name: &str) -> Option<&'a str> {
    let (b, n) = (props.as_bytes(), name.as_bytes());
    if n.contains(&(NAME_VALUE_SEPARATOR as u8)) {
        // A key never contains the name/value separator.
        return None;
    }
    let mut start = 0;
    while start <= b.len() {
        let end = b[start..]
            .iter()
            .position(|&c| c == PROPERTY_SEPARATOR as u8)
            .map_or(b.len(), |p| start + p);
        let pair = &b[start..end];
        if pair.len() > n.len()
            && pair[n.len()] == NAME_VALUE_SEPARATOR as u8
            && pair.starts_with(n)
        {
            return props.get(start + n.len() + 1..end);
        }
        start = end + 1;
    }
    None
}

/// Bytes a host occupies in a record (address + i32 port).
pub fn host_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

fn put_host(buf: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => buf.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.extend_from_slice(&ip.octets()),
    }
    buf.extend_from_slice(&i32::from(addr.port()).to_be_bytes());
}

/// The offset message id: uppercase hex of store IP (4 or 16 bytes) + port (i32) + physical
/// offset (i64); 32 characters for IPv4 (`MessageDecoder.createMessageId`).
pub fn message_id(store_host: &SocketAddr, phys_offset: i64) -> String {
    let mut raw = Vec::with_capacity(28);
    put_host(&mut raw, store_host);
    raw.extend_from_slice(&phys_offset.to_be_bytes());
    let mut s = String::with_capacity(raw.len() * 2);
    for b in raw {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    s
}

/// Decodes an offset message id into (store host, physical offset).
pub fn decode_message_id(id: &str) -> Option<(SocketAddr, i64)> {
    if !id.is_ascii() || !id.len().is_multiple_of(2) {
        return None;
    }
    let mut raw = Vec::with_capacity(id.len() / 2);
    for i in (0..id.len()).step_by(2) {
        raw.push(u8::from_str_radix(id.get(i..i + 2)?, 16).ok()?);
    }
    let (ip, rest): (IpAddr, &[u8]) = match raw.len() {
        16 => {
            let o: [u8; 4] = raw.get(0..4)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(o)), raw.get(4..)?)
        }
        28 => {
            let o: [u8; 16] = raw.get(0..16)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(o)), raw.get(16..)?)
        }
        _ => return None,
    };
    let port = i32::from_be_bytes(rest.get(0..4)?.try_into().ok()?);
    let off = i64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
    Some((SocketAddr::new(ip, u16::try_from(port).ok()?), off))
}

/// The fields a record is built from (everything but the position-dependent ones).
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Queue id.
    pub queue_id: i32,
    /// Producer flag.
    pub flag: i32,
    /// Body bytes.
    pub body: &'a [u8],
    /// Encoded properties.
    pub properties: &'a str,
    /// SYSFLAG; the host bits are recomputed from the host addresses.
    pub sys_flag: i32,
    /// Producer timestamp.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Store timestamp.
    pub store_timestamp: i64,
    /// Broker address.
    pub store_host: SocketAddr,
    /// Times this message was re-consumed.
    pub reconsume_times: i32,
    /// Commit-log offset of the prepared half message.
    pub prepared_transaction_offset: i64,
}

/// Effective SYSFLAG: the caller's flag with the IPv6 host bits set from the addresses.
pub fn effective_sys_flag(f: &RecordFields<'_>) -> i32 {
    let mut s = f.sys_flag & !(FLAG_BORNHOST_V6 | FLAG_STOREHOST_V6);
    if f.born_host.is_ipv6() {
        s |= FLAG_BORNHOST_V6;
    }
    if f.store_host.is_ipv6() {
        s |= FLAG_STOREHOST_V6;
    }
    s
}

/// Encoded length of a record, or the field that does not fit.
pub fn record_len(f: &RecordFields<'_>) -> Result<usize, CodecError> {
    if f.properties.len() > MAX_PROPERTIES_LEN {
        return Err(CodecError::FieldTooLarge("properties"));
    }
    if f.topic.len() > MAX_TOPIC_LEN {
        return Err(CodecError::FieldTooLarge("topic"));
    }
    let topic_len_bytes = if f.topic.len() > 127 { 2 } else { 1 };
    let len = 4
        + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(&f.born_host)
        + 8
        + host_len(&f.store_host)
        + 4
        + 8
        + 4
        + f.body.len()
        + topic_len_bytes
        + f.topic.len()
        + 2
        + f.properties.len();
    if len > i32::MAX as usize {
        return Err(CodecError::FieldTooLarge("body"));
    }
    Ok(len)
}

/// Appends one encoded record to `buf`. `body_crc` may be passed precomputed.
pub fn encode_record(
    buf: &mut Vec<u8>,
    f: &RecordFields<'_>,
    queue_offset: i64,
    phys_offset: i64,
    crc: i32,
) -> Result<usize, CodecError> {
    let len = record_len(f)?;
    let start = buf.len();
    buf.resize(start + len, 0);
    encode_record_into(&mut buf[start..], f, queue_offset, phys_offset, crc)
}

/// Sequential writer over a slice whose length was computed by [`record_len`].
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    #[inline]
    fn host(&mut self, addr: &SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => self.put(&ip.octets()),
            IpAddr::V6(ip) => self.put(&ip.octets()),
        }
        self.put(&i32::from(addr.port()).to_be_bytes());
    }
}

/// Encodes one record into `dst`, which must be exactly [`record_len`] bytes long (for
/// example a slice of the mapped CommitLog file, so the record is built in place). Returns
/// the length; a `dst` of another length is rejected before anything is written.
pub fn encode_record_into(
    dst: &mut [u8],
    f: &RecordFields<'_>,
    queue_offset: i64,
    phys_offset: i64,
    crc: i32,
) -> Result<usize, CodecError> {
    let len = record_len(f)?;
    if dst.len() != len {
        return Err(CodecError::Truncated {
            need: len,
            have: dst.len(),
        });
    }
    let v2 = f.topic.len() > 127;
    let mut w = Writer { buf: dst, pos: 0 };
    let mut head = [0u8; 36];
    head[0..4].copy_from_slice(&(len as i32).to_be_bytes());
    head[4..8].copy_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
    head[8..12].copy_from_slice(&crc.to_be_bytes());
    head[12..16].copy_from_slice(&f.queue_id.to_be_bytes());
    head[16..20].copy_from_slice(&f.flag.to_be_bytes());
    head[20..28].copy_from_slice(&queue_offset.to_be_bytes());
    head[28..36].copy_from_slice(&phys_offset.to_be_bytes());
    w.put(&head);
    w.put(&effective_sys_flag(f).to_be_bytes());
    w.put(&f.born_timestamp.to_be_bytes());
    w.host(&f.born_host);
    w.put(&f.store_timestamp.to_be_bytes());
    w.host(&f.store_host);
    w.put(&f.reconsume_times.to_be_bytes());
    w.put(&f.prepared_transaction_offset.to_be_bytes());
    w.put(&(f.body.len() as i32).to_be_bytes());
    w.put(f.body);
    if v2 {
        w.put(&(f.topic.len() as i16).to_be_bytes());
    } else {
        w.put(&[f.topic.len() as u8]);
    }
    w.put(f.topic.as_bytes());
    w.put(&(f.properties.len() as i16).to_be_bytes());
    w.put(f.properties.as_bytes());
    debug_assert_eq!(w.pos, len);
    Ok(len)
}

/// A decoded view of one stored record (borrowing body, topic and properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    /// TOTALSIZE.
    pub total_size: i32,
    /// MAGICCODE.
    pub magic: i32,
    /// BODYCRC.
    pub body_crc: i32,
    /// QUEUEID.
    pub queue_id: i32,
    /// FLAG.
    pub flag: i32,
    /// QUEUEOFFSET.
    pub queue_offset: i64,
    /// PHYSICALOFFSET.
    pub phys_offset: i64,
    /// SYSFLAG.
    pub sys_flag: i32,
    /// BORNTIMESTAMP.
    pub born_timestamp: i64,
    /// BORNHOST.
    pub born_host: SocketAddr,
    /// STORETIMESTAMP.
    pub store_timestamp: i64,
    /// STOREHOST.
    pub store_host: SocketAddr,
    /// RECONSUMETIMES.
    pub reconsume_times: i32,
    /// PREPARED TRANSACTION OFFSET.
    pub prepared_transaction_offset: i64,
    /// BODY.
    pub body: &'a [u8],
    /// TOPIC.
    pub topic: &'a str,
    /// PROPERTIES (lossy if not UTF-8: invalid properties are treated as empty).
    pub properties: &'a str,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(CodecError::Truncated { need: n, have: 0 })?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError::Truncated {
            need: end,
            have: self.buf.len(),
        })?;
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.arr()?))
    }
    fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.arr()?))
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr, CodecError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.arr::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.arr::<4>()?))
        };
        let port = self.i32()?;
        Ok(SocketAddr::new(ip, port as u16))
    }
}

/// Reads the first 8 bytes of a slot: (TOTALSIZE, MAGICCODE).
pub fn peek_header(buf: &[u8]) -> Option<(i32, i32)> {
    let size = i32::from_be_bytes(buf.get(0..4)?.try_into().ok()?);
    let magic = i32::from_be_bytes(buf.get(4..8)?.try_into().ok()?);
    Some((size, magic))
}

/// Decodes one record at the start of `buf`, checking magic, size consistency and (when
/// `check_crc`) the body CRC.
pub fn decode_record(buf: &[u8], check_crc: bool) -> Result<DecodedRecord<'_>, CodecError> {
    let mut r = Reader { buf, pos: 0 };
    let total_size = r.i32()?;
    let magic = r.i32()?;
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(CodecError::BadMagic(magic as u32));
    }
    if total_size < 0 || total_size as usize > buf.len() {
        return Err(CodecError::BadSize(total_size));
    }
    let body_crc_v = r.i32()?;
    let queue_id = r.i32()?;
    let flag = r.i32()?;
    let queue_offset = r.i64()?;
    let phys_offset = r.i64()?;
    let sys_flag = r.i32()?;
    let born_timestamp = r.i64()?;
    let born_host = r.host(sys_flag & FLAG_BORNHOST_V6 != 0)?;
    let store_timestamp = r.i64()?;
    let store_host = r.host(sys_flag & FLAG_STOREHOST_V6 != 0)?;
    let reconsume_times = r.i32()?;
    let prepared_transaction_offset = r.i64()?;
    let body_len = r.i32()?;
    if body_len < 0 {
        return Err(CodecError::BadSize(total_size));
    }
    let body = r.take(body_len as usize)?;
    let topic_len = if magic == MAGIC_V2 {
        let l = r.i16()?;
        if l < 0 {
            return Err(CodecError::BadSize(total_size));
        }
        l as usize
    } else {
        usize::from(r.arr::<1>()?[0])
    };
    let topic = std::str::from_utf8(r.take(topic_len)?).map_err(|_| CodecError::BadTopic)?;
    let prop_len = r.i16()?;
    if prop_len < 0 {
        return Err(CodecError::BadSize(total_size));
    }
    let properties = std::str::from_utf8(r.take(prop_len as usize)?).unwrap_or("");
    if r.pos != total_size as usize {
        return Err(CodecError::BadSize(total_size));
    }
    if check_crc {
        let computed = body_crc(body);
        if computed != body_crc_v {
            return Err(CodecError::BadCrc {
                stored: body_crc_v,
                computed,
            });
        }
    }
    Ok(DecodedRecord {
        total_size,
        magic,
        body_crc: body_crc_v,
        queue_id,
        flag,
        queue_offset,
        phys_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    })
}

/// Offset of STORETIMESTAMP inside a record with the given SYSFLAG.
pub fn store_timestamp_pos(sys_flag: i32) -> usize {
    offsets::BORN_HOST
        + if sys_flag & FLAG_BORNHOST_V6 != 0 {
            20
        } else {
            8
        }
}

/// Splits a buffer of concatenated records (a pull response body) into decoded records.
pub fn decode_all(mut buf: &[u8], check_crc: bool) -> Result<Vec<DecodedRecord<'_>>, CodecError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let rec = decode_record(buf, check_crc)?;
        let n = rec.total_size as usize;
        out.push(rec);
        buf = buf.get(n..).unwrap_or(&[]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn java_hash_codes() {
        assert_eq!(java_string_hash_code(""), 0);
        assert_eq!(java_string_hash_code("TagA"), 2_598_919);
        assert_eq!(java_string_hash_code("hello"), 99_162_322);
        // Overflowing and non-BMP strings (surrogate pairs count as two code units).
        assert_eq!(java_string_hash_code("hello world, this overflows"), {
            let mut h: i32 = 0;
            for c in "hello world, this overflows".bytes() {
                h = h.wrapping_mul(31).wrapping_add(i32::from(c));
            }
            h
        });
        assert_eq!(java_string_hash_code("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(tags_code(Some("TagA")), 2_598_919);
        assert_eq!(tags_code(None), 0);
    }

    #[test]
    fn message_id_matches_java_shape() {
        let host: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        let id = message_id(&host, 0x1234);
        assert_eq!(id, "0A00000100002A9F0000000000001234");
        assert_eq!(decode_message_id(&id), Some((host, 0x1234)));
        let v6: SocketAddr = "[::1]:10911".parse().unwrap();
        let id6 = message_id(&v6, 7);
        assert_eq!(id6.len(), 56);
        assert_eq!(decode_message_id(&id6), Some((v6, 7)));
        assert_eq!(decode_message_id("zz"), None);
    }

    #[test]
    fn properties_round_trip() {
        let mut m = BTreeMap::new();
        m.insert("TAGS".to_string(), "a".to_string());
        m.insert("KEYS".to_string(), "k1 k2".to_string());
        let s = encode_properties(&m);
        assert_eq!(s, "KEYS\u{1}k1 k2\u{2}TAGS\u{1}a\u{2}");
        assert_eq!(decode_properties(&s), m);
        assert_eq!(property(&s, "TAGS"), Some("a"));
        assert_eq!(property(&s, "NOPE"), None);
    }

    fn fields<'a>(topic: &'a str, body: &'a [u8], props: &'a str, v6: bool) -> RecordFields<'a> {
        RecordFields {
            topic,
            queue_id: 3,
            flag: 7,
            body,
            properties: props,
            sys_flag: 0,
            born_timestamp: 111,
            born_host: if v6 {
                "[::1]:5".parse().unwrap()
            } else {
                "1.2.3.4:5".parse().unwrap()
            },
            store_timestamp: 222,
            store_host: if v6 {
                "[fe80::1]:10911".parse().unwrap()
            } else {
                "5.6.7.8:10911".parse().unwrap()
            },
            reconsume_times: 2,
            prepared_transaction_offset: 9,
        }
    }

    #[test]
    fn fixed_layout_offsets() {
        let f = fields("T", b"body", "", false);
        let mut buf = Vec::new();
        let n = encode_record(&mut buf, &f, 42, 4096, body_crc(b"body")).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(&buf[4..8], &0xDAA320A7_u32.to_be_bytes());
        assert_eq!(i64::from_be_bytes(buf[20..28].try_into().unwrap()), 42);
        assert_eq!(i64::from_be_bytes(buf[28..36].try_into().unwrap()), 4096);
        assert_eq!(&buf[48..52], &[1, 2, 3, 4]);
        assert_eq!(i64::from_be_bytes(buf[56..64].try_into().unwrap()), 222);
        assert_eq!(&buf[64..68], &[5, 6, 7, 8]);
        assert_eq!(&buf[88..92], b"body");
        // 4+4+4+4+4+8+8+4+8+8+8+8+4+8+4+4 body +1+1 topic +2 props
        assert_eq!(n, 92 + 1 + 1 + 2);
    }

    #[test]
    fn v2_topic_and_ipv6() {
        let topic = "t".repeat(200);
        let f = fields(&topic, b"", "A\u{1}B\u{2}", true);
        let mut buf = Vec::new();
        encode_record(&mut buf, &f, 1, 2, 0).unwrap();
        let d = decode_record(&buf, true).unwrap();
        assert_eq!(d.magic, MAGIC_V2);
        assert_eq!(d.topic, topic);
        assert_eq!(d.sys_flag & 0x30, 0x30);
        assert_eq!(d.store_timestamp, 222);
        assert_eq!(store_timestamp_pos(d.sys_flag), 68);
    }

    #[test]
    fn corrupt_records_are_rejected() {
        let f = fields("T", b"body", "", false);
        let mut buf = Vec::new();
        encode_record(&mut buf, &f, 0, 0, body_crc(b"body")).unwrap();
        let mut bad = buf.clone();
        bad[89] ^= 1;
        assert!(matches!(
            decode_record(&bad, true),
            Err(CodecError::BadCrc { .. })
        ));
        let mut bad = buf.clone();
        bad[5] ^= 1;
        assert!(matches!(
            decode_record(&bad, true),
            Err(CodecError::BadMagic(_))
        ));
        assert!(decode_record(&buf[..buf.len() - 1], true).is_err());
        let mut bad = buf.clone();
        bad[3] = bad[3].wrapping_sub(1);
        assert!(decode_record(&bad, true).is_err());
    }

    #[test]
    fn encode_into_matches_vec_encoding_and_checks_length() {
        let (topic, body, props) = ("T", b"body".as_slice(), "TAGS\u{1}a\u{2}");
        let f = fields(topic, body, props, false);
        let mut buf = vec![9u8; 3];
        let len = encode_record(&mut buf, &f, 5, 77, body_crc(body)).unwrap();
        assert_eq!(&buf[..3], &[9, 9, 9]);
        let mut dst = vec![0xEEu8; len];
        encode_record_into(&mut dst, &f, 5, 77, body_crc(body)).unwrap();
        assert_eq!(dst, buf[3..]);
        let mut short = vec![0xEEu8; len - 1];
        assert!(matches!(
            encode_record_into(&mut short, &f, 5, 77, 0),
            Err(CodecError::Truncated { .. })
        ));
        assert!(short.iter().all(|b| *b == 0xEE), "nothing written on error");
    }

    /// The `str`-splitting lookup `property` replaced.
    fn property_by_split<'a>(props: &'a str, name: &str) -> Option<&'a str> {
        props.split(PROPERTY_SEPARATOR).find_map(|pair| {
            match pair.split_once(NAME_VALUE_SEPARATOR) {
                Some((k, v)) if k == name => Some(v),
                _ => None,
            }
        })
    }

    #[test]
    fn property_lookup_edge_cases() {
        for (props, name) in [
            ("", ""),
            ("\u{1}v\u{2}", ""),
            ("a\u{1}b\u{1}c\u{2}", "a\u{1}b"),
            ("KEYS\u{1}\u{2}TAGS\u{1}x", "TAGS"),
            ("TAGSX\u{1}1\u{2}TAGS\u{1}2", "TAGS"),
            ("é\u{1}ü\u{2}", "é"),
        ] {
            assert_eq!(
                property(props, name),
                property_by_split(props, name),
                "{props:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn property_matches_split_lookup(
            props in "[ab\u{1}\u{2}é]{0,24}",
            name in "[ab\u{1}é]{0,3}",
        ) {
            prop_assert_eq!(property(&props, &name), property_by_split(&props, &name));
        }

        #[test]
        fn encode_decode_round_trip(
            topic in "[a-zA-Z0-9_%|-]{1,300}",
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            props in "[a-zA-Z0-9 ]{0,100}",
            v6 in any::<bool>(),
            qo in any::<i64>(),
            po in any::<i64>(),
        ) {
            let f = fields(&topic, &body, &props, v6);
            let mut buf = Vec::new();
            encode_record(&mut buf, &f, qo, po, body_crc(&body)).unwrap();
            let d = decode_record(&buf, true).unwrap();
            prop_assert_eq!(d.topic, topic.as_str());
            prop_assert_eq!(d.body, body.as_slice());
            prop_assert_eq!(d.properties, props.as_str());
            prop_assert_eq!(d.queue_offset, qo);
            prop_assert_eq!(d.phys_offset, po);
            prop_assert_eq!(d.born_host, f.born_host);
            prop_assert_eq!(d.store_host, f.store_host);
            prop_assert_eq!(d.total_size as usize, buf.len());
        }
    }
}
