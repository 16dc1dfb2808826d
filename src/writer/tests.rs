use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use super::*;

fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 50).max(4)
    } else {
        n
    }
}

const LONG: Duration = Duration::from_secs(30);

type Shared = Arc<Mutex<Vec<u8>>>;
type BoxSink = Box<dyn FnMut(&[u8]) -> io::Result<()> + Send>;
type Builder = SerialWriterBuilder<FnSink<BoxSink>>;

/// A sink into a shared `Vec<u8>`, and the vector.
fn vec_sink() -> (Shared, BoxSink) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    (
        out,
        Box::new(move |bytes: &[u8]| {
            sink.lock().unwrap().extend_from_slice(bytes);
            Ok(())
        }),
    )
}

/// Record `seq` of thread `t`: self-describing, with a payload whose length
/// varies with `seq`.
fn record(t: usize, seq: usize) -> String {
    let len = (seq * 7 + t * 13) % 97;
    let payload: String = (0..len)
        .map(|i| (b'a' + ((seq + i) % 26) as u8) as char)
        .collect();
    format!("{t}:{seq}:{payload}\n")
}

/// Parses the sink's bytes back into per-thread sequences, checking that
/// every line is a whole, intact record.
fn parse(bytes: &[u8]) -> HashMap<usize, Vec<usize>> {
    let text = std::str::from_utf8(bytes).expect("records are utf-8, none torn");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the stream ends with a whole record"
    );
    let mut seqs: HashMap<usize, Vec<usize>> = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let t: usize = parts.next().unwrap().parse().expect("thread field");
        let seq: usize = parts.next().unwrap().parse().expect("seq field");
        let payload = parts.next().expect("payload field");
        assert_eq!(
            format!("{payload}\n"),
            record(t, seq).splitn(3, ':').nth(2).unwrap(),
            "record {t}:{seq} intact"
        );
        seqs.entry(t).or_default().push(seq);
    }
    seqs
}

fn assert_all_in_order(seqs: &HashMap<usize, Vec<usize>>, threads: usize, per_thread: usize) {
    assert_eq!(seqs.len(), threads);
    for t in 0..threads {
        assert_eq!(
            seqs[&t],
            (0..per_thread).collect::<Vec<_>>(),
            "thread {t}: every record once, in order"
        );
    }
}

fn assert_report_consistent(r: &CloseReport) {
    assert_eq!(
        r.accepted + r.recovered,
        r.written
            + r.failed
            + r.dropped_oldest
            + r.unwritten
            + r.in_flight
            + r.on_disk
            + r.spill_lost,
        "{r:?}"
    );
    assert_eq!(
        r.accepted_bytes + r.recovered_bytes,
        r.written_bytes
            + r.failed_bytes
            + r.dropped_oldest_bytes
            + r.unwritten_bytes
            + r.in_flight_bytes
            + r.on_disk_bytes
            + r.spill_lost_bytes,
        "{r:?}"
    );
}

#[test]
fn config_errors_say_what_to_change() {
    let cases = [
        (
            SerialWriter::builder(io::sink())
                .capacity_items(0)
                .build()
                .unwrap_err(),
            "capacity_items",
        ),
        (
            SerialWriter::builder(io::sink())
                .capacity_bytes(0)
                .build()
                .unwrap_err(),
            "capacity_bytes",
        ),
        (
            SerialWriter::builder(io::sink())
                .sync_every(Duration::ZERO, |_| Ok(()))
                .build()
                .unwrap_err(),
            "sync_every",
        ),
        (
            SerialWriter::builder(io::sink())
                .async_every(Duration::ZERO, None, || {})
                .build()
                .unwrap_err(),
            "async_every",
        ),
        (
            SerialWriter::builder(io::sink())
                .async_every(Duration::from_secs(1), Some(0), || {})
                .build()
                .unwrap_err(),
            "async_every",
        ),
        (
            SerialWriter::builder(io::sink())
                .shards(0)
                .build()
                .unwrap_err(),
            "shards",
        ),
        (
            SerialWriter::builder(io::sink())
                .shards(64)
                .build()
                .unwrap_err(),
            "shards",
        ),
    ];
    for (err, setting) in cases {
        assert_eq!(err.setting(), setting, "{err}");
    }
}

