//! `sheaf::batch::redis::RedisBatcher` against a real `redis-server` (the
//! harness starts one per test on a unix socket in a temp dir). Every test
//! accounts for every item: each added item is in exactly one committed
//! batch or one dead letter, and no batch id appears twice in the stream.

mod support {
    pub mod redis_server;
}

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use redis::Value;
use sheaf::batch::redis::{RedisBatchError, RedisBatcher, RedisBatcherBuilder};
use sheaf::batch::{Added, GroupConfig, Trigger};
use sheaf::codec::Utf8;
use support::redis_server::{Options, RedisServer};

type Batcher = RedisBatcher<String, String>;

/// Items are strings, the output is the items joined by ','.
fn builder(server: &RedisServer) -> RedisBatcherBuilder<String, String> {
    RedisBatcher::<String, String>::builder(server.url())
        .codecs(Utf8, Utf8)
        .aggregate(|_group, items: &mut Vec<String>| Ok::<_, String>(items.join(",")))
}

/// One stream entry, fields by name.
#[derive(Debug, Clone)]
struct Entry {
    fields: BTreeMap<String, String>,
}

impl Entry {
    fn get(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        other => panic!("not a string: {other:?}"),
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

fn connect(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Every entry of every output stream, by XRANGE.
fn entries(server: &RedisServer, batcher: &Batcher) -> Vec<Entry> {
    let mut con = connect(server);
    let mut out = Vec::new();
    for key in batcher.stream_keys() {
        let v: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query(&mut con)
            .unwrap();
        for entry in items(&v) {
            let parts = items(entry);
            let fields = items(&parts[1])
                .chunks(2)
                .map(|kv| (text(&kv[0]), text(&kv[1])))
                .collect();
            out.push(Entry { fields });
        }
    }
    out
}

/// Checks exact accounting: every item in `added` is in exactly one
/// committed batch or dead letter, nothing else is, no batch id repeats.
/// Returns (batches committed, dead letters).
fn account(server: &RedisServer, batcher: &Batcher, added: &BTreeSet<String>) -> (usize, usize) {
    let entries = entries(server, batcher);
    let mut seen = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for e in &entries {
        assert!(
            ids.insert(e.get("batch").to_string()),
            "batch {} twice",
            e.get("batch")
        );
        let output = e.get("output");
        let list: Vec<&str> = output.split(',').collect();
        assert_eq!(list.len().to_string(), e.get("items"));
        for item in list {
            assert!(seen.insert(item.to_string()), "item {item} twice");
        }
    }
    let dead = batcher.dead_letters().unwrap();
    for d in &dead {
        for item in &d.items {
            assert!(seen.insert(item.clone()), "item {item} twice (dead letter)");
        }
    }
    assert_eq!(&seen, added, "lost or unexpected items");
    (entries.len(), dead.len())
}

/// Waits for a state by running `step` until `done` holds (no sleeping
/// and hoping: a loaded machine just takes more rounds).
fn until(mut step: impl FnMut(), mut done: impl FnMut() -> bool) {
    for _ in 0..1_000_000 {
        if done() {
            return;
        }
        step();
        thread::sleep(Duration::from_millis(1));
    }
    panic!("state not reached");
}

#[test]
fn max_items_seals_in_the_add_and_commits_once() {
    let server = RedisServer::start();
    let batcher = builder(&server)
        .max_items(3)
        .manual_ticks()
        .build()
        .unwrap();
    let mut added = BTreeSet::new();
    let mut results = Vec::new();
    for i in 0..10 {
        let item = format!("i{i}");
        results.push(batcher.add("a", &item).unwrap());
        added.insert(item);
    }
    assert_eq!(
        &results[..4],
        &[Added::Opened, Added::Joined, Added::Sealed, Added::Opened]
    );
    batcher.tick().unwrap();
    let groups = batcher.groups().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].key.as_str(), groups[0].items, groups[0].due_ms),
        ("a", 1, None)
    );
    batcher.flush("a").unwrap();
    batcher.tick().unwrap();
    assert_eq!(account(&server, &batcher, &added), (4, 0));
    let outputs: Vec<String> = entries(&server, &batcher)
        .iter()
        .map(|e| e.get("output").to_string())
        .collect();
    assert_eq!(outputs, ["i0,i1,i2", "i3,i4,i5", "i6,i7,i8", "i9"]);
    let stats = batcher.stats();
    assert_eq!(
        (
            stats.added,
            stats.committed.max_items,
            stats.committed.manual
        ),
        (10, 3, 1)
    );
    assert_eq!(stats.duplicates, 0);
    assert!(batcher.groups().unwrap().is_empty());
}

