//! `schedule/schedule+cancel` against tokio-cron-scheduler (issue #16):
//! per iteration, 1,000 one-shot jobs due 30 minutes out, each cancelled
//! right after it is scheduled, with `live` jobs (all due in an hour)
//! already waiting. Throughput is schedule + cancel pairs per second.
//!
//! - `sheaf`: `Scheduler::at` + `Scheduler::cancel` (timer wheel), on a
//!   2-worker pool, exactly as in sheaf's own `benches/schedule.rs`.
//! - `tokio-cron-scheduler`: `Job::new_one_shot` + `JobScheduler::add` +
//!   `JobScheduler::remove`, started, on a 2-worker tokio runtime; each
//!   iteration is one `block_on` around the 1,000 pairs (the runtime entry
//!   is paid once per 1,000 pairs, not per pair).
//!
//! After each row, fire lateness with the `live` jobs waiting: 2,000
//! jobs due 200 to 400 ms from now (time enough for the slower peer to
//! schedule them all first); each records its run start minus its
//! deadline (negative: it ran early). Printed as
//! `LATENCY schedule/lateness/<impl>/<live> p50=..us p99=..us max=..us
//! min=..us n=.. early=..` (`n`: jobs that ran within a minute).
//!
//! Run: `cargo bench --manifest-path benches/cron-peer/Cargo.toml`
//! (`SHEAF_CRON_LIVE=10000,1000000` picks the live counts; default 10k and
//! 100k).

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sheaf::pool::WorkerPool;
use sheaf::schedule::Scheduler;
use tokio_cron_scheduler::{Job, JobScheduler};

const BATCH: u64 = 1_000;
const LATE_JOBS: u64 = 2_000;

/// Signed nanoseconds: negative when a job ran before its deadline.
type Lateness = Arc<Mutex<Vec<i64>>>;

/// Due times of the lateness pass, and where each run records how late it was.
fn lateness_plan() -> (Vec<Instant>, Lateness) {
    let start = Instant::now() + Duration::from_millis(200);
    let due = (0..LATE_JOBS)
        .map(|i| start + Duration::from_micros(i * 100))
        .collect();
    (due, Arc::new(Mutex::new(Vec::new())))
}

fn record(lateness: &Lateness, due: Instant) {
    let now = Instant::now();
    let late = match now.checked_duration_since(due) {
        Some(late) => late.as_nanos() as i64,
        None => -((due - now).as_nanos() as i64),
    };
    lateness.lock().unwrap().push(late);
}

/// Waits for every lateness job (up to a minute), then prints the percentiles.
fn report(name: &str, live: u64, lateness: &Lateness) {
    let until = Instant::now() + Duration::from_secs(60);
    while (lateness.lock().unwrap().len() as u64) < LATE_JOBS && Instant::now() < until {
        thread::sleep(Duration::from_millis(5));
    }
    let mut l = lateness.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() - 1) as f64 * p) as usize] / 1_000;
    let early = l.iter().filter(|&&ns| ns < 0).count();
    println!(
        "LATENCY schedule/lateness/{name}/{live} p50={}us p99={}us max={}us min={}us n={} early={early}",
        pct(0.5),
        pct(0.99),
        l[l.len() - 1] / 1_000,
        l[0] / 1_000,
        l.len()
    );
}

fn bench(c: &mut Criterion) {
    let lives: Vec<u64> = std::env::var("SHEAF_CRON_LIVE")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let mut group = c.benchmark_group("schedule/schedule+cancel");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    for &live in &lives {
        {
            let pool = WorkerPool::builder().workers(2).build().unwrap();
            let s = Scheduler::builder().pool(pool).build().unwrap();
            let far = Instant::now() + Duration::from_secs(3_600);
            for i in 0..live {
                s.at(far + Duration::from_micros(i), || {}).unwrap();
            }
            group.bench_with_input(BenchmarkId::new("sheaf", live), &live, |b, _| {
                let later = Instant::now() + Duration::from_secs(1_800);
                b.iter(|| {
                    for i in 0..BATCH {
                        let id = s.at(later + Duration::from_micros(i), || {}).unwrap();
                        assert!(s.cancel(id));
                    }
                });
            });
            let (due, lateness) = lateness_plan();
            for &at in &due {
                let lateness = Arc::clone(&lateness);
                s.at(at, move || record(&lateness, at)).unwrap();
            }
            report("sheaf", live, &lateness);
            let _report = s.shutdown(Duration::from_secs(5));
        }
        {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let began = Instant::now();
            let sched = rt.block_on(async {
                let sched = JobScheduler::new().await.unwrap();
                sched.start().await.unwrap();
                for _ in 0..live {
                    let job = Job::new_one_shot(Duration::from_secs(3_600), |_, _| {}).unwrap();
                    sched.add(job).await.unwrap();
                }
                sched
            });
            eprintln!(
                "tokio-cron-scheduler: {live} live jobs added in {:?}",
                began.elapsed()
            );
            group.bench_with_input(
                BenchmarkId::new("tokio-cron-scheduler", live),
                &live,
                |b, _| {
                    b.iter(|| {
                        rt.block_on(async {
                            for _ in 0..BATCH {
                                let job = Job::new_one_shot(Duration::from_secs(1_800), |_, _| {})
                                    .unwrap();
                                let id = sched.add(job).await.unwrap();
                                sched.remove(&id).await.unwrap();
                            }
                        })
                    });
                },
            );
            let (due, lateness) = lateness_plan();
            rt.block_on(async {
                for &at in &due {
                    let lateness = Arc::clone(&lateness);
                    let job = Job::new_one_shot_at_instant(at, move |_, _| record(&lateness, at))
                        .unwrap();
                    sched.add(job).await.unwrap();
                }
            });
            report("tokio-cron-scheduler", live, &lateness);
            let mut sched = sched;
            rt.block_on(async { sched.shutdown().await.unwrap() });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
