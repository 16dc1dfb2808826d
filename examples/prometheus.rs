//! Serves every sheaf counter of an aggregator and a writer under load at
//! `http://127.0.0.1:<port>/metrics` (Prometheus text format).
//!
//! ```text
//! cargo run --release --features metrics --example prometheus -- [PORT] [SECONDS]
//! ```
//!
//! `PORT` (or `SHEAF_METRICS_PORT`; 0 or absent: a free one, printed at start);
//! `SECONDS` (default 30, 0: until killed) is how long the load runs. The
//! sampler thread exports the stats every second, and once more when the
//! load stops; the final `stats()` are printed at exit.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use sheaf::clock::MonotonicClock;
use sheaf::merge::Sum;
use sheaf::metrics::Sampler;
use sheaf::{Aggregator, SerialWriter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = match args
        .next()
        .or_else(|| std::env::var("SHEAF_METRICS_PORT").ok())
    {
        Some(port) => port.parse()?,
        None => 0,
    };
    // 0: a port the kernel hands out now, so it can be printed.
    let port = match port {
        0 => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        port => port,
    };
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // The exporter runs its own HTTP server thread; the recorder is global.
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    println!("serving http://{addr}/metrics for {seconds} s (0: until killed)");

    let aggregator = Arc::new(
        Aggregator::<u64, u64>::builder()
            .merge_with(Sum)
            .flush_every(Duration::from_millis(100))
            .build()?,
    );
    let writer = Arc::new(SerialWriter::builder(io::sink()).build()?);
    let sampler = Sampler::new();
    sampler.register(&aggregator, "requests")?;
    sampler.register(&writer, "access_log")?;
    let sampling = sampler.spawn(Duration::from_secs(1), MonotonicClock)?;

    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let rx = aggregator.receiver();
        std::thread::spawn(move || rx.iter().count())
    };
    let producers: Vec<_> = (0..2u64)
        .map(|t| {
            let (aggregator, handle, stop) =
                (Arc::clone(&aggregator), writer.handle(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let _ = aggregator.add(i % 1_000, 1);
                    if i % 16 == 0 {
                        let _ = handle.write_record(format!("GET /{}\n", i % 1_000).as_bytes());
                    }
                    i += 2;
                }
            })
        })
        .collect();

    let start = Instant::now();
    while seconds == 0 || start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = p.join();
    }
    aggregator.flush();
    writer.flush()?;
    sampling.stop(); // one last sample: the final figures
    println!("aggregator: {:?}", aggregator.stats());
    println!("writer: {:?}", writer.stats());
    drop(aggregator.shutdown(Duration::from_secs(5)));
    drop(consumer); // ends with the process
    Ok(())
}
