//! `RemotingCommand`: one request or response of the RocketMQ remoting protocol.
//!
//! Every frame on a remoting connection carries one command: a header (code, language,
//! version, opaque, flag, remark, `extFields`) and an opaque body. This module holds the
//! in-memory form, the builders brokers and clients use, and typed accessors for the
//! string-valued `extFields` (RocketMQ's "custom header"). The accessors apply Java's
//! decoding rules from [`crate::lenient`] — optional numbers that do not parse are absent,
//! booleans are `Boolean.parseBoolean`, enums take names or ordinals — and required fields
//! fail with a [`HeaderError`] naming the field, so a handler can answer with a clear remark.
//! Broker and nameserver handlers both read their headers through these accessors only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};

use bytes::Bytes;

use crate::code::{LanguageCode, response_code, version};

/// Flag bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request expects no response.
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// How a command's header is encoded on the wire (per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// fastjson-style JSON header (type 0), RocketMQ's default.
    #[default]
    Json,
    /// RocketMQ's compact binary header (type 1).
    RocketMq,
}

impl SerializeType {
    /// The wire byte (the top byte of the header-length word).
    pub fn code(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::RocketMq => 1,
        }
    }

    /// The serialize type of a wire byte, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Json),
            1 => Some(Self::RocketMq),
            _ => None,
        }
    }
}

pub use crate::lenient::HeaderError;
use crate::lenient::{JavaEnum, parse_bool, parse_num};

static NEXT_OPAQUE: AtomicI32 = AtomicI32::new(1);

/// A fresh request id, unique per process (wraps after 2^31 requests).
pub fn next_opaque() -> i32 {
    NEXT_OPAQUE.fetch_add(1, Ordering::Relaxed)
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code, or response code in a response.
    pub code: i32,
    /// Sender's language.
    pub language: LanguageCode,
    /// Sender's protocol version (`MQVersion` ordinal).
    pub version: i32,
    /// Request id, echoed in the response.
    pub opaque: i32,
    /// Bit 0 = response, bit 1 = oneway.
    pub flag: i32,
    /// Optional human-readable text (errors).
    pub remark: Option<String>,
    /// The custom header, flattened to strings.
    pub ext_fields: HashMap<String, String>,
    /// The body (empty = none).
    pub body: Bytes,
    /// The header encoding: the one it arrived in, or the one to send it in.
    pub serialize_type: SerializeType,
}

impl Default for RemotingCommand {
    fn default() -> Self {
        Self {
            code: 0,
            language: LanguageCode::Rust,
            version: version::CURRENT,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: HashMap::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }
}

impl RemotingCommand {
    /// A new request with `code` and a fresh opaque.
    pub fn request(code: i32) -> Self {
        Self {
            code,
            opaque: next_opaque(),
            ..Self::default()
        }
    }

    /// A new response with `code` and an optional remark. The opaque is set when it is sent
    /// as the answer to a request (see [`RemotingCommand::answer`]).
    pub fn response(code: i32, remark: impl Into<Option<String>>) -> Self {
        Self {
            code,
            flag: FLAG_RESPONSE,
            remark: remark.into(),
            ..Self::default()
        }
    }

    /// A SUCCESS response without remark.
    pub fn success() -> Self {
        Self::response(response_code::SUCCESS, None)
    }

    /// A response to `request`: echoes its opaque and serialize type, sets the response bit.
    pub fn answer(mut self, request: &RemotingCommand) -> Self {
        self.opaque = request.opaque;
        self.flag |= FLAG_RESPONSE;
        self.serialize_type = request.serialize_type;
        self
    }

    /// Marks the command oneway (builder).
    pub fn oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    /// Sets the body (builder).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the remark (builder).
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// Sets one ext field (builder).
    pub fn with_ext(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.ext_fields.insert(key.into(), value.to_string());
        self
    }

    /// Sets the header encoding to send with (builder).
    pub fn with_serialize_type(mut self, t: SerializeType) -> Self {
        self.serialize_type = t;
        self
    }

    /// Sets one ext field.
    pub fn put_ext(&mut self, key: impl Into<String>, value: impl ToString) {
        self.ext_fields.insert(key.into(), value.to_string());
    }

    /// Whether the response bit is set.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether the oneway bit is set.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The raw ext field, if present.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// A required string field; an empty value passes through, as in Java.
    pub fn ext_str(&self, key: &str) -> Result<&str, HeaderError> {
        self.ext(key)
            .ok_or_else(|| HeaderError::Missing(key.to_string()))
    }

    /// A required `i32` field: absent or unparsable is an error naming the field.
    pub fn ext_i32(&self, key: &str) -> Result<i32, HeaderError> {
        let raw = self.ext_str(key)?;
        parse_num(raw).ok_or_else(|| invalid(key, raw, "i32"))
    }