#[test]
fn grace_and_per_group_overrides_seal_by_deadline() {
    let server = RedisServer::start();
    let batcher = builder(&server)
        .grace(Duration::from_millis(1))
        .group_config(|g| (g == "small").then(|| GroupConfig::new().max_items(2)))
        .manual_ticks()
        .build()
        .unwrap();
    let mut added = BTreeSet::new();
    for (g, item) in [
        ("x", "x1"),
        ("x", "x2"),
        ("small", "s1"),
        ("small", "s2"),
        ("small", "s3"),
    ] {
        batcher.add(g, &item.to_string()).unwrap();
        added.insert(item.to_string());
    }
    until(
        || {
            batcher.tick().unwrap();
        },
        || batcher.groups().unwrap().is_empty() && entries(&server, &batcher).len() == 3,
    );
    assert_eq!(account(&server, &batcher, &added), (3, 0));
    let stats = batcher.stats();
    assert_eq!((stats.committed.grace, stats.committed.max_items), (2, 1));
    assert_eq!(stats.late_count, 2);
    let by_group: BTreeMap<String, Vec<String>> =
        entries(&server, &batcher)
            .into_iter()
            .fold(BTreeMap::new(), |mut m, e| {
                m.entry(e.get("group").to_string())
                    .or_default()
                    .push(e.get("output").to_string());
                m
            });
    assert_eq!(by_group["x"], ["x1,x2"]);
    assert_eq!(by_group["small"], ["s1,s2", "s3"]);
}

#[test]
fn killed_between_claim_and_commit_redelivers_the_same_batch() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(20);
    let crashed = builder(&server)
        .max_items(4)
        .lease(lease)
        .manual_ticks()
        .build()
        .unwrap();
    let mut added = BTreeSet::new();
    for i in 0..4 {
        let item = format!("k{i}");
        crashed.add("g", &item).unwrap();
        added.insert(item);
    }
    let claimed = crashed.claim_and_abandon().unwrap();
    assert_eq!(claimed.len(), 1);
    drop(crashed); // dies holding the claim

    let survivor = builder(&server)
        .max_items(4)
        .lease(lease)
        .manual_ticks()
        .build()
        .unwrap();
    // Nothing is re-delivered before the lease ends; then exactly this batch.
    until(
        || {
            survivor.tick().unwrap();
        },
        || !entries(&server, &survivor).is_empty(),
    );
    let e = &entries(&server, &survivor)[0];
    assert_eq!(e.get("batch"), claimed[0].to_string());
    assert_eq!((e.get("output"), e.get("attempts")), ("k0,k1,k2,k3", "2"));
    assert_eq!(account(&server, &survivor, &added), (1, 0));
    assert_eq!(survivor.stats().redelivered, 1);
}

#[test]
fn after_max_attempts_a_batch_is_a_dead_letter() {
    let server = RedisServer::start();
    let failing = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&failing);
    let batcher = RedisBatcher::<String, String>::builder(server.url())
        .codecs(Utf8, Utf8)
        .aggregate(move |group, items: &mut Vec<String>| {
            if group == "bad" && flag.load(Ordering::SeqCst) {
                return Err("refused".to_string());
            }
            if group == "panics" {
                panic!("boom");
            }
            Ok(items.join(","))
        })
        .max_items(2)
        .max_attempts(2)
        .manual_ticks()
        .build()
        .unwrap();
    let mut added = BTreeSet::new();
    for (g, item) in [
        ("bad", "b1"),
        ("bad", "b2"),
        ("good", "g1"),
        ("good", "g2"),
        ("panics", "p1"),
        ("panics", "p2"),
    ] {
        batcher.add(g, &item.to_string()).unwrap();
        added.insert(item.to_string());
    }
    until(
        || {
            batcher.tick().unwrap();
        },
        || batcher.dead_letters().unwrap().len() == 2,
    );
    batcher.tick().unwrap();
    assert_eq!(account(&server, &batcher, &added), (1, 2));
    let dead = batcher.dead_letters().unwrap();
    let errors: BTreeSet<&str> = dead.iter().map(|d| d.error.as_str()).collect();
    assert_eq!(errors, BTreeSet::from(["refused", "panicked: boom"]));
    let stats = batcher.stats();
    assert_eq!(
        (stats.failures, stats.panics, stats.dead_letters),
        (2, 2, 2)
    );
    // Purged dead letters are gone with their items.
    for d in dead {
        assert!(batcher.purge_dead_letter(d.id).unwrap());
    }
    assert!(batcher.dead_letters().unwrap().is_empty());
}

