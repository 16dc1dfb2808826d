//! Every component's counters and gauges through the [`metrics`] facade
//! (feature `metrics`).
//!
//! Nothing is added to any hot path: a [`Sampler`] holds weak references to
//! the components registered with it, and each [`sample`](Sampler::sample)
//! reads their existing `stats()` (and read-only getters) and hands the
//! values to the installed recorder — counters with
//! [`Counter::absolute`](metrics::Counter::absolute), gauges with
//! [`Gauge::set`](metrics::Gauge::set). Sampling can run on a background
//! thread ([`Sampler::spawn`]), timed by a [`Clock`].
//!
//! Names are `sheaf_<component>_<what>_total` for counters and
//! `sheaf_<component>_<what>` for gauges, units in the name (`_bytes`,
//! `_seconds`); durations are gauges in seconds (the facade's counters are
//! integers). Every series carries the labels given at registration
//! (`name = "..."` at least). The README lists every name.
//!
//! A component joins by implementing [`Source`] (one trait impl).
//!
//! ```
//! use std::sync::Arc;
//! use sheaf::metrics::Sampler;
//! use sheaf::{merge::Sum, Aggregator};
//!
//! let agg = Arc::new(Aggregator::<&str, u64>::builder().merge_with(Sum).build()?);
//! let sampler = Sampler::new();
//! sampler.register(&agg, "hits")?;
//! agg.add("a", 1).unwrap();
//! // With a recorder installed, this exports `sheaf_aggregator_added_total{name="hits"} 1`.
//! assert_eq!(sampler.sample(), 1);
//! # Ok::<(), sheaf::ConfigError>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ::metrics::{IntoLabels, Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use parking_lot::Mutex;

use crate::batch::GroupBatcher;
use crate::channel::{ChannelStats, Receiver, Sender};
use crate::clock::{deadline_after, Clock};
use crate::limit::{CachedRateLimiter, ConcurrencyLimiter, KeyedLimiter, LeakyBucket, RateLimiter};
use crate::pool::WorkerPool;
use crate::schedule::Scheduler;
use crate::{Aggregator, ConfigError, SerialWriter};

/// A component whose counters and gauges a [`Sampler`] exports.
///
/// `sample` reads the component's own stats and reports each value once to
/// `out`; it must not block for long (it runs under the sampler's lock).
///
/// ```
/// use sheaf::metrics::{Emitter, Source};
///
/// struct Cache { hits: std::sync::atomic::AtomicU64 }
///
/// impl Source for Cache {
///     fn component(&self) -> &'static str {
///         "cache"
///     }
///     fn sample(&self, out: &mut Emitter<'_>) {
///         let hits = self.hits.load(std::sync::atomic::Ordering::Relaxed);
///         // Exported as `sheaf_cache_hits_total`.
///         out.counter("hits", "Lookups that found the key.", hits);
///     }
/// }
/// ```
pub trait Source: Send + Sync {
    /// The component's part of the metric names: `sheaf_<component>_...`
    /// (lower case, words joined by `_`).
    fn component(&self) -> &'static str;

    /// Reports every counter and gauge to `out`.
    fn sample(&self, out: &mut Emitter<'_>);
}

/// Where a [`Source`] reports its values during a sample; builds the full
/// names and attaches the registration's labels.
pub struct Emitter<'a> {
    component: &'static str,
    labels: &'a [Label],
    recorder: &'a dyn Recorder,
    described: &'a mut HashSet<String>,
}

/// Where the exported series say they come from.
static METADATA: Metadata<'static> = Metadata::new("sheaf", Level::INFO, Some("sheaf::metrics"));

impl Emitter<'_> {
    /// Sets the counter `sheaf_<component>_<what>_total` to `value` (a
    /// total the component already keeps).
    pub fn counter(&mut self, what: &str, help: &'static str, value: u64) {
        let name = format!("sheaf_{}_{what}_total", self.component);
        let key = self.key(&name, help, true);
        self.recorder
            .register_counter(&key, &METADATA)
            .absolute(value);
    }

    /// Sets the gauge `sheaf_<component>_<what>` to `value`.
    pub fn gauge(&mut self, what: &str, help: &'static str, value: f64) {
        let name = format!("sheaf_{}_{what}", self.component);
        let key = self.key(&name, help, false);
        self.recorder.register_gauge(&key, &METADATA).set(value);
    }

    fn key(&mut self, name: &str, help: &'static str, counter: bool) -> Key {
        // Each name is described once per sampler (the HELP line).
        if !self.described.contains(name) {
            self.described.insert(name.to_owned());
            let key_name = KeyName::from(name.to_owned());
            let help = SharedString::from(help);
            if counter {
                self.recorder.describe_counter(key_name, None, help);
            } else {
                self.recorder.describe_gauge(key_name, None, help);
            }
        }
        Key::from_parts(name.to_owned(), self.labels.to_vec())
    }
}

