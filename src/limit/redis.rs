//! [`RedisRateLimiter`]: the GCRA of [`RateLimiter`](super::RateLimiter),
//! with its state in Redis so that every process sharing a server shares
//! the limits (feature `redis`).
//!
//! One check is one round trip: an `FCALL` of a Redis function that reads
//! the server's clock (`TIME`), decides with the arithmetic of
//! the in-process `decide` and writes the new state, atomically.
//! The [`Quota`] travels with every call, so the server holds nothing but
//! one theoretical arrival time per key. DESIGN.md ("The Redis rate
//! limiter") has the key layout and the correctness argument.
//!
//! ```no_run
//! use sheaf::limit::Quota;
//! use sheaf::limit::redis::{RedisCheckError, RedisRateLimiter};
//!
//! let limiter = RedisRateLimiter::builder(Quota::per_second(10)?.with_burst(3)?)
//!     .url("redis://127.0.0.1:6379")
//!     .build()?;
//! match limiter.check("user:42") {
//!     Ok(()) => { /* go ahead */ }
//!     Err(RedisCheckError::Wait { retry_after, .. }) => println!("retry in {retry_after:?}"),
//!     Err(e) => eprintln!("limiter unavailable: {e}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use ::redis::{Client, Connection, ConnectionLike, ErrorKind, RedisError, RedisResult};

use super::{CheckError, NotUntil, Quota};
use crate::redis_link::{function_load, is_broken};
use crate::sync::Mutex;
use crate::ConfigError;

/// The Redis function library (`FUNCTION LOAD`); the version is in the names
/// so that a changed script never meets an old one under the same name.
const LIBRARY: &str = include_str!("redis_gcra.lua");
const LIBRARY_NAME: &str = "sheaf_limit_v1";
const FUNCTION: &str = "sheaf_gcra_v1";

/// The key prefix when none is given.
pub const DEFAULT_PREFIX: &str = "sheaf:limit:";

/// Why a check on a [`RedisRateLimiter`] did not pass.
///
/// `Wait` and `ExceedsBurst` are the answers of the in-process
/// [`RateLimiter`](super::RateLimiter) ([`CheckError`] has them, see
/// [`check_error`](Self::check_error)); `Redis` is the one a distributed
/// limiter adds.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisCheckError {
    /// Not now: the same request passes `retry_after` later, on the server's
    /// clock (if nothing else takes cells meanwhile).
    Wait {
        /// How long after the check, on the server's clock.
        retry_after: Duration,
        /// `retry_after` on this process's clock, counted from the moment the
        /// reply arrived (so a little later than the server's instant).
        not_until: NotUntil,
    },
    /// More cells than the burst: this request can never pass as it is.
    /// Decided here, without a round trip.
    ExceedsBurst {
        /// Cells asked for.
        requested: u64,
        /// The limiter's burst.
        burst: u64,
    },
    /// The server could not be reached, timed out, or answered with an error.
    /// Nothing is known about the cells: the caller picks fail-open or
    /// fail-closed.
    Redis(RedisError),
}

impl RedisCheckError {
    /// The in-process limiter's [`CheckError`] for the same answer (`None`
    /// for [`Redis`](Self::Redis)).
    pub fn check_error(&self) -> Option<CheckError> {
        match self {
            RedisCheckError::Wait { not_until, .. } => Some(CheckError::Wait(*not_until)),
            RedisCheckError::ExceedsBurst { requested, burst } => Some(CheckError::ExceedsBurst {
                requested: *requested,
                burst: *burst,
            }),
            RedisCheckError::Redis(_) => None,
        }
    }

    /// The server-clock delay of a [`Wait`](Self::Wait).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RedisCheckError::Wait { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl From<RedisError> for RedisCheckError {
    fn from(e: RedisError) -> Self {
        RedisCheckError::Redis(e)
    }
}

impl fmt::Display for RedisCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisCheckError::Wait { retry_after, .. } => {
                write!(f, "rate limited; retry in {retry_after:?}")
            }
            RedisCheckError::ExceedsBurst { requested, burst } => write!(
                f,
                "{requested} cells can never pass a limiter whose burst is {burst}"
            ),
            RedisCheckError::Redis(e) => write!(f, "redis rate limiter: {e}"),
        }
    }
}