#[test]
fn claimers_that_keep_dying_end_in_the_dead_letter_list() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(5);
    let make = || {
        builder(&server)
            .max_items(2)
            .lease(lease)
            .max_attempts(2)
            .manual_ticks()
            .build()
            .unwrap()
    };
    let first = make();
    let added: BTreeSet<String> = ["d1", "d2"].map(String::from).into();
    for item in &added {
        first.add("g", item).unwrap();
    }
    assert_eq!(first.claim_and_abandon().unwrap().len(), 1);
    let second = make();
    let claims = std::cell::Cell::new(0);
    until(
        || claims.set(claims.get() + second.claim_and_abandon().unwrap().len()),
        || claims.get() > 0,
    );
    let third = make();
    until(
        || {
            third.tick().unwrap();
        },
        || !third.dead_letters().unwrap().is_empty(),
    );
    assert_eq!(account(&server, &third, &added), (0, 1));
    assert_eq!(
        third.dead_letters().unwrap()[0].error,
        "lease expired 2 times"
    );
}

#[test]
fn two_batchers_race_for_the_same_groups() {
    let server = RedisServer::start();
    let make = || {
        builder(&server)
            .shards(4)
            .grace(Duration::from_millis(2))
            .max_items(7)
            .idle_poll(Duration::from_millis(5))
            .build()
            .unwrap()
    };
    let batchers = [make(), make()];
    let added = Mutex::new(BTreeSet::new());
    thread::scope(|s| {
        for t in 0..4 {
            let batcher = &batchers[t % 2];
            let added = &added;
            s.spawn(move || {
                for i in 0..300 {
                    let item = format!("t{t}-{i}");
                    let group = format!("g{}", i % 20);
                    if i % 3 == 0 {
                        batcher.add(&group, &item).unwrap();
                    } else {
                        batcher.add_all([(group.as_str(), &item)]).unwrap();
                    }
                    added.lock().unwrap().insert(item);
                }
            });
        }
    });
    let added = added.into_inner().unwrap();
    until(
        || {},
        || {
            batchers[0].groups().unwrap().is_empty()
                && entries(&server, &batchers[0])
                    .iter()
                    .map(|e| e.get("items").parse::<usize>().unwrap())
                    .sum::<usize>()
                    == added.len()
        },
    );
    let (batches, dead) = account(&server, &batchers[0], &added);
    assert_eq!(dead, 0);
    let committed: u64 = batchers.iter().map(|b| b.stats().committed.total()).sum();
    assert_eq!(committed, batches as u64);
    for b in &batchers {
        b.shutdown(Duration::from_secs(5));
    }
}

