//! `cmdrd --log-file PATH`: the log in a file of its own, rotated by size (PATH becomes
//! PATH.1, replacing the older one), for service managers that keep stderr in a file
//! without rotating it (launchd's `StandardErrorPath`). At most twice [`MAX_LEN`] on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;

/// The size at which the file is rotated.
pub const MAX_LEN: u64 = 8 * 1024 * 1024;

pub struct LogFile {
    path: PathBuf,
    max_len: u64,
    open: Mutex<(File, u64)>,
}

impl LogFile {
    pub fn open(path: &Path) -> io::Result<LogFile> {
        LogFile::with_max(path, MAX_LEN)
    }

    pub fn with_max(path: &Path, max_len: u64) -> io::Result<LogFile> {
        let file = append(path)?;
        let len = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_owned(),
            max_len,
            open: Mutex::new((file, len)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (File, u64)> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The older file, `PATH.1`.
    pub fn older(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    fn write_line(&self, buf: &[u8]) -> io::Result<()> {
        let mut open = self.lock();
        if open.1 > 0 && open.1 + buf.len() as u64 > self.max_len {
            // Rotate; should that fail, keep writing where we are.
            if std::fs::rename(&self.path, LogFile::older(&self.path)).is_ok()
                && let Ok(file) = append(&self.path)
            {
                *open = (file, 0);
            }
        }
        open.0.write_all(buf)?;
        open.1 += buf.len() as u64;
        Ok(())
    }
}

fn append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(self)
    }
}

/// One line's writer (the fmt layer writes a line with one `write_all`).
pub struct Line<'a>(&'a LogFile);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_rotated_by_size_and_keeps_one_older_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cmdrd.log");
        let log = LogFile::with_max(&path, 100).expect("open");
        let line = [b'x'; 39];
        for _ in 0..10 {
            log.make_writer().write_all(&line).expect("write");
        }
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        assert!(len(&path) <= 100, "{}", len(&path));
        assert!(len(&LogFile::older(&path)) <= 100);
        assert_eq!(len(&path) + len(&LogFile::older(&path)), 4 * 39);
        assert!(!dir.path().join("cmdrd.log.1.1").exists());
    }
}
