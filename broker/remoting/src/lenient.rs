//! Java's decoding leniency, in one place for the broker and the nameserver.
//!
//! Every RocketMQ client talks to a Java broker first, so what Java's decoder accepts is the
//! protocol in practice. `RemotingCommand.decodeCommandCustomHeader` reads each header field
//! inside its own `try/catch(Throwable)`: a missing field, or a number that does not parse,
//! is only logged and leaves the field at its default; booleans go through
//! `Boolean.parseBoolean`, so only `"true"` (any case) is true and everything else
//! (`"1"`, `"yes"`, `""`) is false; strings, empty ones included, pass through; unknown
//! fields are ignored. Bodies go through fastjson, which maps enum *names and ordinals*,
//! and numbers written as strings (and the reverse) onto typed fields.
//!
//! Other clients rely on this. Apache's C++ client (and the Python and Go clients built on
//! it) writes booleans with an `ostringstream` (`batch: "0"`), sends
//! `consumeType`/`messageModel`/`consumeFromWhere` as enum ordinals and `subVersion` as a
//! string. This module is the single implementation of those rules:
//!
//! - header values: [`parse_bool`], [`parse_num`], and [`JavaEnum::parse`], used by
//!   [`RemotingCommand`](crate::RemotingCommand)'s `ext_*` accessors, which broker and
//!   nameserver handlers both call;
//! - body fields: the serde adapters [`i32`], [`i64`], [`bool`] and [`string`], and the
//!   [`java_enum!`](crate::java_enum) macro, used by the types in [`crate::protocol`].
//!
//! One field departs from `parseBoolean` on purpose: the send header's `batch`, where the
//! C++ client's `"1"` means a batch that Java would store as one garbled message (see the
//! broker's `headers::batch_flag`).
//!
//! What stays an error: a *required* field that is absent or not a number (Java fails on
//! the null a few lines later, so the answer is the same SYSTEM_ERROR, with a clearer
//! remark), and an enum value that is neither a known name nor a known ordinal.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// A header field could not be decoded into what the handler needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required field is not in `extFields`.
    #[error("missing header field {0}")]
    Missing(String),
    /// A required field is present but does not parse as its type.
    #[error("invalid header field {field}: {value:?} is not a valid {expected}")]
    Invalid {
        /// The field name.
        field: String,
        /// The raw value.
        value: String,
        /// What was expected (`i32`, `i64`, an enum's name).
        expected: &'static str,
    },
    /// The field parses but its value is not allowed (a bad topic name, a negative queue id).
    #[error("invalid header field {field}: {value:?} ({why})")]
    Rejected {
        /// The field name.
        field: String,
        /// The raw value.
        value: String,
        /// Why it is refused.
        why: &'static str,
    },
}

impl HeaderError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing(_) => "HEADER_FIELD_MISSING",
            Self::Invalid { .. } => "HEADER_FIELD_INVALID",
            Self::Rejected { .. } => "HEADER_FIELD_REJECTED",
        }
    }

    /// The response code Java answers with: a field that failed to decode ends in
    /// SYSTEM_ERROR (the handler meets a null), a value refused by validation in
    /// INVALID_PARAMETER (`TopicValidator`).
    pub fn response_code(&self) -> i32 {
        match self {
            Self::Missing(_) | Self::Invalid { .. } => crate::code::response_code::SYSTEM_ERROR,
            Self::Rejected { .. } => crate::code::response_code::INVALID_PARAMETER,
        }
    }

    /// A [`HeaderError::Rejected`] for `field`.
    pub fn rejected(field: &str, value: impl ToString, why: &'static str) -> Self {
        Self::Rejected {
            field: field.to_string(),
            value: value.to_string(),
            why,
        }
    }
}

/// Java's `Boolean.parseBoolean`: true only for `"true"` in any case, false for anything else.
pub fn parse_bool(raw: &str) -> bool {
    raw.eq_ignore_ascii_case("true")
}

/// A number as Java's `Integer.parseInt`/`Long.parseLong` reads it (surrounding whitespace is
/// tolerated too); `None` if it does not parse.
pub fn parse_num<T: std::str::FromStr>(raw: &str) -> Option<T> {
    raw.trim().parse().ok()
}