#[test]
fn server_restarted_mid_stream_loses_and_duplicates_nothing() {
    let mut server = RedisServer::start_with(Options {
        aof: true,
        ..Options::default()
    });
    let batcher = builder(&server)
        .grace(Duration::from_millis(1))
        .max_items(5)
        .lease(Duration::from_millis(50))
        .idle_poll(Duration::from_millis(5))
        .build()
        .unwrap();
    let mut added = BTreeSet::new();
    let mut add = |batcher: &Batcher, i: usize| {
        let item = format!("r{i}");
        // A failed write to the killed server's socket was not applied:
        // retry on a fresh connection.
        until(|| {}, || batcher.add(&format!("g{}", i % 7), &item).is_ok());
        added.insert(item);
    };
    for i in 0..200 {
        add(&batcher, i);
    }
    server.restart(); // the driver is mid-stream: its pass may die anywhere
    for i in 200..400 {
        add(&batcher, i);
    }
    until(
        || {},
        || {
            batcher.groups().is_ok_and(|g| g.is_empty())
                && entries(&server, &batcher)
                    .iter()
                    .map(|e| e.get("items").parse::<usize>().unwrap())
                    .sum::<usize>()
                    == added.len()
        },
    );
    assert_eq!(account(&server, &batcher, &added).1, 0);
    batcher.shutdown(Duration::from_secs(5));
}

#[test]
fn the_function_library_is_reloaded_when_the_server_lost_it() {
    let server = RedisServer::start();
    let batcher = builder(&server)
        .max_items(2)
        .manual_ticks()
        .build()
        .unwrap();
    server.cli(&["FUNCTION", "FLUSH"]);
    let added: BTreeSet<String> = ["f1", "f2"].map(String::from).into();
    for item in &added {
        batcher.add("g", item).unwrap();
    }
    batcher.tick().unwrap();
    assert_eq!(account(&server, &batcher, &added), (1, 0));
}

#[test]
fn a_consumer_that_crashes_before_xack_leaves_its_entries_to_another() {
    let server = RedisServer::start();
    let batcher = builder(&server)
        .max_items(1)
        .manual_ticks()
        .build()
        .unwrap();
    let added: BTreeSet<String> = (0..6).map(|i| format!("c{i}")).collect();
    for item in &added {
        batcher.add("g", item).unwrap();
    }
    batcher.tick().unwrap();
    assert_eq!(account(&server, &batcher, &added), (6, 0));
    let key = &batcher.stream_keys()[0];
    server.cli(&["XGROUP", "CREATE", key, "workers", "0"]);
    let mut con = connect(&server);
    let read =
        |con: &mut redis::Connection, consumer: &str, count: usize| -> Vec<(String, String)> {
            let v: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("workers")
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(key)
                .arg(">")
                .query(con)
                .unwrap();
            if v == Value::Nil {
                return Vec::new();
            }
            let streams = items(&v);
            items(&items(&streams[0])[1])
                .iter()
                .map(|e| {
                    let parts = items(e);
                    let fields = items(&parts[1]);
                    let output = fields
                        .chunks(2)
                        .find(|kv| text(&kv[0]) == "output")
                        .map(|kv| text(&kv[1]))
                        .unwrap();
                    (text(&parts[0]), output)
                })
                .collect()
        };
    // c1 reads two entries and crashes before XACK.
    let lost = read(&mut con, "c1", 2);
    assert_eq!(lost.len(), 2);
    // c2 reads the rest and acknowledges them.
    let mut done = BTreeSet::new();
    for (id, output) in read(&mut con, "c2", 100) {
        let acked: i64 = redis::cmd("XACK")
            .arg(key)
            .arg("workers")
            .arg(&id)
            .query(&mut con)
            .unwrap();
        assert_eq!(acked, 1);
        assert!(done.insert(output));
    }
    assert_eq!(done.len(), 4);
    // c2 takes over c1's pending entries and acknowledges them.
    let v: Value = redis::cmd("XAUTOCLAIM")
        .arg(key)
        .arg("workers")
        .arg("c2")
        .arg(0)
        .arg("0-0")
        .query(&mut con)
        .unwrap();
    for e in items(&items(&v)[1]) {
        let parts = items(e);
        let id = text(&parts[0]);
        let output = items(&parts[1])
            .chunks(2)
            .find(|kv| text(&kv[0]) == "output")
            .map(|kv| text(&kv[1]))
            .unwrap();
        let acked: i64 = redis::cmd("XACK")
            .arg(key)
            .arg("workers")
            .arg(&id)
            .query(&mut con)
            .unwrap();
        assert_eq!(acked, 1);
        assert!(done.insert(output), "an entry processed twice");
    }
    assert_eq!(done, added);
    let pending: Value = redis::cmd("XPENDING")
        .arg(key)
        .arg("workers")
        .query(&mut con)
        .unwrap();
    assert_eq!(items(&pending)[0], Value::Int(0));
}

