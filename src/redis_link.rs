//! What the Redis-backed components share (feature `redis`): loading a
//! function library, telling a broken connection from a refused command,
//! and the one multiplexed connection their async calls go through.

use ::redis::{Cmd, RedisError};

/// `FUNCTION LOAD REPLACE <library>`: loads (or replaces) a library.
pub(crate) fn function_load(library: &str) -> Cmd {
    let mut cmd = ::redis::cmd("FUNCTION");
    cmd.arg("LOAD").arg("REPLACE").arg(library);
    cmd
}

/// The connection that saw `e` may still have a reply in flight, or is
/// gone: drop it and connect again.
pub(crate) fn is_broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// One `MultiplexedConnection` shared by every async caller of a component
/// (redis-rs pipelines their concurrent requests over it), opened on first
/// use and again after it broke (feature `async`).
#[cfg(feature = "async")]
pub(crate) struct Multiplexed {
    shared: crate::sync::Mutex<Option<::redis::aio::MultiplexedConnection>>,
}

#[cfg(feature = "async")]
impl Multiplexed {
    /// None yet: the first call connects.
    pub(crate) fn new() -> Self {
        Self {
            shared: crate::sync::Mutex::new(None),
        }
    }

    /// The shared connection, connecting with `config` if there is none.
    pub(crate) async fn get(
        &self,
        client: &::redis::Client,
        config: &::redis::AsyncConnectionConfig,
    ) -> ::redis::RedisResult<::redis::aio::MultiplexedConnection> {
        let shared = self.shared.lock().clone();
        if let Some(con) = shared {
            return Ok(con);
        }
        let con = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        // Two first calls may both connect: keep one connection.
        Ok(self.shared.lock().get_or_insert(con).clone())
    }

    /// Forgets the connection if `result` says it broke.
    pub(crate) fn check<R>(&self, result: &Result<R, RedisError>) {
        if let Err(e) = result {
            if is_broken(e) {
                *self.shared.lock() = None;
            }
        }
    }
}