impl std::error::Error for RedisCheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisCheckError::Redis(e) => Some(e),
            _ => None,
        }
    }
}

/// Builds a [`RedisRateLimiter`]; see [`RedisRateLimiter::builder`].
#[derive(Debug)]
pub struct RedisRateLimiterBuilder {
    quota: Quota,
    url: Option<String>,
    client: Option<Client>,
    prefix: String,
    timeout: Option<Duration>,
    max_idle_connections: usize,
}

impl RedisRateLimiterBuilder {
    /// The server, as a redis-rs URL (`redis://host:port/db`,
    /// `redis+unix:///path/to/socket`). Parsed by [`build`](Self::build);
    /// nothing connects before the first check.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self.client = None;
        self
    }

    /// The server, as a redis-rs [`Client`] (instead of [`url`](Self::url)).
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self.url = None;
        self
    }

    /// Prepended to every key (default [`DEFAULT_PREFIX`], `"sheaf:limit:"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Connect, read and write timeout of every round trip (default: none,
    /// a check waits for the server as long as the OS lets it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Connections kept open between checks (default 16). Checks running at
    /// once beyond this open short-lived connections of their own.
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.max_idle_connections = max;
        self
    }

    /// The limiter. Connects to nothing: the first check does.
    ///
    /// # Errors
    /// [`ConfigError`] with setting `"url"` when neither a URL nor a client
    /// was given or the URL does not parse, `"timeout"` for a zero timeout,
    /// `"max_idle_connections"` for 0.
    pub fn build(self) -> Result<RedisRateLimiter, ConfigError> {
        let client = match (self.client, self.url) {
            (Some(client), _) => client,
            (None, Some(url)) => Client::open(url.as_str())
                .map_err(|e| ConfigError::new("url", format!("{url:?} is not a Redis URL: {e}")))?,
            (None, None) => {
                return Err(ConfigError::new(
                    "url",
                    "no server given; call `url` or `client`",
                ))
            }
        };
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "timeout",
                "a zero timeout fails every check; give a positive one or none",
            ));
        }
        if self.max_idle_connections == 0 {
            return Err(ConfigError::new(
                "max_idle_connections",
                "0 reconnects on every check; give at least 1",
            ));
        }
        Ok(RedisRateLimiter {
            client,
            quota: self.quota,
            prefix: self.prefix,
            timeout: self.timeout,
            max_idle: self.max_idle_connections,
            idle: Mutex::new(Vec::new()),
            #[cfg(feature = "async")]
            multiplexed: crate::redis_link::Multiplexed::new(),
        })
    }
}

/// A GCRA rate limiter per string key, kept in Redis: every process using
/// the same server, prefix and quota shares each key's limit.
///
/// Same semantics as [`RateLimiter`](super::RateLimiter) (the shared vectors
/// in `tests/vectors/gcra.txt` pass against a real server); the time is the
/// server's (`TIME`, microseconds), never a client's. A check is one round
/// trip (`FCALL`); the function is loaded on first use and again,
/// transparently, after a `FUNCTION FLUSH` or a server without it.
///
/// The limiter holds a small pool of connections and is `Send + Sync`:
/// share it between threads. Server trouble comes back as
/// [`RedisCheckError::Redis`], never as a panic; a broken connection is
/// dropped and the next check opens a new one.
///
/// ```no_run
/// use sheaf::limit::Quota;
/// use sheaf::limit::redis::RedisRateLimiter;
///
/// let limiter = RedisRateLimiter::builder(Quota::per_second(4)?)
///     .url("redis+unix:///run/redis/redis.sock")
///     .build()?;
/// assert!(limiter.check_n("api:alice", 4).is_ok());
/// assert!(limiter.check("api:alice").unwrap_err().retry_after().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisRateLimiter {
    client: Client,
    quota: Quota,
    prefix: String,
    timeout: Option<Duration>,
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
    /// The one connection every async check shares (redis-rs multiplexes
    /// requests over it); `None` until the first, and after it broke.
    #[cfg(feature = "async")]
    multiplexed: crate::redis_link::Multiplexed,
}

