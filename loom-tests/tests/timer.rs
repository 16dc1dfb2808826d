//! Loom models of the timer: an insert racing the driver's expiry pass and
//! its sleep (no lost wake-up: the driver never sleeps past a deadline that
//! was inserted while it scanned or parked), and cancel racing expiry
//! (an entry fires or is cancelled, exactly one of the two).
//!
//! Run with `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests --test timer`.
#![cfg(sheaf_loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;
use sheaf::clock::{Clock, ManualClock};
use sheaf::timer::Timer;

fn counting_timer(clock: &ManualClock) -> (Arc<Timer<u8>>, Arc<AtomicUsize>) {
    let fired = Arc::new(AtomicUsize::new(0));
    let timer = {
        let fired = Arc::clone(&fired);
        Timer::start(std::sync::Arc::new(clock.clone()), move |_: u8| {
            fired.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap()
    };
    (Arc::new(timer), fired)
}

#[test]
fn insert_racing_expiry_fires_once() {
    model(|| {
        let clock = ManualClock::new();
        let (timer, fired) = counting_timer(&clock);
        let start = clock.now();
        let inserter = {
            let timer = Arc::clone(&timer);
            thread::spawn(move || {
                timer.insert(start + Duration::from_millis(1), 1).unwrap();
            })
        };
        clock.advance(Duration::from_millis(1));
        inserter.join().unwrap();
        // The insert and the advance both happened before this pass began.
        timer.settle();
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        assert!(timer.shutdown().is_empty());
    });
}

#[test]
fn cancel_racing_expiry_is_one_or_the_other() {
    model(|| {
        let clock = ManualClock::new();
        let (timer, fired) = counting_timer(&clock);
        let key = timer.insert(clock.now(), 1).unwrap(); // due at once
        let canceller = {
            let timer = Arc::clone(&timer);
            thread::spawn(move || timer.cancel(key).is_some())
        };
        let cancelled = canceller.join().unwrap();
        timer.settle();
        assert_eq!(fired.load(Ordering::SeqCst) + usize::from(cancelled), 1);
        assert!(timer.shutdown().is_empty());
    });
}

/// A callback that parks (the batcher's driver waits on a full output) can
/// take the unpark that `shutdown` meant for the driver's sleep. The driver
/// must still see the close after its pass instead of sleeping forever.
#[test]
fn shutdown_reaches_a_driver_whose_callback_took_the_unpark() {
    model(|| {
        let clock = ManualClock::new();
        let fired = Arc::new(AtomicUsize::new(0));
        let timer = {
            let fired = Arc::clone(&fired);
            Timer::start(std::sync::Arc::new(clock.clone()), move |_: u8| {
                fired.fetch_add(1, Ordering::SeqCst);
                // Returns on the first unpark, which only `shutdown` sends.
                thread::park();
            })
            .unwrap()
        };
        timer.insert(clock.now(), 1).unwrap();
        let left = timer.shutdown();
        // Fired (and parked until the close) or never reached: exactly one.
        assert_eq!(fired.load(Ordering::SeqCst) + left.len(), 1);
    });
}
