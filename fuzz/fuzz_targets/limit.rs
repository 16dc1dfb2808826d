//! Differential fuzzing of `sheaf::limit::RateLimiter` (on a `ManualClock`)
//! against a straightforward model of GCRA in integer nanoseconds.
//!
//! The model keeps the time owed ("debt": how far the theoretical arrival
//! time runs ahead of now) rather than an absolute TAT: time passing pays
//! it down, a take of `n` cells adds `n · T` when the result stays within
//! `burst · T`, and a refused take says when it would pass (`debt + n·T −
//! burst·T` from now). Changing the rate or burst keeps the debt. Every
//! answer of the limiter — allowed, refused with that exact retry time,
//! exceeds-burst, cells available — must match.
//!
//! Run: `cargo +nightly fuzz run limit -- -max_total_time=20`
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sheaf::clock::{Clock, ManualClock};
use sheaf::limit::{CheckError, Quota, RateLimiter};

#[derive(Arbitrary, Debug)]
enum Op {
    Check,
    CheckN(u8),
    /// Advance by this many nanoseconds times 1, 1000 or 1000000 (by the low bits).
    Advance(u32),
    SetQuota {
        interval_ns: u32,
        burst: u8,
    },
    SetRate {
        cells: u16,
        period_ms: u16,
    },
    SetBurst(u8),
    Available,
}

struct Model {
    interval: u64,
    burst: u64,
    debt: u64,
}

impl Model {
    fn capacity(&self) -> u64 {
        self.interval * self.burst
    }

    /// `Ok` or `Err(Some(retry_ns))` or `Err(None)` for exceeds.
    fn take(&mut self, n: u64) -> Result<(), Option<u64>> {
        let increment = n * self.interval;
        if increment > self.capacity() {
            return Err(None);
        }
        if self.debt + increment <= self.capacity() {
            self.debt += increment;
            Ok(())
        } else {
            Err(Some(self.debt + increment - self.capacity()))
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let clock = ManualClock::new();
    let start = Quota::with_interval(Duration::from_nanos(1_000))
        .unwrap()
        .with_burst(4)
        .unwrap();
    let limiter = RateLimiter::with_clock(start, clock.clone());
    let mut model = Model {
        interval: 1_000,
        burst: 4,
        debt: 0,
    };
    for op in ops {
        match op {
            Op::Check | Op::CheckN(_) => {
                let n = match op {
                    Op::CheckN(n) => u64::from(n),
                    _ => 1,
                };
                let got = if matches!(op, Op::Check) {
                    limiter.check().map_err(CheckError::Wait)
                } else {
                    limiter.check_n(n)
                };
                let got = match got {
                    Ok(()) => Ok(()),
                    Err(CheckError::Wait(w)) => {
                        Err(Some(w.wait_time_from(clock.now()).as_nanos() as u64))
                    }
                    Err(CheckError::ExceedsBurst { requested, burst }) => {
                        assert_eq!((requested, burst), (n, model.burst));
                        Err(None)
                    }
                    Err(e) => panic!("unexpected {e}"),
                };
                assert_eq!(got, model.take(n), "n = {n}");
            }
            Op::Advance(raw) => {
                let ns = u64::from(raw >> 2) * [1, 1, 1_000, 1_000_000][(raw & 3) as usize];
                clock.advance(Duration::from_nanos(ns));
                model.debt = model.debt.saturating_sub(ns);
            }
            Op::SetQuota { interval_ns, burst } => {
                let quota = Quota::with_interval(Duration::from_nanos(u64::from(interval_ns)))
                    .and_then(|q| q.with_burst(u64::from(burst)));
                match quota {
                    Ok(q) => {
                        limiter.set_quota(q);
                        model.interval = u64::from(interval_ns);
                        model.burst = u64::from(burst);
                    }
                    Err(_) => assert!(interval_ns == 0 || burst == 0),
                }
            }
            Op::SetRate { cells, period_ms } => {
                let period = Duration::from_millis(u64::from(period_ms));
                let interval = (u64::from(period_ms) * 1_000_000).checked_div(u64::from(cells));
                match limiter.set_rate(u64::from(cells), period) {
                    Ok(()) => model.interval = interval.unwrap(),
                    Err(_) => assert!(matches!(interval, None | Some(0))),
                }
            }
            Op::SetBurst(burst) => match limiter.set_burst(u64::from(burst)) {
                Ok(()) => model.burst = u64::from(burst),
                Err(_) => assert_eq!(burst, 0),
            },
            Op::Available => {
                let expected = model.capacity().saturating_sub(model.debt) / model.interval;
                assert_eq!(limiter.available(), expected);
            }
        }
        assert_eq!(limiter.quota().burst(), model.burst);
        assert_eq!(limiter.quota().interval().as_nanos() as u64, model.interval);
    }
});
