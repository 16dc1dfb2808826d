//! [`SpillLog`]: the segment log, its recovery and its counters.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

use crate::codec::{Codec, CodecError};
use crate::error::ConfigError;
use crate::overflow::Overflow;

use super::config::{Fsync, SpillConfig};
use super::segment::{
    self, cursor_path, decode_cursor, encode_cursor, record_crc, segment_path, CURSOR_LEN,
    HEADER_LEN, IO_BUF, RECORD_HEADER_LEN,
};

/// Appended bytes kept in user space before one `write` to the OS.
const WRITE_BUF: usize = 256 << 10;

/// What [`SpillLog::open`] found and cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segment files scanned.
    pub segments_scanned: u64,
    /// Unread records kept, ready to pop.
    pub records_recovered: u64,
    /// Records before the saved read position, not replayed.
    pub records_skipped: u64,
    /// Bytes cut off torn or corrupt segment tails, plus whole segment
    /// files with a bad header.
    pub bytes_discarded: u64,
    /// Records cut: at each cut, the first torn or corrupt record and the
    /// ones behind it that their length fields lead to.
    pub records_discarded: u64,
    /// Segments cut back to their last good record.
    pub segments_cut: u64,
    /// Segment files removed because their header was torn or corrupt.
    pub segments_discarded: u64,
}

/// Counters of a [`SpillLog`] since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpillStats {
    /// Records appended.
    pub pushed: u64,
    /// Records read (decoded or not).
    pub popped: u64,
    /// Items dropped at the disk bound under [`Overflow::DropNewest`].
    pub dropped_newest: u64,
    /// Items handed back at the disk bound under [`Overflow::Reject`].
    pub rejected: u64,
    /// Records read whose payload the codec could not decode.
    pub undecodable: u64,
    /// Records lost to corruption found while reading (after recovery).
    pub corrupt: u64,
    /// `fsync` calls made.
    pub syncs: u64,
    /// Records appended since open that are known durable: those appended
    /// before the tail segment's last `fsync` (segments closed by rotation
    /// are synced unless the policy is `Never`).
    pub synced: u64,
    /// Unread records now.
    pub len: u64,
    /// Bytes of the live segment files now.
    pub bytes: u64,
    /// Live segment files now.
    pub segments: u64,
}

/// What a successful [`SpillLog::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The record is in the log.
    Stored,
    /// The disk bound was reached under [`Overflow::DropNewest`]: the item
    /// was dropped and counted in `dropped_newest`.
    Dropped,
}

/// Why an item did not go into the log; the item comes back where it can.
pub enum PushError<T> {
    /// The disk bound is reached (under `Block`, `BlockTimeout` or `Reject`).
    Full(T),
    /// The encoded item is larger than a segment can hold
    /// ([`SpillConfig::max_record_payload`]).
    TooLarge(T),
    /// The codec could not encode the item.
    Codec(CodecError, T),
    /// An I/O error. `Some(item)`: the item was not stored. `None`: the
    /// item was stored but the `fsync` its policy asked for failed, so its
    /// durability is unknown.
    Io(io::Error, Option<T>),
}

