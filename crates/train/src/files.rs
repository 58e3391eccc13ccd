//! Files written so that a kill at any moment leaves either the old file or the new one, never
//! half of one.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// The folder a file is written into: its parent, or the working directory for a bare name
/// (whose parent is the empty path, which no call opens).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, flushed, then renamed.
/// The file gets the mode a new file would (`0666` less the umask), as `cp` gives it, not the
/// temporary file's private `0600`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = folder_of(path);
    let write = || -> std::io::Result<()> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(".tmp-");
        // 0666: the kernel takes the umask off when the file is created. (Elsewhere a new file
        // is writable, which the temporary file already is.)
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let mut file = builder.tempfile_in(dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        if crate::fault::ENABLED {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_written_into_the_working_directory() {
        assert_eq!(folder_of(Path::new("results.csv")), Path::new("."));
        assert_eq!(folder_of(Path::new("out/results.csv")), Path::new("out"));
        assert_eq!(folder_of(Path::new("/results.csv")), Path::new("/"));
    }

    #[cfg(unix)]
    #[test]
    fn written_files_follow_the_umask_not_the_temporary_files_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bpk");
        write_atomic(&path, b"weights").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // What a plain create gets under this process's umask.
        let plain = dir.path().join("plain");
        fs::write(&plain, b"x").unwrap();
        let expected = fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected, "{mode:o} vs {expected:o}");
        assert_eq!(fs::read(&path).unwrap(), b"weights");
        // Overwriting keeps it so, and leaves no temporary file behind.
        write_atomic(&path, b"newer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newer");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
