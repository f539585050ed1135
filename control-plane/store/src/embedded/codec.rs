//! The byte format of the embedded store's records.
//!
//! redb stores bytes; this module turns key records and revision-log entries into bytes and
//! back. The format is small, explicit and versioned (first byte), so a future change can read
//! old files. All integers are little-endian.
//!
//! - key record: `version=1, create i64, mod i64, version i64, lease i64 (0 = none), value`
//! - log entry (all events of one revision): `version=1, count u32, events…` where an event is
//!   `kind u8 (0 put, 1 delete), key (u32 len + bytes), kv record (u32 len + bytes),
//!   has_prev u8, [prev kv record (u32 len + bytes)]`.

use crate::error::{Result, StoreError};
use crate::types::{EventKind, KeyValue, LeaseId, WatchEvent};

const FORMAT: u8 = 1;

fn corrupt(what: &str) -> StoreError {
    StoreError::Storage(format!("corrupt {what} record"))
}

/// Encodes the stored part of a key (everything but the key itself).
pub(crate) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + kv.value.len());
    out.push(FORMAT);
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.lease.map_or(0, |l| l.0).to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// Decodes a key record written by [`encode_kv`].
pub(crate) fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    let mut r = Reader { bytes, what: "key" };
    if r.u8()? != FORMAT {
        return Err(corrupt("key"));
    }
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    let version = r.i64()?;
    let lease = r.i64()?;
    Ok(KeyValue {
        key: key.to_string(),
        value: r.bytes.to_vec(),
        create_revision,
        mod_revision,
        version,
        lease: (lease != 0).then_some(LeaseId(lease)),
    })
}

/// Encodes the events of one revision.
pub(crate) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let mut out = vec![FORMAT];
    let count = u32::try_from(events.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for ev in events {
        out.push(match ev.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        put_chunk(&mut out, ev.kv.key.as_bytes());
        put_chunk(&mut out, &encode_kv(&ev.kv));
        match &ev.prev {
            Some(prev) => {
                out.push(1);
                put_chunk(&mut out, &encode_kv(prev));
            }
            None => out.push(0),
        }
    }
    out
}

/// Decodes the events of one revision.
pub(crate) fn decode_events(bytes: &[u8]) -> Result<Vec<WatchEvent>> {
    let mut r = Reader { bytes, what: "log" };
    if r.u8()? != FORMAT {
        return Err(corrupt("log"));
    }
    let count = r.u32()?;
    let mut events = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let kind = match r.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            _ => return Err(corrupt("log")),
        };
        let key = std::str::from_utf8(r.chunk()?).map_err(|_| corrupt("log"))?;
        let kv = decode_kv(key, r.chunk()?)?;
        let prev = match r.u8()? {
            0 => None,
            _ => Some(decode_kv(key, r.chunk()?)?),
        };
        events.push(WatchEvent { kind, kv, prev });
    }
    Ok(events)
}

fn put_chunk(out: &mut Vec<u8>, chunk: &[u8]) {
    let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(chunk);
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(corrupt(self.what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(a))
    }

    fn chunk(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], lease: Option<i64>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version: 2,
            lease: lease.map(LeaseId),
        }
    }

    #[test]
    fn kv_round_trips() {
        let k = kv("/a", b"hello", Some(42));
        assert_eq!(decode_kv("/a", &encode_kv(&k)).unwrap(), k);
    }

    #[test]
    fn events_round_trip() {
        let events = vec![
            WatchEvent {
                kind: EventKind::Put,
                kv: kv("/a", b"x", None),
                prev: Some(kv("/a", b"old", Some(5))),
            },
            WatchEvent {
                kind: EventKind::Delete,
                kv: kv("/b", b"", None),
                prev: None,
            },
        ];
        assert_eq!(decode_events(&encode_events(&events)).unwrap(), events);
    }

    #[test]
    fn truncated_records_are_errors() {
        let bytes = encode_kv(&kv("/a", b"x", None));
        assert!(decode_kv("/a", &bytes[..10]).is_err());
        let log = encode_events(&[WatchEvent {
            kind: EventKind::Put,
            kv: kv("/a", b"x", None),
            prev: None,
        }]);
        assert!(decode_events(&log[..log.len() - 3]).is_err());
    }
}
