//! The classic HA wire format, shared by the master service and the slave client.
//!
//! Two one-way byte streams over one TCP connection, both big-endian and unframed beyond
//! their own fixed headers (so a Java slave or master can talk to us):
//!
//! - slave → master: a bare 8-byte `i64` — the slave's CommitLog max offset ("report").
//! - master → slave: `i64 masterPhyOffset | i32 size | size bytes` of raw CommitLog; a frame
//!   with `size == 0` is a heartbeat that only says where the master's stream stands.
//!
//! The decoders never panic on input: negative sizes, sizes above the configured bound and
//! negative offsets are [`WireError`]s, and the connection is dropped.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Length of a frame header (`i64 offset | i32 size`).
pub const HEADER_LEN: usize = 12;
/// Length of a slave report.
pub const REPORT_LEN: usize = 8;
/// Largest frame payload the master sends (Java's `haTransferBatchSize`).
pub const DEFAULT_BATCH: usize = 32 * 1024;
/// Largest frame payload a slave accepts (Java masters may be configured above 32 KiB).
pub const MAX_ACCEPTED_FRAME: usize = 16 << 20;

/// A protocol violation on the HA connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A frame announced a negative size or one above the accepted bound.
    #[error("frame size {size} is outside 0..={max}")]
    BadSize {
        /// The announced size.
        size: i64,
        /// The accepted bound.
        max: usize,
    },
    /// An offset (frame or report) was negative.
    #[error("negative offset {0}")]
    NegativeOffset(i64),
    /// The socket failed.
    #[error("HA connection I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl WireError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadSize { .. } => "HA_BAD_FRAME_SIZE",
            Self::NegativeOffset(_) => "HA_NEGATIVE_OFFSET",
            Self::Io(_) => "HA_IO",
        }
    }
}

/// One master → slave frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// CommitLog offset of the first payload byte (for heartbeats: the stream position).
    pub offset: i64,
    /// Raw CommitLog bytes; empty for a heartbeat.
    pub data: Bytes,
}

impl Frame {
    /// A heartbeat at `offset`.
    pub fn heartbeat(offset: i64) -> Self {
        Self {
            offset,
            data: Bytes::new(),
        }
    }

    /// Whether this is a heartbeat.
    pub fn is_heartbeat(&self) -> bool {
        self.data.is_empty()
    }
}

/// Encodes and decodes master → slave frames.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max: usize,
}

impl FrameCodec {
    /// A codec accepting payloads up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(MAX_ACCEPTED_FRAME)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut h = header;
        let offset = h.get_i64();
        let size = h.get_i32();
        if offset < 0 {
            return Err(WireError::NegativeOffset(offset));
        }
        let len = usize::try_from(size)
            .ok()
            .filter(|s| *s <= self.max)
            .ok_or(WireError::BadSize {
                size: i64::from(size),
                max: self.max,
            })?;
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let data = src.split_to(len).freeze();
        Ok(Some(Frame { offset, data }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, f: Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        let size = i32::try_from(f.data.len())
            .ok()
            .filter(|_| f.data.len() <= self.max)
            .ok_or(WireError::BadSize {
                size: i64::try_from(f.data.len()).unwrap_or(i64::MAX),
                max: self.max,
            })?;
        if f.offset < 0 {
            return Err(WireError::NegativeOffset(f.offset));
        }
        dst.reserve(HEADER_LEN + f.data.len());
        dst.put_i64(f.offset);
        dst.put_i32(size);
        dst.put_slice(&f.data);
        Ok(())
    }
}

/// Encodes and decodes slave → master reports (the slave's max offset).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportCodec;

impl Decoder for ReportCodec {
    type Item = i64;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<i64>, WireError> {
        if src.len() < REPORT_LEN {
            return Ok(None);
        }
        let v = src.get_i64();
        if v < 0 {
            return Err(WireError::NegativeOffset(v));
        }
        Ok(Some(v))
    }
}

impl Encoder<i64> for ReportCodec {
    type Error = WireError;

    fn encode(&mut self, v: i64, dst: &mut BytesMut) -> Result<(), WireError> {
        if v < 0 {
            return Err(WireError::NegativeOffset(v));
        }
        dst.put_i64(v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut c = FrameCodec::new(64);
        let mut buf = BytesMut::new();
        c.encode(
            Frame {
                offset: 4096,
                data: Bytes::from_static(b"hello"),
            },
            &mut buf,
        )
        .unwrap();
        c.encode(Frame::heartbeat(4101), &mut buf).unwrap();
        let all = buf.freeze();
        assert_eq!(all.len(), 2 * HEADER_LEN + 5);
        assert_eq!(&all[..8], &4096i64.to_be_bytes());
        assert_eq!(&all[8..12], &5i32.to_be_bytes());
        // Feed the bytes one at a time: frames come out only when complete.
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            src.put_u8(*b);
            while let Some(f) = c.decode(&mut src).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].offset, 4096);
        assert_eq!(&got[0].data[..], b"hello");
        assert!(!got[0].is_heartbeat());
        assert!(got[1].is_heartbeat());
        assert_eq!(got[1].offset, 4101);
        assert!(src.is_empty());
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut c = FrameCodec::new(64);
        let mut neg = BytesMut::new();
        neg.put_i64(0);
        neg.put_i32(-1);
        assert_eq!(c.decode(&mut neg).unwrap_err().code(), "HA_BAD_FRAME_SIZE");
        let mut big = BytesMut::new();
        big.put_i64(0);
        big.put_i32(65);
        assert_eq!(c.decode(&mut big).unwrap_err().code(), "HA_BAD_FRAME_SIZE");
        let mut off = BytesMut::new();
        off.put_i64(-5);
        off.put_i32(0);
        assert_eq!(c.decode(&mut off).unwrap_err().code(), "HA_NEGATIVE_OFFSET");
        let mut huge = BytesMut::new();
        huge.put_i64(i64::MAX);
        huge.put_i32(i32::MAX);
        assert!(FrameCodec::default().decode(&mut huge).is_err());
        let mut short = BytesMut::from(&[1u8, 2, 3][..]);
        assert!(c.decode(&mut short).unwrap().is_none());
        assert!(
            c.encode(
                Frame {
                    offset: 0,
                    data: Bytes::from(vec![0u8; 65])
                },
                &mut BytesMut::new()
            )
            .is_err()
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic pseudo-random byte soup through both decoders.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..2000 {
            let len = (round % 40) + 1;
            let mut src = BytesMut::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                src.put_u8((x & 0xFF) as u8);
            }
            let mut r = src.clone();
            let mut fc = FrameCodec::new(16);
            while let Ok(Some(_)) = fc.decode(&mut src) {}
            while let Ok(Some(_)) = ReportCodec.decode(&mut r) {}
        }
    }

    #[test]
    fn reports_round_trip() {
        let mut buf = BytesMut::new();
        ReportCodec.encode(123_456, &mut buf).unwrap();
        assert_eq!(&buf[..], &123_456i64.to_be_bytes());
        assert_eq!(ReportCodec.decode(&mut buf).unwrap(), Some(123_456));
        assert!(ReportCodec.encode(-1, &mut buf).is_err());
        let mut neg = BytesMut::from(&(-7i64).to_be_bytes()[..]);
        assert!(ReportCodec.decode(&mut neg).is_err());
    }
}
