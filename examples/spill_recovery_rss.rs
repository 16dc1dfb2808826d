//! Peak memory of recovering a large spill log: writes a log of
//! `SPILL_RSS_MB` MB (default 1024) of 1 KiB records, then re-runs itself
//! to open it (the full recovery scan) and prints that process's peak RSS
//! (`VmHWM` from /proc/self/status, Linux) and the recovery report.
//!
//! Run: `cargo run --release --example spill_recovery_rss`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sheaf::codec::Raw;
use sheaf::spill::{Fsync, SpillConfig, SpillLog};

fn config(dir: &Path) -> SpillConfig {
    SpillConfig::builder(dir)
        .segment_bytes(64 << 20)
        .max_bytes(u64::MAX)
        .fsync(Fsync::Never)
        .build()
        .expect("a valid config")
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("recover") {
        let dir = PathBuf::from(&args[2]);
        let before = peak_rss_kib();
        let start = Instant::now();
        let log = SpillLog::<Vec<u8>>::open(config(&dir), Raw).expect("open");
        let took = start.elapsed();
        println!("recovered {:?} in {took:?}", log.recovery());
        println!(
            "bytes on disk {} ; peak RSS before open {:?} KiB, after recovery {:?} KiB",
            log.bytes(),
            before,
            peak_rss_kib()
        );
        return;
    }
    let mb: u64 = std::env::var("SPILL_RSS_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = std::env::temp_dir().join(format!("sheaf-spill-rss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let mut log = SpillLog::open(config(&dir), Raw).expect("open");
        let record = vec![0xabu8; 1024];
        for _ in 0..(mb << 20) / 1032 {
            log.push(record.clone()).expect("push");
        }
        log.sync().expect("sync");
        println!(
            "wrote {} bytes in {} segments",
            log.bytes(),
            log.stats().segments
        );
    }
    let status = Command::new(&args[0])
        .arg("recover")
        .arg(&dir)
        .status()
        .expect("re-run");
    assert!(status.success());
    std::fs::remove_dir_all(&dir).expect("clean up");
}
