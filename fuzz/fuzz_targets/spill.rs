//! Differential fuzzing of `sheaf::spill::SpillLog` against an in-memory
//! model, across clean reopens, simulated kills and damaged files.
//!
//! The model is the history of pushed records and how many were read.
//! Checked after each operation:
//! - `push`/`pop` follow FIFO exactly; the disk bound (`Reject`) refuses a
//!   push only when the log really is near its bound;
//! - a clean reopen keeps exactly the unread records;
//! - a simulated kill (no flush, no cursor save) recovers a contiguous slice
//!   `history[a..b]` with `a` between the last `sync`'s read position and
//!   the current one (at least once) and `b` at least the last `sync`'s
//!   push count;
//! - truncating or corrupting a segment file (after a clean close) recovers
//!   the unread records with at most one contiguous run cut out, and the
//!   recovery report counts exactly what it kept.
//!
//! Run: `cargo +nightly fuzz run spill -- -max_total_time=20`
#![no_main]

use std::path::PathBuf;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sheaf::codec::Raw;
use sheaf::spill::{Fsync, PushError, SpillConfig, SpillLog};
use sheaf::Overflow;

#[derive(Arbitrary, Debug)]
enum Op {
    Push(u8, u8),
    Pop,
    Sync,
    Reopen,
    Kill,
    Truncate(u8, u16),
    Corrupt(u8, u16, u8),
}

fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("sheaf-fuzz-spill-{}", std::process::id()))
}

fn open(dir: &PathBuf) -> SpillLog<Vec<u8>> {
    let config = SpillConfig::builder(dir)
        .segment_bytes(128)
        .max_bytes(512)
        .when_full(Overflow::Reject)
        .fsync(Fsync::Never)
        .build()
        .unwrap();
    SpillLog::open(config, Raw).unwrap()
}

fn segments(dir: &PathBuf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn drain(log: &mut SpillLog<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(r) = log.pop().unwrap() {
        out.push(r);
    }
    out
}

/// `got` is `want` with at most one contiguous run removed.
fn one_run_cut(want: &[Vec<u8>], got: &[Vec<u8>]) -> bool {
    let prefix = want.iter().zip(got).take_while(|(a, b)| a == b).count();
    let suffix = want[prefix..]
        .iter()
        .rev()
        .zip(got[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    prefix + suffix == got.len()
}

fuzz_target!(|ops: Vec<Op>| {
    let dir = dir();
    let _ = std::fs::remove_dir_all(&dir);
    let mut log = Some(open(&dir));
    let mut history: Vec<Vec<u8>> = Vec::new();
    let mut read = 0usize;
    let (mut synced_read, mut synced_pushed) = (0usize, 0usize);
    let mut serial = 0u32;
    for op in ops.into_iter().take(200) {
        let l = log.as_mut().unwrap();
        match op {
            Op::Push(len, fill) => {
                serial += 1;
                let mut record = serial.to_le_bytes().to_vec();
                record.resize(4 + usize::from(len % 60), fill);
                let bytes_before = l.bytes();
                match l.push(record.clone()) {
                    Ok(_) => history.push(record),
                    Err(PushError::Full(back)) => {
                        assert_eq!(back, record);
                        // Refused only near the bound: a record plus a header.
                        assert!(bytes_before + 8 + record.len() as u64 + 16 > 512 - 128);
                    }
                    Err(e) => panic!("push: {e}"),
                }
            }
            Op::Pop => {
                let got = l.pop().unwrap();
                assert_eq!(got.as_ref(), history.get(read));
                if got.is_some() {
                    read += 1;
                }
            }
            Op::Sync => {
                l.sync().unwrap();
                synced_read = read;
                synced_pushed = history.len();
            }
            Op::Reopen => {
                drop(log.take());
                let l = log.insert(open(&dir));
                assert_eq!(l.len(), (history.len() - read) as u64);
            }
            Op::Kill => {
                log.take().unwrap().simulate_crash();
                let mut l = open(&dir);
                let got = drain(&mut l);
                assert_eq!(l.recovery().records_recovered, got.len() as u64);
                let a = match got.first() {
                    Some(first) => history.iter().position(|r| r == first).unwrap(),
                    None => read,
                };
                assert!(
                    a >= synced_read.min(read) && a <= read,
                    "replay from {a}, read {read}"
                );
                assert_eq!(&history[a..a + got.len()], &got[..]);
                assert!(a + got.len() >= synced_pushed);
                // Start over from the now empty log.
                drop(l);
                log = Some(open(&dir));
                history.clear();
                read = 0;
                synced_read = 0;
                synced_pushed = 0;
            }
            Op::Truncate(file, at) | Op::Corrupt(file, at, _) => {
                drop(log.take());
                let files = segments(&dir);
                let path = &files[usize::from(file) % files.len()];
                let mut bytes = std::fs::read(path).unwrap();
                let at = usize::from(at) % (bytes.len() + 1);
                match op {
                    Op::Corrupt(_, _, x) if at < bytes.len() => bytes[at] ^= x.max(1),
                    _ => bytes.truncate(at),
                }
                std::fs::write(path, &bytes).unwrap();
                let mut l = open(&dir);
                let got = drain(&mut l);
                assert_eq!(l.recovery().records_recovered, got.len() as u64);
                assert!(one_run_cut(&history[read..], &got));
                drop(l);
                log = Some(open(&dir));
                history.clear();
                read = 0;
                synced_read = 0;
                synced_pushed = 0;
            }
        }
    }
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
});
