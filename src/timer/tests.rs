use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::clock::ManualClock;

fn fire_all<T>(wheel: &mut Wheel<T>, now: Tick) -> Vec<(Tick, TimerKey, T)> {
    let mut out = Vec::new();
    let elapsed = wheel.elapsed();
    wheel.advance(now, |key, value| {
        out.push((now, key, value));
        None
    });
    assert!(wheel.elapsed() >= elapsed.max(now));
    out
}

#[test]
fn fires_at_exactly_its_tick_on_every_level() {
    for deadline in [
        1,
        63,
        64,
        65,
        4095,
        4096,
        4097,
        262_143,
        262_144,
        16_777_216,
        1 << 30,
        1 << 36,
    ] {
        let mut wheel = Wheel::new();
        let key = wheel.insert(deadline, deadline);
        assert!(wheel.next_due().unwrap() <= deadline);
        // Walk through every wake-up the wheel asks for: none fires early.
        let mut wakes = 0;
        while let Some(due) = wheel.next_due() {
            wakes += 1;
            let fired = fire_all(&mut wheel, due);
            if due < deadline {
                assert!(fired.is_empty(), "{deadline} fired at {due}");
                assert_eq!(wheel.deadline(key), Some(deadline));
            } else {
                assert_eq!(due, deadline);
                assert_eq!(fired.len(), 1);
                assert_eq!(fired[0].2, deadline);
            }
        }
        assert!(wakes <= 7, "{deadline}: {wakes} wake-ups");
        assert!(wheel.is_empty());
    }
}

#[test]
fn far_deadlines_wait_at_the_top_and_still_fire_on_time() {
    let mut wheel = Wheel::new();
    let far = (1u64 << 36) * 3 + 12_345; // beyond the six levels' reach
    wheel.insert(far, "far");
    wheel.insert(u64::MAX, "forever");
    let mut now = 0;
    let mut fired = Vec::new();
    while let Some(due) = wheel.next_due() {
        assert!(due > now || due == wheel.elapsed());
        now = due;
        fired.extend(fire_all(&mut wheel, now));
        if !fired.is_empty() {
            break;
        }
    }
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].0, fired[0].2), (far, "far"));
    assert_eq!(wheel.len(), 1);
}

#[test]
fn due_on_insert_fires_at_the_next_advance() {
    let mut wheel = Wheel::starting_at(100);
    wheel.insert(50, 'a');
    wheel.insert(100, 'b');
    assert_eq!(wheel.next_due(), Some(100));
    let fired: Vec<char> = fire_all(&mut wheel, 100).into_iter().map(|f| f.2).collect();
    assert_eq!(fired.len(), 2);
}

#[test]
fn cancel_and_reschedule_by_key() {
    let mut wheel = Wheel::new();
    let a = wheel.insert(10, 'a');
    let b = wheel.insert(20, 'b');
    assert_eq!(wheel.cancel(a), Some('a'));
    assert_eq!(wheel.cancel(a), None);
    assert!(wheel.reschedule(b, 5));
    assert_eq!(wheel.next_due(), Some(5));
    // A reused slot gets a new generation: the old key matches nothing.
    let c = wheel.insert(7, 'c');
    assert_ne!(a, c);
    assert_eq!(wheel.deadline(a), None);
    let fired: Vec<char> = fire_all(&mut wheel, 7).into_iter().map(|f| f.2).collect();
    assert_eq!(fired, ['b', 'c']);
    assert!(!wheel.reschedule(b, 100));
}

#[test]
fn lazy_rearm_keeps_the_key() {
    let mut wheel = Wheel::new();
    let key = wheel.insert(10, 30u64);
    let mut seen = Vec::new();
    for now in [10, 29, 30] {
        wheel.advance(now, |k, moved_to| {
            assert_eq!(k, key);
            seen.push(now);
            (moved_to > now).then_some((moved_to, moved_to))
        });
    }
    assert_eq!(seen, [10, 30]);
    assert!(wheel.is_empty());
}

/// Random inserts, cancels, reschedules and advances against a sorted map.
#[test]
fn matches_a_sorted_map_model() {
    let mut rng = StdRng::seed_from_u64(7);
    let rounds = if cfg!(miri) { 200 } else { 20_000 };
    let mut wheel = Wheel::new();
    let mut model: BTreeMap<(Tick, u64), TimerKey> = BTreeMap::new();
    let mut keys: Vec<(TimerKey, Tick, u64)> = Vec::new();
    let mut now = 0u64;
    for id in 0..rounds {
        match rng.random_range(0..10) {
            0..=4 => {
                let span = [64u64, 4096, 300_000, 1 << 40][rng.random_range(0..4)];
                let deadline = now + rng.random_range(0..span);
                let key = wheel.insert(deadline, id);
                model.insert((deadline, id), key);
                keys.push((key, deadline, id));
            }
            5 if !keys.is_empty() => {
                let (key, deadline, id) = keys.swap_remove(rng.random_range(0..keys.len()));
                let expect = model.remove(&(deadline, id)).map(|_| id);
                assert_eq!(wheel.cancel(key), expect);
            }
            6 if !keys.is_empty() => {
                let i = rng.random_range(0..keys.len());
                let (key, deadline, id) = keys[i];
                let to = now + rng.random_range(0..5000);
                let pending = model.remove(&(deadline, id)).is_some();
                assert_eq!(wheel.reschedule(key, to), pending);
                if pending {
                    model.insert((to, id), key);
                    keys[i].1 = to;
                }
            }
            _ => {
                now += [1u64, 17, 700, 70_000][rng.random_range(0..4)];
                let mut fired: Vec<(Tick, u64)> = Vec::new();
                wheel.advance(now, |key, id| {
                    let (&(deadline, _), &k) = model.iter().find(|(k, _)| k.1 == id).unwrap();
                    assert_eq!(k, key);
                    fired.push((deadline, id));
                    None
                });
                let expected: Vec<(Tick, u64)> =
                    model.range(..(now + 1, 0)).map(|(k, _)| *k).collect();
                fired.sort_unstable();
                assert_eq!(fired, expected);
                for k in &expected {
                    model.remove(k);
                }
                if let (Some(next), Some((&(first, _), _))) =
                    (wheel.next_due(), model.first_key_value())
                {
                    assert!(next <= first && next > now);
                }
            }
        }
        assert_eq!(wheel.len(), model.len());
    }
}