impl fmt::Debug for Emitter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("component", &self.component)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

struct Entry {
    source: Weak<dyn Source>,
    component: &'static str,
    labels: Vec<Label>,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    described: HashSet<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    samples: AtomicU64,
}

/// Exports the registered components' stats through the installed
/// `metrics` recorder, on demand ([`sample`](Self::sample)) or on a
/// background thread ([`spawn`](Self::spawn)).
///
/// It holds each component weakly: a dropped component leaves at the next
/// sample, and registering never keeps one alive (nor delays an
/// aggregator's last-drop). Clones share one registry.
#[derive(Clone, Default)]
pub struct Sampler {
    shared: Arc<Shared>,
}

impl Sampler {
    /// An empty sampler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `source` with the one label `name = "<name>"`.
    ///
    /// # Errors
    /// As [`register_labeled`](Self::register_labeled).
    pub fn register<S: Source + 'static>(
        &self,
        source: &Arc<S>,
        name: &str,
    ) -> Result<(), ConfigError> {
        self.register_labeled(source, vec![Label::new("name", name.to_owned())])
    }

    /// Registers `source` with a label set of the caller's choosing, which
    /// must include `name`.
    ///
    /// # Errors
    /// When the labels have no `name`, or when a live source of the same
    /// component is already registered with the same labels (the two would
    /// overwrite each other's series).
    pub fn register_labeled<S: Source + 'static>(
        &self,
        source: &Arc<S>,
        labels: impl IntoLabels,
    ) -> Result<(), ConfigError> {
        let mut labels = labels.into_labels();
        labels.sort_by(|a, b| a.key().cmp(b.key()));
        if !labels.iter().any(|l| l.key() == "name") {
            return Err(ConfigError::new(
                "labels",
                "a metrics source needs a `name` label to tell instances apart",
            ));
        }
        let component = source.component();
        let mut state = self.shared.state.lock();
        state.entries.retain(|e| e.source.strong_count() > 0);
        if state
            .entries
            .iter()
            .any(|e| e.component == component && e.labels == labels)
        {
            return Err(ConfigError::new(
                "labels",
                format!("a `{component}` source is already registered with labels {labels:?}"),
            ));
        }
        let weak: Weak<S> = Arc::downgrade(source);
        state.entries.push(Entry {
            source: weak,
            component,
            labels,
        });
        Ok(())
    }

    /// Live sources registered now.
    pub fn len(&self) -> usize {
        let state = self.shared.state.lock();
        state
            .entries
            .iter()
            .filter(|e| e.source.strong_count() > 0)
            .count()
    }

    /// `true` when no live source is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads every live source's stats and hands them to the recorder
    /// installed for this thread (see [`metrics::with_recorder`]); forgets
    /// dropped sources. Returns the number of sources sampled.
    pub fn sample(&self) -> usize {
        let mut sampled = 0;
        {
            let mut state = self.shared.state.lock();
            let State { entries, described } = &mut *state;
            entries.retain(|e| e.source.strong_count() > 0);
            ::metrics::with_recorder(|recorder| {
                for entry in entries.iter() {
                    let Some(source) = entry.source.upgrade() else {
                        continue;
                    };
                    let mut out = Emitter {
                        component: entry.component,
                        labels: &entry.labels,
                        recorder,
                        described: &mut *described,
                    };
                    source.sample(&mut out);
                    sampled += 1;
                }
            });
        }
        self.shared.samples.fetch_add(1, Ordering::Release);
        sampled
    }

    /// Samples completed so far (by [`sample`](Self::sample) calls and the
    /// background thread), for a test to wait on.
    pub fn samples(&self) -> u64 {
        self.shared.samples.load(Ordering::Acquire)
    }

    /// Starts a thread that samples every `interval` on `clock` (into the
    /// global recorder), until the returned handle is dropped or
    /// [`stop`](SamplerThread::stop)ped; stopping takes one last sample.
    ///
    /// # Errors
    /// When `interval` is zero, or the thread cannot be started.
    pub fn spawn<C: Clock>(
        &self,
        interval: Duration,
        clock: C,
    ) -> Result<SamplerThread, ConfigError> {
        if interval.is_zero() {
            return Err(ConfigError::new(
                "interval",
                "the sampling interval must be above zero",
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = self.clone();
        let stopping = Arc::clone(&stop);
        // The first deadline counts from the call, not from whenever the
        // thread gets to run.
        let first = deadline_after(clock.now(), interval);
        let handle = thread::Builder::new()
            .name("sheaf-metrics".into())
            .spawn(move || {
                let mut next = first;
                while !stopping.load(Ordering::Acquire) {
                    let now = clock.now();
                    if next.is_some_and(|at| now >= at) {
                        sampler.sample();
                        next = deadline_after(now, interval);
                    }
                    clock.park_until(next);
                }
                sampler.sample();
            })
            .map_err(|e| {
                ConfigError::new(
                    "interval",
                    format!("could not start the sampler thread: {e}"),
                )
            })?;
        Ok(SamplerThread {
            stop,
            handle: Some(handle),
        })
    }
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler")
            .field("sources", &self.len())
            .field("samples", &self.samples())
            .finish()
    }
}

/// The background sampling thread of [`Sampler::spawn`]; stops (after one
/// last sample) when dropped.
pub struct SamplerThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl SamplerThread {
    /// Stops the thread after one last sample and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.stop.store(true, Ordering::Release);
            handle.thread().unpark();
            // A panic in a source already reached the panic hook; the
            // sampler has nothing to hand back.
            let _ = handle.join();
        }
    }
}

