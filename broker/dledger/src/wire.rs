//! The peer-to-peer RPC messages and their binary encoding.
//!
//! Frames are length-prefixed (`tokio_util`'s `LengthDelimitedCodec`, 4-byte big-endian
//! length). Inside a frame: a version byte, a kind byte, the group name, then the fields of
//! the message in a fixed order (integers big-endian, strings and byte blobs prefixed by a
//! `u32` length). CommitLog bytes travel as one blob, copied once from the leader's mapped
//! file into the frame and once from the frame into the follower's mapped file — no JSON, no
//! per-message framing. The decoder checks every length before reading, so a hostile or
//! truncated frame is an error, never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::epoch::Epoch;

/// Wire format version.
pub const VERSION: u8 = 1;
/// Largest frame accepted (a 4 MiB message plus headroom; appends are chunked below this).
pub const MAX_FRAME: usize = 64 << 20;

/// Errors decoding a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame ended before a field was complete.
    #[error("frame truncated while reading {0}")]
    Truncated(&'static str),
    /// The version byte is not one this build speaks.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// The kind byte is unknown.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A string field is not UTF-8.
    #[error("field {0} is not valid UTF-8")]
    Utf8(&'static str),
    /// Bytes remain after the last field.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

impl WireError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Truncated(_) => "DLEDGER_WIRE_TRUNCATED",
            WireError::Version(_) => "DLEDGER_WIRE_VERSION",
            WireError::UnknownKind(_) => "DLEDGER_WIRE_UNKNOWN_KIND",
            WireError::Utf8(_) => "DLEDGER_WIRE_UTF8",
            WireError::Trailing(_) => "DLEDGER_WIRE_TRAILING",
        }
    }
}

/// A request from one member to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// RequestVote, or a pre-vote (which changes no state on the voter).
    Vote {
        /// Candidate's term (for a pre-vote: the term it would campaign in).
        term: u64,
        /// Candidate id.
        candidate: String,
        /// Term of the candidate's last epoch.
        last_term: u64,
        /// Candidate's CommitLog end.
        end_offset: i64,
        /// Pre-vote: "would you vote for me?"
        pre_vote: bool,
        /// Sent on a leadership transfer: voters ignore their leader stickiness.
        transfer: bool,
    },
    /// AppendEntries: CommitLog bytes from `prev_offset`, or a heartbeat when `data` is empty.
    Append {
        /// Leader's term.
        term: u64,
        /// Leader id.
        leader: String,
        /// Offset the data starts at.
        prev_offset: i64,
        /// Term of the byte before `prev_offset` in the leader's log (0 at offset 0).
        prev_term: u64,
        /// The leader's epochs starting in `[prev_offset, prev_offset + data.len()]`.
        epochs: Vec<Epoch>,
        /// Leader's commit offset.
        commit: i64,
        /// Record-aligned CommitLog bytes.
        data: Bytes,
    },
    /// Leadership transfer: "start an election now".
    TimeoutNow {
        /// Leader's term.
        term: u64,
        /// Leader id.
        leader: String,
    },
}

/// How a follower handled an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Appended; the follower's log equals the leader's up to `end`.
    Ok {
        /// Follower's verified end.
        end: i64,
    },
    /// The consistency check failed. `end` is the follower's end capped at the probe point;
    /// `epoch` is the follower's epoch holding the byte before `end`.
    Mismatch {
        /// Follower end (at most the probe offset).
        end: i64,
        /// The follower's epoch before `end`.
        epoch: Option<Epoch>,
    },
    /// The follower could not apply the append (store error); the leader retries later.
    Failed {
        /// Error code.
        code: String,
        /// Description.
        message: String,
    },
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Vote answer.
    Vote {
        /// Voter's term.
        term: u64,
        /// Whether the vote (or pre-vote) is granted.
        granted: bool,
    },
    /// Append answer.
    Append {
        /// Follower's term.
        term: u64,
        /// What happened.
        outcome: AppendOutcome,
    },
    /// TimeoutNow answer.
    TimeoutNow {
        /// Receiver's term.
        term: u64,
        /// Whether it starts an election.
        accepted: bool,
    },
    /// The request was refused before handling (wrong group, bad frame, shutting down).
    Error {
        /// Error code.
        code: String,
        /// Description.
        message: String,
    },
}

