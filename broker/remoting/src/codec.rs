//! The remoting frame codec: bytes on a TCP stream ⇄ [`RemotingCommand`].
//!
//! Frame layout (big-endian): `i32 length` (everything after itself), `i32 mark`
//! (`serializeType << 24 | headerLen`), the header, the body. Two header encodings exist,
//! fastjson-style JSON and RocketMQ's binary form; the type is chosen per frame, so the
//! decoder accepts both and the encoder writes the type the command asks for.
//!
//! Promises: a frame larger than the cap (16 MiB by default) or a malformed header is a
//! [`CodecError`] (the connection is then closed), never a panic; the decoder never reserves
//! memory for a declared length, buffers grow only with bytes actually received, so the
//! memory a peer can pin is bounded by the cap.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

use crate::code::LanguageCode;
use crate::command::{RemotingCommand, SerializeType};

/// The default (and RocketMQ's) maximum frame length: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// A frame could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The declared (or encoded) frame length exceeds the cap.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Declared length.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// The declared length is too small to hold the header-length word, or negative.
    #[error("frame length {0} is too small")]
    FrameTooShort(i64),
    /// The header length does not fit in the frame.
    #[error("header length {header_len} does not fit in a frame of {frame_len} bytes")]
    HeaderLength {
        /// Declared header length.
        header_len: usize,
        /// Frame length.
        frame_len: usize,
    },
    /// The serialize type byte is neither JSON (0) nor ROCKETMQ (1).
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    /// The header bytes are not a valid header of their type.
    #[error("malformed header: {0}")]
    MalformedHeader(String),
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::FrameTooLarge { .. } => "FRAME_TOO_LARGE",
            Self::FrameTooShort(_) => "FRAME_TOO_SHORT",
            Self::HeaderLength { .. } => "HEADER_LENGTH_INVALID",
            Self::UnknownSerializeType(_) => "UNKNOWN_SERIALIZE_TYPE",
            Self::MalformedHeader(_) => "MALFORMED_HEADER",
            Self::Io(_) => "IO_ERROR",
        }
    }
}

fn malformed(msg: impl Into<String>) -> CodecError {
    CodecError::MalformedHeader(msg.into())
}

/// tokio-util codec for remoting frames.
#[derive(Debug, Clone)]
pub struct RemotingCodec {
    max_frame: usize,
}

impl Default for RemotingCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl RemotingCodec {
    /// A codec with the default 16 MiB cap.
    pub fn new() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// A codec with a custom cap (the value of the length field may not exceed it).
    pub fn with_max_frame(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// The cap.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, CodecError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let declared = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if declared < 4 {
            return Err(CodecError::FrameTooShort(i64::from(declared)));
        }
        // `declared` is positive here, so the conversion cannot fail on 32/64-bit targets.
        let len = usize::try_from(declared).map_err(|_| CodecError::FrameTooLarge {
            len: declared.unsigned_abs().into(),
            max: self.max_frame,
        })?;
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len: len as u64,
                max: self.max_frame,
            });
        }
        if src.len() < 4 + len {
            // Deliberately no `reserve(len)`: memory grows only with received bytes.
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(len).freeze();
        decode_frame(frame).map(Some)
    }
}

/// Decodes one frame without its leading length word (`mark | header | body`).
pub fn decode_frame(mut frame: Bytes) -> Result<RemotingCommand, CodecError> {
    let frame_len = frame.len();
    if frame_len < 4 {
        return Err(CodecError::FrameTooShort(frame_len as i64));
    }
    let mark = frame.get_u32();
    let ser = (mark >> 24) as u8;
    let header_len = (mark & 0x00FF_FFFF) as usize;
    if header_len > frame.len() {
        return Err(CodecError::HeaderLength {
            header_len,
            frame_len,
        });
    }
    let header = frame.split_to(header_len);
    let body = frame;
    let serialize_type =
        SerializeType::from_code(ser).ok_or(CodecError::UnknownSerializeType(ser))?;
    let mut cmd = match serialize_type {
        SerializeType::Json => decode_json_header(&header)?,
        SerializeType::RocketMq => decode_rocketmq_header(header)?,
    };
    cmd.body = body;
    cmd.serialize_type = serialize_type;
    Ok(cmd)
}

impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = CodecError;

    fn encode(&mut self, cmd: RemotingCommand, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_into(&cmd, self.max_frame, dst)
    }
}

impl Encoder<&RemotingCommand> for RemotingCodec {
    type Error = CodecError;

    fn encode(&mut self, cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_into(cmd, self.max_frame, dst)
    }
}

/// Encodes `cmd` (length word included) into `dst` in its `serialize_type`.
pub fn encode_into(
    cmd: &RemotingCommand,
    max_frame: usize,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let header = match cmd.serialize_type {
        SerializeType::Json => encode_json_header(cmd),
        SerializeType::RocketMq => encode_rocketmq_header(cmd)?,
    };
    let len = 4 + header.len() + cmd.body.len();
    if len > max_frame || header.len() > 0x00FF_FFFF {
        return Err(CodecError::FrameTooLarge {
            len: len as u64,
            max: max_frame,
        });
    }
    dst.reserve(4 + len);
    // Both fit in i32/u32: len <= max_frame, which callers keep well below 2 GiB.
    dst.put_u32(len as u32);
    dst.put_u32((u32::from(cmd.serialize_type.code()) << 24) | header.len() as u32);
    dst.put_slice(&header);
    dst.put_slice(&cmd.body);
    Ok(())
}

/// Encodes a whole frame into a fresh buffer (default cap).
pub fn encode(cmd: &RemotingCommand) -> Result<BytesMut, CodecError> {
    let mut dst = BytesMut::new();
    encode_into(cmd, DEFAULT_MAX_FRAME, &mut dst)?;
    Ok(dst)
}

// ---------------------------------------------------------------------------------------
// JSON header

fn json_int(v: &Value, field: &str) -> Result<i64, CodecError> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| malformed(format!("{field} is not an integer"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| malformed(format!("{field} is not an integer: {s:?}"))),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
            Err(malformed(format!("{field} is not an integer")))
        }
    }
}

fn json_i32(v: &Value, field: &str) -> Result<i32, CodecError> {
    let n = json_int(v, field)?;
    i32::try_from(n).map_err(|_| malformed(format!("{field} {n} is out of range")))
}

fn json_scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Parses a JSON header leniently: missing fields get defaults, `language` may be a name
/// or a number, ext values may be any scalar.
pub fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, CodecError> {
    let value: Value =
        serde_json::from_slice(header).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(malformed("JSON header is not an object"));
    };
    let mut cmd = RemotingCommand {
        version: 0,
        language: LanguageCode::Java,
        ..RemotingCommand::default()
    };
    for (k, v) in &map {
        match k.as_str() {
            "code" => cmd.code = json_i32(v, "code")?,
            "version" => cmd.version = json_i32(v, "version")?,
            "opaque" => cmd.opaque = json_i32(v, "opaque")?,
            "flag" => cmd.flag = json_i32(v, "flag")?,
            "language" => {
                cmd.language = match v {
                    Value::String(s) => match s.trim().parse::<i64>() {
                        Ok(n) => LanguageCode::from_code(n),
                        Err(_) => LanguageCode::from_name(s.trim()),
                    },
                    Value::Number(_) => LanguageCode::from_code(json_int(v, "language")?),
                    Value::Null => LanguageCode::Java,
                    _ => return Err(malformed("language is not a string or number")),
                }
            }
            "remark" => cmd.remark = json_scalar_string(v),
            "extFields" => match v {
                Value::Null => {}
                Value::Object(ext) => {
                    let mut fields = HashMap::with_capacity(ext.len());
                    for (ek, ev) in ext {
                        if let Some(s) = json_scalar_string(ev) {
                            fields.insert(ek.clone(), s);
                        }
                    }
                    cmd.ext_fields = fields;
                }
                _ => return Err(malformed("extFields is not an object")),
            },
            _ => {} // serializeTypeCurrentRPC and unknown fields are ignored
        }
    }
    Ok(cmd)
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_num(out: &mut Vec<u8>, n: i32) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// Writes the JSON header as fastjson does (keys in alphabetical order).
pub fn encode_json_header(cmd: &RemotingCommand) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + cmd.ext_fields.len() * 32);
    out.extend_from_slice(b"{\"code\":");
    push_num(&mut out, cmd.code);
    if !cmd.ext_fields.is_empty() {
        out.extend_from_slice(b",\"extFields\":{");
        let mut keys: Vec<&String> = cmd.ext_fields.keys().collect();
        keys.sort_unstable();
        for (i, k) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(&mut out, k);
            out.push(b':');
            push_json_str(&mut out, &cmd.ext_fields[k]);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"flag\":");
    push_num(&mut out, cmd.flag);
    out.extend_from_slice(b",\"language\":");
    push_json_str(&mut out, cmd.language.name());
    out.extend_from_slice(b",\"opaque\":");
    push_num(&mut out, cmd.opaque);
    if let Some(remark) = &cmd.remark {
        out.extend_from_slice(b",\"remark\":");
        push_json_str(&mut out, remark);
    }
    out.extend_from_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    push_num(&mut out, cmd.version);
    out.push(b'}');
    out
}