impl Drop for SamplerThread {
    fn drop(&mut self) {
        self.halt();
    }
}

impl fmt::Debug for SamplerThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplerThread")
            .field("running", &self.handle.is_some())
            .finish()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl<K, V, S> Source for Aggregator<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn component(&self) -> &'static str {
        "aggregator"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        let s = self.stats();
        out.counter("added", "Adds accepted.", s.added);
        out.counter("inserted", "Adds that created an entry.", s.inserted);
        out.counter("merged", "Adds merged into an existing entry.", s.merged);
        out.counter(
            "flushed",
            "Entries handed to the output channel.",
            s.flushed,
        );
        out.counter(
            "retained",
            "Entries kept back by a full output (Retain).",
            s.retained,
        );
        out.counter(
            "refused_full",
            "Adds refused at the key cap.",
            s.refused_full,
        );
        out.counter(
            "refused_closed",
            "Adds refused after shutdown.",
            s.refused_closed,
        );
        out.counter(
            "dropped_newest",
            "Entries dropped by DropNewest.",
            s.dropped_newest,
        );
        out.counter(
            "dropped_oldest",
            "Output entries evicted by DropOldest.",
            s.dropped_oldest,
        );
        out.counter(
            "dropped_merge_panic",
            "Entries dropped because the merge panicked.",
            s.dropped_merge_panic,
        );
        out.counter(
            "merge_panics",
            "Panics caught in the merge.",
            s.merge_panics,
        );
        out.counter(
            "lost_at_drop",
            "Entries undelivered at the last drop.",
            s.lost_at_drop,
        );
        out.counter("flushes", "Flushes run.", s.flushes);
        out.counter("ticks_run", "Periodic ticks that ran a flush.", s.ticks_run);
        out.counter("ticks_skipped", "Periodic ticks skipped.", s.ticks_skipped);
        out.gauge(
            "last_flush_seconds",
            "Duration of the last flush.",
            secs(s.last_flush),
        );
        out.gauge(
            "longest_flush_seconds",
            "Longest flush so far.",
            secs(s.longest_flush),
        );
        out.gauge("entries", "Entries held now.", s.entries as f64);
        out.gauge(
            "queued",
            "Entries queued in the output now.",
            s.queued as f64,
        );
    }
}

