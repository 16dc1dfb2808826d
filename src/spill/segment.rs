//! The on-disk format: segment headers, records, the cursor file, and the
//! streaming scan that recovery runs over each segment.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Segment header: magic and segment id.
pub(crate) const HEADER_LEN: u64 = 16;
/// Record header: payload length and CRC.
pub(crate) const RECORD_HEADER_LEN: u64 = 8;
const MAGIC: &[u8; 8] = b"SHEAFSP1";
/// The cursor file's size: segment id, offset, CRC.
pub(crate) const CURSOR_LEN: usize = 20;
/// Buffer of the scan and of readers: what recovery holds in memory.
pub(crate) const IO_BUF: usize = 64 << 10;

pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

pub(crate) fn cursor_path(dir: &Path) -> PathBuf {
    dir.join("cursor")
}

/// The id in a segment file name, or `None` for other files.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn header(id: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&id.to_le_bytes());
    h
}

/// The CRC of a record: over the length bytes, then the payload.
pub(crate) fn record_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize()
}

pub(crate) fn encode_cursor(segment: u64, offset: u64) -> [u8; CURSOR_LEN] {
    let mut c = [0u8; CURSOR_LEN];
    c[..8].copy_from_slice(&segment.to_le_bytes());
    c[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&c[..16]);
    c[16..].copy_from_slice(&crc.to_le_bytes());
    c
}

/// The saved read position, or `None` when missing or corrupt (then the
/// log replays from its oldest segment: at least once).
pub(crate) fn decode_cursor(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() != CURSOR_LEN {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    if crc32fast::hash(&bytes[..16]) != crc {
        return None;
    }
    let segment = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let offset = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    Some((segment, offset))
}

/// What a scan found in one segment file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// The header is intact and names the expected id.
    pub valid_header: bool,
    /// The end of the last good record (the header's end if none).
    pub good_end: u64,
    /// Good records.
    pub records: u64,
    /// Good records that start before `consumed_before`.
    pub consumed: u64,
    /// The end of the last consumed record (header end if none).
    pub consumed_end: u64,
    /// The file's length.
    pub file_len: u64,
    /// Records cut: the first bad one plus those reachable behind it by
    /// their length fields.
    pub records_cut: u64,
}

/// A reader that counts bytes, over a bounded buffer.
struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Counting<R> {
    /// Reads exactly `buf.len()` bytes; `Ok(false)` at a short read (EOF).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    self.pos += done as u64;
                    return Ok(false);
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos += done as u64;
        Ok(true)
    }
}

/// Streams over a segment, checking each record's length and CRC, holding
/// at most [`IO_BUF`] bytes plus a small chunk; never the whole file.
pub(crate) fn scan(
    file: &File,
    id: u64,
    max_payload: u64,
    consumed_before: u64,
) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut scan = Scan {
        file_len,
        ..Scan::default()
    };
    let mut reader = Counting {
        inner: io::BufReader::with_capacity(IO_BUF, file),
        pos: 0,
    };
    let mut head = [0u8; HEADER_LEN as usize];
    if !reader.fill(&mut head)? || head != header(id) {
        return Ok(scan);
    }
    scan.valid_header = true;
    scan.good_end = HEADER_LEN;
    scan.consumed_end = HEADER_LEN;
    let mut chunk = vec![0u8; 4096];
    // Past the first bad record: only follow lengths to count what is cut.
    let mut cutting = false;
    loop {
        let start = reader.pos;
        if start >= file_len {
            return Ok(scan);
        }
        let mut rec = [0u8; RECORD_HEADER_LEN as usize];
        if !reader.fill(&mut rec)? {
            scan.records_cut += 1; // a torn record header
            return Ok(scan);
        }
        let len_bytes: [u8; 4] = rec[..4].try_into().expect("4 bytes");
        let len = u64::from(u32::from_le_bytes(len_bytes));
        let crc = u32::from_le_bytes(rec[4..].try_into().expect("4 bytes"));
        if len > max_payload || start + RECORD_HEADER_LEN + len > file_len {
            // A length no writer produced, or a torn payload: nothing
            // behind it can be found.
            scan.records_cut += 1;
            return Ok(scan);
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&len_bytes);
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            if !reader.fill(&mut chunk[..n])? {
                scan.records_cut += 1;
                return Ok(scan);
            }
            hasher.update(&chunk[..n]);
            left -= n;
        }
        if cutting {
            scan.records_cut += 1;
            continue;
        }
        if hasher.finalize() != crc {
            cutting = true;
            scan.records_cut += 1;
            continue;
        }
        scan.records += 1;
        scan.good_end = reader.pos;
        if start < consumed_before {
            scan.consumed += 1;
            scan.consumed_end = reader.pos;
        }
    }
}
