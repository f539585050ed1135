//! Reading and writing the JSON dialect Java RocketMQ speaks (fastjson).
//!
//! fastjson writes two things standard JSON parsers reject: unquoted integer map keys
//! (`"brokerAddrs":{0:"127.0.0.1:10911"}`) and object map keys
//! (`"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{…}}`, a
//! `Map<MessageQueue,…>`). [`from_slice`] accepts both by normalising them into quoted
//! string keys (an object key becomes the string of its JSON text) before handing the text
//! to serde. [`to_vec_java`] does the reverse for clients that expect Java's form, and
//! [`mq_map`] is the serde adapter for `Map<MessageQueue, V>` fields.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A body could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FastJsonError {
    /// The text is not JSON, even after fastjson normalisation.
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// The JSON does not match the expected type.
    #[error("unexpected JSON shape: {0}")]
    Shape(#[from] serde_json::Error),
    /// The body is not UTF-8.
    #[error("body is not UTF-8")]
    NotUtf8,
}

impl FastJsonError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax(_) => "JSON_SYNTAX",
            Self::Shape(_) => "JSON_SHAPE",
            Self::NotUtf8 => "JSON_NOT_UTF8",
        }
    }
}

/// Parses a body written by Java or by us. Tries standard JSON first, then fastjson's
/// dialect.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FastJsonError> {
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => Ok(v),
        Err(first) => {
            let text = std::str::from_utf8(bytes).map_err(|_| FastJsonError::NotUtf8)?;
            let normalized = normalize(text)?;
            if normalized == text {
                return Err(FastJsonError::Shape(first));
            }
            Ok(serde_json::from_str(&normalized)?)
        }
    }
}

#[derive(Clone, Copy)]
enum Ctx {
    Object { expect_key: bool },
    Array,
}

/// Nesting deeper than this is rejected (bounds recursion on hostile input).
const MAX_DEPTH: usize = 128;

/// Rewrites fastjson text into standard JSON: unquoted keys are quoted, object keys become
/// the string of their (normalised) JSON text. Values are left untouched.
pub fn normalize(input: &str) -> Result<String, FastJsonError> {
    normalize_depth(input, 0)
}

fn scan_string_end(b: &[u8], start: usize) -> Result<usize, FastJsonError> {
    // b[start] == '"'; returns the index just past the closing quote.
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(FastJsonError::Syntax("unterminated string".into()))
}

fn scan_balanced_end(b: &[u8], start: usize) -> Result<usize, FastJsonError> {
    // b[start] is '{' or '['; returns the index just past the matching close.
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = scan_string_end(b, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(FastJsonError::Syntax("unbalanced brackets".into()))
}

fn normalize_depth(input: &str, depth: usize) -> Result<String, FastJsonError> {
    if depth > MAX_DEPTH {
        return Err(FastJsonError::Syntax("nesting too deep".into()));
    }
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len() + 16);
    let mut stack: Vec<Ctx> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            out.push(c as char);
            i += 1;
            continue;
        }
        if let Some(Ctx::Object { expect_key: true }) = stack.last()
            && !matches!(c, b'"' | b'}' | b':')
        {
            {
                if c == b'{' || c == b'[' {
                    let end = scan_balanced_end(b, i)?;
                    let inner = input
                        .get(i..end)
                        .ok_or_else(|| FastJsonError::Syntax("bad key".into()))?;
                    let norm = normalize_depth(inner, depth + 1)?;
                    // Re-serialise compactly so equal keys get equal strings.
                    let canonical = serde_json::from_str::<Value>(&norm)
                        .map(|v| v.to_string())
                        .map_err(|e| FastJsonError::Syntax(e.to_string()))?;
                    out.push_str(&Value::String(canonical).to_string());
                    i = end;
                } else {
                    let start = i;
                    while i < b.len() && b[i] != b':' && !b[i].is_ascii_whitespace() {
                        if matches!(b[i], b'{' | b'}' | b'[' | b']' | b',' | b'"') {
                            return Err(FastJsonError::Syntax("bad unquoted key".into()));
                        }
                        i += 1;
                    }
                    if i == start {
                        return Err(FastJsonError::Syntax("empty key".into()));
                    }
                    let token = input
                        .get(start..i)
                        .ok_or_else(|| FastJsonError::Syntax("bad key".into()))?;
                    out.push_str(&Value::String(token.to_string()).to_string());
                }
                continue;
            }
        }
        match c {
            b'"' => {
                let end = scan_string_end(b, i)?;
                out.push_str(
                    input
                        .get(i..end)
                        .ok_or_else(|| FastJsonError::Syntax("bad string".into()))?,
                );
                i = end;
                continue;
            }
            b'{' => {
                if stack.len() >= MAX_DEPTH {
                    return Err(FastJsonError::Syntax("nesting too deep".into()));
                }
                stack.push(Ctx::Object { expect_key: true });
            }
            b'[' => {
                if stack.len() >= MAX_DEPTH {
                    return Err(FastJsonError::Syntax("nesting too deep".into()));
                }
                stack.push(Ctx::Array);
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Ctx::Object { expect_key }) = stack.last_mut() {
                    *expect_key = true;
                }
            }
            b':' => {
                if let Some(Ctx::Object { expect_key }) = stack.last_mut() {
                    *expect_key = false;
                }
            }
            _ => {}
        }
        // Copy one UTF-8 character.
        let ch_len = utf8_len(c);
        out.push_str(
            input
                .get(i..i + ch_len)
                .ok_or_else(|| FastJsonError::Syntax("bad UTF-8".into()))?,
        );
        i += ch_len;
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Serialises `value` as standard JSON (quoted keys).
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, FastJsonError> {
    Ok(serde_json::to_vec(value)?)
}