fn channel_sample(s: ChannelStats, out: &mut Emitter<'_>) {
    out.counter("sent", "Items accepted.", s.sent);
    out.counter("received", "Items received.", s.received);
    out.counter(
        "dropped_newest",
        "Items dropped on send (DropNewest).",
        s.dropped_newest,
    );
    out.counter(
        "dropped_oldest",
        "Queued items evicted (DropOldest).",
        s.dropped_oldest,
    );
    out.counter("rejected", "Items handed back (Reject).", s.rejected);
    out.counter(
        "timed_out",
        "Items handed back (BlockTimeout).",
        s.timed_out,
    );
    out.counter(
        "spilled",
        "Items written to the spill log (a spilling channel).",
        s.spilled,
    );
    out.counter(
        "unspilled",
        "Items read back from the spill log.",
        s.unspilled,
    );
    out.counter(
        "spill_lost",
        "Spilled records lost reading them back (undecodable or corrupt).",
        s.spill_lost,
    );
    out.gauge("queued", "Items queued now.", s.len as f64);
    out.gauge("on_disk", "Items in the spill log now.", s.on_disk as f64);
    out.gauge("capacity", "The channel's capacity.", s.capacity as f64);
    out.gauge(
        "waiting_senders",
        "Senders waiting now.",
        s.waiting_senders as f64,
    );
    out.gauge(
        "waiting_receivers",
        "Receivers waiting now.",
        s.waiting_receivers as f64,
    );
}

impl<T: Send> Source for Sender<T> {
    fn component(&self) -> &'static str {
        "channel"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        channel_sample(self.stats(), out);
    }
}

impl<T: Send> Source for Receiver<T> {
    fn component(&self) -> &'static str {
        "channel"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        channel_sample(self.stats(), out);
    }
}

impl Source for SerialWriter {
    fn component(&self) -> &'static str {
        "writer"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        let s = self.stats();
        out.counter("accepted", "Records accepted.", s.accepted);
        out.counter("accepted_bytes", "Bytes accepted.", s.accepted_bytes);
        out.counter("written", "Records written.", s.written);
        out.counter("written_bytes", "Bytes written.", s.written_bytes);
        out.counter("failed", "Records whose sink call failed.", s.failed);
        out.counter(
            "failed_bytes",
            "Bytes whose sink call failed.",
            s.failed_bytes,
        );
        out.counter("sink_calls", "Sink write calls.", s.sink_calls);
        out.counter(
            "sink_errors",
            "Sink write calls that failed.",
            s.sink_errors,
        );
        out.counter("sink_panics", "Sink calls that panicked.", s.sink_panics);
        out.counter("sink_flushes", "Sink flushes.", s.sink_flushes);
        out.counter("flush_errors", "Sink flushes that failed.", s.flush_errors);
        out.counter(
            "dropped_newest",
            "Records dropped at write.",
            s.dropped_newest,
        );
        out.counter(
            "dropped_oldest",
            "Queued records evicted.",
            s.dropped_oldest,
        );
        out.counter(
            "dropped_oldest_bytes",
            "Bytes evicted.",
            s.dropped_oldest_bytes,
        );
        out.counter("rejected", "Writes refused (Reject).", s.rejected);
        out.counter("timed_out", "Writes refused (BlockTimeout).", s.timed_out);
        out.counter(
            "too_large",
            "Writes larger than the byte capacity.",
            s.too_large,
        );
        out.counter(
            "refused_closed",
            "Writes refused after close.",
            s.refused_closed,
        );
        out.counter(
            "unwritten",
            "Records discarded by a close deadline.",
            s.unwritten,
        );
        out.counter("sync_runs", "Sync hook runs.", s.sync_runs);
        out.counter("sync_errors", "Sync hook runs that failed.", s.sync_errors);
        out.counter("async_runs", "Async hook runs started.", s.async_runs);
        out.counter(
            "async_skipped",
            "Async hook ticks skipped.",
            s.async_skipped,
        );
        out.counter(
            "async_panics",
            "Async hook runs that panicked.",
            s.async_panics,
        );
        out.counter("errors", "Errors recorded.", s.errors);
        out.counter("spilled", "Records written to the spill log.", s.spilled);
        out.counter(
            "spilled_bytes",
            "Bytes written to the spill log.",
            s.spilled_bytes,
        );
        out.counter(
            "recovered",
            "Records a previous run left in the spill log.",
            s.recovered,
        );
        out.counter(
            "spill_lost",
            "Spilled records found corrupt reading them back.",
            s.spill_lost,
        );
        out.counter(
            "spill_failed",
            "Writes the spill log refused (I/O error).",
            s.spill_failed,
        );
        out.gauge("on_disk", "Records in the spill log now.", s.on_disk as f64);
        out.gauge(
            "on_disk_bytes",
            "Bytes of the records in the spill log now.",
            s.on_disk_bytes as f64,
        );
        out.gauge("queued", "Records queued now.", s.queued as f64);
        out.gauge("queued_bytes", "Bytes queued now.", s.queued_bytes as f64);
        out.gauge("waiting", "Writes waiting for room now.", s.waiting as f64);
        out.gauge(
            "waiting_bytes",
            "Bytes of the writes waiting now.",
            s.waiting_bytes as f64,
        );
        out.gauge(
            "async_running",
            "Async hook runs in progress.",
            s.async_running as f64,
        );
    }
}

