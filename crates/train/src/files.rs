//! Files written so that a kill at any moment leaves either the old file or the new one, never
//! half of one.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically: a temporary file beside it, flushed, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut file = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        if cfg!(debug_assertions) {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            crate::fault::point(&format!("write:{name}"));
        }
        file.persist(path).map_err(|e| e.error)?;
        sync_dir(dir)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Makes the entries of `dir` (a rename into it) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Makes the rename durable; a folder opens read-only on Unix.
    fs::File::open(dir)?.sync_all()
}

/// Whether two paths name the same file (after resolving links and `..`; paths that do not
/// resolve are compared as written).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