/// Serialises `value` as Java's fastjson would: map keys that are JSON objects (from
/// [`mq_map`]) are written as raw objects, and integer keys of the maps named in
/// `bare_int_key_fields` (e.g. `["brokerAddrs"]`, or `["*"]` for every map) are written
/// unquoted. Keys are sorted.
pub fn to_vec_java<T: Serialize>(
    value: &T,
    bare_int_key_fields: &[&str],
) -> Result<Vec<u8>, FastJsonError> {
    let v = serde_json::to_value(value)?;
    let mut out = String::with_capacity(256);
    write_java(&v, None, bare_int_key_fields, &mut out);
    Ok(out.into_bytes())
}

fn write_java(v: &Value, field: Option<&str>, bare: &[&str], out: &mut String) {
    match v {
        Value::Object(map) => {
            let bare_here = bare.contains(&"*") || field.is_some_and(|f| bare.contains(&f));
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let raw_key = (bare_here && k.parse::<i64>().is_ok())
                    || (k.starts_with('{')
                        && serde_json::from_str::<Value>(k).is_ok_and(|kv| kv.is_object()));
                if raw_key {
                    out.push_str(k);
                } else {
                    out.push_str(&Value::String(k.clone()).to_string());
                }
                out.push(':');
                write_java(&map[k.as_str()], Some(k), bare, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_java(item, None, bare, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// serde adapter for `BTreeMap<MessageQueue, V>` fields: keys are the JSON text of the
/// queue (`{"brokerName":"b","queueId":0,"topic":"T"}`), as [`normalize`] produces from
/// Java's object keys and as [`to_vec_java`] turns back into object keys.
pub mod mq_map {
    use std::collections::BTreeMap;

    use serde::de::{Deserialize, Deserializer, Error as _};
    use serde::ser::{Serialize, SerializeMap, Serializer};

    use crate::protocol::MessageQueue;

    /// Serialises the map with JSON-text keys.
    pub fn serialize<S: Serializer, V: Serialize>(
        map: &BTreeMap<MessageQueue, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            m.serialize_entry(&k.to_json_key(), v)?;
        }
        m.end()
    }

    /// Deserialises a map whose keys are JSON texts of queues.
    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<MessageQueue, V>, D::Error> {
        let raw: BTreeMap<String, V> = BTreeMap::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            let mq: MessageQueue = serde_json::from_str(&k)
                .map_err(|e| D::Error::custom(format!("bad MessageQueue key {k:?}: {e}")))?;
            out.insert(mq, v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn normalizes_integer_keys() {
        let s = r#"{"brokerAddrs":{0:"127.0.0.1:10911", 1 :"x"},"a":[{"b":1}]}"#;
        let v: Value = from_slice(s.as_bytes()).unwrap();
        assert_eq!(v["brokerAddrs"]["0"], "127.0.0.1:10911");
        assert_eq!(v["brokerAddrs"]["1"], "x");
        assert_eq!(v["a"][0]["b"], 1);
    }

    #[test]
    fn normalizes_object_keys() {
        let s = r#"{"offsetTable":{{"topic":"T","brokerName":"b","queueId":0}:{"minOffset":1},{"brokerName":"b","queueId":1,"topic":"T"}:{"minOffset":2}},"x":"{not:a key}"}"#;
        let v: Value = from_slice(s.as_bytes()).unwrap();
        let t = v["offsetTable"].as_object().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(v["x"], "{not:a key}");
        let k = r#"{"brokerName":"b","queueId":0,"topic":"T"}"#;
        assert_eq!(t[k]["minOffset"], 1);
    }

    #[test]
    fn java_writer_round_trips() {
        let mut inner = BTreeMap::new();
        inner.insert("0".to_string(), "a".to_string());
        let mut outer = BTreeMap::new();
        outer.insert("brokerAddrs".to_string(), inner.clone());
        outer.insert("other".to_string(), inner);
        let out = String::from_utf8(to_vec_java(&outer, &["brokerAddrs"]).unwrap()).unwrap();
        assert_eq!(out, r#"{"brokerAddrs":{0:"a"},"other":{"0":"a"}}"#);
        let back: BTreeMap<String, BTreeMap<String, String>> = from_slice(out.as_bytes()).unwrap();
        assert_eq!(back, outer);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for s in [
            "{",
            "{{",
            "{0",
            "{\"a\":",
            "{{\"a\":1}",
            "\"",
            "{[}",
            "{é:1}",
        ] {
            let _ = from_slice::<Value>(s.as_bytes());
        }
        assert!(from_slice::<Value>(b"{{{").is_err());
    }
}