#[test]
fn tick_rounding_never_fires_early() {
    let origin = Instant::now();
    let at = origin + Duration::from_nanos(1_050_001);
    assert_eq!(deadline_tick(origin, at), 11);
    assert_eq!(now_tick(origin, at), 10);
    assert_eq!(deadline_tick(origin, origin + Duration::from_millis(1)), 10);
    assert_eq!(deadline_tick(origin, origin), 0);
    assert_eq!(
        tick_instant(origin, 3),
        Some(origin + Duration::from_micros(300))
    );
    assert_eq!(tick_instant(origin, u64::MAX), None);
}

fn manual_timer() -> (ManualClock, Timer<u32>, mpsc::Receiver<(u32, Duration)>) {
    let clock = ManualClock::new();
    let (tx, rx) = mpsc::channel();
    let seen = clock.clone();
    let timer = Timer::start(Arc::new(clock.clone()), move |v| {
        tx.send((v, seen.elapsed())).unwrap();
    })
    .unwrap();
    (clock, timer, rx)
}

#[test]
fn timer_fires_at_the_deadline_tick_not_before() {
    let (clock, timer, fires) = manual_timer();
    let start = clock.now();
    for ms in [1u32, 5, 64, 100, 5000] {
        timer
            .insert(start + Duration::from_millis(ms.into()), ms)
            .unwrap();
    }
    for ms in 1..=5000u64 {
        clock.set(Duration::from_millis(ms - 1));
        timer.settle();
        assert!(fires.try_recv().is_err(), "fired early at {}", ms - 1);
        if [1, 5, 64, 100, 5000].contains(&ms) {
            clock.set(Duration::from_millis(ms));
            timer.settle();
            let (v, at) = fires.try_recv().unwrap();
            assert_eq!((u64::from(v), at), (ms, Duration::from_millis(ms)));
        }
    }
    assert_eq!(timer.fired(), 5);
    assert!(timer.shutdown().is_empty());
}

#[test]
fn timer_movable_deadline_rearms_in_place() {
    let (clock, timer, fires) = manual_timer();
    let start = clock.now();
    let (key, deadline) = timer
        .insert_movable(start + Duration::from_millis(10), 1)
        .unwrap();
    for step in 1..=5u64 {
        deadline.postpone(start + Duration::from_millis(10 + 5 * step));
    }
    deadline.postpone(start + Duration::from_millis(3)); // never earlier
    assert_eq!(deadline.get(), start + Duration::from_millis(35));
    clock.set(Duration::from_millis(34));
    timer.settle();
    assert!(fires.try_recv().is_err());
    assert_eq!(timer.len(), 1);
    assert!(timer.reschedule(key, start + Duration::from_millis(40)));
    clock.set(Duration::from_millis(39));
    timer.settle();
    assert!(fires.try_recv().is_err());
    clock.set(Duration::from_millis(40));
    timer.settle();
    assert_eq!(fires.try_recv().unwrap(), (1, Duration::from_millis(40)));
}

#[test]
fn timer_insert_while_parked_wakes_the_driver_early() {
    let (clock, timer, fires) = manual_timer();
    let start = clock.now();
    timer.insert(start + Duration::from_secs(60), 60).unwrap();
    timer.settle(); // parked until 60 s
    timer.insert(start, 0).unwrap(); // already due
    assert_eq!(fires.recv().unwrap(), (0, Duration::ZERO));
    assert_eq!(timer.shutdown(), [60]);
    assert_eq!(timer.insert(start, 1), Err(1));
    assert!(timer.shutdown().is_empty());
}

#[test]
fn timer_survives_a_panicking_callback() {
    let clock = ManualClock::new();
    let (tx, rx) = mpsc::channel();
    let timer = Timer::start(Arc::new(clock.clone()), move |v: u32| {
        assert!(v != 1, "boom {v}");
        tx.send(v).unwrap();
    })
    .unwrap();
    let start = clock.now();
    timer.insert(start + Duration::from_millis(1), 1).unwrap();
    timer.insert(start + Duration::from_millis(2), 2).unwrap();
    clock.advance(Duration::from_millis(2));
    assert_eq!(rx.recv().unwrap(), 2);
    timer.settle();
    assert_eq!((timer.fired(), timer.panics()), (2, 1));
    assert!(timer.last_panic().unwrap().contains("boom 1"));
}

#[test]
fn timer_with_the_monotonic_clock_fires() {
    let (tx, rx) = mpsc::channel();
    let timer = Timer::start(crate::clock::monotonic(), move |v: u32| tx.send(v).unwrap()).unwrap();
    let now = Instant::now();
    timer.insert(now + Duration::from_millis(2), 2).unwrap();
    timer.insert(now + Duration::from_millis(1), 1).unwrap();
    assert_eq!((rx.recv().unwrap(), rx.recv().unwrap()), (1, 2));
}