impl<K, T, O, S> Source for GroupBatcher<K, T, O, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    T: Send + Sync + 'static,
    O: Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn component(&self) -> &'static str {
        "batcher"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        let s = self.stats();
        out.counter("added", "Items accepted.", s.added);
        out.counter(
            "sealed_grace",
            "Groups sealed by the grace period.",
            s.sealed.grace,
        );
        out.counter(
            "sealed_max_delay",
            "Groups sealed by the max delay.",
            s.sealed.max_delay,
        );
        out.counter(
            "sealed_max_items",
            "Groups sealed at max items.",
            s.sealed.max_items,
        );
        out.counter(
            "sealed_max_bytes",
            "Groups sealed at max bytes.",
            s.sealed.max_bytes,
        );
        out.counter(
            "sealed_manual",
            "Groups sealed by a flush.",
            s.sealed.manual,
        );
        out.counter(
            "sealed_shutdown",
            "Groups sealed by shutdown.",
            s.sealed.shutdown,
        );
        out.counter("emitted", "Batches handed to the output.", s.emitted);
        out.counter("empty", "Aggregations with nothing to emit.", s.empty);
        out.counter("failures", "Aggregations that returned Err.", s.failures);
        out.counter("panics", "Aggregations that panicked.", s.panics);
        out.counter(
            "dead_letters",
            "Failed groups dead-lettered.",
            s.dead_letters,
        );
        out.counter(
            "dead_letters_dropped",
            "Dead letters evicted from a full output.",
            s.dead_letters_dropped,
        );
        out.counter(
            "refused_closed",
            "Adds refused after shutdown.",
            s.refused_closed,
        );
        out.counter(
            "refused_full",
            "Adds refused at max groups.",
            s.refused_full,
        );
        out.counter(
            "dropped_newest",
            "Batches dropped (DropNewest).",
            s.dropped_newest,
        );
        out.counter(
            "dropped_oldest",
            "Batches evicted (DropOldest).",
            s.dropped_oldest,
        );
        out.counter("rejected", "Batches refused (Reject).", s.rejected);
        out.counter(
            "timed_out",
            "Batches not sent in time (BlockTimeout).",
            s.timed_out,
        );
        out.counter(
            "spilled",
            "Batches written to the spill log (a spilling output).",
            s.spilled,
        );
        out.counter(
            "unspilled",
            "Batches read back from the spill log.",
            s.unspilled,
        );
        out.counter(
            "spill_lost",
            "Spilled batches lost reading them back (undecodable or corrupt).",
            s.spill_lost,
        );
        out.counter(
            "spill_failed",
            "Deliveries the spill log refused (codec or I/O error).",
            s.spill_failed,
        );
        out.counter("late", "Groups sealed by a deadline.", s.late_count);
        out.gauge(
            "late_sum_seconds",
            "Sum of the deadline seals' lateness.",
            secs(s.late_sum),
        );
        out.gauge(
            "late_max_seconds",
            "Largest deadline seal lateness.",
            secs(s.late_max),
        );
        out.gauge("groups_open", "Groups open now.", s.groups_open as f64);
        out.gauge(
            "queued",
            "Batches queued in the output now.",
            s.queued as f64,
        );
        out.gauge("on_disk", "Batches in the spill log now.", s.on_disk as f64);
    }
}