#[test]
fn redis_cli_reads_the_documented_stream_format() {
    let server = RedisServer::start_with(Options {
        tcp: true,
        ..Options::default()
    });
    let batcher = builder(&server)
        .prefix("app")
        .max_items(2)
        .manual_ticks()
        .build()
        .unwrap();
    batcher.add("welcome", &"ann".to_string()).unwrap();
    batcher.add("welcome", &"bob".to_string()).unwrap();
    batcher.tick().unwrap();
    assert_eq!(batcher.stream_keys(), ["{app:0}:out"]);
    let raw = server.cli(&["XRANGE", "{app:0}:out", "-", "+"]);
    let lines: Vec<&str> = raw.lines().collect();
    // redis-cli prints the entry id, then field and value lines.
    let names: Vec<&str> = lines[1..].iter().step_by(2).copied().collect();
    assert_eq!(
        names,
        [
            "batch",
            "group",
            "items",
            "reason",
            "opened_ms",
            "due_ms",
            "sealed_ms",
            "committed_ms",
            "attempts",
            "output"
        ]
    );
    let value = |name: &str| lines[lines.iter().position(|l| *l == name).unwrap() + 1];
    assert_eq!(value("batch"), "0-1");
    assert_eq!(value("group"), "welcome");
    assert_eq!(value("items"), "2");
    assert_eq!(value("reason"), "max_items");
    assert_eq!(value("attempts"), "1");
    assert_eq!(value("output"), "ann,bob");
    assert!(
        value("committed_ms").parse::<u64>().unwrap() >= value("sealed_ms").parse::<u64>().unwrap()
    );
    // The commit marker sits beside the stream.
    assert_eq!(server.cli(&["ZCARD", "{app:0}:done"]).trim(), "1");
}

#[test]
fn on_output_hands_batches_to_the_process_exactly_once() {
    let server = RedisServer::start();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let batcher = builder(&server)
        .max_items(2)
        .on_output(move |b| {
            sink.lock()
                .unwrap()
                .push((b.id, b.output.clone(), b.reason));
            Ok::<_, String>(())
        })
        .manual_ticks()
        .build()
        .unwrap();
    for item in ["o1", "o2", "o3", "o4"] {
        batcher.add("g", &item.to_string()).unwrap();
    }
    batcher.tick().unwrap();
    batcher.tick().unwrap();
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].1.as_str(), got[0].2), ("o1,o2", Trigger::MaxItems));
    assert_eq!(got[1].1, "o3,o4");
    assert!(entries(&server, &batcher).is_empty());
}

#[test]
fn shutdown_commits_what_it_holds_and_leaves_open_groups_in_redis() {
    let server = RedisServer::start();
    let batcher = builder(&server)
        .max_items(3)
        .grace(Duration::from_secs(3600))
        .build()
        .unwrap();
    for item in ["a", "b", "c", "d"] {
        batcher.add("g", &item.to_string()).unwrap();
    }
    until(|| {}, || entries(&server, &batcher).len() == 1);
    let report = batcher.shutdown(Duration::from_secs(10));
    assert_eq!((report.committed, report.timed_out), (1, false));
    assert!(matches!(
        batcher.add("g", &"e".to_string()),
        Err(RedisBatchError::Closed)
    ));
    let other = builder(&server)
        .max_items(3)
        .manual_ticks()
        .build()
        .unwrap();
    let groups = other.groups().unwrap();
    assert_eq!((groups.len(), groups[0].items), (1, 1));
    other.flush_all().unwrap();
    other.tick().unwrap();
    let added: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
    assert_eq!(account(&server, &other, &added), (2, 0));
}

