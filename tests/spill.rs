//! The spill log across processes (kill -9 mid-write, then replay) and the
//! spilling channel through the public API.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sheaf::channel::{self, TrySendError};
use sheaf::codec::{LittleEndian, Raw};
use sheaf::spill::{Fsync, SpillConfig, SpillLog};
use sheaf::Overflow;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sheaf-spill-it-{}-{}-{}",
        name,
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const CHILD_ENV: &str = "SHEAF_SPILL_KILL_CHILD_DIR";
const SYNC_EVERY: u64 = 3;

fn record(i: u64) -> Vec<u8> {
    let mut r = i.to_le_bytes().to_vec();
    r.resize(8 + (i % 200) as usize, i as u8);
    r
}

fn kill_config(dir: &Path) -> SpillConfig {
    SpillConfig::builder(dir)
        .segment_bytes(4096)
        .max_bytes(1 << 30)
        .fsync(Fsync::EveryRecords(SYNC_EVERY))
        .build()
        .unwrap()
}

/// The child of `kill_9_mid_write_replays_every_synced_record`: appends
/// forever, printing the index of each record once it is fsynced. Without
/// the environment variable (a normal test run) it does nothing.
#[test]
fn child_writer_for_kill_test() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut log = SpillLog::open(kill_config(Path::new(&dir)), Raw).unwrap();
    let mut out = std::io::stdout().lock();
    let mut synced = 0;
    for i in 0.. {
        log.push(record(i)).unwrap();
        if log.stats().synced > synced {
            // Records 0..synced are on disk: report the last one.
            synced = log.stats().synced;
            writeln!(out, "synced {}", synced - 1).unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn kill_9_mid_write_replays_every_synced_record() {
    let dir = temp_dir("kill");
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_writer_for_kill_test",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut synced = None;
        let mut lines = stdout.lines();
        for line in lines.by_ref() {
            if let Some(i) = line.unwrap().strip_prefix("synced ") {
                synced = Some(i.parse::<u64>().unwrap());
                if synced >= Some(600) {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines the child wrote before it died.
        for line in lines {
            if let Some(i) = line.unwrap().strip_prefix("synced ") {
                synced = Some(i.parse::<u64>().unwrap());
            }
        }
        let synced = synced.expect("the child synced records");
        let mut log = SpillLog::open(kill_config(&dir), Raw).unwrap();
        let mut replayed = 0u64;
        while let Some(r) = log.pop().unwrap() {
            assert_eq!(r, record(replayed), "round {round}: record {replayed}");
            replayed += 1;
        }
        assert!(
            replayed > synced,
            "round {round}: {replayed} replayed, record {synced} was synced"
        );
        assert_eq!(log.recovery().records_recovered, replayed);
        drop(log);
        // The next round starts from an empty log (all read).
        let log = SpillLog::<Vec<u8>>::open(kill_config(&dir), Raw).unwrap();
        assert_eq!(log.len(), 0);
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn small_config(dir: &Path, when_full: Overflow) -> SpillConfig {
    // 16-byte records of u64: 3 per 64-byte segment, 2 segments at most.
    SpillConfig::builder(dir)
        .segment_bytes(64)
        .max_bytes(128)
        .when_full(when_full)
        .fsync(Fsync::Never)
        .build()
        .unwrap()
}

#[test]
fn spilling_channel_keeps_fifo_across_memory_and_disk() {
    let dir = temp_dir("fifo");
    let config = SpillConfig::builder(&dir)
        .segment_bytes(4096)
        .fsync(Fsync::Never)
        .build()
        .unwrap();
    let (tx, rx) = channel::spilling::<u64>(8, config, LittleEndian).unwrap();
    const N: u64 = 20_000;
    let producer = std::thread::spawn(move || {
        for i in 0..N {
            tx.send(i).unwrap();
        }
        tx.stats()
    });
    let mut next = 0;
    for item in rx.iter() {
        assert_eq!(item, next);
        next += 1;
    }
    assert_eq!(next, N);
    let stats = producer.join().unwrap();
    let end = rx.stats();
    assert_eq!(end.sent, N);
    assert_eq!(end.received, N);
    assert_eq!(end.spilled, end.unspilled);
    assert_eq!(end.on_disk, 0);
    assert!(stats.sent <= N);
    drop(rx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spilling_channel_keeps_each_producers_order() {
    let dir = temp_dir("mpmc");
    let config = SpillConfig::builder(&dir)
        .segment_bytes(1024)
        .fsync(Fsync::Never)
        .build()
        .unwrap();
    let (tx, rx) = channel::spilling::<u64>(4, config, LittleEndian).unwrap();
    const PER: u64 = 5_000;
    let producers: Vec<_> = (0..3u64)
        .map(|p| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    tx.send(p << 32 | i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || rx.iter().collect::<Vec<u64>>())
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all = Vec::new();
    for c in consumers {
        let got = c.join().unwrap();
        // Within one consumer, each producer's items arrive in order.
        for p in 0..3u64 {
            let mine: Vec<u64> = got.iter().filter(|&&v| v >> 32 == p).copied().collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
        }
        all.extend(got);
    }
    all.sort_unstable();
    let want: Vec<u64> = (0..3u64)
        .flat_map(|p| (0..PER).map(move |i| p << 32 | i))
        .collect();
    assert_eq!(all, want);
    drop(rx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spilling_channel_disk_full_reject() {
    let dir = temp_dir("reject");
    let (tx, rx) =
        channel::spilling::<u64>(2, small_config(&dir, Overflow::Reject), LittleEndian).unwrap();
    for i in 0..8 {
        tx.send(i).unwrap(); // 2 in memory, 6 on disk
    }
    assert_eq!(tx.send(8).unwrap_err().into_inner(), 8);
    assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
    let stats = rx.stats();
    assert_eq!((stats.rejected, stats.on_disk, stats.len), (1, 6, 2));
    // Reading a whole segment's worth frees room on disk.
    for i in 0..5 {
        assert_eq!(rx.recv(), Ok(i));
    }
    tx.send(8).unwrap();
    drop(tx);
    assert_eq!(rx.iter().collect::<Vec<_>>(), [5, 6, 7, 8]);
    drop(rx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spilling_channel_disk_full_drop_newest() {
    let dir = temp_dir("dropnewest");
    let (tx, rx) =
        channel::spilling::<u64>(2, small_config(&dir, Overflow::DropNewest), LittleEndian)
            .unwrap();
    for i in 0..12 {
        tx.send(i).unwrap();
    }
    drop(tx);
    assert_eq!(rx.stats().dropped_newest, 4);
    assert_eq!(rx.iter().collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    drop(rx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spilling_channel_disk_full_block_waits_for_a_receiver() {
    let dir = temp_dir("block");
    let (tx, rx) =
        channel::spilling::<u64>(2, small_config(&dir, Overflow::Block), LittleEndian).unwrap();
    for i in 0..8 {
        tx.send(i).unwrap();
    }
    let sender = std::thread::spawn(move || {
        tx.send(8).unwrap();
        tx.send(9).unwrap();
    });
    // Wait for the state asserted: the sender parked at the disk bound.
    while rx.stats().waiting_senders == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rx.stats().on_disk, 6);
    let got: Vec<u64> = rx.iter().collect();
    sender.join().unwrap();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    drop(rx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spilling_channel_disk_full_block_timeout_counts() {
    let dir = temp_dir("blocktimeout");
    let policy = Overflow::BlockTimeout(Duration::from_millis(1));
    let (tx, rx) = channel::spilling::<u64>(2, small_config(&dir, policy), LittleEndian).unwrap();
    for i in 0..8 {
        tx.send(i).unwrap();
    }
    assert_eq!(tx.send(8).unwrap_err().into_inner(), 8);
    assert_eq!(rx.stats().timed_out, 1);
    drop(tx);
    assert_eq!(rx.iter().count(), 8);
    drop(rx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_is_on_disk_when_the_channel_goes_comes_back_first_next_run() {
    let dir = temp_dir("restart");
    let config = || {
        SpillConfig::builder(&dir)
            .segment_bytes(256)
            .fsync(Fsync::EveryRecords(1))
            .build()
            .unwrap()
    };
    {
        let (tx, rx) = channel::spilling::<u64>(3, config(), LittleEndian).unwrap();
        for i in 0..20 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.recv(), Ok(0));
        // 2 left in memory are dropped with the channel; 17 are on disk.
        assert_eq!(rx.stats().on_disk, 17);
    }
    let (tx, rx) = channel::spilling::<u64>(3, config(), LittleEndian).unwrap();
    let report = rx.spill_recovery().unwrap();
    assert_eq!(report.records_recovered, 17);
    tx.send(100).unwrap();
    drop(tx);
    let got: Vec<u64> = rx.iter().collect();
    assert_eq!(got, (3..20).chain([100]).collect::<Vec<_>>());
    drop(rx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spill_without_a_codec_is_a_config_error() {
    let config = SpillConfig::builder(std::env::temp_dir().join("never-opened"))
        .build()
        .unwrap();
    let spill = Overflow::Spill(config);
    let err = channel::builder()
        .overflow(spill.clone())
        .build::<u64>()
        .unwrap_err();
    assert_eq!(err.setting(), "overflow");
    let err = channel::builder()
        .build_spilling::<u64>(LittleEndian)
        .unwrap_err();
    assert_eq!(err.setting(), "overflow");
    let err = sheaf::WorkerPool::builder()
        .overflow(spill)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "overflow");
    // The writer needs no codec (its records are bytes); the batcher's
    // output needs `spill_codecs` (tested with the batcher).
}