impl<T> PushError<T> {
    /// The item, when it was not stored.
    pub fn into_inner(self) -> Option<T> {
        match self {
            PushError::Full(t) | PushError::TooLarge(t) | PushError::Codec(_, t) => Some(t),
            PushError::Io(_, t) => t,
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::TooLarge(_) => f.write_str("TooLarge(..)"),
            PushError::Codec(e, _) => write!(f, "Codec({e:?}, ..)"),
            PushError::Io(e, t) => write!(f, "Io({e:?}, stored: {})", t.is_none()),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("spill log full (disk bound reached)"),
            PushError::TooLarge(_) => f.write_str("record larger than a spill segment"),
            PushError::Codec(e, _) => write!(f, "spill: {e}"),
            PushError::Io(e, _) => write!(f, "spill I/O: {e}"),
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why [`SpillLog::pop`] returned no item.
#[derive(Debug)]
#[non_exhaustive]
pub enum PopError {
    /// The record was read (and consumed) but the codec rejected it;
    /// counted in `undecodable`.
    Codec(CodecError),
    /// A record failed its CRC while being read (the disk changed under a
    /// running log): the rest of its segment, `records_lost` records, was
    /// dropped and counted in `corrupt`.
    Corrupt {
        /// Records dropped.
        records_lost: u64,
    },
    /// An I/O error; nothing was consumed.
    Io(io::Error),
}

/// Records (and their payload bytes) a reader skipped because they could
/// not be read back: see [`SpillLog::pop_readable`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopError::Codec(e) => write!(f, "spill: {e}"),
            PopError::Corrupt { records_lost } => {
                write!(
                    f,
                    "spill record corrupt on read: {records_lost} records lost"
                )
            }
            PopError::Io(e) => write!(f, "spill I/O: {e}"),
        }
    }
}

impl std::error::Error for PopError {}

#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    /// Bytes of the segment, buffered ones included.
    bytes: u64,
    /// Records in it.
    records: u64,
}

/// An append-only, crash-safe FIFO of items on disk in fixed-size segment
/// files; see the [module docs](super) for the format and guarantees.
///
/// One owner: `push` and `pop` take `&mut self` (the spilling channel
/// keeps it under a lock).
pub struct SpillLog<T> {
    config: SpillConfig,
    codec: Box<dyn Codec<T>>,
    /// Live segments, oldest (being read) first, the tail (being appended) last.
    segments: VecDeque<Segment>,
    tail: File,
    /// Bytes of the tail handed to the OS.
    tail_written: u64,
    /// Encoded records of the tail not yet handed to the OS.
    write_buf: Vec<u8>,
    reader: Option<BufReader<File>>,
    /// Read position in the head segment.
    read_offset: u64,
    /// Records read in the head segment.
    read_in_head: u64,
    len: u64,
    /// Payload bytes of the unread records.
    payload: u64,
    live_bytes: u64,
    appended_since_sync: u64,
    read_since_save: u64,
    last_sync: Instant,
    last_save: Instant,
    cursor: File,
    scratch: Vec<u8>,
    stats: SpillStats,
    recovery: RecoveryReport,
    /// Set by `simulate_crash`: drop does nothing.
    crashed: bool,
}

impl<T> fmt::Debug for SpillLog<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpillLog")
            .field("dir", &self.config.dir())
            .field("len", &self.len)
            .field("bytes", &self.live_bytes)
            .field("segments", &self.segments.len())
            .finish()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Makes created and removed segment names durable (no-op where a
    // directory cannot be opened as a file).
    match File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(segment_path(dir, id))?;
    file.write_all(&segment::header(id))?;
    Ok(file)
}