/// A Java enum as fastjson reads it: by name, or by ordinal (a number or a numeric string).
pub trait JavaEnum: Sized + Copy + 'static {
    /// The constants in declaration order: `VARIANTS[i]` has ordinal `i`.
    const VARIANTS: &'static [Self];
    /// The type's name, for error messages.
    const TYPE_NAME: &'static str;

    /// The Java constant's name.
    fn name(self) -> &'static str;

    /// The constant with this name or ordinal.
    fn parse(raw: &str) -> Option<Self> {
        let t = raw.trim();
        if let Some(v) = Self::VARIANTS.iter().find(|v| v.name() == t) {
            return Some(*v);
        }
        t.parse::<usize>()
            .ok()
            .and_then(|i| Self::VARIANTS.get(i).copied())
    }

    /// The constant with this ordinal.
    fn from_ordinal(i: i64) -> Option<Self> {
        usize::try_from(i)
            .ok()
            .and_then(|i| Self::VARIANTS.get(i).copied())
    }
}

/// Declares a Java enum: a Rust enum whose variants carry the Java names in declaration
/// order, serialised by name and deserialised from a name or an ordinal ([`JavaEnum`]).
#[macro_export]
macro_rules! java_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $java:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $crate::lenient::JavaEnum for $name {
            const VARIANTS: &'static [Self] = &[$(Self::$variant),+];
            const TYPE_NAME: &'static str = stringify!($name);
            fn name(self) -> &'static str {
                match self { $(Self::$variant => $java),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::lenient::JavaEnum::name(*self))
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($crate::lenient::JavaEnum::name(*self))
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::lenient::deserialize_enum(d)
            }
        }
    };
}