impl RedisRateLimiter {
    /// A builder for a limiter with `quota` on every key.
    pub fn builder(quota: Quota) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder {
            quota,
            url: None,
            client: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: None,
            max_idle_connections: 16,
        }
    }

    /// The quota every check uses.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The Redis key holding `key`'s state: the prefix, then `key`.
    pub fn redis_key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    /// Takes one cell of `key` if it is there now.
    ///
    /// # Errors
    /// [`RedisCheckError::Wait`] with the delay after which it will be;
    /// [`RedisCheckError::Redis`] if the server could not answer.
    pub fn check(&self, key: &str) -> Result<(), RedisCheckError> {
        self.check_n(key, 1)
    }

    /// Takes `n` cells of `key` at once if they are all there now (`n == 0`
    /// passes unless the key is owed more than a burst, as in process).
    ///
    /// # Errors
    /// [`RedisCheckError::Wait`] if they will be later;
    /// [`RedisCheckError::ExceedsBurst`] (no round trip) if `n` is over the
    /// burst; [`RedisCheckError::Redis`] if the server could not answer.
    pub fn check_n(&self, key: &str, n: u64) -> Result<(), RedisCheckError> {
        self.call(key, n, None)
    }

    /// **Test only**: [`check_n`](Self::check_n) as if the server's clock
    /// read `now` (nanoseconds on any time line the caller keeps, e.g. since
    /// a test case began), so that exact vectors can be replayed against a
    /// real server. The key gets no expiry (the time line is not the
    /// server's). Never mix it with [`check_n`](Self::check_n) on one key,
    /// and never use it in production: an explicit time gives up the single
    /// clock that makes the limit hold across processes.
    ///
    /// # Errors
    /// As [`check_n`](Self::check_n).
    pub fn check_n_at(&self, key: &str, n: u64, now: Duration) -> Result<(), RedisCheckError> {
        let now_ns = crate::clock::saturating_nanos(now);
        self.call(key, n, Some(now_ns))
    }

    /// Forgets `key`'s state: it is full again.
    ///
    /// # Errors
    /// The server's, if it could not answer.
    pub fn reset(&self, key: &str) -> Result<(), RedisError> {
        let redis_key = self.redis_key(key);
        self.with_connection(|con| ::redis::cmd("DEL").arg(&redis_key).query::<()>(con))
    }

    /// Loads (or replaces) the Redis function now rather than on first use.
    ///
    /// # Errors
    /// The server's, if it could not answer or refused the library.
    pub fn load(&self) -> Result<(), RedisError> {
        self.with_connection(load)
    }

    /// The `FCALL` for `n` cells of `key`, or the refusal that needs no
    /// round trip.
    fn request(
        &self,
        key: &str,
        n: u64,
        now_ns: Option<u64>,
    ) -> Result<::redis::Cmd, RedisCheckError> {
        let interval = self.quota.interval_ns();
        let capacity = self.quota.capacity_ns();
        let increment = match n.checked_mul(interval) {
            Some(increment) if increment <= capacity => increment,
            _ => {
                return Err(RedisCheckError::ExceedsBurst {
                    requested: n,
                    burst: self.quota.burst(),
                })
            }
        };
        let mut fcall = ::redis::cmd("FCALL");
        fcall
            .arg(FUNCTION)
            .arg(1)
            .arg(self.redis_key(key))
            .arg(increment)
            .arg(capacity);
        if let Some(now_ns) = now_ns {
            fcall.arg(now_ns);
        }
        Ok(fcall)
    }

    fn call(&self, key: &str, n: u64, now_ns: Option<u64>) -> Result<(), RedisCheckError> {
        let fcall = self.request(key, n, now_ns)?;
        let retry_ns: u64 = self.with_connection(|con| match fcall.query(con) {
            Err(e) if is_function_missing(&e) => {
                load(con)?;
                fcall.query(con)
            }
            reply => reply,
        })?;
        answer(retry_ns)
    }

    /// Runs `f` on a pooled connection (or a new one). A connection that
    /// saw an I/O error is dropped: a reply may still be in flight on it.
    fn with_connection<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<R>,
    ) -> RedisResult<R> {
        let pooled = self.idle.lock().pop();
        let mut con = match pooled {
            Some(con) => con,
            None => self.connect()?,
        };
        let result = f(&mut con);
        let reusable = result.as_ref().map_or_else(|e| !is_broken(e), |_| true);
        if reusable && con.is_open() {
            let mut idle = self.idle.lock();
            if idle.len() < self.max_idle {
                idle.push(con);
            }
        }
        result
    }

    fn connect(&self) -> RedisResult<Connection> {
        let con = match self.timeout {
            Some(timeout) => {
                let con = self.client.get_connection_with_timeout(timeout)?;
                con.set_read_timeout(Some(timeout))?;
                con.set_write_timeout(Some(timeout))?;
                con
            }
            None => self.client.get_connection()?,
        };
        Ok(con)
    }
}

