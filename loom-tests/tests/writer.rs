//! Loom models of the serialized writer: the real `SerialWriter`, its writer
//! thread and its handles, with every lock, atomic, park and spawn taken
//! from loom through `sheaf::sync`.
//!
//! Modelled (each at two or three threads: the test, the writer thread, and
//! at most one producer):
//! - write against close: a record written concurrently with `close` is
//!   either refused (the write fails) or accepted and then written; the
//!   report accounts for it either way, and a write after close fails;
//! - the flush handshake: `flush` returns only after the record written
//!   before it reached the sink (a lost wake-up of the writer thread or of
//!   the flushing thread leaves a thread parked forever, which loom reports);
//! - blocking for room: with room for one record, a second write waits for
//!   the writer thread to hand the first to the sink, and nothing is lost;
//! - hook serialization: the sync hook, requested with `sync_now` while a
//!   producer writes, never runs during a sink write and sees whole records.
//!
//! The writer thread's timers are not modelled (loom has no clock): the
//! models use no periodic hook period short enough to fire and no linger
//! (`DEFAULT_LINGER` is zero under `sheaf_loom`), so the writer thread only
//! wakes when signalled, and close deadlines are long enough never to pass.
//! The async hook (a timer thread) is not modelled.
//!
//! Run: `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests --test writer`
#![cfg(sheaf_loom)]

use std::io;
use std::time::Duration;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use loom_tests::model;
use sheaf::writer::{FnSink, SerialWriter, SerialWriterBuilder};

const LONG: Duration = Duration::from_secs(3600);

type Sink = Box<dyn FnMut(&[u8]) -> io::Result<()> + Send>;

/// A writer into a shared log, and the log.
fn logged() -> (SerialWriterBuilder<FnSink<Sink>>, Arc<Mutex<Vec<u8>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink_log = Arc::clone(&log);
    let sink: Sink = Box::new(move |bytes: &[u8]| {
        sink_log.lock().unwrap().extend_from_slice(bytes);
        Ok(())
    });
    (SerialWriter::builder_fn(sink).shards(2), log)
}

#[test]
fn write_against_close_every_record_accounted() {
    model(|| {
        let (builder, log) = logged();
        let writer = builder.build().unwrap();
        let handle = writer.handle();
        let producer = thread::spawn(move || handle.write_record(b"a").is_ok());
        let report = writer.close(LONG);
        let accepted = producer.join().unwrap();
        assert!(!report.timed_out);
        assert_eq!(report.accepted, u64::from(accepted));
        assert_eq!(report.written, u64::from(accepted));
        assert_eq!(
            (report.unwritten, report.in_flight, report.failed),
            (0, 0, 0)
        );
        let expected: &[u8] = if accepted { b"a" } else { b"" };
        assert_eq!(&*log.lock().unwrap(), expected);
        // After close every write fails and hands the record back.
        let late = writer.handle().try_write_record(b"b".to_vec()).unwrap_err();
        assert_eq!(late.into_bytes(), b"b");
    });
}

#[test]
fn flush_returns_after_the_record_reached_the_sink() {
    model(|| {
        let (builder, log) = logged();
        let writer = builder.build().unwrap();
        let handle = writer.handle();
        handle.write_record(b"x").unwrap();
        writer.flush().unwrap();
        assert_eq!(&*log.lock().unwrap(), b"x");
        let report = writer.close(LONG);
        assert_eq!((report.accepted, report.written), (1, 1));
    });
}

#[test]
fn flush_from_a_producer_thread_sees_its_record() {
    model(|| {
        let (builder, log) = logged();
        let writer = builder.build().unwrap();
        let mut handle = writer.handle();
        let seen = Arc::clone(&log);
        let producer = thread::spawn(move || {
            use std::io::Write;
            handle.write_all(b"p").unwrap();
            handle.flush().unwrap();
            assert_eq!(&*seen.lock().unwrap(), b"p");
        });
        producer.join().unwrap();
        writer.close(LONG);
    });
}

#[test]
fn blocked_write_waits_for_room_and_nothing_is_lost() {
    model(|| {
        let (builder, log) = logged();
        let writer = builder.capacity_items(1).build().unwrap();
        let handle = writer.handle();
        handle.write_record(b"1").unwrap();
        // No room until the writer thread has handed "1" to the sink.
        handle.write_record(b"2").unwrap();
        let report = writer.close(LONG);
        assert_eq!((report.accepted, report.written), (2, 2));
        assert_eq!(&*log.lock().unwrap(), b"12");
    });
}

#[test]
fn sync_hook_never_runs_during_a_sink_write() {
    struct Watched {
        in_write: Arc<AtomicBool>,
        bytes: Arc<AtomicUsize>,
    }
    impl io::Write for Watched {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.in_write.store(true, Ordering::SeqCst);
            self.bytes.fetch_add(buf.len(), Ordering::SeqCst);
            self.in_write.store(false, Ordering::SeqCst);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    model(|| {
        let in_write = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let (v, r) = (Arc::clone(&violations), Arc::clone(&runs));
        let writer = SerialWriter::builder(Watched {
            in_write: Arc::clone(&in_write),
            bytes: Arc::clone(&bytes),
        })
        .shards(2)
        .sync_every(LONG, move |sink: &mut Watched| {
            r.fetch_add(1, Ordering::SeqCst);
            // Records are 2 bytes: between writes the sink holds whole ones.
            if sink.in_write.load(Ordering::SeqCst) || sink.bytes.load(Ordering::SeqCst) & 1 == 1 {
                v.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
        .build()
        .unwrap();
        let handle = writer.handle();
        let producer = thread::spawn(move || {
            handle.write_record(b"ab").unwrap();
        });
        writer.sync_now().unwrap();
        producer.join().unwrap();
        let report = writer.close(LONG);
        assert_eq!(report.written, 1);
        assert_eq!(bytes.load(Ordering::SeqCst), 2);
        assert!(
            runs.load(Ordering::SeqCst) >= 2,
            "sync_now and close each run the hook"
        );
        assert_eq!(violations.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn stop_against_write_then_start_writes_it() {
    model(|| {
        let (builder, log) = logged();
        let writer = builder.build().unwrap();
        let handle = writer.handle();
        let producer = thread::spawn(move || handle.write_record(b"a").unwrap());
        writer.stop(LONG).unwrap();
        producer.join().unwrap();
        writer.start().unwrap();
        writer.flush().unwrap();
        assert_eq!(&*log.lock().unwrap(), b"a");
        let report = writer.close(LONG);
        assert_eq!(
            (report.accepted, report.written, report.unwritten),
            (1, 1, 0)
        );
    });
}