impl<T> SpillLog<T> {
    /// Opens (creating it if missing) the log in the config's directory,
    /// recovering what a previous run left: every segment is scanned with
    /// a bounded buffer, each cut at its first torn or corrupt record,
    /// segments wholly read before are removed, and reading resumes at the
    /// saved position. See [`recovery`](Self::recovery) for what was cut.
    ///
    /// # Errors
    /// Only I/O errors (the directory cannot be created or read, a file
    /// cannot be opened or truncated); bad data is cut, never an error.
    pub fn open(config: SpillConfig, codec: impl Codec<T> + 'static) -> io::Result<SpillLog<T>> {
        let dir = config.dir().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut cursor = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(cursor_path(&dir))?;
        let mut saved = Vec::with_capacity(CURSOR_LEN);
        (&mut cursor)
            .take(CURSOR_LEN as u64 + 1)
            .read_to_end(&mut saved)?;
        let saved = decode_cursor(&saved);

        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(segment::parse_segment_name)
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let highest = ids.last().copied().max(saved.map(|(s, _)| s));

        let mut report = RecoveryReport::default();
        let mut segments = VecDeque::new();
        let mut files = VecDeque::new();
        let mut read_offset = HEADER_LEN;
        let mut read_in_head = 0;
        let max_payload = config.max_record_payload();
        for (i, &id) in ids.iter().enumerate() {
            let path = segment_path(&dir, id);
            if saved.is_some_and(|(s, _)| id < s) {
                fs::remove_file(&path)?; // wholly read before the restart
                continue;
            }
            report.segments_scanned += 1;
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let consumed_before = match saved {
                Some((s, offset)) if s == id => offset,
                _ => 0,
            };
            let scan = segment::scan(&file, id, max_payload, consumed_before)?;
            if !scan.valid_header {
                report.bytes_discarded += scan.file_len;
                report.segments_discarded += 1;
                drop(file);
                fs::remove_file(&path)?;
                continue;
            }
            if scan.good_end < scan.file_len {
                file.set_len(scan.good_end)?;
                file.sync_all()?;
                report.bytes_discarded += scan.file_len - scan.good_end;
                report.records_discarded += scan.records_cut;
                report.segments_cut += 1;
            }
            let is_last = i + 1 == ids.len();
            if scan.consumed == scan.records && !is_last {
                drop(file);
                fs::remove_file(&path)?; // nothing left to read in it
                report.records_skipped += scan.consumed;
                continue;
            }
            if segments.is_empty() {
                read_offset = scan.consumed_end;
                read_in_head = scan.consumed;
            }
            report.records_skipped += scan.consumed;
            report.records_recovered += scan.records - scan.consumed;
            segments.push_back(Segment {
                id,
                bytes: scan.good_end,
                records: scan.records,
            });
            files.push_back(file);
        }
        let tail = match files.pop_back() {
            Some(mut file) => {
                let end = segments.back().map_or(HEADER_LEN, |s| s.bytes);
                file.seek(SeekFrom::Start(end))?;
                file
            }
            None => {
                let id = highest.map_or(0, |h| h + 1);
                let file = create_segment(&dir, id)?;
                segments.push_back(Segment {
                    id,
                    bytes: HEADER_LEN,
                    records: 0,
                });
                read_offset = HEADER_LEN;
                read_in_head = 0;
                file
            }
        };
        sync_dir(&dir)?;
        let tail_written = segments.back().map_or(HEADER_LEN, |s| s.bytes);
        let now = config.clock().now();
        let mut log = SpillLog {
            codec: Box::new(codec),
            segments,
            tail,
            tail_written,
            write_buf: Vec::with_capacity(WRITE_BUF + 4096),
            reader: None,
            read_offset,
            read_in_head,
            len: report.records_recovered,
            payload: 0,
            live_bytes: 0,
            appended_since_sync: 0,
            read_since_save: 0,
            last_sync: now,
            last_save: now,
            cursor,
            scratch: Vec::new(),
            stats: SpillStats::default(),
            recovery: report,
            crashed: false,
            config,
        };
        log.live_bytes = log.segments.iter().map(|s| s.bytes).sum();
        // Every record is a header and its payload, behind the segment's
        // header; what the head has read so far is not unread.
        let payload_in =
            |bytes: u64, records: u64| bytes - HEADER_LEN - RECORD_HEADER_LEN * records;
        let written: u64 = log
            .segments
            .iter()
            .map(|s| payload_in(s.bytes, s.records))
            .sum();
        log.payload = written - payload_in(log.read_offset, log.read_in_head);
        let sync = log.config.fsync() != Fsync::Never;
        log.save_cursor(sync)?;
        Ok(log)
    }

    /// What opening the log found and cut.
    pub fn recovery(&self) -> RecoveryReport {
        self.recovery
    }

    /// The log's configuration.
    pub fn config(&self) -> &SpillConfig {
        &self.config
    }

