//! A private `redis-server` for one test or benchmark.
//!
//! It listens on a unix socket in a fresh temp dir (no port to race for, no
//! other address), and on 127.0.0.1 with a free port when a TCP client is
//! wanted (`redis-cli` interop). It is stopped, and its directory removed,
//! on drop. A missing `redis-server` is a failure with the fix in the
//! message, never a skip: CI installs it (`apt-get install -y redis-server`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Options for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Append-only file on (`appendfsync always`), so a restart keeps every
    /// acknowledged write.
    pub aof: bool,
    /// Also listen on 127.0.0.1 on a free port.
    pub tcp: bool,
}

/// A running `redis-server`, stopped on drop.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    options: Options,
    port: Option<u16>,
}

impl RedisServer {
    /// Starts a server on a unix socket, without persistence.
    pub fn start() -> RedisServer {
        RedisServer::start_with(Options::default())
    }

    /// Starts a server with `options`.
    pub fn start_with(options: Options) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("sheaf-redis-")
            .tempdir()
            .expect("temp dir for redis-server");
        let port = options.tcp.then(free_port);
        let mut server = RedisServer {
            child: None,
            dir,
            options,
            port,
        };
        server.spawn();
        server
    }

    /// The unix socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The data directory (AOF and RDB files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A redis-rs connection URL for the unix socket.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// The TCP port on 127.0.0.1, when started with `tcp: true`.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Kills the server (SIGKILL: no save, no goodbye) and starts it again
    /// on the same socket and data directory. With `aof: true` every write
    /// acknowledged before the kill is back.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server without restarting it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Runs `redis-cli` against this server with `args`, returning stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        match self.port {
            Some(port) => command.args(["-h", "127.0.0.1", "-p", &port.to_string()]),
            None => command.arg("-s").arg(self.socket()),
        };
        let output = command
            .args(args)
            .output()
            .expect("redis-cli not found: install it with `apt-get install -y redis-server`");
        assert!(
            output.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("redis-cli output is UTF-8")
    }

    fn spawn(&mut self) {
        self.spawn_attempt(0)
    }

    fn spawn_attempt(&mut self, mut attempts: u32) {
        let socket = self.socket();
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.unwrap_or(0).to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if self.options.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): install it with `apt-get install -y redis-server`")
        });
        self.child = Some(child);
        // Not a timing assertion: how long a loaded machine may take to
        // start a server before the harness gives up with a message.
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            if ping(&socket) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                // The free port may have been taken meanwhile: take another.
                assert!(
                    self.port.is_some() && attempts < 5,
                    "redis-server exited at start: {status}"
                );
                attempts += 1;
                self.port = Some(free_port());
                return self.spawn_attempt(attempts);
            }
            assert!(Instant::now() < give_up, "redis-server did not answer PING");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
