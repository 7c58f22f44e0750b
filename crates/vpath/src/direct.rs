//! The log file of `vpath record`, written around the page cache.
//!
//! A raw capture writes about 10 MB/s on a busy host, and the kernel's copy
//! of each write into freshly allocated page-cache pages was half of the
//! recorder's CPU (`perf`: `copy_folio_from_iter_atomic` under
//! `ext4_buffered_write_iter`). With `O_DIRECT` the device reads the
//! recorder's own buffer. Direct writes must be aligned in memory, length
//! and file offset, so whole aligned chunks go out directly and the tail
//! goes out through the page cache at the end. File systems that refuse
//! `O_DIRECT` (tmpfs) get ordinary writes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Alignment of direct writes: the largest logical block size in use.
const ALIGN: usize = 4096;
/// Bytes per direct write.
const CHUNK: usize = 1 << 20;

pub struct LogFile {
    file: File,
    /// `CHUNK + ALIGN` bytes, of which `[start, start + CHUNK)` is aligned.
    buf: Vec<u8>,
    start: usize,
    len: usize,
    /// Writes still bypass the page cache (until the first flush).
    direct: bool,
}

impl LogFile {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> io::Result<LogFile> {
        let open = |flags| {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match open(libc::O_DIRECT) {
            Ok(f) => (f, true),
            // EINVAL: this file system does not do direct I/O.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
            Err(e) => return Err(e),
        };
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Ok(LogFile {
            file,
            buf,
            start,
            len: 0,
            direct,
        })
    }

    /// Whether writes go around the page cache.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct
    }

    /// Writes the first `n` buffered bytes. What was written is never
    /// written again: a direct write refused midway (an alignment this
    /// device does not take) continues through the page cache from where it
    /// stopped.
    fn write_chunk(&mut self, n: usize) -> io::Result<()> {
        let mut done = 0;
        while done < n {
            let at = self.start + done;
            match self.file.write(&self.buf[at..self.start + n]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(k) => done += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    self.buffered()?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Leaves direct I/O: from here on, writes of any size at any offset.
    fn buffered(&mut self) -> io::Result<()> {
        if self.direct {
            let fd = self.file.as_raw_fd();
            // SAFETY: fcntl on a file descriptor this struct owns.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if fl < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_DIRECT) } < 0 {
                return Err(io::Error::last_os_error());
            }
            self.direct = false;
        }
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full buffer goes out first, so that an error consumes nothing
        // of `data`.
        if self.len == CHUNK {
            self.write_chunk(CHUNK)?;
            self.len = 0;
        }
        let n = data.len().min(CHUNK - self.len);
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    /// Writes out everything buffered. The aligned part goes out directly;
    /// the rest needs an unaligned length, so the file leaves direct I/O for
    /// good (a log is flushed once, when it is finished).
    fn flush(&mut self) -> io::Result<()> {
        if self.len == CHUNK {
            self.write_chunk(CHUNK)?;
            self.len = 0;
        }
        let aligned = if self.direct {
            self.len / ALIGN * ALIGN
        } else {
            0
        };
        if aligned > 0 {
            self.write_chunk(aligned)?;
        }
        if self.len > aligned {
            self.buffered()?;
            let (a, b) = (self.start + aligned, self.start + self.len);
            self.file.write_all(&self.buf[a..b])?;
        }
        self.len = 0;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes of every size, across chunk boundaries, come back byte for
    /// byte, whether the file system takes direct I/O or not.
    #[test]
    fn what_is_written_is_what_is_read() {
        for dir in [std::env::temp_dir(), std::env::current_dir().unwrap()] {
            let path = dir.join(format!("vpath-direct-test-{}", std::process::id()));
            let mut f = LogFile::create(&path).unwrap();
            eprintln!("{}: direct I/O {}", dir.display(), f.is_direct());
            let mut want = Vec::new();
            let mut x = 1u32;
            for i in 0..3000usize {
                let n = (i * 7919) % 3000;
                let piece: Vec<u8> = (0..n)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (x >> 16) as u8
                    })
                    .collect();
                f.write_all(&piece).unwrap();
                want.extend_from_slice(&piece);
            }
            f.flush().unwrap();
            drop(f);
            let got = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(got.len(), want.len(), "{}", dir.display());
            assert!(got == want, "{}: bytes differ", dir.display());
        }
    }
}