// ---------------------------------------------------------------------------------------
// ROCKETMQ binary header

fn need(buf: &Bytes, n: usize, what: &str) -> Result<(), CodecError> {
    if buf.remaining() < n {
        Err(malformed(format!("truncated at {what}")))
    } else {
        Ok(())
    }
}

fn take_len(buf: &mut Bytes, width: usize, what: &str) -> Result<usize, CodecError> {
    need(buf, width, what)?;
    let n: i64 = if width == 2 {
        i64::from(buf.get_i16())
    } else {
        i64::from(buf.get_i32())
    };
    let n = usize::try_from(n).map_err(|_| malformed(format!("negative length of {what}")))?;
    need(buf, n, what)?;
    Ok(n)
}

fn take_string(buf: &mut Bytes, n: usize, what: &str) -> Result<String, CodecError> {
    let raw = buf.split_to(n);
    String::from_utf8(raw.to_vec()).map_err(|_| malformed(format!("{what} is not UTF-8")))
}

/// Parses a ROCKETMQ binary header.
pub fn decode_rocketmq_header(mut buf: Bytes) -> Result<RemotingCommand, CodecError> {
    need(&buf, 2 + 1 + 2 + 4 + 4, "fixed fields")?;
    let code = i32::from(buf.get_i16());
    let language = LanguageCode::from_code(i64::from(buf.get_u8()));
    let version = i32::from(buf.get_i16());
    let opaque = buf.get_i32();
    let flag = buf.get_i32();
    let remark_len = take_len(&mut buf, 4, "remark")?;
    let remark = if remark_len > 0 {
        Some(take_string(&mut buf, remark_len, "remark")?)
    } else {
        None
    };
    let ext_len = take_len(&mut buf, 4, "extFields")?;
    let mut ext = buf.split_to(ext_len);
    let mut ext_fields = HashMap::new();
    while ext.has_remaining() {
        let kl = take_len(&mut ext, 2, "ext key")?;
        let k = take_string(&mut ext, kl, "ext key")?;
        let vl = take_len(&mut ext, 4, "ext value")?;
        let v = take_string(&mut ext, vl, "ext value")?;
        ext_fields.insert(k, v);
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

/// Writes a ROCKETMQ binary header. Codes and versions must fit in i16, keys in i16 lengths.
pub fn encode_rocketmq_header(cmd: &RemotingCommand) -> Result<Vec<u8>, CodecError> {
    let code = i16::try_from(cmd.code)
        .map_err(|_| malformed(format!("code {} does not fit the binary header", cmd.code)))?;
    let version = i16::try_from(cmd.version).map_err(|_| {
        malformed(format!(
            "version {} does not fit the binary header",
            cmd.version
        ))
    })?;
    let mut out = Vec::with_capacity(64 + cmd.ext_fields.len() * 32);
    out.put_i16(code);
    out.put_u8(cmd.language.code());
    out.put_i16(version);
    out.put_i32(cmd.opaque);
    out.put_i32(cmd.flag);
    match &cmd.remark {
        Some(r) if !r.is_empty() => {
            out.put_i32(len_i32(r.len())?);
            out.put_slice(r.as_bytes());
        }
        _ => out.put_i32(0),
    }
    let mut ext = Vec::with_capacity(cmd.ext_fields.len() * 32);
    for (k, v) in &cmd.ext_fields {
        let kl = i16::try_from(k.len()).map_err(|_| malformed("ext key too long"))?;
        ext.put_i16(kl);
        ext.put_slice(k.as_bytes());
        ext.put_i32(len_i32(v.len())?);
        ext.put_slice(v.as_bytes());
    }
    out.put_i32(len_i32(ext.len())?);
    out.put_slice(&ext);
    Ok(out)
}

fn len_i32(n: usize) -> Result<i32, CodecError> {
    i32::try_from(n).map_err(|_| malformed("field too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(cmd: &RemotingCommand) -> RemotingCommand {
        let mut buf = encode(cmd).unwrap();
        let out = RemotingCodec::new().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn json_round_trip() {
        let cmd = RemotingCommand::request(10)
            .with_ext("topic", "T\"x")
            .with_remark("r")
            .with_body(&b"hello"[..]);
        assert_eq!(roundtrip(&cmd), cmd);
    }

    #[test]
    fn rocketmq_round_trip() {
        let cmd = RemotingCommand::request(310)
            .with_ext("a", "1")
            .with_ext("b", "")
            .with_body(&b"x"[..])
            .with_serialize_type(SerializeType::RocketMq);
        assert_eq!(roundtrip(&cmd), cmd);
    }

    #[test]
    fn lenient_json_header() {
        let h = br#"{"code":"105","language":12,"extFields":{"n":5,"b":true,"z":null},"serializeTypeCurrentRPC":"JSON"}"#;
        let c = decode_json_header(h).unwrap();
        assert_eq!(c.code, 105);
        assert_eq!(c.language, LanguageCode::Rust);
        assert_eq!(c.ext("n"), Some("5"));
        assert_eq!(c.ext("b"), Some("true"));
        assert_eq!(c.ext("z"), None);
        assert_eq!(c.opaque, 0);
        let c = decode_json_header(br#"{"code":1,"language":"JAVA","flag":1}"#).unwrap();
        assert!(c.is_response());
        assert_eq!(c.language, LanguageCode::Java);
        assert!(decode_json_header(b"[1]").is_err());
        assert!(decode_json_header(b"{\"code\":99999999999}").is_err());
    }

    #[test]
    fn matches_documented_example() {
        let h = br#"{"code":10,"extFields":{"queueId":"1","msgId":"id"},"flag":0,"language":"RUST","opaque":7,"serializeTypeCurrentRPC":"JSON","version":501}"#;
        let c = decode_json_header(h).unwrap();
        assert_eq!((c.code, c.opaque, c.version), (10, 7, 501));
        let out = encode_json_header(&c);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"code":10,"extFields":{"msgId":"id","queueId":"1"},"flag":0,"language":"RUST","opaque":7,"serializeTypeCurrentRPC":"JSON","version":501}"#
        );
    }

    #[test]
    fn rejects_oversized_and_short_frames() {
        let mut b = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            RemotingCodec::new().decode(&mut b),
            Err(CodecError::FrameTooLarge { .. })
        ));
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            RemotingCodec::new().decode(&mut b),
            Err(CodecError::FrameTooShort(_))
        ));
        let mut b = BytesMut::from(&[0, 0, 0, 4, 0, 0, 0, 9][..]);
        assert!(matches!(
            RemotingCodec::new().decode(&mut b),
            Err(CodecError::HeaderLength { .. })
        ));
        let mut b = BytesMut::from(&[0, 0, 0, 4, 7, 0, 0, 0][..]);
        assert!(matches!(
            RemotingCodec::new().decode(&mut b),
            Err(CodecError::UnknownSerializeType(7))
        ));
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let cmd = RemotingCommand::request(11).with_body(vec![1u8; 100]);
        let full = encode(&cmd).unwrap();
        let mut codec = RemotingCodec::new();
        let mut b = BytesMut::new();
        for (i, byte) in full.iter().enumerate() {
            b.put_u8(*byte);
            let r = codec.decode(&mut b).unwrap();
            if i + 1 < full.len() {
                assert!(r.is_none());
            } else {
                assert_eq!(r.unwrap(), cmd);
            }
        }
    }
}
