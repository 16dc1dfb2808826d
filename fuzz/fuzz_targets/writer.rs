//! Fuzzes `sheaf::writer::SerialWriter` against a model byte stream.
//!
//! An arbitrary sequence of writes (arbitrary sizes, through one to three
//! handles), flushes, sync ticks (`sync_now`), restarts and a close, on a writer with
//! arbitrary item and byte capacities and coalescing size. Every record is
//! self-describing (handle, sequence number, length, payload), and the
//! model keeps the records the writer accepted, in write order. Checks:
//! - a write is refused exactly when the record is larger than the byte
//!   capacity or the writer is closed, and the refused bytes come back;
//! - after a flush (and at the end) the sink holds exactly the model's
//!   bytes: all writes come from this thread, so every handle's records and
//!   the whole stream are in write order;
//! - the sync hook only ever sees whole records in the sink;
//! - the close report accounts for every accepted record as written.
//!
//! Half the inputs run the writer under `Overflow::Spill` (a fresh spill
//! directory per input): the same checks then cover records that went to
//! disk and came back, in order, through flushes, restarts and the close.
//!
//! Run: `cargo +nightly fuzz run writer -- -max_total_time=20`
#![no_main]

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sheaf::spill::{Fsync, SpillConfig};
use sheaf::writer::{Overflow, SerialWriter, WriteError};

/// A spill directory of its own for one input.
fn spill_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("sheaf-fuzz-writer-{}-{n}", std::process::id()))
}

#[derive(Arbitrary, Debug)]
enum Op {
    Write {
        handle: u8,
        len: u16,
        fill: u8,
    },
    WriteAll {
        handle: u8,
        value: u32,
    },
    Flush {
        handle: u8,
    },
    Sync,
    /// `restart`: a stop pass (write, flush, sync), then running again.
    Restart,
    Close,
}

#[derive(Arbitrary, Debug)]
struct Input {
    handles: u8,
    capacity_items: u8,
    capacity_bytes: u16,
    coalesce: u16,
    spill: bool,
    ops: Vec<Op>,
}

struct VecSink(Arc<Mutex<Vec<u8>>>);

impl Write for VecSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const HEADER: usize = 9;

/// `[handle][seq u32][payload len u32][payload]`.
fn record(handle: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(HEADER + payload.len());
    r.push(handle);
    r.extend_from_slice(&seq.to_le_bytes());
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(payload);
    r
}

/// `true` if `bytes` is a sequence of whole records.
fn whole_records(mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        if bytes.len() < HEADER {
            return false;
        }
        let len = u32::from_le_bytes(bytes[5..9].try_into().unwrap()) as usize;
        if bytes.len() < HEADER + len {
            return false;
        }
        bytes = &bytes[HEADER + len..];
    }
    true
}

fuzz_target!(|input: Input| {
    let handles = usize::from(input.handles % 3) + 1;
    let capacity_items = usize::from(input.capacity_items % 16) + 1;
    let capacity_bytes = usize::from(input.capacity_bytes % 4096) + 1;
    let out = Arc::new(Mutex::new(Vec::new()));
    let torn = Arc::new(Mutex::new(false));
    let torn_in_hook = Arc::clone(&torn);
    let dir = input.spill.then(spill_dir);
    let overflow = match &dir {
        // Segments hold the largest record; the disk bound is never reached.
        Some(dir) => Overflow::Spill(
            SpillConfig::builder(dir)
                .segment_bytes(64 << 10)
                .fsync(Fsync::Never)
                .build()
                .unwrap(),
        ),
        None => Overflow::Block,
    };
    let writer = SerialWriter::builder(VecSink(Arc::clone(&out)))
        .overflow(overflow)
        .capacity_items(capacity_items)
        .capacity_bytes(capacity_bytes)
        .coalesce(usize::from(input.coalesce % 8192))
        .shards(2)
        .sync_every(Duration::from_secs(3600), move |sink: &mut VecSink| {
            if !whole_records(&sink.0.lock().unwrap()) {
                *torn_in_hook.lock().unwrap() = true;
            }
            Ok(())
        })
        .build()
        .unwrap();
    let mut hs: Vec<_> = (0..handles).map(|_| writer.handle()).collect();
    let mut model: Vec<u8> = Vec::new();
    let mut accepted = 0u64;
    let mut seqs = vec![0u32; handles];
    let mut closed = false;
    for op in input.ops.iter().take(256) {
        match *op {
            Op::Write { handle, len, fill } => {
                let h = usize::from(handle) % handles;
                let payload = vec![fill; usize::from(len % 1024)];
                let rec = record(h as u8, seqs[h], &payload);
                match hs[h].try_write_record(rec.clone()) {
                    Ok(()) => {
                        assert!(!closed && rec.len() <= capacity_bytes);
                        model.extend_from_slice(&rec);
                        accepted += 1;
                        seqs[h] += 1;
                    }
                    Err(WriteError::TooLarge(back)) => {
                        assert!(rec.len() > capacity_bytes);
                        assert_eq!(back, rec);
                    }
                    Err(WriteError::Closed(back)) => {
                        assert!(closed);
                        assert_eq!(back, rec);
                    }
                    Err(e) => panic!("unexpected refusal under Block: {e:?}"),
                }
            }
            Op::WriteAll { handle, value } => {
                let h = usize::from(handle) % handles;
                // Through `io::Write::write_all`: one call, one record.
                let payload = format!("{value}-{value:x}");
                let rec = record(h as u8, seqs[h], payload.as_bytes());
                let result = hs[h].write_all(&rec);
                if rec.len() > capacity_bytes || closed {
                    assert!(result.is_err());
                } else {
                    result.unwrap();
                    model.extend_from_slice(&rec);
                    accepted += 1;
                    seqs[h] += 1;
                }
            }
            Op::Flush { handle } => {
                let h = usize::from(handle) % handles;
                let result = hs[h].flush();
                if closed {
                    assert!(result.is_err());
                } else {
                    result.unwrap();
                    assert_eq!(
                        *out.lock().unwrap(),
                        model,
                        "after a flush the sink holds every accepted record"
                    );
                }
            }
            Op::Sync => {
                let result = writer.sync_now();
                if closed {
                    assert!(result.is_err());
                } else {
                    result.unwrap();
                    assert_eq!(*out.lock().unwrap(), model);
                }
            }
            Op::Restart => {
                let result = writer.restart(Duration::from_secs(60));
                if closed {
                    assert!(result.is_err());
                } else {
                    result.unwrap();
                    assert_eq!(
                        *out.lock().unwrap(),
                        model,
                        "a stop pass writes everything accepted before it"
                    );
                }
            }
            Op::Close => {
                let report = writer.close(Duration::from_secs(60));
                assert!(!report.timed_out);
                assert_eq!(
                    (
                        report.accepted,
                        report.written,
                        report.unwritten,
                        report.on_disk
                    ),
                    (accepted, accepted, 0, 0)
                );
                assert_eq!(report.written_bytes, model.len() as u64);
                assert_eq!(*out.lock().unwrap(), model);
                closed = true;
            }
        }
    }
    let report = writer.close(Duration::from_secs(60));
    assert_eq!(
        (report.accepted, report.written, report.failed),
        (accepted, accepted, 0)
    );
    assert_eq!(*out.lock().unwrap(), model);
    assert!(whole_records(&out.lock().unwrap()));
    assert!(!*torn.lock().unwrap(), "the sync hook saw a torn record");
    hs.clear();
    drop(writer);
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
});
