//! The on-disk layout of the sled store: key prefixes and record encodings.
//!
//! Everything lives in one sled tree so that a batch touching current
//! values, the log and the meta record is applied atomically:
//!
//! - `k` + key bytes -> `create_rev u64 | mod_rev u64 | value` (current values);
//! - `l` + revision as big-endian u64 -> event record (so the log sorts by
//!   revision);
//! - `m/current`, `m/compacted` -> big-endian u64; `m/format` -> layout version.
//!
//! Integers are big-endian, byte strings are length-prefixed with a u64.
//! A record that does not decode is reported as `Error::Io`, never a panic.

use bytes::Bytes;

use crate::{Error, Event, KeyValue, Result, Revision};

pub(super) const KV_PREFIX: u8 = b'k';
pub(super) const LOG_PREFIX: u8 = b'l';
pub(super) const META_CURRENT: &[u8] = b"m/current";
pub(super) const META_COMPACTED: &[u8] = b"m/compacted";
pub(super) const META_FORMAT: &[u8] = b"m/format";
/// Bump when the layout changes incompatibly.
pub(super) const FORMAT_VERSION: u64 = 1;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const NO_PREV: u8 = 0;
const HAS_PREV: u8 = 1;

pub(super) fn kv_key(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(KV_PREFIX);
    out.extend_from_slice(key.as_bytes());
    out
}

pub(super) fn log_key(rev: Revision) -> [u8; 9] {
    let mut out = [LOG_PREFIX; 9];
    out[1..].copy_from_slice(&rev.to_be_bytes());
    out
}

pub(super) fn decode_log_key(raw: &[u8]) -> Result<Revision> {
    match raw {
        [LOG_PREFIX, rev @ ..] => decode_u64(rev),
        _ => Err(corrupt("log key")),
    }
}

pub(super) fn encode_u64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

pub(super) fn decode_u64(raw: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| corrupt("integer"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn corrupt(what: &str) -> Error {
    Error::Io(format!("corrupt storage record: bad {what}"))
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The current-value record of `kv` (its key is in the sled key).
pub(super) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

pub(super) fn decode_kv(key: &str, raw: &[u8]) -> Result<KeyValue> {
    let mut reader = Reader { rest: raw };
    let create_revision = reader.u64()?;
    let mod_revision = reader.u64()?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(reader.rest),
        create_revision,
        mod_revision,
    })
}

/// `create_rev | mod_rev | value` with a length prefix (inside events).
fn put_versioned(out: &mut Vec<u8>, kv: &KeyValue) {
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    put_bytes(out, &kv.value);
}

/// An event record; its revision is in the sled key.
///
/// Put: `1 | key | create_rev | value | 0` or `... | 1 | prev`;
/// Delete: `2 | key | prev`, where prev is `create_rev | mod_rev | value`.
pub(super) fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match event {
        Event::Put { kv, prev } => {
            out.push(TAG_PUT);
            put_bytes(&mut out, kv.key.as_bytes());
            out.extend_from_slice(&kv.create_revision.to_be_bytes());
            put_bytes(&mut out, &kv.value);
            match prev {
                None => out.push(NO_PREV),
                Some(prev) => {
                    out.push(HAS_PREV);
                    put_versioned(&mut out, prev);
                }
            }
        }
        Event::Delete { prev, .. } => {
            out.push(TAG_DELETE);
            put_bytes(&mut out, prev.key.as_bytes());
            put_versioned(&mut out, prev);
        }
    }
    out
}

pub(super) fn decode_event(rev: Revision, raw: &[u8]) -> Result<Event> {
    let mut reader = Reader { rest: raw };
    let tag = reader.u8()?;
    let key = reader.string()?;
    let event = match tag {
        TAG_PUT => {
            let create_revision = reader.u64()?;
            let value = reader.bytes()?;
            let prev = match reader.u8()? {
                NO_PREV => None,
                HAS_PREV => Some(reader.versioned(key.clone())?),
                _ => return Err(corrupt("event prev flag")),
            };
            let kv = KeyValue {
                key,
                value,
                create_revision,
                mod_revision: rev,
            };
            Event::Put { kv, prev }
        }
        TAG_DELETE => Event::Delete {
            prev: reader.versioned(key)?,
            revision: rev,
        },
        _ => return Err(corrupt("event tag")),
    };
    reader.finish()?;
    Ok(event)
}

/// A cursor over a record that fails instead of panicking on short input.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.rest.len() < len {
            return Err(corrupt("length"));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64> {
        decode_u64(self.take(8)?)
    }

    fn slice(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.u64()?).map_err(|_| corrupt("length"))?;
        self.take(len)
    }

    fn bytes(&mut self) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(self.slice()?))
    }

    fn string(&mut self) -> Result<String> {
        let raw = self.slice()?;
        String::from_utf8(raw.to_vec()).map_err(|_| corrupt("key encoding"))
    }

    fn versioned(&mut self, key: String) -> Result<KeyValue> {
        let create_revision = self.u64()?;
        let mod_revision = self.u64()?;
        let value = self.bytes()?;
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
        })
    }

    fn finish(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &'static [u8], create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from_static(value),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn every_event_kind_survives_encoding() {
        let events = [
            Event::Put {
                kv: kv("/a", b"one", 7, 7),
                prev: None,
            },
            Event::Put {
                kv: kv("/a", b"", 7, 9),
                prev: Some(kv("/a", b"one", 7, 7)),
            },
            Event::Delete {
                prev: kv("/a", b"\x00\xff", 7, 9),
                revision: 12,
            },
        ];
        for event in events {
            let raw = encode_event(&event);
            assert_eq!(decode_event(event.revision(), &raw).unwrap(), event);
        }
    }

    #[test]
    fn a_truncated_record_is_an_io_error_not_a_panic() {
        let event = Event::Delete {
            prev: kv("/a", b"value", 1, 2),
            revision: 3,
        };
        let raw = encode_event(&event);
        for len in 0..raw.len() {
            assert!(matches!(decode_event(3, &raw[..len]), Err(Error::Io(_))));
        }
        assert!(matches!(decode_kv("/a", &[0; 15]), Err(Error::Io(_))));
    }

    #[test]
    fn log_keys_sort_by_revision() {
        assert!(log_key(255) < log_key(256));
        assert_eq!(decode_log_key(&log_key(1 << 40)).unwrap(), 1 << 40);
    }
}