    /// Unread records.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` when every record has been read.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the live segment files (buffered appends included).
    pub fn bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Payload bytes of the unread records: what their encodings take,
    /// without the log's framing.
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// The log's counters.
    pub fn stats(&self) -> SpillStats {
        SpillStats {
            len: self.len,
            bytes: self.live_bytes,
            segments: self.segments.len() as u64,
            ..self.stats
        }
    }

    /// Appends `item` as one record, applying the disk bound's policy and
    /// the fsync policy.
    ///
    /// # Errors
    /// [`PushError`]: the bound is reached (`Block`, `BlockTimeout`,
    /// `Reject`), the record is larger than a segment, the codec failed, or
    /// an I/O error. The item comes back unless it was stored.
    pub fn push(&mut self, item: T) -> Result<Pushed, PushError<T>> {
        if self.write_buf.len() >= WRITE_BUF {
            if let Err(e) = self.write_out() {
                return Err(PushError::Io(e, Some(item)));
            }
        }
        let start = self.write_buf.len();
        self.write_buf
            .extend_from_slice(&[0; RECORD_HEADER_LEN as usize]);
        if let Err(e) = self.codec.encode(&item, &mut self.write_buf) {
            self.write_buf.truncate(start);
            return Err(PushError::Codec(e, item));
        }
        let payload = (self.write_buf.len() - start) as u64 - RECORD_HEADER_LEN;
        if payload > self.config.max_record_payload() {
            self.write_buf.truncate(start);
            return Err(PushError::TooLarge(item));
        }
        let record = RECORD_HEADER_LEN + payload;
        let tail = *self.segments.back().expect("a tail segment");
        let rotate = tail.bytes + record > self.config.segment_bytes();
        // Rotating away from a wholly read tail deletes it, freeing its bytes.
        let freed = if rotate && self.segments.len() == 1 && self.read_in_head == tail.records {
            tail.bytes
        } else {
            0
        };
        let needed = self.live_bytes - freed + record + if rotate { HEADER_LEN } else { 0 };
        if needed > self.config.max_bytes() {
            self.write_buf.truncate(start);
            return match self.config.when_full() {
                Overflow::DropNewest => {
                    self.stats.dropped_newest += 1;
                    Ok(Pushed::Dropped)
                }
                Overflow::Reject => {
                    self.stats.rejected += 1;
                    Err(PushError::Full(item))
                }
                _ => Err(PushError::Full(item)),
            };
        }
        let len_bytes = (payload as u32).to_le_bytes();
        let crc = record_crc(len_bytes, &self.write_buf[start + 8..]);
        self.write_buf[start..start + 4].copy_from_slice(&len_bytes);
        self.write_buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        if rotate {
            if let Err(e) = self.rotate(start) {
                self.write_buf.truncate(start);
                return Err(PushError::Io(e, Some(item)));
            }
        }
        let tail = self.segments.back_mut().expect("a tail segment");
        tail.bytes += record;
        tail.records += 1;
        self.live_bytes += record;
        self.len += 1;
        self.payload += payload;
        self.stats.pushed += 1;
        self.appended_since_sync += 1;
        let due = match self.config.fsync() {
            Fsync::Never => false,
            Fsync::EveryRecords(n) => self.appended_since_sync >= n,
            Fsync::Every(interval) => {
                self.config
                    .clock()
                    .now()
                    .saturating_duration_since(self.last_sync)
                    >= interval
            }
        };
        if due {
            if let Err(e) = self.sync_appends() {
                return Err(PushError::Io(e, None));
            }
        }
        Ok(Pushed::Stored)
    }

    /// [`open`](Self::open) for a component configured with
    /// `Overflow::Spill`: a log that cannot be opened is a [`ConfigError`]
    /// on its `overflow` setting that names the directory.
    pub(crate) fn open_for_overflow(
        config: SpillConfig,
        codec: impl Codec<T> + 'static,
    ) -> Result<SpillLog<T>, ConfigError> {
        let dir = config.dir().display().to_string();
        SpillLog::open(config, codec).map_err(|e| {
            ConfigError::new("overflow", format!("cannot open spill log in {dir}: {e}"))
        })
    }