impl<C: Clock> Source for RateLimiter<C> {
    fn component(&self) -> &'static str {
        "rate_limiter"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        let quota = self.quota();
        out.gauge(
            "available",
            "Cells that could pass at once now.",
            self.available() as f64,
        );
        out.gauge("burst", "Cells allowed at once.", quota.burst() as f64);
        out.gauge(
            "interval_seconds",
            "The emission interval.",
            secs(quota.interval()),
        );
    }
}

impl<C: Clock> Source for CachedRateLimiter<C> {
    fn component(&self) -> &'static str {
        "cached_limiter"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        let quota = self.quota();
        out.gauge(
            "cached",
            "Cells sitting in the caches now.",
            self.cached() as f64,
        );
        out.gauge(
            "over_admission_bound",
            "Most cells beyond the strict GCRA in a window.",
            self.over_admission_bound() as f64,
        );
        out.gauge("burst", "Cells allowed at once.", quota.burst() as f64);
        out.gauge(
            "interval_seconds",
            "The emission interval.",
            secs(quota.interval()),
        );
    }
}

impl<K, C> Source for KeyedLimiter<K, C>
where
    K: Send + Sync,
    C: Clock,
{
    fn component(&self) -> &'static str {
        "keyed_limiter"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        let s = self.stats();
        out.counter("created", "Keys started.", s.created);
        out.counter(
            "expired",
            "Replenished keys dropped by the sweep.",
            s.expired,
        );
        out.counter("evicted", "Keys evicted while not replenished.", s.evicted);
        out.counter("refused", "New keys refused.", s.refused);
        out.counter(
            "quota_panics",
            "Panics caught in quota_for.",
            s.quota_panics,
        );
        out.gauge("keys", "Keys tracked now.", s.keys as f64);
    }
}

impl<C: Clock> Source for LeakyBucket<C> {
    fn component(&self) -> &'static str {
        "leaky_bucket"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        out.gauge(
            "waiting",
            "Callers holding a later slot now.",
            self.waiting() as f64,
        );
        out.gauge(
            "interval_seconds",
            "The spacing between callers.",
            secs(self.interval()),
        );
    }
}

impl<C: Clock> Source for ConcurrencyLimiter<C> {
    fn component(&self) -> &'static str {
        "concurrency_limiter"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        out.gauge("available", "Permits free now.", self.available() as f64);
        out.gauge("in_use", "Permits out now.", self.in_use() as f64);
        out.gauge("capacity", "The capacity in force.", self.capacity() as f64);
        out.gauge("waiting", "Callers waiting now.", self.waiting() as f64);
    }
}

impl Source for WorkerPool {
    fn component(&self) -> &'static str {
        "pool"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        let s = self.stats();
        out.counter("completed", "Tasks that ran and returned.", s.completed);
        out.counter("panicked", "Tasks that panicked.", s.panicked);
        out.counter("timed_out", "Tasks that ran past the timeout.", s.timed_out);
        out.counter(
            "cancelled",
            "Tasks cancelled before they started.",
            s.cancelled,
        );
        out.counter("rejected", "Tasks handed back by submit.", s.rejected);
        out.counter(
            "dropped",
            "Tasks dropped by the overflow policy.",
            s.dropped,
        );
        out.counter("not_run", "Tasks handed back unrun by shutdown.", s.not_run);
        out.gauge("queued", "Tasks queued now.", s.queued as f64);
        out.gauge("running", "Tasks running now.", s.running as f64);
        out.gauge("workers", "Worker threads.", s.busy.len() as f64);
        let busy: Duration = s.busy.iter().sum();
        out.gauge(
            "busy_seconds",
            "Time the workers spent busy, summed.",
            secs(busy),
        );
    }
}

impl Source for Scheduler {
    fn component(&self) -> &'static str {
        "scheduler"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        let s = self.stats();
        out.counter("runs", "Runs finished, retries included.", s.runs);
        out.counter("failed", "Runs that returned Err.", s.failed);
        out.counter("panicked", "Runs that panicked.", s.panicked);
        out.counter("retried", "Retries scheduled.", s.retried);
        out.counter("gave_up", "Failures with no retry left.", s.gave_up);
        out.counter(
            "skipped_window",
            "Firings skipped outside a window.",
            s.skipped_window,
        );
        out.counter("missed", "Overdue occurrences not run.", s.missed);
        out.counter("rejected", "Runs the pool refused.", s.rejected);
        out.gauge("jobs", "Jobs scheduled now.", self.len() as f64);
    }
}