#[test]
fn bad_settings_are_config_errors() {
    let server = RedisServer::start();
    let no_codecs = RedisBatcher::<String, String>::builder(server.url())
        .max_items(1)
        .aggregate(|_, items: &mut Vec<String>| Ok::<_, String>(items.join(",")))
        .build()
        .unwrap_err();
    assert_eq!(no_codecs.setting(), "codecs");
    let checks = [
        (builder(&server).build().unwrap_err(), "grace"),
        (
            builder(&server).grace(Duration::ZERO).build().unwrap_err(),
            "grace",
        ),
        (
            builder(&server)
                .grace(Duration::from_secs(2))
                .max_delay(Duration::from_secs(1))
                .build()
                .unwrap_err(),
            "max_delay",
        ),
        (
            builder(&server).max_items(0).build().unwrap_err(),
            "max_items",
        ),
        (
            builder(&server).max_items(1).shards(0).build().unwrap_err(),
            "shards",
        ),
        (
            builder(&server)
                .max_items(1)
                .max_attempts(0)
                .build()
                .unwrap_err(),
            "max_attempts",
        ),
        (
            RedisBatcher::<String, String>::builder("redis+unix:///nonexistent/sheaf.sock")
                .codecs(Utf8, Utf8)
                .max_items(1)
                .aggregate(|_, items: &mut Vec<String>| Ok::<_, String>(items.join(",")))
                .build()
                .unwrap_err(),
            "url",
        ),
    ];
    for (err, setting) in checks {
        assert_eq!(err.setting(), setting, "{err}");
    }
}

#[cfg(feature = "async")]
#[test]
fn async_adds_from_many_tasks_land_in_exactly_one_batch_each() {
    let server = RedisServer::start();
    let batcher = Arc::new(
        builder(&server)
            .max_items(5)
            .manual_ticks()
            .build()
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The server lost its functions: the first async add reloads them.
    server.cli(&["FUNCTION", "FLUSH"]);
    let (per_task, together) = rt.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move {
                    let group = format!("g{t}");
                    let mut results = Vec::new();
                    for i in 0..50 {
                        let item = format!("t{t}-{i}");
                        results.push(batcher.add_async(&group, &item).await.unwrap());
                    }
                    results
                })
            })
            .collect();
        let items: Vec<String> = (0..14).map(|i| format!("all-{i}")).collect();
        let pairs: Vec<(&str, &String)> = items
            .iter()
            .enumerate()
            .map(|(i, item)| (if i % 2 == 0 { "even" } else { "odd" }, item))
            .collect();
        let together = batcher.add_all_async(pairs).await.unwrap();
        let mut per_task = Vec::new();
        for task in tasks {
            per_task.push(task.await.unwrap());
        }
        (per_task, together)
    });
    // One task per group: its adds are in order, so every fifth seals.
    let pattern = [
        Added::Opened,
        Added::Joined,
        Added::Joined,
        Added::Joined,
        Added::Sealed,
    ];
    for results in &per_task {
        assert_eq!(results.len(), 50);
        for chunk in results.chunks(5) {
            assert_eq!(chunk, pattern);
        }
    }
    // Seven items each for "even" and "odd" in one round trip: the fifth
    // sealed each group (a seal is what a group's answer reports), the
    // last two opened a new one.
    assert_eq!(together, [Added::Sealed, Added::Sealed]);
    batcher.flush_all().unwrap();
    // A tick claims up to `claim_limit` batches per shard: tick until all
    // 44 are committed.
    until(
        || {
            batcher.tick().unwrap();
        },
        || entries(&server, &batcher).len() == 44,
    );
    let mut added: BTreeSet<String> = (0..14).map(|i| format!("all-{i}")).collect();
    for t in 0..4 {
        added.extend((0..50).map(|i| format!("t{t}-{i}")));
    }
    // 4 × 10 full batches, then "even" and "odd": one full, one of two.
    assert_eq!(account(&server, &batcher, &added), (44, 0));
    for e in entries(&server, &batcher) {
        if let Some(t) = e.get("output").strip_prefix('t') {
            // A task's batch holds five consecutive items, in order.
            let first: usize = t.split(['-', ',']).nth(1).unwrap().parse().unwrap();
            let task = t.split('-').next().unwrap();
            let expected: Vec<String> =
                (first..first + 5).map(|i| format!("t{task}-{i}")).collect();
            assert_eq!(e.get("output"), expected.join(","));
        }
    }
    let stats = batcher.stats();
    assert_eq!((stats.added, stats.duplicates), (214, 0));
}
