//! [`RedisBatcher`]: the group batcher with Redis as the shared engine
//! (feature `redis`). Several processes add items to the same groups; each
//! group is sealed once, on the same grace / max delay / max items rules and
//! per-group overrides as the in-process [`GroupBatcher`](super::GroupBatcher),
//! by whichever process claims it, and its output is committed exactly once:
//! to a Redis Stream that consumers read with `XREADGROUP` / `XACK`, or to an
//! in-process callback.
//!
//! ```no_run
//! use std::time::Duration;
//! use sheaf::batch::redis::RedisBatcher;
//! use sheaf::codec::Utf8;
//!
//! let batcher = RedisBatcher::<String, String>::builder("redis://127.0.0.1/")
//!     .grace(Duration::from_millis(50))
//!     .max_items(100)
//!     .codecs(Utf8, Utf8)
//!     .aggregate(|group, items: &mut Vec<String>| {
//!         Ok::<_, std::convert::Infallible>(format!("{group}: {}", items.join(",")))
//!     })
//!     .build()?;
//! batcher.add("welcome", &"ann@x".to_string())?;
//! // Consumers read `batcher.stream_keys()` with XREADGROUP.
//! batcher.shutdown(Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! A group belongs to shard `crc32(group) % shards`; every key of a shard
//! shares the hash tag `{prefix:shard}` and every server call declares the
//! shard's nine keys, so the layout is cluster-clean. The server logic is
//! one Redis function library (`batch.lua`, loaded with `FUNCTION LOAD`,
//! reloaded when a server answers "Function not found"). Time is the
//! server's `TIME`, in milliseconds. See DESIGN.md for the keys, the
//! lease/epoch protocol and the stream format.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use ::redis::{Cmd, Connection, ConnectionLike, Value};

use super::{Added, GroupConfig, Trigger, TriggerCounts};
use crate::clock::SharedClock;
use crate::codec::{Codec, CodecError};
use crate::redis_link::{function_load, is_broken};
use crate::ConfigError;

/// The server-side function library.
const LIBRARY: &str = include_str!("batch.lua");

const KEY_NAMES: [&str; 9] = [
    "groups", "items", "due", "leases", "batches", "seq", "out", "done", "dead",
];

/// Why a call to Redis failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisBatchError {
    /// The server or the connection failed. For an add the item may or may
    /// not have been stored (the reply was lost).
    Redis(redis::RedisError),
    /// An item could not be encoded.
    Codec(CodecError),
    /// The batcher was shut down.
    Closed,
}

impl fmt::Display for RedisBatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(e) => write!(f, "redis: {e}"),
            Self::Codec(e) => write!(f, "{e}"),
            Self::Closed => f.write_str("the batcher is shut down"),
        }
    }
}

impl std::error::Error for RedisBatchError {}

impl From<redis::RedisError> for RedisBatchError {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
}

impl From<CodecError> for RedisBatchError {
    fn from(e: CodecError) -> Self {
        Self::Codec(e)
    }
}

/// A batch's id: its shard and the epoch its group had (unique within the
/// shard, never reused). Deterministic: every re-delivery of a batch has the
/// same id. Written `"<shard>-<epoch>"` in the output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RedisBatchId {
    /// The shard of the group.
    pub shard: u32,
    /// The group's epoch, from the shard's counter.
    pub epoch: u64,
}

impl fmt::Display for RedisBatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.shard, self.epoch)
    }
}

/// One sealed group's output, as handed to the
/// [`on_output`](RedisBatcherBuilder::on_output) callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBatch<O> {
    /// The batch's id.
    pub id: RedisBatchId,
    /// The group key.
    pub group: String,
    /// What the aggregate function made of the items.
    pub output: O,
    /// How many items the group had.
    pub items: usize,
    /// What sealed the group.
    pub reason: Trigger,
    /// When the group's first item came (server ms since the Unix epoch).
    pub opened_ms: u64,
    /// The deadline that sealed it (server ms since the Unix epoch; the
    /// seal time for size and manual triggers).
    pub due_ms: u64,
    /// When it was sealed (server ms).
    pub sealed_ms: u64,
    /// Deliveries so far, this one included (more than 1 after a lease
    /// expired or an aggregation failed).
    pub attempts: u32,
}

/// A batch that failed [`max_attempts`](RedisBatcherBuilder::max_attempts)
/// times, with its items; see [`RedisBatcher::dead_letters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisDeadLetter<T> {
    /// The batch's id.
    pub id: RedisBatchId,
    /// The group key.
    pub group: String,
    /// The items, in the order they were added.
    pub items: Vec<T>,
    /// The last error (`"lease expired N times"` when its claimers died).
    pub error: String,
}

/// A snapshot of one open group in Redis; see [`RedisBatcher::groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisGroupInfo {
    /// The group key.
    pub key: String,
    /// Items in the group.
    pub items: usize,
    /// When its first item came (server ms).
    pub opened_ms: u64,
    /// When a deadline will seal it (server ms; `None`: only size or a
    /// flush will).
    pub due_ms: Option<u64>,
}

/// Counters of this process's [`RedisBatcher`]; see [`RedisBatcher::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisBatchStats {
    /// Items this process added.
    pub added: u64,
    /// Groups its adds opened.
    pub opened: u64,
    /// Batches it committed, by the trigger that sealed them.
    pub committed: TriggerCounts,
    /// Commits that found the batch already committed by another process
    /// (a no-op, thanks to the commit marker).
    pub duplicates: u64,
    /// Batches it claimed on a second or later attempt.
    pub redelivered: u64,
    /// Aggregations that returned `Err`, or items or outputs that did not
    /// decode or encode.
    pub failures: u64,
    /// Aggregations that panicked.
    pub panics: u64,
    /// Batches it moved to the dead-letter list.
    pub dead_letters: u64,
    /// Batches claimed but handed back at shutdown.
    pub released: u64,
    /// Round trips to Redis (a pipeline counts once).
    pub round_trips: u64,
    /// Committed batches sealed by a deadline (grace or max delay).
    pub late_count: u64,
    /// Sum over them of seal time minus deadline (server clock).
    pub late_sum: Duration,
    /// The most any of them was late.
    pub late_max: Duration,
}

#[derive(Default)]
struct Counters {
    added: AtomicU64,
    opened: AtomicU64,
    committed: [AtomicU64; 6],
    duplicates: AtomicU64,
    redelivered: AtomicU64,
    failures: AtomicU64,
    panics: AtomicU64,
    dead_letters: AtomicU64,
    released: AtomicU64,
    round_trips: AtomicU64,
    late_count: AtomicU64,
    late_sum_ms: AtomicU64,
    late_max_ms: AtomicU64,
}