/// The same checks for async code, on one multiplexed connection (feature
/// `async`, with redis-rs on tokio: call them from within a tokio runtime).
/// A check still is one round trip; no thread waits for it.
///
/// ```no_run
/// use sheaf::limit::Quota;
/// use sheaf::limit::redis::RedisRateLimiter;
///
/// # async fn handle() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisRateLimiter::builder(Quota::per_second(4)?)
///     .url("redis://127.0.0.1:6379")
///     .build()?;
/// if limiter.check_async("api:alice").await.is_ok() {
///     // go ahead
/// }
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "async")]
impl RedisRateLimiter {
    /// As [`check`](Self::check), awaiting the reply instead of blocking.
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub async fn check_async(&self, key: &str) -> Result<(), RedisCheckError> {
        self.check_n_async(key, 1).await
    }

    /// As [`check_n`](Self::check_n), awaiting the reply instead of blocking.
    ///
    /// # Errors
    /// As [`check_n`](Self::check_n).
    pub async fn check_n_async(&self, key: &str, n: u64) -> Result<(), RedisCheckError> {
        let fcall = self.request(key, n, None)?;
        let mut config = ::redis::AsyncConnectionConfig::new();
        if let Some(timeout) = self.timeout {
            config = config
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
        }
        let mut con = self.multiplexed.get(&self.client, &config).await?;
        let reply = match fcall.query_async(&mut con).await {
            Err(e) if is_function_missing(&e) => {
                match function_load(LIBRARY).query_async::<String>(&mut con).await {
                    Ok(_) => fcall.query_async(&mut con).await,
                    Err(e) => Err(e),
                }
            }
            reply => reply,
        };
        // A broken connection: the next check connects again.
        self.multiplexed.check(&reply);
        answer(reply?)
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("quota", &self.quota)
            .field("prefix", &self.prefix)
            .field("server", self.client.get_connection_info())
            .finish_non_exhaustive()
    }
}

fn load(con: &mut Connection) -> RedisResult<()> {
    let name: String = function_load(LIBRARY).query(con)?;
    debug_assert_eq!(name, LIBRARY_NAME);
    Ok(())
}

/// The function's reply: 0 passes, otherwise nanoseconds to wait.
fn answer(retry_ns: u64) -> Result<(), RedisCheckError> {
    if retry_ns == 0 {
        return Ok(());
    }
    Err(RedisCheckError::Wait {
        retry_after: Duration::from_nanos(retry_ns),
        not_until: NotUntil::at(Instant::now(), retry_ns),
    })
}

/// `ERR Function not found`: the server lost (or never had) the library.
fn is_function_missing(e: &RedisError) -> bool {
    e.kind() == ErrorKind::ResponseError
        && e.detail()
            .is_some_and(|d| d.starts_with("Function not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RedisRateLimiter {
        RedisRateLimiter::builder(Quota::per_second(2).unwrap())
            .url("redis+unix:///nonexistent/sheaf.sock")
            .build()
            .unwrap()
    }

    #[test]
    fn keys_are_prefixed() {
        assert_eq!(limiter().redis_key("a{b}"), "sheaf:limit:a{b}");
    }

    #[test]
    fn over_the_burst_needs_no_server() {
        match limiter().check_n("k", 3) {
            Err(RedisCheckError::ExceedsBurst {
                requested: 3,
                burst: 2,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreachable_server_is_an_error() {
        let e = limiter().check("k").unwrap_err();
        assert!(matches!(e, RedisCheckError::Redis(_)), "{e:?}");
        assert!(e.check_error().is_none());
    }

    #[test]
    fn the_library_names_its_function() {
        assert!(LIBRARY.starts_with(&format!("#!lua name={LIBRARY_NAME}\n")));
        assert!(LIBRARY.contains(&format!("register_function('{FUNCTION}'")));
    }
}