/// Deserialises a [`JavaEnum`] from a name, an ordinal, or a numeric string.
pub fn deserialize_enum<'de, E: JavaEnum, D: Deserializer<'de>>(d: D) -> Result<E, D::Error> {
    struct V<E>(std::marker::PhantomData<E>);
    impl<E: JavaEnum> Visitor<'_> for V<E> {
        type Value = E;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a {} name or ordinal", E::TYPE_NAME)
        }
        fn visit_str<Er: de::Error>(self, v: &str) -> Result<E, Er> {
            E::parse(v).ok_or_else(|| Er::custom(format!("unknown {} {v:?}", E::TYPE_NAME)))
        }
        fn visit_i64<Er: de::Error>(self, v: i64) -> Result<E, Er> {
            E::from_ordinal(v)
                .ok_or_else(|| Er::custom(format!("unknown {} ordinal {v}", E::TYPE_NAME)))
        }
        fn visit_u64<Er: de::Error>(self, v: u64) -> Result<E, Er> {
            self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// A JSON scalar as fastjson coerces it onto a typed field.
#[derive(Debug)]
enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Null,
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Scalar;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, a string, a boolean or null")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
            Ok(Scalar::Int(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
            i64::try_from(v)
                .map(Scalar::Int)
                .map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
            Ok(Scalar::Float(v))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
            Ok(Scalar::Bool(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
            Ok(Scalar::Str(v.to_string()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
            Ok(Scalar::Str(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
            Ok(Scalar::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
            Ok(Scalar::Null)
        }
    }
    d.deserialize_any(V)
}

/// An `i64` body field: a number or a numeric string; null or `""` is 0.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match scalar(d)? {
        Scalar::Int(v) => Ok(v),
        // fastjson truncates a decimal written into an integer field.
        Scalar::Float(v) if v.is_finite() => Ok(v as i64),
        Scalar::Null => Ok(0),
        Scalar::Str(s) if s.trim().is_empty() => Ok(0),
        Scalar::Str(s) => {
            parse_num(&s).ok_or_else(|| de::Error::custom(format!("{s:?} is not an integer")))
        }
        other => Err(de::Error::custom(format!("{other:?} is not an integer"))),
    }
}

/// An `i32` body field: as [`i64`], and in range.
pub fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = i64(d)?;
    ::core::primitive::i32::try_from(v)
        .map_err(|_| de::Error::custom(format!("{v} does not fit a 32-bit integer")))
}

/// A `bool` body field: a JSON boolean, a string (`parseBoolean`), or a number (non-zero is
/// true, as fastjson reads `1`); null is false.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match scalar(d)? {
        Scalar::Bool(b) => b,
        Scalar::Int(v) => v != 0,
        Scalar::Float(v) => v != 0.0,
        Scalar::Str(s) => parse_bool(s.trim()) || s.trim() == "1",
        Scalar::Null => false,
    })
}

/// A `String` body field: a string, or a number or boolean written as its text; null is "".
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match scalar(d)? {
        Scalar::Str(s) => s,
        Scalar::Int(v) => v.to_string(),
        Scalar::Float(v) => v.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Null => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    crate::java_enum! {
        /// A test enum.
        enum Color { Red = "RED", Green = "GREEN", Blue = "BLUE" }
    }

    #[derive(Debug, Deserialize, Serialize, Default, PartialEq)]
    #[serde(default)]
    struct Body {
        #[serde(deserialize_with = "i32")]
        n: i32,
        #[serde(deserialize_with = "i64")]
        l: i64,
        #[serde(deserialize_with = "bool")]
        b: bool,
        #[serde(deserialize_with = "string")]
        s: String,
        c: Option<Color>,
    }

    #[test]
    fn booleans_follow_parse_boolean() {
        for t in ["true", "TRUE", "True", "tRuE"] {
            assert!(parse_bool(t), "{t}");
        }
        for f in ["false", "0", "1", "yes", "", " true", "TRUE ", "t"] {
            assert!(!parse_bool(f), "{f}");
        }
    }

    #[test]
    fn numbers_parse_or_give_none() {
        assert_eq!(parse_num::<i32>(" 42 "), Some(42));
        assert_eq!(parse_num::<i64>("-9000000000"), Some(-9_000_000_000));
        assert_eq!(parse_num::<i32>("9000000000"), None);
        assert_eq!(parse_num::<i32>("x"), None);
        assert_eq!(parse_num::<i32>(""), None);
    }

    #[test]
    fn enums_by_name_and_ordinal() {
        assert_eq!(Color::parse("GREEN"), Some(Color::Green));
        assert_eq!(Color::parse("2"), Some(Color::Blue));
        assert_eq!(Color::parse("3"), None);
        assert_eq!(Color::parse("green"), None);
        assert_eq!(Color::from_ordinal(-1), None);
        let b: Body = serde_json::from_str(r#"{"c":1}"#).unwrap();
        assert_eq!(b.c, Some(Color::Green));
        let b: Body = serde_json::from_str(r#"{"c":"BLUE"}"#).unwrap();
        assert_eq!(b.c, Some(Color::Blue));
        let b: Body = serde_json::from_str(r#"{"c":"0"}"#).unwrap();
        assert_eq!(b.c, Some(Color::Red));
        assert!(serde_json::from_str::<Body>(r#"{"c":7}"#).is_err());
        assert!(serde_json::from_str::<Body>(r#"{"c":"PURPLE"}"#).is_err());
        assert_eq!(serde_json::to_string(&Color::Blue).unwrap(), r#""BLUE""#);
    }

    #[test]
    fn body_scalars_are_coerced_like_fastjson() {
        let b: Body =
            serde_json::from_str(r#"{"n":"7","l":"1700000000000","b":1,"s":5,"x":{"y":[1]}}"#)
                .unwrap();
        assert_eq!(
            b,
            Body {
                n: 7,
                l: 1_700_000_000_000,
                b: true,
                s: "5".into(),
                c: None
            }
        );
        let b: Body = serde_json::from_str(r#"{"n":null,"l":"","b":"TRUE","s":null}"#).unwrap();
        assert_eq!((b.n, b.l, b.b, b.s.as_str()), (0, 0, true, ""));
        let b: Body = serde_json::from_str(r#"{"b":"0"}"#).unwrap();
        assert!(!b.b);
        assert!(serde_json::from_str::<Body>(r#"{"n":"seven"}"#).is_err());
        assert!(serde_json::from_str::<Body>(r#"{"n":9000000000}"#).is_err());
        assert!(serde_json::from_str::<Body>(r#"{"n":[1]}"#).is_err());
    }
}
