//! Differential fuzzing of `sheaf::ring::Ring` against `VecDeque<u16>`.
//!
//! Input: the first byte picks the capacity (its low 5 bits + 1, so 1..=32)
//! and the slot layout (its top 3 bits mod 3: packed, padded, spread — with
//! 16-byte slots, spread remaps capacities above 4); the rest decodes (with `arbitrary`) into a list of [`Op`]s, replayed on both.
//! Single-threaded, so no slot is ever held by a stalled peer and every
//! answer is exact:
//! - `try_push` succeeds iff the model has room, else hands the item back;
//! - `force_push` evicts and returns the model's front when full (`Ok(Some)`),
//!   `Ok(None)` when not, and is never refused single-threaded;
//! - `push_batch` accepts the first `capacity - len` items and returns exactly
//!   the rest, in order;
//! - `pop_batch` appends (never overwrites) `min(max, len)` items, oldest first.
//!
//! Items are boxed so AddressSanitizer and the leak checker catch a slot read
//! twice, dropped twice or never dropped (the ring is dropped non-empty at
//! the end of most runs).
//!
//! Run: `cargo +nightly fuzz run ring -- -max_total_time=20`
#![no_main]

use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sheaf::ring::{Ring, SlotLayout};

#[derive(Arbitrary, Debug)]
enum Op {
    Push(u16),
    Pop,
    ForcePush(u16),
    PushBatch(Vec<u16>),
    PopBatch(u8),
    Len,
}

fn check_len(ring: &Ring<Box<u16>>, model: &VecDeque<u16>, capacity: usize) {
    assert_eq!(ring.len(), model.len());
    assert_eq!(ring.is_empty(), model.is_empty());
    assert_eq!(ring.is_full(), model.len() == capacity);
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let capacity = usize::from(first & 0x1f) + 1;
    let layout =
        [SlotLayout::Packed, SlotLayout::Padded, SlotLayout::Spread][usize::from(first >> 5) % 3];
    let Ok(ops) = Unstructured::new(rest).arbitrary::<Vec<Op>>() else {
        return;
    };
    let ring: Ring<Box<u16>> = Ring::with_layout(capacity, layout).expect("capacity in range");
    assert_eq!((ring.capacity(), ring.layout()), (capacity, layout));
    let mut model: VecDeque<u16> = VecDeque::with_capacity(capacity);

    for op in ops {
        match op {
            Op::Push(v) => match ring.try_push(Box::new(v)) {
                Ok(()) => {
                    assert!(model.len() < capacity, "pushed into a full ring");
                    model.push_back(v);
                }
                Err(back) => {
                    assert_eq!(*back, v, "a refused push hands its own item back");
                    assert_eq!(model.len(), capacity, "refused with room");
                }
            },
            Op::Pop => {
                assert_eq!(ring.try_pop().map(|b| *b), model.pop_front());
            }
            Op::ForcePush(v) => {
                let expected = if model.len() == capacity {
                    model.pop_front()
                } else {
                    None
                };
                model.push_back(v);
                // Single-threaded: never refused, evicts exactly the oldest.
                assert_eq!(
                    ring.force_push(Box::new(v))
                        .map(|evicted| evicted.map(|b| *b)),
                    Ok(expected)
                );
            }
            Op::PushBatch(items) => {
                let room = capacity - model.len();
                let fits = items.len().min(room);
                let refused = ring.push_batch(items.iter().map(|&v| Box::new(v)));
                let refused: Vec<u16> = refused.into_iter().map(|b| *b).collect();
                assert_eq!(
                    refused,
                    items[fits..],
                    "push_batch returns exactly what does not fit"
                );
                model.extend(&items[..fits]);
            }
            Op::PopBatch(max) => {
                let max = usize::from(max);
                let mut out = vec![Box::new(0xdead_u16)]; // pop_batch appends
                let n = ring.pop_batch(&mut out, max);
                let expected: Vec<u16> = model.drain(..max.min(model.len())).collect();
                assert_eq!(n, expected.len());
                assert_eq!(*out[0], 0xdead, "pop_batch overwrote what was in `out`");
                let got: Vec<u16> = out[1..].iter().map(|b| **b).collect();
                assert_eq!(got, expected);
            }
            Op::Len => {}
        }
        check_len(&ring, &model, capacity);
    }

    // Final sweep: what is left comes out in order. Every other run leaves
    // it in the ring, for the ring's Drop (checked by the sanitizers).
    if first & 0x80 == 0 {
        let mut out = Vec::new();
        assert_eq!(ring.pop_batch(&mut out, usize::MAX), model.len());
        let got: Vec<u16> = out.into_iter().map(|b| *b).collect();
        assert_eq!(got, Vec::from(model));
        assert!(ring.is_empty());
    }
});