/// What [`RedisBatcher::shutdown`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisShutdownReport {
    /// Batches this process committed over its life.
    pub committed: u64,
    /// Batches it had claimed and handed back (ready for any process).
    pub released: u64,
    /// `true` if the driver was still busy at the deadline (its claims
    /// stay leased and are re-delivered after the lease).
    pub timed_out: bool,
}

type AggregateFn<T, O> = dyn Fn(&str, &mut Vec<T>) -> Result<O, String> + Send + Sync;
type OutputFn<O> = dyn Fn(&RedisBatch<O>) -> Result<(), String> + Send + Sync;
type GroupConfigFn = dyn Fn(&str) -> Option<GroupConfig> + Send + Sync;

/// Configures a [`RedisBatcher`]; see [`RedisBatcher::builder`].
pub struct RedisBatcherBuilder<T, O> {
    url: String,
    prefix: String,
    shards: u32,
    grace: Option<Duration>,
    max_delay: Option<Duration>,
    max_items: Option<usize>,
    group_config: Option<Box<GroupConfigFn>>,
    item_codec: Option<Box<dyn Codec<T>>>,
    output_codec: Option<Box<dyn Codec<O>>>,
    aggregate: Option<Box<AggregateFn<T, O>>>,
    on_output: Option<Box<OutputFn<O>>>,
    lease: Duration,
    max_attempts: u32,
    claim_limit: usize,
    idle_poll: Duration,
    retention: Duration,
    drivers: bool,
}

impl<T, O> fmt::Debug for RedisBatcherBuilder<T, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBatcherBuilder")
            .field("prefix", &self.prefix)
            .field("shards", &self.shards)
            .field("grace", &self.grace)
            .field("max_delay", &self.max_delay)
            .field("max_items", &self.max_items)
            .field("lease", &self.lease)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static, O: Send + 'static> RedisBatcher<T, O> {
    /// A builder for a batcher on the server at `url` (any redis-rs URL:
    /// `redis://host:port/db`, `redis+unix:///path`). Required: codecs
    /// ([`codecs`](RedisBatcherBuilder::codecs)), an
    /// [`aggregate`](RedisBatcherBuilder::aggregate) function and at least
    /// one of `grace`, `max_delay`, `max_items`.
    pub fn builder(url: impl Into<String>) -> RedisBatcherBuilder<T, O> {
        RedisBatcherBuilder {
            url: url.into(),
            prefix: "sheaf".into(),
            shards: 1,
            grace: None,
            max_delay: None,
            max_items: None,
            group_config: None,
            item_codec: None,
            output_codec: None,
            aggregate: None,
            on_output: None,
            lease: Duration::from_secs(30),
            max_attempts: 3,
            claim_limit: 32,
            idle_poll: Duration::from_millis(100),
            retention: Duration::from_secs(24 * 3600),
            drivers: true,
        }
    }
}

