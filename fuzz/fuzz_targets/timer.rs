//! Differential fuzzing of `sheaf::timer::Wheel` against a `BTreeMap`
//! ordered by (deadline, id).
//!
//! Ops: insert (deadline a fuzzed distance ahead, at one of four scales so
//! every level and the clamp beyond six levels are reached), cancel,
//! reschedule (earlier or later), postpone (the lazy way: the entry keeps
//! its slot and is re-armed when it comes due) and advance. After every
//! advance exactly the model's entries with deadline <= now have fired, each
//! at or after its own deadline and never before; `next_due` is never later
//! than the model's earliest deadline and never in the past.
//!
//! Run: `cargo +nightly fuzz run timer -- -max_total_time=20`
#![no_main]

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sheaf::timer::{Tick, TimerKey, Wheel};

#[derive(Arbitrary, Debug)]
enum Op {
    Insert { scale: u8, ahead: u16 },
    Cancel(u8),
    Reschedule { pick: u8, ahead: u16 },
    Postpone { pick: u8, by: u16 },
    Advance { scale: u8, by: u16 },
}

fn scaled(scale: u8, n: u16) -> u64 {
    u64::from(n) << [0, 6, 14, 30][usize::from(scale % 4)]
}

/// What a wheel entry carries: its id and the deadline it was moved to.
struct Value {
    id: u64,
    moved_to: Tick,
}

fuzz_target!(|data: &[u8]| {
    let Ok(ops) = Unstructured::new(data).arbitrary::<Vec<Op>>() else {
        return;
    };
    let mut wheel: Wheel<Value> = Wheel::new();
    // (effective deadline, id) -> key
    let mut model: BTreeMap<(Tick, u64), TimerKey> = BTreeMap::new();
    // id -> (key, effective deadline) for live entries
    let mut live: Vec<(u64, TimerKey, Tick)> = Vec::new();
    let mut now: Tick = 0;
    let mut next_id = 0u64;

    for op in ops {
        match op {
            Op::Insert { scale, ahead } => {
                let deadline = now + scaled(scale, ahead);
                let id = next_id;
                next_id += 1;
                let key = wheel.insert(
                    deadline,
                    Value {
                        id,
                        moved_to: deadline,
                    },
                );
                model.insert((deadline, id), key);
                live.push((id, key, deadline));
            }
            Op::Cancel(pick) if !live.is_empty() => {
                let (id, key, deadline) = live.swap_remove(usize::from(pick) % live.len());
                assert!(model.remove(&(deadline, id)).is_some());
                assert_eq!(wheel.cancel(key).map(|v| v.id), Some(id));
                assert!(wheel.cancel(key).is_none());
            }
            Op::Reschedule { pick, ahead } if !live.is_empty() => {
                let i = usize::from(pick) % live.len();
                let (id, key, deadline) = live[i];
                let to = now + u64::from(ahead);
                model.remove(&(deadline, id));
                assert!(wheel.reschedule(key, to));
                wheel.get_mut(key).unwrap().moved_to = to;
                model.insert((to, id), key);
                live[i].2 = to;
            }
            Op::Postpone { pick, by } if !live.is_empty() => {
                let i = usize::from(pick) % live.len();
                let (id, key, deadline) = live[i];
                let to = deadline + u64::from(by);
                model.remove(&(deadline, id));
                wheel.get_mut(key).unwrap().moved_to = to;
                model.insert((to, id), key);
                live[i].2 = to;
            }
            Op::Advance { scale, by } => {
                now += scaled(scale, by);
                let mut fired: Vec<(Tick, u64)> = Vec::new();
                wheel.advance(now, |key, value| {
                    if value.moved_to > now {
                        return Some((value.moved_to, value));
                    }
                    let entry = live.iter().find(|e| e.0 == value.id).expect("live entry");
                    assert_eq!(entry.1, key);
                    fired.push((entry.2, value.id));
                    None
                });
                fired.sort_unstable();
                let expected: Vec<(Tick, u64)> =
                    model.range(..(now + 1, 0)).map(|(k, _)| *k).collect();
                assert_eq!(fired, expected);
                for k in &expected {
                    model.remove(k);
                    live.retain(|e| e.0 != k.1);
                }
                assert_eq!(wheel.elapsed(), now);
                if let Some((&(first, _), _)) = model.first_key_value() {
                    let next = wheel.next_due().expect("pending entries");
                    assert!(next > now && next <= first);
                } else {
                    assert_eq!(wheel.next_due(), None);
                }
            }
            _ => {}
        }
        assert_eq!(wheel.len(), model.len());
    }
    let drained: Vec<u64> = wheel.drain().into_iter().map(|(_, v)| v.id).collect();
    assert_eq!(drained.len(), model.len());
    assert!(wheel.is_empty());
});
