//! Property tests of the remoting codec: what any peer can send must never panic the decoder
//! or make it hold more memory than the frame cap.
//!
//! - every `RemotingCommand` survives encode → decode in both header encodings, also when
//!   several frames arrive in arbitrary chunk splits;
//! - arbitrary byte streams (random bytes, valid frames, corrupted and truncated frames,
//!   frames declaring huge or negative lengths) fed in arbitrary chunks either yield frames
//!   or a clean [`CodecError`], the same as when fed at once, and the bytes the decoder
//!   keeps buffered stay below `4 + cap`;
//! - a header declaring 2 GiB is rejected after the first read, without reading or
//!   reserving the declared length.
// Test helpers may unwrap: a panic is a test failure with a location.
#![allow(clippy::unwrap_used)]

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use flotilla_remoting::codec::{CodecError, DEFAULT_MAX_FRAME, encode};
use flotilla_remoting::{RemotingCodec, RemotingCommand, SerializeType};

use common::{any_command, command, render, segment};
use futures::StreamExt;
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder, FramedRead};

/// Splits `data` into chunks of the given sizes (cycled), at least one byte each.
fn chunks<'a>(data: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut pos = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        i += 1;
        let end = (pos + n).min(data.len());
        let c = &data[pos..end];
        pos = end;
        Some(c)
    })
}

/// What a decoder made of a stream: the frames, and whether it ended in an error.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<RemotingCommand>,
    error: Option<&'static str>,
}

/// Feeds `data` in chunks, draining frames after each chunk like `FramedRead` does, and
/// checks the memory bound: after the decoder asks for more bytes, fewer than `4 + cap`
/// bytes are buffered.
fn feed(codec: &mut RemotingCodec, data: &[u8], sizes: &[usize]) -> Outcome {
    let cap = codec.max_frame();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks(data, sizes) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(cmd)) => frames.push(cmd),
                Ok(None) => {
                    assert!(
                        buf.len() < 4 + cap,
                        "decoder waits for more with {} bytes buffered (cap {cap})",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    return Outcome {
                        frames,
                        error: Some(e.code()),
                    };
                }
            }
        }
    }
    Outcome {
        frames,
        error: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn json_round_trip(cmd in command(SerializeType::Json)) {
        let mut buf = encode(&cmd).unwrap();
        let out = RemotingCodec::new().decode(&mut buf).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, cmd);
    }

    #[test]
    fn rocketmq_round_trip(cmd in command(SerializeType::RocketMq)) {
        let mut buf = encode(&cmd).unwrap();
        let out = RemotingCodec::new().decode(&mut buf).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, cmd);
    }

    /// Several frames of mixed encodings, split anywhere, come out whole and in order.
    #[test]
    fn round_trip_in_any_chunks(
        cmds in proptest::collection::vec(any_command(), 1..8),
        sizes in proptest::collection::vec(1usize..700, 1..16),
    ) {
        let mut data = Vec::new();
        for c in &cmds {
            data.extend_from_slice(&encode(c).unwrap());
        }
        let out = feed(&mut RemotingCodec::new(), &data, &sizes);
        prop_assert_eq!(out.error, None);
        prop_assert_eq!(out.frames, cmds);
    }

    /// Random bytes never panic, and the result does not depend on how they were split.
    #[test]
    fn random_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        sizes in proptest::collection::vec(1usize..300, 1..16),
    ) {
        let whole = feed(&mut RemotingCodec::new(), &data, &[data.len().max(1)]);
        let split = feed(&mut RemotingCodec::new(), &data, &sizes);
        prop_assert_eq!(whole, split);
    }

    /// Hostile streams (valid, corrupted, truncated and lying frames mixed) never panic,
    /// keep the buffer under the cap, and decode the same however they are split, with the
    /// default cap and with a small one (so "above the cap" is reached with small inputs).
    #[test]
    fn hostile_streams_never_panic(
        segments in proptest::collection::vec(segment(), 1..8),
        sizes in proptest::collection::vec(1usize..600, 1..16),
        small_cap in 16usize..4096,
    ) {
        let data = render(&segments);
        for cap in [DEFAULT_MAX_FRAME, small_cap] {
            let whole = feed(&mut RemotingCodec::with_max_frame(cap), &data, &[data.len().max(1)]);
            let split = feed(&mut RemotingCodec::with_max_frame(cap), &data, &sizes);
            prop_assert_eq!(whole, split);
        }
    }

    /// Any declared length above the cap is an error as soon as the length word is in,
    /// whatever follows, and the buffer is not grown for it.
    #[test]
    fn over_cap_lengths_fail_at_once(
        extra in 1u64..=(i32::MAX as u64 - DEFAULT_MAX_FRAME as u64),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let len = DEFAULT_MAX_FRAME as u64 + extra;
        let mut buf = BytesMut::with_capacity(128);
        buf.put_u32(u32::try_from(len).unwrap());
        buf.extend_from_slice(&tail);
        let cap_before = buf.capacity();
        let err = RemotingCodec::new().decode(&mut buf).unwrap_err();
        prop_assert!(
            matches!(err, CodecError::FrameTooLarge { .. }),
            "expected FrameTooLarge, got {err:?}"
        );
        prop_assert_eq!(buf.capacity(), cap_before);
    }
}

/// A frame at the cap that has not arrived yet reserves nothing: the buffer holds what was
/// received, not what was declared.
#[test]
fn partial_large_frame_reserves_nothing() {
    let mut buf = BytesMut::new();
    buf.put_u32(u32::try_from(DEFAULT_MAX_FRAME).unwrap());
    buf.put_u32(0);
    buf.extend_from_slice(&[b'x'; 100]);
    let mut codec = RemotingCodec::new();
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(
        buf.capacity() < 64 * 1024,
        "capacity {} after a partial frame",
        buf.capacity()
    );
}

/// A peer that never stops sending (up to 64 MiB): `head`, then zeros. Counts what the
/// reader took.
struct EndlessPeer {
    head: Vec<u8>,
    served: usize,
}

impl AsyncRead for EndlessPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Bounded so a decoder that wrongly waits for the declared bytes fails in seconds
        // (EOF instead of `FrameTooLarge`) rather than reading 2 GiB.
        let n = buf
            .remaining()
            .min((64usize << 20).saturating_sub(self.served));
        let start = self.served.min(self.head.len());
        let end = (self.served + n).min(self.head.len());
        let from_head = end - start;
        buf.put_slice(&self.head[start..end]);
        buf.put_slice(&vec![0u8; n - from_head]);
        self.served += n;
        Poll::Ready(Ok(()))
    }
}

/// A header declaring 2 GiB (and one declaring cap + 1) ends the stream with
/// `FrameTooLarge` after the first read: the peer's endless bytes are not read and the
/// declared length is never allocated.
#[tokio::test]
async fn two_gib_header_is_rejected_without_reading_it() {
    for declared in [i32::MAX, i32::try_from(DEFAULT_MAX_FRAME).unwrap() + 1] {
        let mut head = declared.to_be_bytes().to_vec();
        head.extend_from_slice(&0u32.to_be_bytes());
        let peer = EndlessPeer { head, served: 0 };
        let mut frames = FramedRead::new(peer, RemotingCodec::new());
        let first = frames.next().await.unwrap();
        assert!(
            matches!(first, Err(CodecError::FrameTooLarge { .. })),
            "{first:?}"
        );
        let served = frames.get_ref().served;
        let held = frames.read_buffer().capacity();
        assert!(served <= 64 * 1024, "read {served} bytes before rejecting");
        assert!(held <= 64 * 1024, "buffer grew to {held} bytes");
    }
}
