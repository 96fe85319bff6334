//! Reading files that someone else may have put in a repository (`mirror.toml`, secret
//! files): only regular files, never blocking on a FIFO or a device, never more than a
//! limit.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why such a file was not read.
#[derive(Debug)]
pub enum FileError {
    Io(std::io::Error),
    /// A FIFO, a device, a directory: nothing a configuration or a secret is.
    NotRegular,
    /// Larger than the limit (bytes).
    TooLarge(u64),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io(e) => write!(f, "{e}"),
            FileError::NotRegular => f.write_str("it is not a regular file"),
            FileError::TooLarge(limit) => write!(f, "it is larger than {limit} bytes"),
        }
    }
}

/// The open file and its metadata, read from the open file itself.
pub struct Checked {
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
}

/// Reads `path` (links followed) when it is a regular file of at most `limit` bytes.
/// Opening does not block (a FIFO would, forever).
pub fn read_limited(path: &Path, limit: u64) -> Result<Checked, FileError> {
    let (file, meta) = open_regular(path)?;
    if meta.len() > limit {
        return Err(FileError::TooLarge(limit));
    }
    let mut bytes = Vec::new();
    // The file may grow between the look and the read: the limit holds all the same.
    Read::take(&file as &File, limit + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge(limit));
    }
    Ok(Checked {
        bytes,
        mode: meta.mode(),
        uid: meta.uid(),
    })
}

/// Opens `path` (links followed) for reading when it is a regular file, without
/// blocking (a FIFO would, forever); its metadata is the open file's own.
pub fn open_regular(path: &Path) -> Result<(File, std::fs::Metadata), FileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(FileError::Io)?;
    let meta = file.metadata().map_err(FileError::Io)?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular);
    }
    Ok((file, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_large_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) reads the NUL-terminated path only.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_limited(&fifo, 10),
            Err(FileError::NotRegular)
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 11]).unwrap();
        assert!(matches!(
            read_limited(&big, 10),
            Err(FileError::TooLarge(10))
        ));
        assert_eq!(read_limited(&big, 11).unwrap().bytes.len(), 11);
    }
}