impl<T: Send + 'static, O: Send + 'static> RedisBatcherBuilder<T, O> {
    /// The key prefix (default `"sheaf"`); shard `s`'s keys are
    /// `{prefix:s}:name`. Every process sharing groups uses the same prefix
    /// and shard count.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Shards of groups (default 1), one hash tag each: more shards spread
    /// the groups over a cluster's nodes. Output streams are per shard.
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = shards;
        self
    }

    /// Seal a group once no item came for `grace` (reset by every item).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Seal a group once its first item has waited `max_delay`.
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// Seal a group at once when it holds `max_items` items (in the add
    /// that fills it, on the server).
    pub fn max_items(mut self, max_items: usize) -> Self {
        self.max_items = Some(max_items);
        self
    }

    /// Per-group overrides, asked by the process whose add opens the group
    /// (`None`: the batcher's settings). `max_bytes` is not supported here
    /// and ignored.
    pub fn group_config(
        mut self,
        f: impl Fn(&str) -> Option<GroupConfig> + Send + Sync + 'static,
    ) -> Self {
        self.group_config = Some(Box::new(f));
        self
    }

    /// How items and outputs become bytes in Redis.
    pub fn codecs(
        mut self,
        items: impl Codec<T> + 'static,
        outputs: impl Codec<O> + 'static,
    ) -> Self {
        self.item_codec = Some(Box::new(items));
        self.output_codec = Some(Box::new(outputs));
        self
    }

    /// The function that turns a sealed group's items (in the order they
    /// were added) into one output. `Err` and panics count as a failed
    /// attempt: the batch is retried, and after
    /// [`max_attempts`](Self::max_attempts) goes to the dead-letter list.
    pub fn aggregate<E: fmt::Display>(
        mut self,
        f: impl Fn(&str, &mut Vec<T>) -> Result<O, E> + Send + Sync + 'static,
    ) -> Self {
        self.aggregate = Some(Box::new(move |g: &str, items: &mut Vec<T>| {
            f(g, items).map_err(|e| e.to_string())
        }));
        self
    }

    /// Hand each output to `f` in this process instead of the output
    /// stream; the commit marker is written after `f` returns `Ok`. A
    /// process that dies inside `f` leaves the batch to be re-delivered
    /// (same id) after the lease: use the id to make `f` idempotent.
    pub fn on_output<E: fmt::Display>(
        mut self,
        f: impl Fn(&RedisBatch<O>) -> Result<(), E> + Send + Sync + 'static,
    ) -> Self {
        self.on_output = Some(Box::new(move |b: &RedisBatch<O>| {
            f(b).map_err(|e| e.to_string())
        }));
        self
    }

    /// How long a claim lasts (default 30 s): a batch whose claimer has not
    /// committed it by then is re-delivered to any process.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Deliveries before a batch goes to the dead-letter list (default 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Most batches claimed per shard per pass (default 32); up to 16
    /// times as many due groups are sealed per pass (a seal moves no item),
    /// so a long pass delays seals less.
    ///
    /// A claim is one atomic server call that reads the batches' items, and
    /// nothing else runs on the server meanwhile, the sealing loop's seals
    /// included: a larger limit commits a burst of batches in fewer round
    /// trips, a smaller one keeps seals on time (at 10,000 groups due within
    /// 150 ms: seal lateness p99 10–13 ms at 256, 3 ms at 32, with
    /// seal-to-commit p99 265 → 335 ms; BENCHMARKS.md).
    pub fn claim_limit(mut self, limit: usize) -> Self {
        self.claim_limit = limit;
        self
    }

    /// The longest the driver sleeps without asking Redis for the next
    /// deadline (default 100 ms): how soon it sees groups other processes
    /// opened with an earlier deadline than any it knows of, and leases
    /// that expired.
    pub fn idle_poll(mut self, idle_poll: Duration) -> Self {
        self.idle_poll = idle_poll;
        self
    }

    /// How long commit markers are kept (default one day): a retry of a
    /// batch later than that is still a no-op (its record is gone), but is
    /// reported as unknown rather than duplicate.
    pub fn marker_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// No driver thread: batches are sealed and committed only by
    /// [`RedisBatcher::tick`]. For deterministic tests.
    #[doc(hidden)]
    pub fn manual_ticks(mut self) -> Self {
        self.drivers = false;
        self
    }

    /// Connects, loads the function library and starts the driver thread.
    ///
    /// # Errors
    /// [`ConfigError`] when the URL is invalid or the server cannot be
    /// reached or refuses the functions (Redis ≥ 7.0 is needed); when codecs
    /// or the aggregate function are missing; when no trigger is set; when a
    /// duration, count, `shards` or `max_attempts` is zero; when `max_delay`
    /// is shorter than `grace`; or when the OS refuses a thread.
    pub fn build(self) -> Result<RedisBatcher<T, O>, ConfigError> {
        let aggregate = self.aggregate.ok_or_else(|| {
            ConfigError::new(
                "aggregate",
                "no aggregate function; call .aggregate(|group, items| Ok::<_, E>(output))",
            )
        })?;
        let (Some(item_codec), Some(output_codec)) = (self.item_codec, self.output_codec) else {
            return Err(ConfigError::new(
                "codecs",
                "no codecs; call .codecs(item_codec, output_codec), e.g. .codecs(Utf8, Utf8)",
            ));
        };
        if self.grace.is_none() && self.max_delay.is_none() && self.max_items.is_none() {
            return Err(ConfigError::new(
                "grace",
                "no trigger: set at least one of .grace(d), .max_delay(d), .max_items(n)",
            ));
        }
        for (name, value) in [
            ("grace", self.grace),
            ("max_delay", self.max_delay),
            ("lease", Some(self.lease)),
            ("idle_poll", Some(self.idle_poll)),
            ("marker_retention", Some(self.retention)),
        ] {
            if value == Some(Duration::ZERO) {
                return Err(ConfigError::new(
                    name,
                    "0 is not a usable duration; use 1 ms or more",
                ));
            }
        }
        if let (Some(grace), Some(max_delay)) = (self.grace, self.max_delay) {
            if max_delay < grace {
                return Err(ConfigError::new(
                    "max_delay",
                    format!(
                        "{max_delay:?} is shorter than the grace period {grace:?}, which could never fire"
                    ),
                ));
            }
        }
        for (name, value) in [
            ("max_items", self.max_items.unwrap_or(1)),
            ("shards", self.shards as usize),
            ("max_attempts", self.max_attempts as usize),
            ("claim_limit", self.claim_limit),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, "0 is out of range; use 1 or more"));
            }
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| ConfigError::new("url", format!("{:?}: {e}", self.url)))?;
        let mut con = client
            .get_connection()
            .map_err(|e| ConfigError::new("url", format!("cannot reach {:?}: {e}", self.url)))?;
        load_library(&mut con).map_err(|e| {
            ConfigError::new(
                "url",
                format!(
                    "{:?} refused the function library (Redis >= 7.0 needed): {e}",
                    self.url
                ),
            )
        })?;
        let keys = (0..self.shards)
            .map(|s| {
                KEY_NAMES
                    .iter()
                    .map(|name| format!("{{{}:{s}}}:{name}", self.prefix))
                    .collect()
            })
            .collect();
        let shared = Arc::new(Shared {
            client,
            pool: Mutex::new(vec![con]),
            #[cfg(feature = "async")]
            multiplexed: crate::redis_link::Multiplexed::new(),
            keys,
            limits: Limits {
                grace: self.grace.map_or(0, millis),
                max_delay: self.max_delay.map_or(0, millis),
                max_items: self.max_items.unwrap_or(0) as u64,
            },
            group_config: self.group_config,
            item_codec,
            output_codec,
            aggregate,
            on_output: self.on_output,
            lease_ms: millis(self.lease),
            max_attempts: self.max_attempts,
            claim_limit: self.claim_limit,
            idle_poll: self.idle_poll,
            retention_ms: millis(self.retention),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            wake: AtomicBool::new(false),
            next_wake: AtomicU64::new(u64::MAX),
            origin: Instant::now(),
            clock: crate::clock::monotonic(),
            driver: Mutex::new(None),
            driver_thread: Mutex::new(None),
            sealer_thread: Mutex::new(None),
            sealer_wake: AtomicBool::new(false),
            sealer_next: AtomicU64::new(u64::MAX),
            driver_done: AtomicBool::new(true),
            pass_lock: Mutex::new(()),
            handles: AtomicUsize::new(1),
        });
        if self.drivers {
            shared.driver_done.store(false, Ordering::SeqCst);
            let driver = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name("sheaf-redis-batch".into())
                .spawn(move || driver.drive())
                .map_err(|e| ConfigError::new("drivers", format!("cannot start a thread: {e}")))?;
            *lock(&shared.driver_thread) = Some(handle.thread().clone());
            *lock(&shared.driver) = Some(handle);
            let sealer = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name("sheaf-redis-seal".into())
                .spawn(move || sealer.seal_loop())
                .map_err(|e| ConfigError::new("drivers", format!("cannot start a thread: {e}")))?;
            *lock(&shared.sealer_thread) = Some(handle.thread().clone());
        }
        Ok(RedisBatcher { shared })
    }
}