    /// A required `i64` field: absent or unparsable is an error naming the field.
    pub fn ext_i64(&self, key: &str) -> Result<i64, HeaderError> {
        let raw = self.ext_str(key)?;
        parse_num(raw).ok_or_else(|| invalid(key, raw, "i64"))
    }

    /// A `@CFNotNull` `i32` field the handler can default: `default` when absent or empty,
    /// an error naming the field when present but unparsable (Java would meet a null).
    pub fn ext_i32_or(&self, key: &str, default: i32) -> Result<i32, HeaderError> {
        match self.ext(key) {
            None => Ok(default),
            Some(raw) if raw.trim().is_empty() => Ok(default),
            Some(raw) => parse_num(raw).ok_or_else(|| invalid(key, raw, "i32")),
        }
    }

    /// As [`Self::ext_i32_or`], for an `i64` field.
    pub fn ext_i64_or(&self, key: &str, default: i64) -> Result<i64, HeaderError> {
        match self.ext(key) {
            None => Ok(default),
            Some(raw) if raw.trim().is_empty() => Ok(default),
            Some(raw) => parse_num(raw).ok_or_else(|| invalid(key, raw, "i64")),
        }
    }

    /// An optional `i32` field: `None` when absent or unparsable (Java leaves the default).
    pub fn ext_i32_opt(&self, key: &str) -> Option<i32> {
        self.ext(key).and_then(parse_num)
    }

    /// An optional `i64` field: `None` when absent or unparsable (Java leaves the default).
    pub fn ext_i64_opt(&self, key: &str) -> Option<i64> {
        self.ext(key).and_then(parse_num)
    }

    /// A boolean field as Java's `Boolean.parseBoolean` reads it: true only for `"true"` in
    /// any case; absent, `"1"`, `"0"` or anything else is false.
    pub fn ext_bool(&self, key: &str) -> bool {
        self.ext(key).is_some_and(parse_bool)
    }

    /// An optional boolean field: `None` when absent, otherwise as [`Self::ext_bool`].
    pub fn ext_bool_opt(&self, key: &str) -> Option<bool> {
        self.ext(key).map(parse_bool)
    }

    /// An optional enum field, by the Java constant's name or its ordinal: `Ok(None)` when
    /// absent or empty, an error naming the field for an unknown value.
    pub fn ext_enum<E: JavaEnum>(&self, key: &str) -> Result<Option<E>, HeaderError> {
        match self.ext(key) {
            None => Ok(None),
            Some(raw) if raw.trim().is_empty() => Ok(None),
            Some(raw) => E::parse(raw)
                .map(Some)
                .ok_or_else(|| invalid(key, raw, E::TYPE_NAME)),
        }
    }
}

fn invalid(key: &str, raw: &str, expected: &'static str) -> HeaderError {
    HeaderError::Invalid {
        field: key.to_string(),
        value: raw.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_flags() {
        let req = RemotingCommand::request(105).with_ext("topic", "T");
        assert!(!req.is_response());
        let resp = RemotingCommand::success().answer(&req);
        assert_eq!(resp.opaque, req.opaque);
        assert!(resp.is_response());
        let ow = RemotingCommand::request(15).oneway();
        assert!(ow.is_oneway());
        assert_ne!(
            RemotingCommand::request(1).opaque,
            RemotingCommand::request(1).opaque
        );
    }

    #[test]
    fn typed_ext_accessors() {
        let c = RemotingCommand::request(1)
            .with_ext("a", " 42 ")
            .with_ext("b", "x")
            .with_ext("c", "TRUE")
            .with_ext("d", "-9000000000");
        assert_eq!(c.ext_i32("a").unwrap(), 42);
        assert_eq!(c.ext_i64("d").unwrap(), -9_000_000_000);
        assert!(c.ext_bool("c"));
        let e = c.ext_i32("b").unwrap_err();
        assert_eq!(e.code(), "HEADER_FIELD_INVALID");
        assert!(e.to_string().contains("invalid header field b"));
        let e = c.ext_str("zz").unwrap_err();
        assert_eq!(e.to_string(), "missing header field zz");
        assert_eq!(c.ext_i32_opt("zz"), None);
        // Java leaves an unparsable optional number at its default.
        assert_eq!(c.ext_i32_opt("b"), None);
        assert_eq!(c.ext_i32_opt("a"), Some(42));
        // Boolean.parseBoolean: anything but "true" (any case) is false.
        assert!(!c.ext_bool("b"));
        assert!(!c.ext_bool("zz"));
        assert_eq!(c.ext_bool_opt("zz"), None);
        assert_eq!(c.ext_bool_opt("a"), Some(false));
        let cpp = RemotingCommand::request(1)
            .with_ext("batch", "0")
            .with_ext("unitMode", "1")
            .with_ext("empty", "");
        assert!(!cpp.ext_bool("batch"));
        assert!(!cpp.ext_bool("unitMode"));
        assert_eq!(cpp.ext_str("empty").unwrap(), "");
    }
}
