//! The change log of a generation: every add and removal since the generation was written, as
//! records `[length u32][crc32 u32][kind u8][body]` (little-endian). A record is applied only
//! when whole and its checksum matches; a kill in the middle of an append leaves a torn last
//! record, which reading stops at (and a writer cuts off): the change it carried was never
//! acknowledged, since acknowledging waits for the record to reach the disk.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::spec::Meta;

const ADD: u8 = 1;
const REMOVE: u8 = 2;
/// Largest record accepted when reading: a corrupt length beyond it ends the log.
const MAX_RECORD: usize = 1 << 28;

/// One change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An item added.
    Add {
        /// Its id.
        id: u64,
        /// Its vector.
        vector: Vec<f32>,
        /// Its metadata.
        meta: Meta,
    },
    /// Items removed.
    Remove {
        /// Their ids.
        ids: Vec<u64>,
    },
}

/// Appends `change` as one record to `out`.
pub fn encode(change: &Change, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    match change {
        Change::Add { id, vector, meta } => {
            body.push(ADD);
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&(vector.len() as u32).to_le_bytes());
            for v in vector {
                body.extend_from_slice(&v.to_le_bytes());
            }
            body.extend_from_slice(&serde_json::to_vec(meta).expect("metadata serialises"));
        }
        Change::Remove { ids } => {
            body.push(REMOVE);
            for id in ids {
                body.extend_from_slice(&id.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

fn decode_body(body: &[u8]) -> Option<Change> {
    let (&kind, rest) = body.split_first()?;
    match kind {
        ADD => {
            let id = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
            let n = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
            let values = rest.get(12..12 + n.checked_mul(4)?)?;
            let vector = values
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
            let meta = serde_json::from_slice(&rest[12 + n * 4..]).ok()?;
            Some(Change::Add { id, vector, meta })
        }
        REMOVE if rest.len().is_multiple_of(8) => Some(Change::Remove {
            ids: rest
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        }),
        _ => None,
    }
}

/// A log read back: its whole records, and where the last one ends.
#[derive(Debug, Default)]
pub struct Replay {
    /// The changes, in order.
    pub changes: Vec<Change>,
    /// Bytes of whole records; anything after (a torn append) is to be cut off.
    pub good_len: u64,
    /// Whether bytes followed the last whole record.
    pub torn: bool,
}

/// Reads the log at `path` (a missing log is empty).
pub fn read(path: &Path) -> Result<Replay> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::default()),
        Err(e) => return Err(e).at(path),
    };
    let mut replay = Replay::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else {
            break;
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            break;
        }
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let Some(change) = decode_body(body) else {
            break;
        };
        replay.changes.push(change);
        at += 8 + len;
    }
    replay.good_len = at as u64;
    replay.torn = at < bytes.len();
    Ok(replay)
}

/// Appends `changes` to the open log `file` and waits until they are on the disk.
pub fn append(file: &mut File, path: &Path, changes: &[Change]) -> Result<()> {
    let mut bytes = Vec::new();
    for c in changes {
        encode(c, &mut bytes);
    }
    file.write_all(&bytes).at(path)?;
    file.sync_data().at(path)
}

/// Reads a whole small file (for tests and checks).
#[allow(dead_code)]
pub(crate) fn read_all(path: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path).at(path)?.read_to_end(&mut out).at(path)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Change> {
        vec![
            Change::Add {
                id: 7,
                vector: vec![1.0, -2.5, 0.0],
                meta: Meta {
                    path: Some("a/b.png".into()),
                    label: Some("alice".into()),
                    extra: [("camera".to_string(), "3".to_string())].into(),
                },
            },
            Change::Remove { ids: vec![7, 9] },
            Change::Add {
                id: 8,
                vector: vec![0.5; 3],
                meta: Meta::default(),
            },
        ]
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut_at_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for c in sample() {
            encode(&c, &mut bytes);
            ends.push(bytes.len());
        }
        std::fs::write(&path, &bytes).unwrap();
        let r = read(&path).unwrap();
        assert_eq!(r.changes, sample());
        assert_eq!((r.good_len, r.torn), (bytes.len() as u64, false));
        // Every possible torn append: only whole records come back.
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let r = read(&path).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(r.changes, sample()[..whole], "cut at {cut}");
            assert_eq!(
                r.good_len as usize,
                if whole == 0 { 0 } else { ends[whole - 1] }
            );
            assert_eq!(r.torn, cut != r.good_len as usize);
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut bytes = Vec::new();
        for c in sample() {
            encode(&c, &mut bytes);
        }
        let first = {
            let mut b = Vec::new();
            encode(&sample()[0], &mut b);
            b.len()
        };
        bytes[first + 9] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let r = read(&path).unwrap();
        assert_eq!(r.changes, sample()[..1]);
        assert!(r.torn);
        assert!(
            read(&dir.path().join("missing"))
                .unwrap()
                .changes
                .is_empty()
        );
    }
}