fn millis(d: Duration) -> u64 {
    (d.as_nanos().div_ceil(1_000_000)).min(u64::MAX as u128) as u64
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn load_library(con: &mut Connection) -> redis::RedisResult<()> {
    function_load(LIBRARY).query::<Value>(con).map(|_| ())
}

#[derive(Clone, Copy)]
struct Limits {
    grace: u64,
    max_delay: u64,
    max_items: u64,
}

struct Shared<T, O> {
    client: redis::Client,
    pool: Mutex<Vec<Connection>>,
    /// The connection async adds share (redis-rs multiplexes them over it);
    /// `None` until the first, and after it broke.
    #[cfg(feature = "async")]
    multiplexed: crate::redis_link::Multiplexed,
    keys: Vec<Vec<String>>,
    limits: Limits,
    group_config: Option<Box<GroupConfigFn>>,
    item_codec: Box<dyn Codec<T>>,
    output_codec: Box<dyn Codec<O>>,
    aggregate: Box<AggregateFn<T, O>>,
    on_output: Option<Box<OutputFn<O>>>,
    lease_ms: u64,
    max_attempts: u32,
    claim_limit: usize,
    idle_poll: Duration,
    retention_ms: u64,
    counters: Counters,
    closed: AtomicBool,
    wake: AtomicBool,
    /// Local ms since `origin` the driver sleeps until (`u64::MAX`: none).
    next_wake: AtomicU64,
    origin: Instant,
    clock: SharedClock,
    driver: Mutex<Option<JoinHandle<()>>>,
    driver_thread: Mutex<Option<Thread>>,
    sealer_thread: Mutex<Option<Thread>>,
    sealer_wake: AtomicBool,
    /// Local ms since `origin` the sealer sleeps until.
    sealer_next: AtomicU64,
    driver_done: AtomicBool,
    /// One pass at a time per process (driver, manual ticks, shutdown).
    pass_lock: Mutex<()>,
    handles: AtomicUsize,
}

/// Fewest due groups a tick seals per shard: a seal moves no item, so a
/// sealing loop that fell behind a burst of deadlines catches up in a few
/// calls whatever the claim limit.
const SEAL_LIMIT: usize = 4096;

/// Adds ready to send: one call per shard.
struct Adds {
    /// Distinct groups, in order of first appearance.
    groups: usize,
    /// Per call, the indices of its groups.
    shards: Vec<Vec<usize>>,
    cmds: Vec<Cmd>,
    /// Items.
    count: u64,
}

/// One claimed batch as the tick function returned it.
struct Claimed {
    shard: u32,
    epoch: u64,
    group: String,
    first_ms: u64,
    due_ms: u64,
    sealed_ms: u64,
    reason: Trigger,
    attempts: u32,
    items: Vec<Vec<u8>>,
}

enum Outcome {
    Commit(Vec<u8>),
    Fail(String),
}

/// The replies that found the library missing (those calls had no effect).
fn missing_functions(replies: &[Value]) -> Vec<usize> {
    (0..replies.len())
        .filter(|&i| is_missing_function(&replies[i]))
        .collect()
}

/// The replies, or the first server error among them.
fn first_error(replies: Vec<Value>) -> Result<Vec<Value>, redis::RedisError> {
    for reply in &replies {
        if let Value::ServerError(e) = reply {
            return Err(e.clone().into());
        }
    }
    Ok(replies)
}

fn pipeline<'a>(cmds: impl IntoIterator<Item = &'a Cmd>) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for cmd in cmds {
        pipe.add_command(cmd.clone());
    }
    pipe
}

fn is_missing_function(e: &Value) -> bool {
    matches!(e, Value::ServerError(err) if err.details().unwrap_or("").contains("Function not found")
        || err.code().contains("Function not found"))
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Value::SimpleString(s) => s.parse().unwrap_or(0),
        Value::Double(d) => *d as i64,
        _ => 0,
    }
}

fn bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn text(v: Value) -> String {
    String::from_utf8_lossy(&bytes(v)).into_owned()
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => Vec::new(),
    }
}

fn trigger(reason: &str) -> Trigger {
    match reason {
        "grace" => Trigger::Grace,
        "max_delay" => Trigger::MaxDelay,
        "max_items" => Trigger::MaxItems,
        _ => Trigger::Manual,
    }
}

impl<T: Send + 'static, O: Send + 'static> Shared<T, O> {
    fn shard_of(&self, group: &str) -> u32 {
        crc32fast::hash(group.as_bytes()) % self.keys.len() as u32
    }

