//! `memory.bin` in a checkpoint: the cross-batch memory (`[loss] memory_size`) as it stood,
//! so that a resumed run mines against exactly the embeddings the uninterrupted one would.
//!
//! Layout, little-endian: the magic `TXBM`, a `u32` version (1), then `u64` capacity, dim,
//! next slot and length, then `length × dim` `f32` embeddings and `length` `i64` labels.

use triplet_loss::MemoryState;

const MAGIC: &[u8; 4] = b"TXBM";
const VERSION: u32 = 1;

/// The bytes of `state`.
pub fn encode(state: &MemoryState) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + state.embeddings.len() * 4 + state.labels.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for n in [state.capacity, state.dim, state.next, state.labels.len()] {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    for v in &state.embeddings {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for l in &state.labels {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out
}

/// The state in `bytes`, or what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<MemoryState, String> {
    if bytes.len() < 40 || &bytes[..4] != MAGIC {
        return Err("memory.bin is not a cross-batch memory".into());
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!(
            "memory.bin has version {version}, this build reads {VERSION}"
        ));
    }
    let field = |i: usize| {
        let at = 8 + 8 * i;
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize
    };
    let (capacity, dim, next, len) = (field(0), field(1), field(2), field(3));
    let values = len.checked_mul(dim);
    let expected = values
        .and_then(|v| v.checked_mul(4))
        .and_then(|v| v.checked_add(len.checked_mul(8)?))
        .and_then(|v| v.checked_add(40));
    if expected != Some(bytes.len()) {
        return Err(format!(
            "memory.bin is {} bytes, which does not fit {len} rows of {dim}",
            bytes.len()
        ));
    }
    let body = &bytes[40..];
    let split = len * dim * 4;
    let embeddings = body[..split]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let labels = body[split..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    Ok(MemoryState {
        capacity,
        dim,
        next,
        embeddings,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_damage() {
        let state = MemoryState {
            capacity: 5,
            dim: 2,
            next: 3,
            embeddings: vec![1.0, -2.5, f32::MIN_POSITIVE, 7.0, 0.0, -0.0],
            labels: vec![i64::MIN, 4, i64::MAX],
        };
        let bytes = encode(&state);
        assert_eq!(decode(&bytes).unwrap(), state);
        let err = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.contains("does not fit 3 rows of 2"), "{err}");
        assert!(decode(b"not a memory at all, not one bit of it").is_err());
        let mut newer = bytes.clone();
        newer[4] = 2;
        assert!(decode(&newer).unwrap_err().contains("version 2"));
    }
}