fn many_threads(threads: usize, per_thread: usize, configure: impl FnOnce(Builder) -> Builder) {
    let (out, sink) = vec_sink();
    let writer = configure(SerialWriter::builder_fn(sink)).build().unwrap();
    let barrier = Arc::new(Barrier::new(threads));
    let joins: Vec<_> = (0..threads)
        .map(|t| {
            let mut handle = writer.handle();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for seq in 0..per_thread {
                    handle.write_all(record(t, seq).as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for j in joins {
        j.join().unwrap();
    }
    let report = writer.close(LONG);
    assert_report_consistent(&report);
    let total = (threads * per_thread) as u64;
    assert_eq!(
        (
            report.accepted,
            report.written,
            report.unwritten,
            report.failed
        ),
        (total, total, 0, 0)
    );
    assert!(!report.timed_out && report.flushed);
    let bytes = out.lock().unwrap();
    assert_eq!(report.written_bytes, bytes.len() as u64);
    assert_all_in_order(&parse(&bytes), threads, per_thread);
}

#[test]
fn many_threads_every_record_once_in_order() {
    many_threads(4, scaled(5_000), |b| b);
}

#[test]
fn many_threads_small_queue_blocks_and_loses_nothing() {
    // Small capacities make writers wait for room (and share shards).
    many_threads(6, scaled(3_000), |b| {
        b.capacity_items(16)
            .capacity_bytes(1_000)
            .coalesce(300)
            .shards(2)
    });
}

#[test]
fn many_threads_without_coalescing() {
    many_threads(3, scaled(2_000), |b| b.coalesce(0).capacity_items(64));
}

#[test]
fn one_handle_moving_between_threads_keeps_its_order() {
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink).build().unwrap();
    writer.stop(LONG).unwrap(); // everything stays queued in the shards
    let mut handle = writer.handle();
    let n = scaled(300);
    for round in 0..4 {
        // Each round runs on a fresh thread (a fresh shard).
        handle = thread::spawn(move || {
            for seq in round * n..(round + 1) * n {
                handle.write_all(record(0, seq).as_bytes()).unwrap();
            }
            handle
        })
        .join()
        .unwrap();
    }
    writer.start().unwrap();
    writer.flush().unwrap();
    assert_all_in_order(&parse(&out.lock().unwrap()), 1, 4 * n);
}

#[test]
fn records_of_one_thread_through_clones_stay_in_order() {
    // The MakeWriter pattern: a fresh clone per record.
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink).build().unwrap();
    let handle = writer.handle();
    let n = scaled(2_000);
    let joins: Vec<_> = (0..3)
        .map(|t| {
            let handle = handle.clone();
            thread::spawn(move || {
                for seq in 0..n {
                    handle.clone().write_all(record(t, seq).as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for j in joins {
        j.join().unwrap();
    }
    writer.flush().unwrap();
    assert_all_in_order(&parse(&out.lock().unwrap()), 3, n);
}

#[test]
fn write_fmt_and_write_vectored_are_one_record_each() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (out, mut sink) = vec_sink();
    let counted = Arc::clone(&calls);
    let writer = SerialWriter::builder_fn(move |b: &[u8]| {
        counted.fetch_add(1, Ordering::SeqCst);
        sink(b)
    })
    .coalesce(0)
    .build()
    .unwrap();
    let mut handle = writer.handle();
    let three = "three";
    writeln!(handle, "{}:{}:{three}", 1, 2).unwrap();
    let n = handle
        .write_vectored(&[IoSlice::new(b"a"), IoSlice::new(b""), IoSlice::new(b"bc\n")])
        .unwrap();
    assert_eq!(n, 4);
    handle.write_all(b"").unwrap(); // no record
    handle.flush().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(&*out.lock().unwrap(), b"1:2:three\nabc\n");
    assert_eq!(writer.stats().written, 2);
}

#[test]
fn queued_small_records_are_coalesced_into_one_sink_call() {
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink).build().unwrap();
    writer.stop(LONG).unwrap();
    let handle = writer.handle();
    let n = scaled(1_000);
    for seq in 0..n {
        handle.write_record(record(0, seq).as_bytes()).unwrap();
    }
    let queued = writer.stats();
    assert_eq!(
        (queued.accepted, queued.queued, queued.written),
        (n as u64, n as u64, 0)
    );
    let calls_before = queued.sink_calls;
    writer.start().unwrap();
    writer.flush().unwrap();
    let s = writer.stats();
    assert!(s.queued_bytes == 0 && s.written == n as u64);
    assert_eq!(
        s.sink_calls - calls_before,
        1,
        "{n} small records, one shard, one sink call"
    );
    assert_all_in_order(&parse(&out.lock().unwrap()), 1, n);
}

#[test]
fn coalesced_calls_respect_the_limit_and_big_records_go_alone() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sizes);
    let writer = SerialWriter::builder_fn(move |b: &[u8]| {
        seen.lock().unwrap().push(b.len());
        Ok(())
    })
    .coalesce(100)
    .build()
    .unwrap();
    writer.stop(LONG).unwrap();
    let handle = writer.handle();
    for len in [30, 30, 30, 30, 250, 10, 60, 60] {
        handle.write_record(&vec![b'x'; len]).unwrap();
    }
    writer.start().unwrap();
    writer.flush().unwrap();
    // Spans of whole records up to 100 bytes: 30+30+30 | 30 | 250 (alone) |
    // 10+60 | 60; spans of 50 bytes or more go to the sink as they are, the
    // lone 30 waits in the coalescing buffer until the 250 forces it out.
    let sizes = sizes.lock().unwrap().clone();
    assert_eq!(sizes, [90, 30, 250, 70, 60]);
}

/// A sink that fails every `k`-th call.
#[test]
fn sink_failing_every_kth_call_is_counted_and_the_writer_goes_on() {
    let k = 5;
    let calls = Arc::new(AtomicUsize::new(0));
    let (out, mut sink) = vec_sink();
    let counted = Arc::clone(&calls);
    let writer = SerialWriter::builder_fn(move |b: &[u8]| {
        if counted.fetch_add(1, Ordering::SeqCst) % k == k - 1 {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        sink(b)
    })
    .coalesce(0)
    .errors_kept(3)
    .build()
    .unwrap();
    let handle = writer.handle();
    let n = scaled(1_000) / k * k;
    for seq in 0..n {
        handle.write_record(record(0, seq).as_bytes()).unwrap();
    }
    let flushed = writer.flush();
    let report = writer.close(LONG);
    assert_report_consistent(&report);
    let fails = (n / k) as u64;
    assert_eq!(
        (report.written, report.failed, report.unwritten),
        (n as u64 - fails, fails, 0)
    );
    let s = writer.stats();
    assert_eq!(
        (s.sink_calls, s.sink_errors, s.errors),
        (n as u64, fails, fails)
    );
    assert_eq!(writer.errors().len(), 3, "bounded history");
    let last = writer.last_error().unwrap();
    assert_eq!(
        (last.origin, last.kind, last.records),
        (ErrorOrigin::SinkWrite, Some(io::ErrorKind::StorageFull), 1)
    );
    // The records that did not fail are all there, in order.
    let seqs = parse(&out.lock().unwrap());
    let expected: Vec<usize> = (0..n).filter(|seq| seq % k != k - 1).collect();
    assert_eq!(seqs[&0], expected);
    // A flush that spans failed writes says so.
    assert!(flushed.is_err() || fails == 0);
}

#[test]
fn partial_writes_are_completed_and_partial_failures_counted_per_record() {
    /// Takes at most 3 bytes per call; fails once `limit` bytes are in.
    struct Trickle {
        out: Arc<Mutex<Vec<u8>>>,
        limit: usize,
    }
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut out = self.out.lock().unwrap();
            let room = self.limit - out.len();
            if room == 0 {
                return Err(io::Error::other("full"));
            }
            let n = buf.len().min(3).min(room);
            out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let out = Arc::new(Mutex::new(Vec::new()));
    // Records of 10 bytes; the sink stops after 45 bytes: 4 whole records.
    let writer = SerialWriter::builder(Trickle {
        out: Arc::clone(&out),
        limit: 45,
    })
    .build()
    .unwrap();
    writer.stop(LONG).unwrap();
    let handle = writer.handle();
    for i in 0..10 {
        handle
            .write_record(format!("record-{i:02}\n").as_bytes())
            .unwrap();
    }
    writer.start().unwrap();
    assert!(
        writer.flush().is_err(),
        "records failed since the previous flush"
    );
    let report = writer.close(LONG);
    assert_report_consistent(&report);
    assert_eq!((report.written, report.failed), (4, 6));
    assert_eq!((report.written_bytes, report.failed_bytes), (40, 60));
    assert_eq!(
        &out.lock().unwrap()[..40],
        b"record-00\nrecord-01\nrecord-02\nrecord-03\n"
    );
}

#[test]
fn sink_panic_on_a_marker_record_is_caught_counted_and_the_writer_goes_on() {
    let (out, mut sink) = vec_sink();
    let writer = SerialWriter::builder_fn(move |b: &[u8]| {
        if b.starts_with(b"PANIC") {
            panic!("sink exploded on a marker");
        }
        sink(b)
    })
    .coalesce(0)
    .build()
    .unwrap();
    let handle = writer.handle();
    let n = scaled(300);
    let mut markers = 0;
    for seq in 0..n {
        if seq % 50 == 25 {
            handle.write_record(b"PANIC\n").unwrap();
            markers += 1;
        }
        handle.write_record(record(0, seq).as_bytes()).unwrap();
    }
    let _ = writer.flush();
    let s = writer.stats();
    assert_eq!(
        (s.sink_panics, s.failed, s.written),
        (markers, markers, n as u64)
    );
    let last = writer.last_error().unwrap();
    assert_eq!(last.origin, ErrorOrigin::SinkPanic);
    assert!(last.message.contains("sink exploded"));
    // Still working after the panics.
    handle.write_record(record(0, n).as_bytes()).unwrap();
    writer.flush().unwrap();
    assert_all_in_order(&parse(&out.lock().unwrap()), 1, n + 1);
    assert!(writer.is_running());
}

#[test]
fn close_with_a_blocked_sink_returns_at_its_deadline_with_an_honest_report() {
    let (entered_tx, entered_rx) = mpsc::channel::<usize>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let release_rx = Mutex::new(release_rx);
    let writer = SerialWriter::builder_fn(move |b: &[u8]| {
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = entered_tx.send(b.len());
        // Blocks until the test ends.
        let _ = release_rx.lock().unwrap().recv();
        Ok(())
    })
    .build()
    .unwrap();
    let handle = writer.handle();
    handle.write_record(b"first\n").unwrap();
    let first_call = entered_rx.recv().unwrap();
    assert_eq!(first_call, 6);
    let n = scaled(500);
    for seq in 0..n {
        handle.write_record(record(0, seq).as_bytes()).unwrap();
    }
    let report = writer.close(Duration::from_millis(50));
    assert!(report.timed_out && !report.flushed);
    assert_report_consistent(&report);
    assert_eq!(report.accepted, n as u64 + 1);
    assert_eq!(
        (
            report.written,
            report.failed,
            report.in_flight,
            report.in_flight_bytes
        ),
        (0, 0, 1, 6)
    );
    assert_eq!(report.unwritten, n as u64);
    // Idempotent: the same report again, at once.
    assert_eq!(writer.close(LONG), report);
    // Writes fail after close; the record comes back.
    let mut h = handle.clone();
    assert_eq!(
        h.write(b"late\n").unwrap_err().kind(),
        io::ErrorKind::BrokenPipe
    );
    match handle.try_write_record(b"late\n".to_vec()) {
        Err(WriteError::Closed(bytes)) => assert_eq!(bytes, b"late\n"),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(h.flush().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    // Let the sink return: the writer thread makes no further call.
    release_tx.send(()).unwrap();
    drop(release_tx);
    let s = writer.stats();
    assert_eq!(s.unwritten, n as u64);
    assert_eq!(s.refused_closed, 2);
    drop(writer);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn flush_returns_after_everything_written_before_it_reached_the_sink() {
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink)
        .capacity_items(64)
        .build()
        .unwrap();
    let threads = 3;
    let n = scaled(400);
    let joins: Vec<_> = (0..threads)
        .map(|t| {
            let mut handle = writer.handle();
            let out = Arc::clone(&out);
            thread::spawn(move || {
                for seq in 0..n {
                    handle.write_all(record(t, seq).as_bytes()).unwrap();
                    if seq % 37 == 0 {
                        handle.flush().unwrap();
                        let seen = parse(&out.lock().unwrap());
                        let mine = &seen[&t];
                        assert_eq!(
                            mine[..seq + 1],
                            (0..=seq).collect::<Vec<_>>()[..],
                            "thread {t} after flush at {seq}"
                        );
                    }
                }
            })
        })
        .collect();
    for j in joins {
        j.join().unwrap();
    }
    writer.flush().unwrap();
    assert_all_in_order(&parse(&out.lock().unwrap()), threads, n);
}

#[test]
fn flush_timeout_times_out_on_a_stuck_sink() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let writer = SerialWriter::builder_fn(move |_: &[u8]| {
        let _ = release_rx.lock().unwrap().recv();
        Ok(())
    })
    .build()
    .unwrap();
    let handle = writer.handle();
    handle.write_record(b"x").unwrap();
    assert_eq!(
        handle
            .flush_timeout(Duration::from_millis(20))
            .unwrap_err()
            .kind(),
        io::ErrorKind::TimedOut
    );
    release_tx.send(()).unwrap();
    drop(release_tx);
    handle.flush_timeout(LONG).unwrap();
}

#[test]
fn lifecycle_start_stop_restart() {
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink).build().unwrap();
    assert!(writer.is_running());
    assert!(matches!(
        writer.start(),
        Err(LifecycleError::AlreadyRunning)
    ));
    let handle = writer.handle();
    handle.write_record(b"a\n").unwrap();
    writer.stop(LONG).unwrap();
    assert!(!writer.is_running());
    assert_eq!(writer.uptime(), Duration::ZERO);
    assert_eq!(&*out.lock().unwrap(), b"a\n", "stop writes what was queued");
    assert!(matches!(writer.stop(LONG), Err(LifecycleError::NotRunning)));
    // Accepted while stopped; flush cannot complete meanwhile.
    handle.write_record(b"b\n").unwrap();
    assert_eq!(writer.stats().queued, 1);
    assert!(handle.clone().flush().is_err());
    writer.start().unwrap();
    assert!(writer.is_running());
    writer.flush().unwrap();
    assert_eq!(&*out.lock().unwrap(), b"a\nb\n");
    handle.write_record(b"c\n").unwrap();
    writer.restart(LONG).unwrap();
    assert!(writer.is_running());
    handle.write_record(b"d\n").unwrap();
    writer.flush().unwrap();
    assert_eq!(&*out.lock().unwrap(), b"a\nb\nc\nd\n");
    // Close drains a stopped writer too.
    writer.stop(LONG).unwrap();
    handle.write_record(b"e\n").unwrap();
    let report = writer.close(LONG);
    assert_eq!(
        (report.accepted, report.written, report.unwritten),
        (5, 5, 0)
    );
    assert!(report.flushed);
    assert_eq!(&*out.lock().unwrap(), b"a\nb\nc\nd\ne\n");
    assert!(matches!(writer.start(), Err(LifecycleError::Closed)));
    assert!(!writer.is_running());
}

#[test]
fn sync_hook_runs_on_the_writer_thread_between_writes() {
    struct Watched {
        out: Vec<u8>,
        in_write: Arc<AtomicBool>,
    }
    impl Write for Watched {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.in_write.store(true, Ordering::SeqCst);
            self.out.extend_from_slice(buf);
            self.in_write.store(false, Ordering::SeqCst);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let in_write = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let (r, v, w) = (
        Arc::clone(&runs),
        Arc::clone(&violations),
        Arc::clone(&in_write),
    );
    let writer = SerialWriter::builder(Watched {
        out: Vec::new(),
        in_write: Arc::clone(&in_write),
    })
    .thread_name("my-writer")
    .sync_every(Duration::from_millis(1), move |sink: &mut Watched| {
        r.fetch_add(1, Ordering::SeqCst);
        let on_writer = thread::current().name() == Some("my-writer");
        let between = !w.load(Ordering::SeqCst) && !sink.in_write.load(Ordering::SeqCst);
        let whole = sink.out.is_empty() || sink.out.ends_with(b"\n");
        if !(on_writer && between && whole) {
            v.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    })
    .build()
    .unwrap();
    let handle = writer.handle();
    for seq in 0..scaled(3_000) {
        handle.write_record(record(0, seq).as_bytes()).unwrap();
        if seq % 500 == 0 {
            writer.sync_now().unwrap();
        }
    }
    writer.sync_now().unwrap();
    assert!(runs.load(Ordering::SeqCst) >= 1);
    assert_eq!(writer.stats().sync_runs, runs.load(Ordering::SeqCst));
    writer.close(LONG);
    assert_eq!(violations.load(Ordering::SeqCst), 0);
}

#[test]
fn sync_hook_errors_and_panics_are_recorded() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let writer = SerialWriter::builder(io::sink())
        .sync_every(Duration::from_secs(3600), move |_| {
            match c.fetch_add(1, Ordering::SeqCst) {
                0 => Err(io::Error::other("fsync failed")),
                1 => panic!("hook exploded"),
                _ => Ok(()),
            }
        })
        .build()
        .unwrap();
    assert!(writer
        .sync_now()
        .unwrap_err()
        .to_string()
        .contains("fsync failed"));
    assert!(writer
        .sync_now()
        .unwrap_err()
        .to_string()
        .contains("hook exploded"));
    writer.sync_now().unwrap();
    let s = writer.stats();
    assert_eq!((s.sync_runs, s.sync_errors), (3, 2));
    let origins: Vec<_> = writer.errors().iter().map(|e| e.origin).collect();
    assert_eq!(origins, [ErrorOrigin::SyncHook, ErrorOrigin::SyncHookPanic]);
}

#[test]
fn async_hook_concurrency_is_bounded_and_extra_ticks_skipped() {
    let current = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let (c, m, g) = (
        Arc::clone(&current),
        Arc::clone(&max_seen),
        Arc::clone(&gate),
    );
    let writer = SerialWriter::builder(io::sink())
        .async_every(Duration::from_millis(1), Some(2), move || {
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let (lock, cv) = &*g;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            c.fetch_sub(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    // Two runs block on the gate; every later tick must be skipped. Wait
    // for that state (both runs inside the hook, five ticks skipped): a run
    // is counted when it is handed to a hook thread, which may not have
    // entered the hook yet on a loaded machine.
    while writer.stats().async_skipped < 5 || current.load(Ordering::SeqCst) < 2 {
        thread::sleep(Duration::from_millis(1));
    }
    let s = writer.stats();
    assert_eq!(s.async_runs, 2);
    assert_eq!(current.load(Ordering::SeqCst), 2);
    {
        let (lock, cv) = &*gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    while writer.stats().async_runs < 6 {
        thread::sleep(Duration::from_millis(1));
    }
    writer.close(LONG);
    assert_eq!(
        current.load(Ordering::SeqCst),
        0,
        "close waits for runs in progress"
    );
    assert!(max_seen.load(Ordering::SeqCst) <= 2);
}

#[test]
fn async_hook_panics_are_caught() {
    let writer = SerialWriter::builder(io::sink())
        .async_every(Duration::from_millis(1), None, || panic!("async boom"))
        .build()
        .unwrap();
    while writer.stats().async_panics < 3 {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        writer.last_error().unwrap().origin,
        ErrorOrigin::AsyncHookPanic
    );
    assert!(writer.is_running());
}

fn stopped(overflow: Overflow, items: usize) -> (SerialWriter, WriterHandle, Arc<Mutex<Vec<u8>>>) {
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink)
        .capacity_items(items)
        .overflow(overflow)
        .build()
        .unwrap();
    writer.stop(LONG).unwrap();
    let handle = writer.handle();
    (writer, handle, out)
}

#[test]
fn reject_hands_the_record_back() {
    let (writer, handle, out) = stopped(Overflow::Reject, 4);
    for i in 0..4 {
        handle.write_record(format!("{i}\n").as_bytes()).unwrap();
    }
    assert_eq!(
        handle.write_record(b"4\n").unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    match handle.try_write_record(b"5\n".to_vec()) {
        Err(WriteError::Full(bytes)) => assert_eq!(bytes, b"5\n"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(writer.stats().rejected, 2);
    writer.start().unwrap();
    writer.flush().unwrap();
    assert_eq!(&*out.lock().unwrap(), b"0\n1\n2\n3\n");
    // Room again once written.
    handle.write_record(b"6\n").unwrap();
}

#[test]
fn drop_newest_counts_the_dropped_record() {
    let (writer, handle, out) = stopped(Overflow::DropNewest, 4);
    for i in 0..6 {
        handle.write_record(format!("{i}\n").as_bytes()).unwrap();
    }
    writer.start().unwrap();
    writer.flush().unwrap();
    assert_eq!(&*out.lock().unwrap(), b"0\n1\n2\n3\n");
    let report = writer.close(LONG);
    assert_eq!(
        (report.accepted, report.written, report.dropped_newest),
        (4, 4, 2)
    );
}

#[test]
fn drop_oldest_evicts_and_counts() {
    let (writer, handle, out) = stopped(Overflow::DropOldest, 4);
    for i in 0..7 {
        handle.write_record(format!("{i}\n").as_bytes()).unwrap();
    }
    // Another thread's shard: eviction reaches it too.
    let h2 = writer.handle();
    thread::spawn(move || h2.write_record(b"x\n").unwrap())
        .join()
        .unwrap();
    writer.start().unwrap();
    writer.flush().unwrap();
    let report = writer.close(LONG);
    assert_report_consistent(&report);
    assert_eq!(
        (report.accepted, report.written, report.dropped_oldest),
        (8, 4, 4)
    );
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("x\n") && text.contains("6\n") && !text.contains("2\n"),
        "{text}"
    );
}

#[test]
fn drop_oldest_keeps_a_long_stopped_shard_bounded() {
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink)
        .capacity_items(8)
        .overflow(Overflow::DropOldest)
        .build()
        .unwrap();
    writer.stop(LONG).unwrap();
    let handle = writer.handle();
    let n = scaled(20_000);
    for seq in 0..n {
        handle.write_record(record(0, seq).as_bytes()).unwrap();
    }
    let s = writer.stats();
    assert_eq!((s.queued, s.dropped_oldest), (8, n as u64 - 8));
    writer.start().unwrap();
    writer.flush().unwrap();
    let seqs = parse(&out.lock().unwrap());
    assert_eq!(seqs[&0], (n - 8..n).collect::<Vec<_>>());
}

#[test]
fn block_timeout_hands_the_record_back() {
    let (writer, handle, _out) = stopped(Overflow::BlockTimeout(Duration::from_millis(5)), 2);
    handle.write_record(b"0\n").unwrap();
    handle.write_record(b"1\n").unwrap();
    match handle.try_write_record(b"2\n".to_vec()) {
        Err(WriteError::TimedOut(bytes)) => assert_eq!(bytes, b"2\n"),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert_eq!(writer.stats().timed_out, 1);
}

#[test]
fn block_waits_for_room_and_is_counted_waiting() {
    let (writer, handle, out) = stopped(Overflow::Block, 2);
    handle.write_record(b"0\n").unwrap();
    handle.write_record(b"1\n").unwrap();
    let h = handle.clone();
    let blocked = thread::spawn(move || h.write_record(b"2\n"));
    while writer.stats().waiting == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(writer.stats().waiting_bytes, 2);
    writer.start().unwrap();
    blocked.join().unwrap().unwrap();
    writer.flush().unwrap();
    assert_eq!(&*out.lock().unwrap(), b"0\n1\n2\n");
    assert_eq!(writer.stats().waiting, 0);
}

#[test]
fn byte_capacity_is_enforced_and_an_oversized_record_is_an_error_not_a_hang() {
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink)
        .capacity_bytes(10)
        .overflow(Overflow::Reject)
        .build()
        .unwrap();
    let handle = writer.handle();
    // Larger than the whole capacity: refused at once, under any policy.
    match handle.try_write_record(vec![b'z'; 11]) {
        Err(WriteError::TooLarge(bytes)) => assert_eq!(bytes.len(), 11),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    writer.stop(LONG).unwrap();
    handle.write_record(b"123456\n").unwrap();
    assert_eq!(
        handle.write_record(b"7890\n").unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    handle.write_record(b"ab\n").unwrap(); // 7 + 3 = 10 bytes fit
    writer.start().unwrap();
    writer.flush().unwrap();
    assert_eq!(&*out.lock().unwrap(), b"123456\nab\n");
    assert_eq!(writer.stats().too_large, 1);

    let blocking = SerialWriter::builder(io::sink())
        .capacity_bytes(10)
        .build()
        .unwrap();
    assert_eq!(
        blocking.handle().write_record(&[0; 11]).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn credit_returns_to_the_pool_once_everything_is_written() {
    let writer = SerialWriter::builder(io::sink())
        .capacity_items(1_000)
        .capacity_bytes(100_000)
        .build()
        .unwrap();
    let joins: Vec<_> = (0..3)
        .map(|t| {
            let handle = writer.handle();
            thread::spawn(move || {
                for seq in 0..scaled(2_000) {
                    handle.write_record(record(t, seq).as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for j in joins {
        j.join().unwrap();
    }
    writer.flush().unwrap();
    // Every shard was taken after its last append, which returned its
    // unspent chunk; every record's credit came back after its sink call.
    let s = writer.stats();
    assert_eq!((s.queued, s.queued_bytes), (0, 0));
    assert_eq!(writer.shared.queue.available(), (1_000, 100_000));
    writer.close(LONG);
}

#[test]
fn flush_from_inside_the_sink_fails_instead_of_deadlocking() {
    let slot: Arc<Mutex<Option<WriterHandle>>> = Arc::new(Mutex::new(None));
    let seen = Arc::new(Mutex::new(None));
    let (s, r) = (Arc::clone(&slot), Arc::clone(&seen));
    let writer = SerialWriter::builder_fn(move |_: &[u8]| {
        if let Some(h) = s.lock().unwrap().as_ref() {
            *r.lock().unwrap() = Some(h.clone().flush().unwrap_err().kind());
        }
        Ok(())
    })
    .build()
    .unwrap();
    *slot.lock().unwrap() = Some(writer.handle());
    writer.handle().write_record(b"x").unwrap();
    writer.flush().unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(io::ErrorKind::WouldBlock));
    slot.lock().unwrap().take();
}

#[test]
fn dropping_the_writer_closes_it_and_drains() {
    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink).build().unwrap();
    let handle = writer.handle();
    for seq in 0..scaled(1_000) {
        handle.write_record(record(0, seq).as_bytes()).unwrap();
    }
    drop(writer);
    assert!(handle.is_closed());
    assert_eq!(
        handle.write_record(b"late").unwrap_err().kind(),
        io::ErrorKind::BrokenPipe
    );
    assert_all_in_order(&parse(&out.lock().unwrap()), 1, scaled(1_000));
}

#[test]
fn stats_count_exactly() {
    let (_out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink).build().unwrap();
    let handle = writer.handle();
    let mut bytes = 0;
    for seq in 0..100 {
        let r = record(1, seq);
        bytes += r.len() as u64;
        handle.write_record(r.as_bytes()).unwrap();
    }
    writer.flush().unwrap();
    let s = writer.stats();
    assert_eq!(
        (s.accepted, s.accepted_bytes, s.written, s.written_bytes),
        (100, bytes, 100, bytes)
    );
    assert_eq!((s.queued, s.waiting, s.failed, s.errors), (0, 0, 0, 0));
    assert!(s.sink_calls >= 1 && s.sink_flushes >= 1);
    assert!(writer.uptime() > Duration::ZERO);
}

#[test]
fn tracing_subscriber_writes_every_event_line_once() {
    use tracing_subscriber::fmt::MakeWriter;

    let (out, sink) = vec_sink();
    let writer = SerialWriter::builder_fn(sink).build().unwrap();
    let handle = writer.handle();
    let make_writer = move || handle.clone();
    // `MakeWriter` is implemented for closures returning an `io::Write`.
    fn assert_make_writer<M: for<'a> MakeWriter<'a>>(_: &M) {}
    assert_make_writer(&make_writer);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(make_writer)
        .with_ansi(false)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let threads = 4;
    let k = scaled(500);
    let joins: Vec<_> = (0..threads)
        .map(|t| {
            let dispatch = dispatch.clone();
            thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..k {
                        tracing::info!(thread = t, seq = i, "event");
                    }
                });
            })
        })
        .collect();
    for j in joins {
        j.join().unwrap();
    }
    let report = writer.close(LONG);
    assert_eq!(report.written, (threads * k) as u64);
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    for line in text.lines() {
        let field = |name: &str| -> usize {
            let at = line
                .find(&format!("{name}="))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                + name.len()
                + 1;
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(line.contains("INFO") && line.contains("event"), "{line:?}");
        *seen.entry((field("thread"), field("seq"))).or_default() += 1;
    }
    assert_eq!(seen.len(), threads * k);
    assert!(seen.values().all(|&n| n == 1));
    // Each thread's events in order.
    for t in 0..threads {
        let order: Vec<usize> = text
            .lines()
            .filter(|l| l.contains(&format!("thread={t} ")))
            .map(|l| {
                l.split("seq=")
                    .nth(1)
                    .unwrap()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(order, (0..k).collect::<Vec<_>>());
    }
}

#[test]
fn sync_hook_period_runs_on_the_writers_clock() {
    let clock = crate::clock::ManualClock::new();
    let runs = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&runs);
    let writer = SerialWriter::builder(io::sink())
        .clock(clock.clone())
        .sync_every(Duration::from_secs(10), move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .build()
        .unwrap();
    // Each flush is a cycle of the writer thread: it runs the hook if due.
    writer.flush().unwrap();
    assert_eq!(writer.stats().sync_runs, 0);
    clock.advance(Duration::from_secs(9));
    writer.flush().unwrap();
    assert_eq!(writer.stats().sync_runs, 0);
    clock.advance(Duration::from_secs(1));
    writer.flush().unwrap();
    assert_eq!(writer.stats().sync_runs, 1);
    // Ticks missed entirely are not made up: one run, the next period from it.
    clock.advance(Duration::from_secs(35));
    writer.flush().unwrap();
    writer.flush().unwrap();
    assert_eq!(writer.stats().sync_runs, 2);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(writer.uptime(), Duration::from_secs(45));
    writer.stop(LONG).unwrap();
    assert_eq!(writer.uptime(), Duration::ZERO);
    assert_eq!(writer.stats().sync_runs, 3, "stop runs the hook once more");
}

#[test]
fn async_hook_ticks_on_the_writers_clock_on_one_reused_thread() {
    let clock = crate::clock::ManualClock::new();
    let (tx, rx) = mpsc::channel::<String>();
    let tx = Mutex::new(tx);
    let writer = SerialWriter::builder(io::sink())
        .clock(clock.clone())
        .thread_name("clocked")
        .async_every(Duration::from_secs(1), Some(1), move || {
            let name = thread::current().name().map(str::to_owned);
            tx.lock().unwrap().send(name.unwrap_or_default()).unwrap();
        })
        .build()
        .unwrap();
    let mut names = Vec::new();
    for tick in 1..=3 {
        clock.advance(Duration::from_secs(1));
        names.push(rx.recv().unwrap());
        // The run has reported; wait for it to end before the next tick.
        while writer.stats().async_running > 0 {
            thread::yield_now();
        }
        assert_eq!(writer.stats().async_runs, tick);
    }
    assert!(names.iter().all(|n| n == "clocked-hook"), "{names:?}");
    // Stopped: no ticks, however far the clock moves.
    writer.stop(LONG).unwrap();
    clock.advance(Duration::from_secs(10));
    writer.flush().unwrap_err();
    assert!(rx.try_recv().is_err());
    writer.close(LONG);
    let s = writer.stats();
    assert_eq!((s.async_runs, s.async_skipped, s.async_panics), (3, 0, 0));
}

#[test]
fn build_pair_hands_out_a_handle_and_the_guard_that_drains_on_drop() {
    let (out, sink) = vec_sink();
    let (mut handle, guard) = SerialWriter::builder_fn(sink).build_pair().unwrap();
    for seq in 0..scaled(500) {
        handle.write_all(record(0, seq).as_bytes()).unwrap();
    }
    drop(guard);
    assert!(handle.is_closed());
    assert_all_in_order(&parse(&out.lock().unwrap()), 1, scaled(500));
}

#[cfg(feature = "tracing")]
#[test]
fn a_handle_is_a_make_writer_and_each_threads_events_keep_their_order() {
    let (out, sink) = vec_sink();
    let (handle, guard) = SerialWriter::builder_fn(sink).build_pair().unwrap();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(handle)
        .with_ansi(false)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let (threads, k) = (3, scaled(300));
    let joins: Vec<_> = (0..threads)
        .map(|t| {
            let dispatch = dispatch.clone();
            thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    (0..k).for_each(|i| tracing::info!(thread = t, seq = i, "event"))
                })
            })
        })
        .collect();
    joins.into_iter().for_each(|j| j.join().unwrap());
    assert_eq!(guard.close(LONG).written, (threads * k) as u64);
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    for t in 0..threads {
        let mine: Vec<usize> = (text.lines())
            .filter(|l| l.contains(&format!("thread={t} ")))
            .map(|l| l.split("seq=").nth(1).unwrap().trim().parse().unwrap())
            .collect();
        assert_eq!(mine, (0..k).collect::<Vec<_>>());
    }
}

/// The writer's threads whose names start with `prefix` (Linux: the
/// kernel keeps the first 15 bytes of a thread's name).
#[cfg(target_os = "linux")]
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn close_and_drop_join_every_thread_of_the_writer() {
    for close in [true, false] {
        let name = if close { "wjoin-close" } else { "wjoin-drop" };
        let writer = SerialWriter::builder(io::sink())
            .thread_name(name)
            .async_every(Duration::from_millis(1), Some(2), || {})
            .build()
            .unwrap();
        let h = writer.handle();
        h.write_record(b"x\n").unwrap();
        writer.flush().unwrap();
        // Wait until the writer thread, the ticker and a hook thread (started
        // by the first tick) have each set their name.
        while threads_named(name) < 3 {
            thread::sleep(Duration::from_millis(1));
        }
        if close {
            let report = writer.close(Duration::MAX);
            assert_eq!(report.written, 1);
            drop(writer);
        } else {
            drop(writer);
        }
        // Joined, not merely told to stop: gone when close or drop returns.
        assert_eq!(threads_named(name), 0, "{name}");
    }
}

// ---- Overflow::Spill ----

/// A fresh spill directory for one test (removed by [`SpillDir`]'s drop).
struct SpillDir(std::path::PathBuf);

impl SpillDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("sheaf-writer-spill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        SpillDir(dir)
    }

    fn overflow(&self, when_full: Overflow) -> Overflow {
        // 8-byte records take 16 bytes on disk: 3 per 64-byte segment.
        self.overflow_in(64, when_full)
    }

    fn overflow_in(&self, segment_bytes: u64, when_full: Overflow) -> Overflow {
        let config = crate::spill::SpillConfig::builder(&self.0)
            .segment_bytes(segment_bytes)
            .max_bytes(if matches!(when_full, Overflow::Block) {
                1 << 30
            } else {
                2 * segment_bytes
            })
            .when_full(when_full)
            .fsync(crate::spill::Fsync::Never)
            .build()
            .unwrap();
        Overflow::Spill(config)
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Record `i` as 8 bytes: `0000042\n`.
fn numbered(i: usize) -> Vec<u8> {
    format!("{i:07}\n").into_bytes()
}

fn numbered_range(range: std::ops::Range<usize>) -> Vec<u8> {
    range.flat_map(numbered).collect()
}

/// Waits until every thread of `writer` is gone, so its spill log is
/// closed and another writer may open the directory (its handles must be
/// dropped first).
fn drop_and_wait(writer: SerialWriter) {
    let shared = Arc::downgrade(&writer.shared);
    drop(writer);
    while shared.strong_count() > 0 {
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn spill_keeps_one_order_across_memory_and_disk() {
    let dir = SpillDir::new("order");
    let (writer, handle, out) = stopped(dir.overflow(Overflow::Block), 4);
    for i in 0..100 {
        handle.write_record(&numbered(i)).unwrap();
    }
    let s = writer.stats();
    assert_eq!(
        (s.accepted, s.queued, s.spilled, s.on_disk, s.on_disk_bytes),
        (100, 4, 96, 96, 96 * 8)
    );
    writer.start().unwrap();
    // Written while records are on disk: they go behind them.
    for i in 100..150 {
        handle.write_record(&numbered(i)).unwrap();
    }
    writer.flush().unwrap();
    assert_eq!(*out.lock().unwrap(), numbered_range(0..150));
    let s = writer.stats();
    assert_eq!(
        (s.accepted, s.written, s.on_disk, s.queued),
        (150, 150, 0, 0)
    );
    assert!(s.spilled >= 96, "{s:?}");
    let report = writer.close(LONG);
    assert_report_consistent(&report);
    assert_eq!(
        (report.written, report.on_disk, report.recovered),
        (150, 0, 0)
    );
}

#[test]
fn spill_many_threads_every_record_once_in_order() {
    let dir = SpillDir::new("threads");
    let overflow = dir.overflow_in(4096, Overflow::Block);
    many_threads(4, scaled(5_000), |b| {
        b.capacity_items(16).overflow(overflow)
    });
}

#[test]
fn spill_left_on_disk_at_a_close_deadline_is_written_first_by_the_next_writer() {
    let dir = SpillDir::new("replay");
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let writer = SerialWriter::builder_fn(move |_: &[u8]| {
        let _ = entered_tx.send(());
        // Blocks until the test lets it return.
        let _ = release_rx.lock().unwrap().recv();
        Ok(())
    })
    .capacity_items(4)
    .overflow(dir.overflow(Overflow::Block))
    .build()
    .unwrap();
    let handle = writer.handle();
    handle.write_record(&numbered(0)).unwrap();
    entered_rx.recv().unwrap(); // record 0 is in the (blocked) sink call
    let n = 50;
    for i in 1..n {
        handle.write_record(&numbered(i)).unwrap();
    }
    let report = writer.close(Duration::from_millis(50));
    assert!(report.timed_out);
    assert_report_consistent(&report);
    assert_eq!((report.accepted, report.in_flight), (n as u64, 1));
    // Memory held what fit; the rest stays on disk for the next writer.
    assert_eq!(report.unwritten + report.on_disk, n as u64 - 1);
    assert!(report.on_disk > 0, "{report:?}");
    release_tx.send(()).unwrap();
    drop(release_tx);
    drop(handle);
    drop_and_wait(writer);

    let (out, sink) = vec_sink();
    let next = SerialWriter::builder_fn(sink)
        .overflow(dir.overflow(Overflow::Block))
        .build()
        .unwrap();
    let recovery = next.spill_recovery().unwrap();
    assert_eq!(recovery.records_recovered, report.on_disk);
    next.handle().write_record(&numbered(n)).unwrap();
    next.flush().unwrap();
    let first = n - report.on_disk as usize;
    assert_eq!(*out.lock().unwrap(), numbered_range(first..n + 1));
    let s = next.stats();
    assert_eq!(
        (s.recovered, s.recovered_bytes, s.accepted, s.written),
        (report.on_disk, report.on_disk * 8, 1, report.on_disk + 1)
    );
    let report = next.close(LONG);
    assert_report_consistent(&report);
    assert_eq!(report.on_disk, 0);
}

#[test]
fn spill_disk_full_reject_hands_the_record_back() {
    let dir = SpillDir::new("reject");
    let (writer, handle, out) = stopped(dir.overflow(Overflow::Reject), 4);
    // 4 in memory, then 2 segments of 3 records on disk.
    for i in 0..10 {
        handle.write_record(&numbered(i)).unwrap();
    }
    match handle.try_write_record(numbered(10)) {
        Err(WriteError::Full(bytes)) => assert_eq!(bytes, numbered(10)),
        other => panic!("expected Full, got {other:?}"),
    }
    let s = writer.stats();
    assert_eq!((s.accepted, s.spilled, s.rejected), (10, 6, 1));
    writer.start().unwrap();
    writer.flush().unwrap();
    assert_eq!(*out.lock().unwrap(), numbered_range(0..10));
    // Room on disk and in memory again.
    handle.write_record(&numbered(10)).unwrap();
    writer.flush().unwrap();
    assert_eq!(*out.lock().unwrap(), numbered_range(0..11));
}

#[test]
fn spill_disk_full_drop_newest_counts_the_drop() {
    let dir = SpillDir::new("dropnewest");
    let (writer, handle, out) = stopped(dir.overflow(Overflow::DropNewest), 4);
    for i in 0..12 {
        handle.write_record(&numbered(i)).unwrap();
    }
    let s = writer.stats();
    assert_eq!((s.accepted, s.spilled, s.dropped_newest), (10, 6, 2));
    writer.start().unwrap();
    writer.flush().unwrap();
    assert_eq!(*out.lock().unwrap(), numbered_range(0..10));
}

#[test]
fn spill_disk_full_block_waits_for_the_writer_thread() {
    let dir = SpillDir::new("block");
    let config = crate::spill::SpillConfig::builder(&dir.0)
        .segment_bytes(64)
        .max_bytes(128)
        .fsync(crate::spill::Fsync::Never)
        .build()
        .unwrap();
    let (writer, handle, out) = stopped(Overflow::Spill(config), 4);
    for i in 0..10 {
        handle.write_record(&numbered(i)).unwrap();
    }
    let blocked = {
        let handle = handle.clone();
        thread::spawn(move || handle.write_record(&numbered(10)))
    };
    // Wait for the state, not for a time: the write waits for disk room.
    while writer.stats().waiting == 0 {
        thread::yield_now();
    }
    writer.start().unwrap();
    blocked.join().unwrap().unwrap();
    writer.flush().unwrap();
    assert_eq!(*out.lock().unwrap(), numbered_range(0..11));
    let report = writer.close(LONG);
    assert_report_consistent(&report);
    assert_eq!((report.accepted, report.written), (11, 11));
}

#[test]
fn spill_dir_that_cannot_be_opened_is_a_config_error() {
    let dir = SpillDir::new("notadir");
    std::fs::write(&dir.0, b"a file, not a directory").unwrap();
    let err = SerialWriter::builder(io::sink())
        .overflow(dir.overflow(Overflow::Block))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "overflow", "{err}");
    std::fs::remove_file(&dir.0).unwrap();
}
