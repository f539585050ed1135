//! Shared by the remoting integration tests: generators of arbitrary commands in either
//! header encoding and of hostile byte streams (valid, corrupted, truncated and lying frames
//! mixed with random bytes), and the echo server the transport and fuzz tests talk to.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BufMut;
use flotilla_remoting::codec::{DEFAULT_MAX_FRAME, encode};
use flotilla_remoting::{
    LanguageCode, ProcessError, RemotingCommand, RemotingServer, SerializeType, processor_fn,
    response_code,
};
use proptest::prelude::*;

/// Arbitrary commands that the given header encoding can carry: the binary header holds
/// code and version in an i16 and writes an empty remark as "no remark".
pub fn command(ser: SerializeType) -> impl Strategy<Value = RemotingCommand> {
    let narrow = ser == SerializeType::RocketMq;
    let code = if narrow {
        (i32::from(i16::MIN)..=i32::from(i16::MAX)).boxed()
    } else {
        any::<i32>().boxed()
    };
    let version = if narrow {
        (i32::from(i16::MIN)..=i32::from(i16::MAX)).boxed()
    } else {
        any::<i32>().boxed()
    };
    let remark = if narrow {
        proptest::option::of(".{1,40}").boxed()
    } else {
        proptest::option::of(".{0,40}").boxed()
    };
    (
        code,
        0u8..14,
        version,
        any::<i32>(),
        any::<i32>(),
        remark,
        proptest::collection::hash_map(".{0,16}", ".{0,48}", 0..8),
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(
            move |(code, lang, version, opaque, flag, remark, ext_fields, body)| RemotingCommand {
                code,
                language: LanguageCode::from_code(i64::from(lang)),
                version,
                opaque,
                flag,
                remark,
                ext_fields: ext_fields.into_iter().collect::<HashMap<_, _>>(),
                body: body.into(),
                serialize_type: ser,
            },
        )
}

pub fn any_command() -> impl Strategy<Value = RemotingCommand> {
    prop_oneof![
        command(SerializeType::Json),
        command(SerializeType::RocketMq)
    ]
}

/// One piece of a hostile stream.
#[derive(Debug, Clone)]
pub enum Segment {
    /// A well-formed frame.
    Valid(RemotingCommand),
    /// A well-formed frame with some bytes overwritten (after the length word, or anywhere).
    Corrupted(RemotingCommand, Vec<(usize, u8)>),
    /// A well-formed frame cut short.
    Truncated(RemotingCommand, usize),
    /// A length word (any value: negative, tiny, at the cap, far above it) and random bytes.
    Declared(i32, Vec<u8>),
    /// A length word, a header-length word (any serialize type), random bytes.
    Marked(u32, u32, Vec<u8>),
    /// Random bytes.
    Raw(Vec<u8>),
}

pub fn segment() -> impl Strategy<Value = Segment> {
    let len_word = prop_oneof![
        any::<i32>(),
        -8i32..16,
        0i32..4096,
        Just(i32::MAX),
        Just(i32::MIN),
        Just(i32::try_from(DEFAULT_MAX_FRAME).unwrap()),
        Just(i32::try_from(DEFAULT_MAX_FRAME).unwrap() + 1),
    ];
    let mark_word = prop_oneof![
        any::<u32>(),
        (0u32..4, 0u32..4096).prop_map(|(t, h)| (t << 24) | h),
    ];
    let bytes = || proptest::collection::vec(any::<u8>(), 0..512);
    prop_oneof![
        3 => any_command().prop_map(Segment::Valid),
        2 => (any_command(), proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6))
            .prop_map(|(c, e)| Segment::Corrupted(c, e)),
        1 => (any_command(), any::<usize>()).prop_map(|(c, n)| Segment::Truncated(c, n)),
        2 => (len_word, bytes()).prop_map(|(l, b)| Segment::Declared(l, b)),
        2 => (0u32..8192, mark_word, bytes()).prop_map(|(l, m, b)| Segment::Marked(l, m, b)),
        1 => bytes().prop_map(Segment::Raw),
    ]
}

pub fn render(segments: &[Segment]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segments {
        match s {
            Segment::Valid(c) => out.extend_from_slice(&encode(c).unwrap()),
            Segment::Corrupted(c, edits) => {
                let mut f = encode(c).unwrap().to_vec();
                for (pos, b) in edits {
                    let i = pos % f.len();
                    f[i] = *b;
                }
                out.extend_from_slice(&f);
            }
            Segment::Truncated(c, n) => {
                let f = encode(c).unwrap();
                out.extend_from_slice(&f[..n % f.len()]);
            }
            Segment::Declared(len, b) => {
                out.put_i32(*len);
                out.extend_from_slice(b);
            }
            Segment::Marked(len, mark, b) => {
                out.put_u32(*len);
                out.put_u32(*mark);
                out.extend_from_slice(b);
            }
            Segment::Raw(b) => out.extend_from_slice(b),
        }
    }
    out
}

/// A server on 127.0.0.1:0 answering code 1 with an echo (body and extFields), code 2 with
/// `n2 = 2 × n`, and code 3 with TOPIC_NOT_EXIST.
pub async fn echo_server() -> RemotingServer {
    RemotingServer::builder()
        .register(
            1,
            Arc::new(processor_fn(|_ch, req: RemotingCommand| async move {
                let mut resp = RemotingCommand::success().with_body(req.body.clone());
                resp.ext_fields = req.ext_fields.clone();
                Ok(Some(resp))
            })),
        )
        .register(
            2,
            Arc::new(processor_fn(|_ch, req: RemotingCommand| async move {
                let n = req.ext_i32("n")?;
                Ok(Some(RemotingCommand::success().with_ext("n2", n * 2)))
            })),
        )
        .register(
            3,
            Arc::new(processor_fn(|_ch, _req| async move {
                Err(ProcessError::new(
                    response_code::TOPIC_NOT_EXIST,
                    "no topic",
                ))
            })),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}
