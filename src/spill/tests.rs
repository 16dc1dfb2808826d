use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::segment::{HEADER_LEN, RECORD_HEADER_LEN};
use super::*;
use crate::clock::ManualClock;
use crate::codec::{LittleEndian, Raw, Utf8};
use crate::Overflow;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sheaf-spill-{}-{}-{}",
        name,
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn config(dir: &Path, segment: u64, max: u64) -> SpillConfig {
    SpillConfig::builder(dir)
        .segment_bytes(segment)
        .max_bytes(max)
        .fsync(Fsync::Never)
        .build()
        .unwrap()
}

fn drain<T>(log: &mut SpillLog<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(item) = log.pop().unwrap() {
        out.push(item);
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn fifo_across_segments_and_consumed_segments_are_deleted() {
    let dir = temp_dir("fifo");
    let mut log = SpillLog::open(config(&dir, 128, 1 << 20), LittleEndian).unwrap();
    // 16-byte records: 7 per 128-byte segment.
    let mut expected = std::collections::VecDeque::new();
    let mut got = Vec::new();
    for i in 0..200u64 {
        assert_eq!(log.push(i).unwrap(), Pushed::Stored);
        expected.push_back(i);
        if i % 3 == 0 {
            got.push(log.pop().unwrap().unwrap());
            expected.pop_front();
        }
    }
    assert_eq!(log.len(), expected.len() as u64);
    got.extend(drain(&mut log));
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    assert_eq!(log.stats().pushed, 200);
    assert_eq!(log.stats().popped, 200);
    // Only the tail is left.
    assert_eq!(log.stats().segments, 1);
    drop(log);
    assert_eq!(segment_files(&dir).len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reopen_resumes_after_the_saved_read_position() {
    let dir = temp_dir("resume");
    let cfg = config(&dir, 128, 1 << 20);
    {
        let mut log = SpillLog::open(cfg.clone(), LittleEndian).unwrap();
        for i in 0..30u64 {
            log.push(i).unwrap();
        }
        for i in 0..11u64 {
            assert_eq!(log.pop().unwrap(), Some(i));
        }
    }
    let mut log = SpillLog::<u64>::open(cfg, LittleEndian).unwrap();
    let report = log.recovery();
    assert_eq!(report.records_recovered, 19);
    // 11 read: one segment of 7 was deleted, 4 read in the next.
    assert_eq!(report.records_skipped, 4);
    assert_eq!(report.bytes_discarded, 0);
    assert_eq!(drain(&mut log), (11..30).collect::<Vec<_>>());
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_cursor_replays_from_the_oldest_segment() {
    let dir = temp_dir("cursor");
    let cfg = config(&dir, 128, 1 << 20);
    {
        let mut log = SpillLog::open(cfg.clone(), LittleEndian).unwrap();
        for i in 0..5u64 {
            log.push(i).unwrap();
        }
        assert_eq!(log.pop().unwrap(), Some(0));
    }
    let cursor = dir.join("cursor");
    let mut bytes = fs::read(&cursor).unwrap();
    bytes[9] ^= 0x40;
    fs::write(&cursor, bytes).unwrap();
    let mut log = SpillLog::<u64>::open(cfg, LittleEndian).unwrap();
    assert_eq!(drain(&mut log), (0..5).collect::<Vec<_>>()); // at least once
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

/// Payload of record `i` in the crash tests: `i % 11` bytes of value `i`.
fn payload(i: usize) -> Vec<u8> {
    vec![i as u8; i % 11]
}

/// Where each record lands: per segment, (start, end, index) of its records,
/// by the rotation rule (a record that does not fit opens a new segment).
fn layout(count: usize, segment: u64) -> Vec<Vec<(u64, u64, usize)>> {
    let mut segments = vec![Vec::new()];
    let mut end = HEADER_LEN;
    for i in 0..count {
        let record = RECORD_HEADER_LEN + payload(i).len() as u64;
        if end + record > segment {
            segments.push(Vec::new());
            end = HEADER_LEN;
        }
        segments.last_mut().unwrap().push((end, end + record, i));
        end += record;
    }
    segments
}

const CRASH_RECORDS: usize = 24;
const CRASH_SEGMENT: u64 = 96;

/// A small log of three segments, written and closed; returns its files.
fn small_log(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut log = SpillLog::open(config(dir, CRASH_SEGMENT, 1 << 20), Raw).unwrap();
    for i in 0..CRASH_RECORDS {
        log.push(payload(i)).unwrap();
    }
    drop(log);
    let mut paths = segment_files(dir);
    paths.push(dir.join("cursor"));
    let files: Vec<_> = paths
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let expected = layout(CRASH_RECORDS, CRASH_SEGMENT);
    assert_eq!(files.len(), expected.len() + 1);
    for ((_, bytes), records) in files.iter().zip(&expected) {
        assert_eq!(bytes.len() as u64, records.last().unwrap().1);
    }
    files
}

fn restore(dir: &Path, files: &[(PathBuf, Vec<u8>)]) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            fs::remove_file(path).unwrap();
        }
    }
    for (path, bytes) in files {
        fs::write(path, bytes).unwrap();
    }
}

/// Recovers the log after damaging segment `damaged` and checks that exactly
/// the records `kept` come back, in order, and the discarded byte count.
fn check_recovery(dir: &Path, kept: &[usize], bytes_discarded: u64, case: &str) {
    let mut log = SpillLog::open(config(dir, CRASH_SEGMENT, 1 << 20), Raw).unwrap();
    let report = log.recovery();
    assert_eq!(report.records_recovered, kept.len() as u64, "{case}");
    assert_eq!(report.bytes_discarded, bytes_discarded, "{case}");
    if bytes_discarded > 0 {
        assert!(
            report.records_discarded > 0 || report.segments_discarded > 0,
            "{case}"
        );
    }
    let got = drain(&mut log);
    let want: Vec<Vec<u8>> = kept.iter().map(|&i| payload(i)).collect();
    assert_eq!(got, want, "{case}");
    // The log stays usable after a recovery.
    log.push(vec![7, 7]).unwrap();
    assert_eq!(log.pop().unwrap(), Some(vec![7, 7]));
}

#[test]
fn truncation_at_every_offset_recovers_exactly_the_whole_records() {
    let dir = temp_dir("truncate");
    let files = small_log(&dir);
    let layout = layout(CRASH_RECORDS, CRASH_SEGMENT);
    let mut cases = 0;
    for (s, (path, bytes)) in files[..layout.len()].iter().enumerate() {
        for cut in 0..=bytes.len() as u64 {
            restore(&dir, &files);
            let file = fs::OpenOptions::new().write(true).open(path).unwrap();
            file.set_len(cut).unwrap();
            drop(file);
            let mut kept = Vec::new();
            let mut discarded = 0;
            for (t, records) in layout.iter().enumerate() {
                for &(_, end, i) in records {
                    if t != s || (cut >= HEADER_LEN && end <= cut) {
                        kept.push(i);
                    }
                }
            }
            if cut < HEADER_LEN {
                discarded = cut; // a torn header: the whole file goes
            } else if let Some(&(_, end, _)) =
                layout[s].iter().rev().find(|&&(_, end, _)| end <= cut)
            {
                discarded = cut - end;
            } else {
                discarded += cut - HEADER_LEN;
            }
            check_recovery(&dir, &kept, discarded, &format!("segment {s} cut at {cut}"));
            cases += 1;
        }
    }
    let segment_bytes: usize = files[..layout.len()].iter().map(|(_, b)| b.len() + 1).sum();
    assert_eq!(cases, segment_bytes);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corruption_at_every_offset_cuts_back_to_the_last_good_record() {
    let dir = temp_dir("corrupt");
    let files = small_log(&dir);
    let layout = layout(CRASH_RECORDS, CRASH_SEGMENT);
    for (s, (path, bytes)) in files[..layout.len()].iter().enumerate() {
        for at in 0..bytes.len() as u64 {
            restore(&dir, &files);
            let mut damaged = bytes.clone();
            damaged[at as usize] ^= 0xA5;
            fs::write(path, &damaged).unwrap();
            let len = bytes.len() as u64;
            let mut kept = Vec::new();
            for (t, records) in layout.iter().enumerate() {
                for &(_, end, i) in records {
                    if t != s || (at >= HEADER_LEN && end <= at) {
                        kept.push(i);
                    }
                }
            }
            let discarded = if at < HEADER_LEN {
                len
            } else {
                // Cut at the start of the record holding the byte.
                let start = layout[s]
                    .iter()
                    .find(|&&(start, end, _)| start <= at && at < end)
                    .unwrap()
                    .0;
                len - start
            };
            check_recovery(&dir, &kept, discarded, &format!("segment {s} byte {at}"));
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stray_files_are_ignored_and_a_bad_header_segment_is_removed() {
    let dir = temp_dir("stray");
    let cfg = config(&dir, 128, 1 << 20);
    {
        let mut log = SpillLog::open(cfg.clone(), LittleEndian).unwrap();
        for i in 0..10u64 {
            log.push(i).unwrap();
        }
    }
    fs::write(dir.join("notes.txt"), b"hello").unwrap();
    fs::write(
        dir.join("00000000000000000099.seg"),
        b"garbage garbage garbage",
    )
    .unwrap();
    let mut log = SpillLog::<u64>::open(cfg, LittleEndian).unwrap();
    let report = log.recovery();
    assert_eq!(report.segments_discarded, 1);
    assert_eq!(report.bytes_discarded, 23);
    assert_eq!(drain(&mut log), (0..10).collect::<Vec<_>>());
    drop(log);
    assert!(dir.join("notes.txt").exists());
    fs::remove_dir_all(&dir).unwrap();
}

fn full_log(policy: Overflow, dir: &Path) -> SpillLog<u64> {
    // 2 segments of 64 bytes: 3 records of 16 bytes each per segment.
    let cfg = SpillConfig::builder(dir)
        .segment_bytes(64)
        .max_bytes(128)
        .when_full(policy)
        .fsync(Fsync::Never)
        .build()
        .unwrap();
    SpillLog::open(cfg, LittleEndian).unwrap()
}

#[test]
fn disk_bound_reject_hands_the_item_back_and_counts_it() {
    let dir = temp_dir("reject");
    let mut log = full_log(Overflow::Reject, &dir);
    for i in 0..6u64 {
        assert_eq!(log.push(i).unwrap(), Pushed::Stored);
    }
    match log.push(6) {
        Err(PushError::Full(6)) => {}
        other => panic!("expected Full(6), got {other:?}"),
    }
    assert_eq!(log.stats().rejected, 1);
    assert_eq!(log.bytes(), 128);
    // Reading a whole segment frees it: room again.
    for i in 0..3u64 {
        assert_eq!(log.pop().unwrap(), Some(i));
    }
    assert_eq!(log.bytes(), 64);
    for i in 6..9u64 {
        assert_eq!(log.push(i).unwrap(), Pushed::Stored);
    }
    assert_eq!(drain(&mut log), vec![3, 4, 5, 6, 7, 8]);
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn disk_bound_drop_newest_drops_and_counts() {
    let dir = temp_dir("dropnewest");
    let mut log = full_log(Overflow::DropNewest, &dir);
    for i in 0..10u64 {
        let pushed = log.push(i).unwrap();
        assert_eq!(pushed == Pushed::Stored, i < 6, "item {i}");
    }
    assert_eq!(log.stats().dropped_newest, 4);
    assert_eq!(drain(&mut log), (0..6).collect::<Vec<_>>());
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn disk_bound_block_returns_full_uncounted_to_a_lone_log() {
    let dir = temp_dir("block");
    let mut log = full_log(Overflow::Block, &dir);
    for i in 0..6u64 {
        log.push(i).unwrap();
    }
    assert!(matches!(log.push(6), Err(PushError::Full(6))));
    assert_eq!(log.stats().rejected, 0);
    // A wholly read tail is dropped at rotation, so the bound never wedges.
    assert_eq!(drain(&mut log), (0..6).collect::<Vec<_>>());
    for i in 0..6u64 {
        log.push(i).unwrap();
    }
    assert_eq!(log.len(), 6);
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bound_of_one_segment_still_turns_over() {
    let dir = temp_dir("onesegment");
    let cfg = SpillConfig::builder(&dir)
        .segment_bytes(64)
        .max_bytes(64)
        .when_full(Overflow::Reject)
        .fsync(Fsync::Never)
        .build()
        .unwrap();
    let mut log = SpillLog::open(cfg, LittleEndian).unwrap();
    for round in 0..5u64 {
        for i in 0..3 {
            log.push(round * 3 + i).unwrap();
        }
        assert!(matches!(log.push(99), Err(PushError::Full(99))));
        assert_eq!(
            drain(&mut log),
            (round * 3..round * 3 + 3).collect::<Vec<_>>()
        );
    }
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_and_undecodable_records_are_errors_not_panics() {
    let dir = temp_dir("sizes");
    let cfg = config(&dir, 64, 1024);
    assert_eq!(cfg.max_record_payload(), 40);
    let mut log = SpillLog::open(cfg.clone(), Raw).unwrap();
    assert!(matches!(log.push(vec![0; 41]), Err(PushError::TooLarge(_))));
    log.push(vec![0; 40]).unwrap();
    log.push(vec![0xff]).unwrap();
    drop(log);
    let mut log = SpillLog::open(cfg, Utf8).unwrap();
    assert_eq!(log.pop().unwrap(), Some("\0".repeat(40)));
    assert!(matches!(log.pop(), Err(PopError::Codec(_))));
    assert_eq!(log.stats().undecodable, 1);
    assert_eq!(log.pop().unwrap(), None);
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fsync_every_interval_follows_the_clock() {
    let dir = temp_dir("interval");
    let clock = ManualClock::new();
    let cfg = SpillConfig::builder(&dir)
        .fsync(Fsync::Every(Duration::from_millis(10)))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut log = SpillLog::open(cfg, LittleEndian).unwrap();
    let base = log.stats().syncs; // the cursor saved at open
    for i in 0..5u64 {
        log.push(i).unwrap();
    }
    assert_eq!(log.stats().syncs, base);
    clock.advance(Duration::from_millis(10));
    log.push(5u64).unwrap();
    assert_eq!(log.stats().syncs, base + 1);
    log.push(6u64).unwrap();
    assert_eq!(log.stats().syncs, base + 1);
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fsync_every_records_counts_appends() {
    let dir = temp_dir("everyn");
    let cfg = SpillConfig::builder(&dir)
        .fsync(Fsync::EveryRecords(4))
        .build()
        .unwrap();
    let mut log = SpillLog::open(cfg, LittleEndian).unwrap();
    let base = log.stats().syncs;
    for i in 0..10u64 {
        log.push(i).unwrap();
    }
    assert_eq!(log.stats().syncs, base + 2);
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_settings_are_config_errors() {
    let b = || SpillConfig::builder("/tmp/x");
    assert_eq!(
        b().segment_bytes(63).build().unwrap_err().setting(),
        "segment_bytes"
    );
    assert_eq!(
        b().segment_bytes(1024)
            .max_bytes(1000)
            .build()
            .unwrap_err()
            .setting(),
        "max_bytes"
    );
    assert_eq!(
        b().fsync(Fsync::EveryRecords(0))
            .build()
            .unwrap_err()
            .setting(),
        "fsync"
    );
    assert_eq!(
        b().fsync(Fsync::Every(Duration::ZERO))
            .build()
            .unwrap_err()
            .setting(),
        "fsync"
    );
    assert_eq!(
        b().when_full(Overflow::DropOldest)
            .build()
            .unwrap_err()
            .setting(),
        "when_full"
    );
    assert_eq!(
        SpillConfig::builder("").build().unwrap_err().setting(),
        "dir"
    );
    assert!(b()
        .when_full(Overflow::BlockTimeout(Duration::MAX))
        .build()
        .is_ok());
}