    fn fcall(&self, name: &str, shard: u32) -> Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(name).arg(KEY_NAMES.len());
        for key in &self.keys[shard as usize] {
            cmd.arg(key);
        }
        cmd
    }

    /// Sends `cmds` as one pipeline (one round trip) and returns each
    /// reply. Commands that found the library missing (a restarted server
    /// without persistence) had no effect: they are sent again after a
    /// reload.
    fn run(&self, cmds: &[Cmd]) -> Result<Vec<Value>, redis::RedisError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = match lock(&self.pool).pop() {
            Some(con) => con,
            None => self.client.get_connection()?,
        };
        let result = self.run_on(&mut con, cmds);
        match &result {
            Err(e) if is_broken(e) => {}
            _ => lock(&self.pool).push(con),
        }
        result
    }

    fn run_on(&self, con: &mut Connection, cmds: &[Cmd]) -> Result<Vec<Value>, redis::RedisError> {
        let mut packed = Vec::new();
        for cmd in cmds {
            cmd.write_packed_command(&mut packed);
        }
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut replies = con.req_packed_commands(&packed, 0, cmds.len())?;
        let missing = missing_functions(&replies);
        if !missing.is_empty() {
            load_library(con)?;
            let again = pipeline(missing.iter().map(|&i| &cmds[i]));
            self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
            let retried =
                con.req_packed_commands(&again.get_packed_pipeline(), 0, missing.len())?;
            for (i, reply) in missing.into_iter().zip(retried) {
                replies[i] = reply;
            }
        }
        first_error(replies)
    }

    /// [`run`](Self::run) for async callers, on the shared multiplexed
    /// connection.
    #[cfg(feature = "async")]
    async fn run_async(&self, cmds: &[Cmd]) -> Result<Vec<Value>, redis::RedisError> {
        use redis::aio::ConnectionLike as _;
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let config = redis::AsyncConnectionConfig::new();
        let mut con = self.multiplexed.get(&self.client, &config).await?;
        let result = async {
            self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
            let mut replies = con
                .req_packed_commands(&pipeline(cmds), 0, cmds.len())
                .await?;
            let missing = missing_functions(&replies);
            if !missing.is_empty() {
                function_load(LIBRARY)
                    .query_async::<Value>(&mut con)
                    .await?;
                let again = pipeline(missing.iter().map(|&i| &cmds[i]));
                self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
                let retried = con.req_packed_commands(&again, 0, missing.len()).await?;
                for (i, reply) in missing.into_iter().zip(retried) {
                    replies[i] = reply;
                }
            }
            first_error(replies)
        }
        .await;
        // A broken connection: the next add connects again.
        self.multiplexed.check(&result);
        result
    }

    fn limits_for(&self, group: &str) -> Limits {
        let mut limits = self.limits;
        if let Some(f) = &self.group_config {
            match crate::unwind::catch(|| f(group)) {
                Ok(Some(c)) => {
                    if let Some(g) = c.grace {
                        limits.grace = millis(g).max(1);
                    }
                    if let Some(d) = c.max_delay {
                        limits.max_delay = millis(d).max(1);
                    }
                    if let Some(n) = c.max_items {
                        limits.max_items = n.max(1) as u64;
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    self.counters.panics.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        limits
    }

    fn add_many<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, &'a T)>,
    ) -> Result<Vec<Added>, RedisBatchError>
    where
        T: 'a,
    {
        let adds = self.prepare_adds(items)?;
        let replies = self.run(&adds.cmds)?;
        Ok(self.finish_adds(&adds, replies))
    }

    /// Encodes the items and builds one call per shard, its groups in order
    /// of first appearance, each group's items in order. Nothing is sent.
    fn prepare_adds<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, &'a T)>,
    ) -> Result<Adds, RedisBatchError>
    where
        T: 'a,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(RedisBatchError::Closed);
        }
        // One call per distinct group, its items in order.
        let mut order: HashMap<&str, usize> = HashMap::new();
        let mut calls: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        let mut count = 0u64;
        for (group, item) in items {
            let mut encoded = Vec::new();
            self.item_codec.encode(item, &mut encoded)?;
            let i = *order.entry(group).or_insert_with(|| {
                calls.push((group, Vec::new()));
                calls.len() - 1
            });
            calls[i].1.push(encoded);
            count += 1;
        }
        // One call per shard, its groups in order of first appearance.
        let mut shards: Vec<(u32, Vec<usize>)> = Vec::new();
        for (i, (group, _)) in calls.iter().enumerate() {
            let shard = self.shard_of(group);
            match shards.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, members)) => members.push(i),
                None => shards.push((shard, vec![i])),
            }
        }
        let cmds: Vec<Cmd> = shards
            .iter()
            .map(|(shard, members)| {
                let mut cmd = self.fcall("sheaf_batch_add", *shard);
                for &i in members {
                    let (group, encoded) = &calls[i];
                    let limits = self.limits_for(group);
                    cmd.arg(*group)
                        .arg(limits.grace)
                        .arg(limits.max_delay)
                        .arg(limits.max_items)
                        .arg(encoded.len());
                    for item in encoded {
                        cmd.arg(item.as_slice());
                    }
                }
                cmd
            })
            .collect();
        Ok(Adds {
            groups: calls.len(),
            shards: shards.into_iter().map(|(_, members)| members).collect(),
            cmds,
            count,
        })
    }

    /// Counts the stored items, wakes the driver for the earliest new
    /// deadline, and says what happened to each group.
    fn finish_adds(&self, adds: &Adds, replies: Vec<Value>) -> Vec<Added> {
        self.counters.added.fetch_add(adds.count, Ordering::Relaxed);
        let mut added = vec![Added::Joined; adds.groups];
        let mut earliest: Option<u64> = None;
        for (members, reply) in adds.shards.iter().zip(replies) {
            let r = array(reply);
            let now = int(&r[0]);
            for (k, &i) in members.iter().enumerate() {
                let (opened, sealed, due) =
                    (int(&r[1 + 3 * k]), int(&r[2 + 3 * k]), int(&r[3 + 3 * k]));
                self.counters
                    .opened
                    .fetch_add(opened as u64, Ordering::Relaxed);
                if sealed > 0 {
                    earliest = Some(0);
                    added[i] = Added::Sealed;
                } else if opened > 0 {
                    added[i] = Added::Opened;
                }
                if due >= 0 {
                    let wait = (due - now).max(0) as u64;
                    earliest = Some(earliest.map_or(wait, |e| e.min(wait)));
                }
            }
        }
        if let Some(wait) = earliest {
            self.wake_at(wait);
        }
        added
    }

    fn local_ms(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.origin)
            .as_millis() as u64
    }

    /// Wakes the driver if `wait_ms` from now is before its alarm.
    fn wake_at(&self, wait_ms: u64) {
        let at = self.local_ms().saturating_add(wait_ms);
        if at < self.sealer_next.load(Ordering::Acquire) {
            self.sealer_next.fetch_min(at, Ordering::AcqRel);
            self.sealer_wake.store(true, Ordering::Release);
            if let Some(t) = lock(&self.sealer_thread).as_ref() {
                t.unpark();
            }
        }
        if at < self.next_wake.load(Ordering::Acquire) {
            self.next_wake.fetch_min(at, Ordering::AcqRel);
            self.wake.store(true, Ordering::Release);
            if let Some(t) = lock(&self.driver_thread).as_ref() {
                t.unpark();
            }
        }
    }

    /// Seals due groups and claims ready batches in every shard (one round
    /// trip). Returns the claims and the wait until the next deadline.
    fn claim(&self, limit: usize) -> Result<(Vec<Claimed>, Option<u64>, u64), redis::RedisError> {
        let cmds: Vec<Cmd> = (0..self.keys.len() as u32)
            .map(|s| {
                let mut cmd = self.fcall("sheaf_batch_tick", s);
                cmd.arg(limit)
                    .arg(self.lease_ms)
                    .arg(self.max_attempts)
                    .arg(self.claim_limit.saturating_mul(16).max(SEAL_LIMIT));
                cmd
            })
            .collect();
        let replies = self.run(&cmds)?;
        let mut claimed = Vec::new();
        let mut wait: Option<u64> = None;
        let mut sealed = 0;
        for (shard, reply) in replies.into_iter().enumerate() {
            let mut r = array(reply).into_iter();
            let w = r.next().map_or(-1, |v| int(&v));
            let _now = r.next();
            sealed += r.next().map_or(0, |v| int(&v)) as u64;
            let batches = r.next().map(array).unwrap_or_default();
            let dead = r.next().map_or(0, |v| int(&v));
            self.counters
                .dead_letters
                .fetch_add(dead as u64, Ordering::Relaxed);
            if w >= 0 {
                wait = Some(wait.map_or(w as u64, |x| x.min(w as u64)));
            }
            for b in batches {
                let mut f = array(b).into_iter();
                let epoch = f.next().map_or(0, |v| int(&v)) as u64;
                let group = f.next().map(text).unwrap_or_default();
                let _count = f.next();
                let first_ms = f.next().map_or(0, |v| int(&v)) as u64;
                let due_ms = f.next().map_or(0, |v| int(&v)) as u64;
                let sealed_ms = f.next().map_or(0, |v| int(&v)) as u64;
                let reason = trigger(&f.next().map(text).unwrap_or_default());
                let attempts = f.next().map_or(0, |v| int(&v)) as u32;
                let items = f.map(bytes).collect();
                if attempts > 1 {
                    self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                claimed.push(Claimed {
                    shard: shard as u32,
                    epoch,
                    group,
                    first_ms,
                    due_ms,
                    sealed_ms,
                    reason,
                    attempts,
                    items,
                });
            }
        }
        Ok((claimed, wait, sealed))
    }

    /// Aggregates one claimed batch: the bytes to commit, or why not.
    fn aggregate_one(&self, c: &Claimed) -> Outcome {
        let mut items = Vec::with_capacity(c.items.len());
        for bytes in &c.items {
            match self.item_codec.decode(bytes) {
                Ok(item) => items.push(item),
                Err(e) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Fail(e.to_string());
                }
            }
        }
        let output = match crate::unwind::catch(|| (self.aggregate)(&c.group, &mut items)) {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                return Outcome::Fail(e);
            }
            Err(panic) => {
                self.counters.panics.fetch_add(1, Ordering::Relaxed);
                return Outcome::Fail(format!("panicked: {panic}"));
            }
        };
        if let Some(f) = &self.on_output {
            let batch = RedisBatch {
                id: RedisBatchId {
                    shard: c.shard,
                    epoch: c.epoch,
                },
                group: c.group.clone(),
                output,
                items: c.items.len(),
                reason: c.reason,
                opened_ms: c.first_ms,
                due_ms: c.due_ms,
                sealed_ms: c.sealed_ms,
                attempts: c.attempts,
            };
            return match crate::unwind::catch(|| f(&batch)) {
                Ok(Ok(())) => Outcome::Commit(Vec::new()),
                Ok(Err(e)) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    Outcome::Fail(e)
                }
                Err(panic) => {
                    self.counters.panics.fetch_add(1, Ordering::Relaxed);
                    Outcome::Fail(format!("panicked: {panic}"))
                }
            };
        }
        let mut encoded = Vec::new();
        match self.output_codec.encode(&output, &mut encoded) {
            Ok(()) => Outcome::Commit(encoded),
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                Outcome::Fail(e.to_string())
            }
        }
    }

    /// One pass: claim, aggregate, commit (three round trips at most, for
    /// every shard and batch together). Claims still unprocessed when
    /// `release_after` passes are handed back. Returns the wait until the
    /// next deadline.
    fn pass(&self, release_after: Option<Instant>) -> Result<Option<u64>, RedisBatchError> {
        let _pass = lock(&self.pass_lock);
        let (claimed, wait, _) = self.claim(self.claim_limit)?;
        if claimed.is_empty() {
            return Ok(wait);
        }
        let mut cmds = Vec::with_capacity(claimed.len());
        let mut kinds = Vec::with_capacity(claimed.len());
        for c in &claimed {
            if release_after.is_some_and(|d| Instant::now() >= d) {
                let mut cmd = self.fcall("sheaf_batch_fail", c.shard);
                cmd.arg(c.epoch)
                    .arg("released")
                    .arg(self.max_attempts)
                    .arg(1);
                cmds.push(cmd);
                kinds.push(0u8);
                continue;
            }
            match self.aggregate_one(c) {
                Outcome::Commit(output) => {
                    let mut cmd = self.fcall("sheaf_batch_commit", c.shard);
                    let mode = if self.on_output.is_some() {
                        "mark"
                    } else {
                        "stream"
                    };
                    cmd.arg(c.epoch)
                        .arg(c.shard)
                        .arg(mode)
                        .arg(self.retention_ms)
                        .arg(output);
                    cmds.push(cmd);
                    kinds.push(1);
                }
                Outcome::Fail(error) => {
                    let mut cmd = self.fcall("sheaf_batch_fail", c.shard);
                    cmd.arg(c.epoch).arg(error).arg(self.max_attempts).arg(0);
                    cmds.push(cmd);
                    kinds.push(2);
                }
            }
        }
        let replies = self.run(&cmds)?;
        let mut retry_now = false;
        for ((c, kind), reply) in claimed.iter().zip(kinds).zip(replies) {
            match kind {
                0 => {
                    self.counters.released.fetch_add(1, Ordering::Relaxed);
                }
                1 => {
                    let r = array(reply);
                    if r.first().map_or(0, int) == 1 {
                        self.counters.committed[c.reason.index()].fetch_add(1, Ordering::Relaxed);
                        if matches!(c.reason, Trigger::Grace | Trigger::MaxDelay) {
                            let late = c.sealed_ms.saturating_sub(c.due_ms);
                            self.counters.late_count.fetch_add(1, Ordering::Relaxed);
                            self.counters.late_sum_ms.fetch_add(late, Ordering::Relaxed);
                            self.counters.late_max_ms.fetch_max(late, Ordering::Relaxed);
                        }
                    } else {
                        self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    if int(&reply) == 2 {
                        self.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                    } else {
                        retry_now = true;
                    }
                }
            }
        }
        Ok(if retry_now { Some(0) } else { wait })
    }

    fn drive(&self) {
        loop {
            if self.closed.load(Ordering::Acquire) {
                break;
            }
            // Server away: try again after idle_poll.
            let wait = self.pass(None).unwrap_or_default();
            let sleep = wait.map_or(self.idle_poll, |w| {
                Duration::from_millis(w).min(self.idle_poll)
            });
            let until = self.clock.now() + sleep;
            self.next_wake
                .store(self.local_ms() + millis(sleep), Ordering::Release);
            while !self.wake.swap(false, Ordering::AcqRel)
                && !self.closed.load(Ordering::Acquire)
                && self.clock.now() < until
            {
                self.clock.park_until(Some(until));
            }
            self.next_wake.store(0, Ordering::Release);
        }
        self.driver_done.store(true, Ordering::Release);
    }

    /// The sealing loop: seals due groups as their deadlines pass (a seal
    /// moves no item, so it is quick) while the driver aggregates and
    /// commits, so a long pass does not make seals late; wakes the driver
    /// when it sealed something.
    fn seal_loop(&self) {
        while !self.closed.load(Ordering::Acquire) {
            let wait = match self.claim(0) {
                Ok((_, wait, sealed)) => {
                    if sealed > 0 {
                        self.wake.store(true, Ordering::Release);
                        if let Some(t) = lock(&self.driver_thread).as_ref() {
                            t.unpark();
                        }
                    }
                    wait
                }
                Err(_) => None,
            };
            let sleep = wait.map_or(self.idle_poll, |w| {
                Duration::from_millis(w).min(self.idle_poll)
            });
            let until = self.clock.now() + sleep;
            self.sealer_next
                .store(self.local_ms() + millis(sleep), Ordering::Release);
            while !self.sealer_wake.swap(false, Ordering::AcqRel)
                && !self.closed.load(Ordering::Acquire)
                && self.clock.now() < until
            {
                self.clock.park_until(Some(until));
            }
        }
    }

    fn stats(&self) -> RedisBatchStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisBatchStats {
            added: get(&c.added),
            opened: get(&c.opened),
            committed: TriggerCounts::load(&c.committed),
            duplicates: get(&c.duplicates),
            redelivered: get(&c.redelivered),
            failures: get(&c.failures),
            panics: get(&c.panics),
            dead_letters: get(&c.dead_letters),
            released: get(&c.released),
            round_trips: get(&c.round_trips),
            late_count: get(&c.late_count),
            late_sum: Duration::from_millis(get(&c.late_sum_ms)),
            late_max: Duration::from_millis(get(&c.late_max_ms)),
        }
    }

    fn shutdown(&self, deadline: Duration) -> RedisShutdownReport {
        if self.closed.swap(true, Ordering::AcqRel) {
            return RedisShutdownReport {
                committed: self.stats().committed.total(),
                ..RedisShutdownReport::default()
            };
        }
        let until = crate::clock::deadline_after(Instant::now(), deadline);
        if let Some(t) = lock(&self.driver_thread).as_ref() {
            t.unpark();
        }
        if let Some(t) = lock(&self.sealer_thread).as_ref() {
            t.unpark();
        }
        let mut timed_out = false;
        while !self.driver_done.load(Ordering::Acquire) {
            if crate::wait::deadline_passed(until) {
                timed_out = true;
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        if !timed_out {
            if let Some(handle) = lock(&self.driver).take() {
                let _ = handle.join();
            }
        }
        let stats = self.stats();
        RedisShutdownReport {
            committed: stats.committed.total(),
            released: stats.released,
            timed_out,
        }
    }
}

/// Keyed batching shared by processes through Redis; a cheap, cloneable
/// handle. See the [module docs](self).
pub struct RedisBatcher<T, O> {
    shared: Arc<Shared<T, O>>,
}

impl<T: Send + 'static, O: Send + 'static> RedisBatcher<T, O> {
    /// Adds `item` to `group`'s open group in Redis, opening one if there is
    /// none (one round trip).
    ///
    /// # Errors
    /// [`RedisBatchError::Closed`] after shutdown; `Codec` when the item
    /// does not encode; `Redis` when the server fails (the item may then
    /// have been stored or not).
    pub fn add(&self, group: &str, item: &T) -> Result<Added, RedisBatchError> {
        Ok(self.shared.add_many([(group, item)])?[0])
    }

    /// Adds many items in one round trip (one server call per distinct
    /// group, its items in order). Returns what happened to each distinct
    /// group, in order of first appearance.
    ///
    /// # Errors
    /// As [`add`](Self::add); on a `Redis` error some groups' items may
    /// have been stored.
    pub fn add_all<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, &'a T)>,
    ) -> Result<Vec<Added>, RedisBatchError>
    where
        T: 'a,
    {
        self.shared.add_many(items)
    }

    /// As [`add`](Self::add), awaiting the server instead of blocking a
    /// thread (feature `async`; redis-rs on tokio: await it within a tokio
    /// runtime). The item is encoded before the first await, so the future
    /// borrows neither `group` nor `item`.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    #[cfg(feature = "async")]
    pub fn add_async(
        &self,
        group: &str,
        item: &T,
    ) -> impl std::future::Future<Output = Result<Added, RedisBatchError>> + Send + '_ {
        let adds = self.shared.prepare_adds([(group, item)]);
        async move { Ok(self.finish_async(adds?).await?[0]) }
    }

    /// As [`add_all`](Self::add_all), awaiting the server instead of
    /// blocking a thread (one round trip; feature `async`, as
    /// [`add_async`](Self::add_async)).
    ///
    /// # Errors
    /// As [`add_all`](Self::add_all).
    #[cfg(feature = "async")]
    pub fn add_all_async<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, &'a T)>,
    ) -> impl std::future::Future<Output = Result<Vec<Added>, RedisBatchError>> + Send + '_
    where
        T: 'a,
    {
        let adds = self.shared.prepare_adds(items);
        async move { self.finish_async(adds?).await }
    }

    #[cfg(feature = "async")]
    async fn finish_async(&self, adds: Adds) -> Result<Vec<Added>, RedisBatchError> {
        let replies = self.shared.run_async(&adds.cmds).await?;
        Ok(self.shared.finish_adds(&adds, replies))
    }

    /// Seals `group`'s open group now (trigger [`Manual`](Trigger::Manual));
    /// `false` when none is open.
    ///
    /// # Errors
    /// `Redis` when the server fails.
    pub fn flush(&self, group: &str) -> Result<bool, RedisBatchError> {
        let mut cmd = self
            .shared
            .fcall("sheaf_batch_flush", self.shared.shard_of(group));
        cmd.arg(group);
        let n = int(&self.shared.run(&[cmd])?[0]);
        self.shared.wake_at(0);
        Ok(n > 0)
    }

    /// Seals every open group in Redis now (trigger
    /// [`Manual`](Trigger::Manual)); returns how many.
    ///
    /// # Errors
    /// `Redis` when the server fails.
    pub fn flush_all(&self) -> Result<usize, RedisBatchError> {
        let cmds: Vec<Cmd> = (0..self.shared.keys.len() as u32)
            .map(|s| self.shared.fcall("sheaf_batch_flush", s))
            .collect();
        let n = self.shared.run(&cmds)?.iter().map(int).sum::<i64>();
        self.shared.wake_at(0);
        Ok(n as usize)
    }

    /// Snapshots of every open group in Redis (shard by shard).
    ///
    /// # Errors
    /// `Redis` when the server fails.
    pub fn groups(&self) -> Result<Vec<RedisGroupInfo>, RedisBatchError> {
        let mut out = Vec::new();
        for keys in &self.shared.keys {
            let mut hgetall = redis::cmd("HGETALL");
            hgetall.arg(&keys[0]);
            let mut zrange = redis::cmd("ZRANGE");
            zrange.arg(&keys[2]).arg(0).arg(-1).arg("WITHSCORES");
            let mut replies = self.shared.run(&[hgetall, zrange])?.into_iter();
            let meta = replies.next().map(flat_pairs).unwrap_or_default();
            let due: HashMap<String, Option<u64>> = replies
                .next()
                .map(flat_pairs)
                .unwrap_or_default()
                .into_iter()
                .map(|(g, score)| {
                    let s = text(score);
                    (
                        text(g),
                        s.parse::<f64>()
                            .ok()
                            .filter(|f| f.is_finite())
                            .map(|f| f as u64),
                    )
                })
                .collect();
            for (g, m) in meta {
                let key = text(g);
                let fields: Vec<u64> = text(m).split(':').map(|x| x.parse().unwrap_or(0)).collect();
                out.push(RedisGroupInfo {
                    items: fields.get(1).copied().unwrap_or(0) as usize,
                    opened_ms: fields.get(2).copied().unwrap_or(0),
                    due_ms: due.get(&key).copied().flatten(),
                    key,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Batches that failed [`max_attempts`](RedisBatcherBuilder::max_attempts)
    /// times, with their items, oldest first.
    ///
    /// # Errors
    /// `Redis` when the server fails, `Codec` when an item does not decode.
    pub fn dead_letters(&self) -> Result<Vec<RedisDeadLetter<T>>, RedisBatchError> {
        let mut out = Vec::new();
        for (shard, keys) in self.shared.keys.iter().enumerate() {
            let mut lrange = redis::cmd("LRANGE");
            lrange.arg(&keys[8]).arg(0).arg(-1);
            let epochs: Vec<String> = array(self.shared.run(&[lrange])?.remove(0))
                .into_iter()
                .map(text)
                .collect();
            for epoch in epochs {
                let mut get = redis::cmd("HMGET");
                get.arg(&keys[4]).arg(&epoch).arg(format!("{epoch}:error"));
                let mut r = array(self.shared.run(&[get])?.remove(0)).into_iter();
                let record = r.next().map(text).unwrap_or_default();
                let error = r.next().map(text).unwrap_or_default();
                let mut parts = record.splitn(7, ':');
                let count: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                let group = parts.nth(5).unwrap_or("").to_string();
                let mut items = Vec::with_capacity(count);
                if count > 0 {
                    let mut hmget = redis::cmd("HMGET");
                    hmget.arg(&keys[1]);
                    for i in 1..=count {
                        hmget.arg(format!("{epoch}:{i}"));
                    }
                    for v in array(self.shared.run(&[hmget])?.remove(0)) {
                        items.push(self.shared.item_codec.decode(&bytes(v))?);
                    }
                }
                out.push(RedisDeadLetter {
                    id: RedisBatchId {
                        shard: shard as u32,
                        epoch: epoch.parse().unwrap_or(0),
                    },
                    group,
                    items,
                    error,
                });
            }
        }
        Ok(out)
    }

    /// Removes a dead letter and its items; `false` if it was not there.
    ///
    /// # Errors
    /// `Redis` when the server fails.
    pub fn purge_dead_letter(&self, id: RedisBatchId) -> Result<bool, RedisBatchError> {
        if id.shard as usize >= self.shared.keys.len() {
            return Ok(false);
        }
        let mut cmd = self.shared.fcall("sheaf_batch_purge", id.shard);
        cmd.arg(id.epoch);
        Ok(int(&self.shared.run(&[cmd])?[0]) == 1)
    }

    /// The output streams, one per shard (`{prefix:s}:out`), for consumers'
    /// `XREADGROUP`. The entry format is in DESIGN.md.
    pub fn stream_keys(&self) -> Vec<String> {
        self.shared.keys.iter().map(|k| k[6].clone()).collect()
    }

    /// Decodes an entry's `output` field with the batcher's output codec.
    ///
    /// # Errors
    /// [`CodecError`] when the bytes are not a valid encoding.
    pub fn decode_output(&self, bytes: &[u8]) -> Result<O, CodecError> {
        self.shared.output_codec.decode(bytes)
    }

    /// Counters of this process; see [`RedisBatchStats`].
    pub fn stats(&self) -> RedisBatchStats {
        self.shared.stats()
    }

    /// Stops the driver: the pass in progress commits what it claimed,
    /// and claims left unprocessed at `deadline` are handed back (ready
    /// for any process at once). Open groups stay in Redis for the other
    /// processes (use [`flush_all`](Self::flush_all) first to seal them).
    /// Afterwards adds return [`RedisBatchError::Closed`]. Idempotent.
    pub fn shutdown(&self, deadline: Duration) -> RedisShutdownReport {
        self.shared.shutdown(deadline)
    }

    /// Runs one pass in the calling thread: seals what is due, claims,
    /// aggregates, commits. Returns the wait until the next deadline in
    /// ms (`None`: nothing is scheduled). For tests with
    /// [`manual_ticks`](RedisBatcherBuilder::manual_ticks).
    ///
    /// # Errors
    /// `Redis` when the server fails.
    #[doc(hidden)]
    pub fn tick(&self) -> Result<Option<u64>, RedisBatchError> {
        self.shared.pass(None)
    }

    /// Test hook: seals and claims like a pass, then stops as a process
    /// killed between claim and commit would. Returns the claimed ids.
    ///
    /// # Errors
    /// `Redis` when the server fails.
    #[doc(hidden)]
    pub fn claim_and_abandon(&self) -> Result<Vec<RedisBatchId>, RedisBatchError> {
        let (claimed, _, _) = self.shared.claim(self.shared.claim_limit)?;
        Ok(claimed
            .iter()
            .map(|c| RedisBatchId {
                shard: c.shard,
                epoch: c.epoch,
            })
            .collect())
    }
}

fn flat_pairs(v: Value) -> Vec<(Value, Value)> {
    match v {
        Value::Map(m) => m,
        other => {
            let mut out = Vec::new();
            let mut it = array(other).into_iter();
            while let (Some(a), Some(b)) = (it.next(), it.next()) {
                out.push((a, b));
            }
            out
        }
    }
}

impl<T, O> Clone for RedisBatcher<T, O> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T, O> Drop for RedisBatcher<T, O> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last handle: stop the driver (which holds the state).
            self.shared.closed.store(true, Ordering::Release);
            if let Some(t) = lock(&self.shared.driver_thread).as_ref() {
                t.unpark();
            }
            if let Some(t) = lock(&self.shared.sealer_thread).as_ref() {
                t.unpark();
            }
        }
    }
}

impl<T, O> fmt::Debug for RedisBatcher<T, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBatcher")
            .field("shards", &self.shared.keys.len())
            .finish_non_exhaustive()
    }
}
