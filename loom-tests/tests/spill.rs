//! Loom models of spilling: the channel (`sheaf::channel::spilling`): a
//! sender that spills to disk while the receiver is parked on "empty" must
//! wake it, and items come back in FIFO order across the ring and the log;
//! and the serialized writer under `Overflow::Spill`: a producer's records
//! reach the sink in order while the writer thread reads the log back
//! concurrently (the gate, and reading the log before taking the shards).
//!
//! The log is real files in a fresh temp dir per iteration (loom replays the
//! model many times); `Fsync::Never`, since durability is not what is
//! modelled. The log's lock and the channel's wait lists are loom's.
//!
//! Run: `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests --test spill`
#![cfg(sheaf_loom)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use loom_tests::model;
use sheaf::channel::{self, RecvError};
use sheaf::codec::LittleEndian;
use sheaf::spill::{Fsync, SpillConfig};

/// A fresh directory for one iteration's log (std atomics: test harness
/// state, not part of the model).
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("sheaf-loom-spill-{}-{n}", std::process::id()))
}

/// A fresh directory and a config for it: durability is not modelled.
fn fresh_log() -> (PathBuf, SpillConfig) {
    let dir = fresh_dir();
    let config = SpillConfig::builder(&dir)
        .fsync(Fsync::Never)
        .build()
        .unwrap();
    (dir, config)
}

#[test]
fn spilled_items_wake_a_parked_receiver_in_fifo_order() {
    // Interleavings in which something went to disk: the model must reach them.
    static SPILLED: AtomicUsize = AtomicUsize::new(0);
    model(|| {
        let (dir, config) = fresh_log();
        let (tx, rx) = channel::spilling::<u64>(1, config, LittleEndian).unwrap();
        let sender = thread::spawn(move || {
            // Capacity 1: the second and third sends go to disk unless the
            // receiver has emptied the ring meanwhile.
            for item in 1..=3u64 {
                tx.send(item).unwrap();
            }
        });
        for item in 1..=3u64 {
            assert_eq!(rx.recv(), Ok(item));
        }
        sender.join().unwrap();
        assert_eq!(rx.recv(), Err(RecvError));
        let stats = rx.stats();
        assert_eq!((stats.spilled, stats.on_disk), (stats.unspilled, 0));
        if stats.spilled > 0 {
            SPILLED.fetch_add(1, Ordering::Relaxed);
        }
        drop(rx);
        let _ = std::fs::remove_dir_all(&dir);
    });
    assert!(SPILLED.load(Ordering::Relaxed) > 0);
}

#[test]
fn writer_spill_keeps_a_producers_order_across_memory_and_disk() {
    use loom::sync::{Arc, Mutex};
    use sheaf::writer::{Overflow, SerialWriter};
    static SPILLED: AtomicUsize = AtomicUsize::new(0);
    model(|| {
        let (dir, config) = fresh_log();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        let writer = SerialWriter::builder_fn(move |bytes: &[u8]| {
            sink.lock().unwrap().extend_from_slice(bytes);
            Ok(())
        })
        .shards(1)
        .capacity_items(1)
        .overflow(Overflow::Spill(config))
        .build()
        .unwrap();
        let handle = writer.handle();
        let producer = thread::spawn(move || {
            // Room for one record: the others go to disk unless the writer
            // thread has taken the first meanwhile.
            for record in [b"a", b"b", b"c"] {
                handle.write_record(record).unwrap();
            }
        });
        producer.join().unwrap();
        let report = writer.close(std::time::Duration::from_secs(3600));
        assert_eq!(&*out.lock().unwrap(), b"abc");
        assert_eq!((report.accepted, report.written, report.on_disk), (3, 3, 0));
        if writer.stats().spilled > 0 {
            SPILLED.fetch_add(1, Ordering::Relaxed);
        }
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    });
    assert!(SPILLED.load(Ordering::Relaxed) > 0);
}