    /// The oldest record that can be read back: undecodable and corrupt
    /// records on the way are consumed and added to `lost`. `Err` only for
    /// an I/O error, which consumes nothing.
    pub(crate) fn pop_readable(&mut self, lost: &mut Lost) -> io::Result<Option<T>> {
        loop {
            let before = self.payload;
            let records = match self.pop() {
                Ok(item) => return Ok(item),
                Err(PopError::Io(e)) => return Err(e),
                Err(PopError::Codec(_)) => 1,
                Err(PopError::Corrupt { records_lost }) => records_lost,
            };
            lost.records += records;
            lost.bytes += before - self.payload;
        }
    }

    /// Reads the oldest unread record: `Ok(None)` when the log is empty.
    ///
    /// # Errors
    /// [`PopError`]: the codec rejected the record (it is consumed), a
    /// record failed its CRC (the rest of its segment is dropped), or an
    /// I/O error (nothing consumed).
    pub fn pop(&mut self) -> Result<Option<T>, PopError> {
        if self.len == 0 {
            return Ok(None);
        }
        let head = *self.segments.front().expect("a head segment");
        debug_assert!(self.read_in_head < head.records);
        if self.segments.len() == 1 && self.tail_written < head.bytes {
            self.write_out().map_err(PopError::Io)?;
        }
        if self.reader.is_none() {
            let mut file =
                File::open(segment_path(self.config.dir(), head.id)).map_err(PopError::Io)?;
            file.seek(SeekFrom::Start(self.read_offset))
                .map_err(PopError::Io)?;
            self.reader = Some(BufReader::with_capacity(IO_BUF, file));
        }
        let reader = self.reader.as_mut().expect("opened above");
        let mut header = [0u8; RECORD_HEADER_LEN as usize];
        let read = reader.read_exact(&mut header).and_then(|()| {
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
            if u64::from(len) > head.bytes - self.read_offset - RECORD_HEADER_LEN {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad length"));
            }
            self.scratch.resize(len as usize, 0);
            reader.read_exact(&mut self.scratch)
        });
        let intact = match read {
            Ok(()) => {
                let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
                record_crc(header[..4].try_into().expect("4 bytes"), &self.scratch) == crc
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => false,
            Err(e) => {
                self.reader = None; // re-seek on the next try
                return Err(PopError::Io(e));
            }
        };
        if !intact {
            let lost = head.records - self.read_in_head;
            self.len -= lost;
            self.payload -= head.bytes - self.read_offset - RECORD_HEADER_LEN * lost;
            self.stats.corrupt += lost;
            self.read_in_head = head.records;
            self.read_offset = head.bytes;
            self.after_read().map_err(PopError::Io)?;
            return Err(PopError::Corrupt { records_lost: lost });
        }
        self.read_offset += RECORD_HEADER_LEN + self.scratch.len() as u64;
        self.read_in_head += 1;
        self.len -= 1;
        self.payload -= self.scratch.len() as u64;
        self.stats.popped += 1;
        self.read_since_save += 1;
        let decoded = self.codec.decode(&self.scratch);
        self.after_read().map_err(PopError::Io)?;
        match decoded {
            Ok(item) => Ok(Some(item)),
            Err(e) => {
                self.stats.undecodable += 1;
                Err(PopError::Codec(e))
            }
        }
    }

    /// Writes buffered records, `fsync`s the tail segment and saves and
    /// `fsync`s the read position, whatever the fsync policy.
    ///
    /// # Errors
    /// The first I/O error.
    pub fn sync(&mut self) -> io::Result<()> {
        self.sync_appends()?;
        self.save_cursor(true)
    }

    /// Drops the log as a killed process would: buffered records are not
    /// written and the read position is not saved. For crash tests and the
    /// fuzz target.
    #[doc(hidden)]
    pub fn simulate_crash(mut self) {
        self.write_buf.clear();
        self.crashed = true;
    }

    /// Deletes the head segment once wholly read (unless it is the tail)
    /// and saves the read position when the policy says so.
    fn after_read(&mut self) -> io::Result<()> {
        let head = *self.segments.front().expect("a head segment");
        if self.read_in_head == head.records && self.segments.len() > 1 {
            self.reader = None;
            fs::remove_file(segment_path(self.config.dir(), head.id))?;
            self.segments.pop_front();
            self.live_bytes -= head.bytes;
            self.read_offset = HEADER_LEN;
            self.read_in_head = 0;
        }
        let due = match self.config.fsync() {
            Fsync::Never => false,
            Fsync::EveryRecords(n) => self.read_since_save >= n,
            Fsync::Every(interval) => {
                self.config
                    .clock()
                    .now()
                    .saturating_duration_since(self.last_save)
                    >= interval
            }
        };
        if due {
            self.save_cursor(true)?;
        }
        Ok(())
    }

    fn save_cursor(&mut self, sync: bool) -> io::Result<()> {
        let head = self.segments.front().expect("a head segment").id;
        self.cursor.seek(SeekFrom::Start(0))?;
        self.cursor
            .write_all(&encode_cursor(head, self.read_offset))?;
        if sync {
            self.cursor.sync_data()?;
            self.stats.syncs += 1;
        }
        self.read_since_save = 0;
        self.last_save = self.config.clock().now();
        Ok(())
    }

    /// Hands buffered records to the OS.
    fn write_out(&mut self) -> io::Result<()> {
        let n = self.write_buf.len();
        self.write_prefix(n)
    }

    /// Hands the first `n` buffered bytes to the OS. On an error the file
    /// is cut back to what was written before, so a retry rewrites them.
    fn write_prefix(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        if let Err(e) = self.tail.write_all(&self.write_buf[..n]) {
            let _ = self.tail.set_len(self.tail_written);
            let _ = self.tail.seek(SeekFrom::Start(self.tail_written));
            return Err(e);
        }
        self.tail_written += n as u64;
        self.write_buf.drain(..n);
        Ok(())
    }

    fn sync_appends(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.tail.sync_data()?;
        self.stats.syncs += 1;
        self.stats.synced = self.stats.pushed;
        self.appended_since_sync = 0;
        self.last_sync = self.config.clock().now();
        Ok(())
    }

    /// Closes the tail (its records are the bytes before `keep`) and opens
    /// the next segment; the record at `keep..` goes into the new one.
    fn rotate(&mut self, keep: usize) -> io::Result<()> {
        self.write_prefix(keep)?;
        let sync = self.config.fsync() != Fsync::Never;
        if sync {
            self.tail.sync_data()?;
            self.stats.syncs += 1;
            self.stats.synced = self.stats.pushed;
            self.appended_since_sync = 0;
        }
        let old = *self.segments.back().expect("a tail segment");
        let dir = self.config.dir().to_path_buf();
        self.tail = create_segment(&dir, old.id + 1)?;
        self.tail_written = HEADER_LEN;
        self.segments.push_back(Segment {
            id: old.id + 1,
            bytes: HEADER_LEN,
            records: 0,
        });
        self.live_bytes += HEADER_LEN;
        if self.segments.len() == 2 && self.read_in_head == old.records {
            self.after_read()?; // the old tail was wholly read: delete it
        }
        if sync {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

impl<T> Drop for SpillLog<T> {
    /// Writes buffered records and saves the read position; `fsync`s both
    /// unless the policy is [`Fsync::Never`]. Errors are ignored here: call
    /// [`sync`](SpillLog::sync) first to see them.
    fn drop(&mut self) {
        if self.crashed {
            return;
        }
        let sync = self.config.fsync() != Fsync::Never;
        let _ = self.write_out();
        if sync {
            let _ = self.tail.sync_data();
        }
        let _ = self.save_cursor(sync);
    }
}