const K_VOTE: u8 = 1;
const K_APPEND: u8 = 2;
const K_TIMEOUT_NOW: u8 = 3;
const K_R_VOTE: u8 = 11;
const K_R_APPEND_OK: u8 = 12;
const K_R_APPEND_MISMATCH: u8 = 13;
const K_R_APPEND_FAILED: u8 = 14;
const K_R_TIMEOUT_NOW: u8 = 15;
const K_R_ERROR: u8 = 16;

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> Result<(), WireError> {
        if self.buf.remaining() < n {
            Err(WireError::Truncated(what))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
        self.need(8, what)?;
        Ok(self.buf.get_i64())
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, WireError> {
        Ok(self.u8(what)? != 0)
    }
    fn blob(&mut self, what: &'static str) -> Result<Bytes, WireError> {
        self.need(4, what)?;
        let n = self.buf.get_u32() as usize;
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }
    fn string(&mut self, what: &'static str) -> Result<String, WireError> {
        let b = self.blob(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::Utf8(what))
    }
    fn epoch(&mut self) -> Result<Option<Epoch>, WireError> {
        if !self.bool("epoch flag")? {
            return Ok(None);
        }
        Ok(Some(Epoch {
            term: self.u64("epoch term")?,
            start: self.i64("epoch start")?,
        }))
    }
    fn finish(self) -> Result<(), WireError> {
        match self.buf.remaining() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

fn put_epoch(b: &mut BytesMut, e: Option<Epoch>) {
    match e {
        None => b.put_u8(0),
        Some(e) => {
            b.put_u8(1);
            b.put_u64(e.term);
            b.put_i64(e.start);
        }
    }
}

fn header(b: &mut BytesMut, kind: u8, group: &str) {
    b.put_u8(VERSION);
    b.put_u8(kind);
    put_str(b, group);
}

fn open(buf: Bytes) -> Result<(Reader, u8, String), WireError> {
    let mut r = Reader { buf };
    let v = r.u8("version")?;
    if v != VERSION {
        return Err(WireError::Version(v));
    }
    let kind = r.u8("kind")?;
    let group = r.string("group")?;
    Ok((r, kind, group))
}

impl Request {
    /// Encodes the request for `group`.
    pub fn encode(&self, group: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        match self {
            Request::Vote {
                term,
                candidate,
                last_term,
                end_offset,
                pre_vote,
                transfer,
            } => {
                header(&mut b, K_VOTE, group);
                b.put_u64(*term);
                put_str(&mut b, candidate);
                b.put_u64(*last_term);
                b.put_i64(*end_offset);
                b.put_u8(u8::from(*pre_vote));
                b.put_u8(u8::from(*transfer));
            }
            Request::Append {
                term,
                leader,
                prev_offset,
                prev_term,
                epochs,
                commit,
                data,
            } => {
                b.reserve(data.len() + 32 * epochs.len());
                header(&mut b, K_APPEND, group);
                b.put_u64(*term);
                put_str(&mut b, leader);
                b.put_i64(*prev_offset);
                b.put_u64(*prev_term);
                b.put_u32(epochs.len() as u32);
                for e in epochs {
                    b.put_u64(e.term);
                    b.put_i64(e.start);
                }
                b.put_i64(*commit);
                b.put_u32(data.len() as u32);
                b.put_slice(data);
            }
            Request::TimeoutNow { term, leader } => {
                header(&mut b, K_TIMEOUT_NOW, group);
                b.put_u64(*term);
                put_str(&mut b, leader);
            }
        }
        b.freeze()
    }

    /// Decodes a request and the group it is addressed to.
    pub fn decode(buf: Bytes) -> Result<(String, Request), WireError> {
        let (mut r, kind, group) = open(buf)?;
        let req = match kind {
            K_VOTE => Request::Vote {
                term: r.u64("term")?,
                candidate: r.string("candidate")?,
                last_term: r.u64("last_term")?,
                end_offset: r.i64("end_offset")?,
                pre_vote: r.bool("pre_vote")?,
                transfer: r.bool("transfer")?,
            },
            K_APPEND => {
                let term = r.u64("term")?;
                let leader = r.string("leader")?;
                let prev_offset = r.i64("prev_offset")?;
                let prev_term = r.u64("prev_term")?;
                r.need(4, "epoch count")?;
                let n = r.buf.get_u32() as usize;
                r.need(n.saturating_mul(16), "epochs")?;
                let mut epochs = Vec::with_capacity(n);
                for _ in 0..n {
                    epochs.push(Epoch {
                        term: r.u64("epoch term")?,
                        start: r.i64("epoch start")?,
                    });
                }
                Request::Append {
                    term,
                    leader,
                    prev_offset,
                    prev_term,
                    epochs,
                    commit: r.i64("commit")?,
                    data: r.blob("data")?,
                }
            }
            K_TIMEOUT_NOW => Request::TimeoutNow {
                term: r.u64("term")?,
                leader: r.string("leader")?,
            },
            k => return Err(WireError::UnknownKind(k)),
        };
        r.finish()?;
        Ok((group, req))
    }
}

impl Response {
    /// Encodes the response for `group`.
    pub fn encode(&self, group: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(48);
        match self {
            Response::Vote { term, granted } => {
                header(&mut b, K_R_VOTE, group);
                b.put_u64(*term);
                b.put_u8(u8::from(*granted));
            }
            Response::Append { term, outcome } => match outcome {
                AppendOutcome::Ok { end } => {
                    header(&mut b, K_R_APPEND_OK, group);
                    b.put_u64(*term);
                    b.put_i64(*end);
                }
                AppendOutcome::Mismatch { end, epoch } => {
                    header(&mut b, K_R_APPEND_MISMATCH, group);
                    b.put_u64(*term);
                    b.put_i64(*end);
                    put_epoch(&mut b, *epoch);
                }
                AppendOutcome::Failed { code, message } => {
                    header(&mut b, K_R_APPEND_FAILED, group);
                    b.put_u64(*term);
                    put_str(&mut b, code);
                    put_str(&mut b, message);
                }
            },
            Response::TimeoutNow { term, accepted } => {
                header(&mut b, K_R_TIMEOUT_NOW, group);
                b.put_u64(*term);
                b.put_u8(u8::from(*accepted));
            }
            Response::Error { code, message } => {
                header(&mut b, K_R_ERROR, group);
                put_str(&mut b, code);
                put_str(&mut b, message);
            }
        }
        b.freeze()
    }

    /// Decodes a response and the group it comes from.
    pub fn decode(buf: Bytes) -> Result<(String, Response), WireError> {
        let (mut r, kind, group) = open(buf)?;
        let resp = match kind {
            K_R_VOTE => Response::Vote {
                term: r.u64("term")?,
                granted: r.bool("granted")?,
            },
            K_R_APPEND_OK => Response::Append {
                term: r.u64("term")?,
                outcome: AppendOutcome::Ok { end: r.i64("end")? },
            },
            K_R_APPEND_MISMATCH => Response::Append {
                term: r.u64("term")?,
                outcome: AppendOutcome::Mismatch {
                    end: r.i64("end")?,
                    epoch: r.epoch()?,
                },
            },
            K_R_APPEND_FAILED => Response::Append {
                term: r.u64("term")?,
                outcome: AppendOutcome::Failed {
                    code: r.string("code")?,
                    message: r.string("message")?,
                },
            },
            K_R_TIMEOUT_NOW => Response::TimeoutNow {
                term: r.u64("term")?,
                accepted: r.bool("accepted")?,
            },
            K_R_ERROR => Response::Error {
                code: r.string("code")?,
                message: r.string("message")?,
            },
            k => return Err(WireError::UnknownKind(k)),
        };
        r.finish()?;
        Ok((group, resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = vec![
            Request::Vote {
                term: 9,
                candidate: "n1".into(),
                last_term: 7,
                end_offset: 12345,
                pre_vote: true,
                transfer: false,
            },
            Request::Append {
                term: 3,
                leader: "n0".into(),
                prev_offset: 100,
                prev_term: 2,
                epochs: vec![Epoch {
                    term: 3,
                    start: 100,
                }],
                commit: 80,
                data: Bytes::from_static(b"records"),
            },
            Request::TimeoutNow {
                term: 4,
                leader: "n2".into(),
            },
        ];
        for r in reqs {
            let (g, back) = Request::decode(r.encode("grp")).unwrap();
            assert_eq!(g, "grp");
            assert_eq!(back, r);
        }
    }

    #[test]
    fn responses_round_trip() {
        let resps = vec![
            Response::Vote {
                term: 1,
                granted: true,
            },
            Response::Append {
                term: 2,
                outcome: AppendOutcome::Ok { end: 10 },
            },
            Response::Append {
                term: 2,
                outcome: AppendOutcome::Mismatch {
                    end: 10,
                    epoch: Some(Epoch { term: 1, start: 0 }),
                },
            },
            Response::Append {
                term: 2,
                outcome: AppendOutcome::Mismatch {
                    end: 0,
                    epoch: None,
                },
            },
            Response::Append {
                term: 2,
                outcome: AppendOutcome::Failed {
                    code: "X".into(),
                    message: "y".into(),
                },
            },
            Response::TimeoutNow {
                term: 5,
                accepted: false,
            },
            Response::Error {
                code: "C".into(),
                message: "m".into(),
            },
        ];
        for r in resps {
            let (_, back) = Response::decode(r.encode("g")).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let full = Request::Append {
            term: 3,
            leader: "n0".into(),
            prev_offset: 100,
            prev_term: 2,
            epochs: vec![],
            commit: 80,
            data: Bytes::from_static(b"abc"),
        }
        .encode("g");
        for cut in 0..full.len() {
            assert!(Request::decode(full.slice(..cut)).is_err(), "cut {cut}");
        }
        let mut extra = BytesMut::from(&full[..]);
        extra.put_u8(0);
        assert_eq!(Request::decode(extra.freeze()), Err(WireError::Trailing(1)));
        assert_eq!(
            Request::decode(Bytes::from_static(&[9, 1]))
                .unwrap_err()
                .code(),
            "DLEDGER_WIRE_VERSION"
        );
        assert_eq!(
            Request::decode(Bytes::from_static(&[1, 99, 0, 0, 0, 0])),
            Err(WireError::UnknownKind(99))
        );
    }
}
