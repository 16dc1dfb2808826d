//! A queued job as the ring holds it: the job itself, in the slot, when it
//! fits; a box otherwise.
//!
//! Boxing every task cost a `malloc` on the submitting thread and a `free`
//! on the worker, a cross-thread free (glibc's slow path): together about a
//! quarter of the pool's time on tiny tasks (`perf record`,
//! `pool/tiny/sheaf/2`). A job of up to [`WORDS`] words with at most word
//! alignment — a closure capturing an `Arc` and a few values, plus the
//! job's own two words — is now written into the queue slot instead.
//!
//! No `std` type stores an unsized value inline, so this is a small
//! hand-written one: the bytes, and one generic function that turns a
//! pointer to them back into a `*mut dyn Job` with the right vtable (a
//! cast from `*mut J`, so no layout of fat pointers is assumed).

use std::any::Any;
use std::mem::{self, MaybeUninit};
use std::ptr;
use std::time::Instant;

use super::task::{Job, Ran};
use crate::clock::Clock;
use crate::sync::atomic::AtomicBool;

/// Inline room, in words: with the function pointer and the ring's stamp,
/// a slot fills one 64-byte line.
pub(super) const WORDS: usize = 6;

type Bytes = [usize; WORDS];

pub(super) struct Packed {
    /// A live `J`, where `as_job` is `as_job::<J>`.
    data: MaybeUninit<Bytes>,
    as_job: fn(*mut u8) -> *mut dyn Job,
}

/// The job at `data`, typed: a plain pointer cast (dereferencing it is the
/// caller's business).
fn as_job<J: Job + 'static>(data: *mut u8) -> *mut dyn Job {
    data.cast::<J>() as *mut dyn Job
}

impl Packed {
    /// Packs `job`: inline when it fits, boxed when it does not.
    pub(super) fn new<J: Job + 'static>(job: J) -> Self {
        if fits::<J>() {
            Self::inline(job)
        } else {
            Self::inline(Box::new(job))
        }
    }

    /// `true` if `new` stores a `J` without allocating.
    #[cfg(test)]
    pub(super) fn is_inline<J>() -> bool {
        fits::<J>()
    }

    fn inline<J: Job + 'static>(job: J) -> Self {
        assert!(fits::<J>(), "only jobs that fit are stored inline");
        let mut data = MaybeUninit::<Bytes>::uninit();
        // SAFETY: `data` is at least as large and as aligned as a `J` (the
        // assert above) and uninitialised, so the write overwrites nothing;
        // from here on `data` holds a live `J` and `as_job` is set for `J`.
        unsafe { data.as_mut_ptr().cast::<J>().write(job) };
        Self {
            data,
            as_job: as_job::<J>,
        }
    }

    /// The job, to run, or to look at through [`Job::as_any`].
    pub(super) fn job(&mut self) -> &mut (dyn Job + 'static) {
        // SAFETY: `data` holds a live job of the type `as_job` was made for
        // (`inline` sets both; only `Drop` ends the job's life), and
        // `&mut self` makes this the only access while the borrow lasts.
        unsafe { &mut *(self.as_job)(self.data.as_mut_ptr().cast()) }
    }
}

fn fits<J>() -> bool {
    mem::size_of::<J>() <= mem::size_of::<Bytes>()
        && mem::align_of::<J>() <= mem::align_of::<Bytes>()
}

impl Drop for Packed {
    fn drop(&mut self) {
        // SAFETY: as in `job`: `data` holds a live job of `as_job`'s type;
        // it is dropped here, once, and `self` is not used again.
        unsafe { ptr::drop_in_place((self.as_job)(self.data.as_mut_ptr().cast())) }
    }
}

// SAFETY: a `Packed` owns one `J: Job`, and `Job: Send`.
unsafe impl Send for Packed {}

/// A job too large (or too aligned) for the slot, boxed.
impl<J: Job + ?Sized> Job for Box<J> {
    fn run(
        &mut self,
        pool: &AtomicBool,
        deadline: Option<Instant>,
        clock: &dyn Clock,
        account: &mut dyn FnMut(&Ran, bool),
    ) -> Ran {
        (**self).run(pool, deadline, clock, account)
    }

    fn as_any(&mut self) -> &mut dyn Any {
        (**self).as_any()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::clock::MonotonicClock;

    /// A job that counts its runs and drops, `PAD` words of ballast, and an
    /// alignment of `A`'s.
    struct Counted<const PAD: usize, A: Send + 'static> {
        runs: Arc<AtomicUsize>,
        drops: Arc<AtomicUsize>,
        pad: [usize; PAD],
        _align: A,
    }

    impl<const PAD: usize, A: Send + 'static> Job for Counted<PAD, A> {
        fn run(
            &mut self,
            _: &AtomicBool,
            _: Option<Instant>,
            _: &dyn Clock,
            _: &mut dyn FnMut(&Ran, bool),
        ) -> Ran {
            self.runs.fetch_add(1, Ordering::SeqCst);
            assert!(self.pad.iter().all(|&w| w == PAD));
            Ran::Returned
        }

        fn as_any(&mut self) -> &mut dyn Any {
            self
        }
    }

    impl<const PAD: usize, A: Send + 'static> Drop for Counted<PAD, A> {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[repr(align(64))]
    struct Wide;

    fn check<const PAD: usize, A: Send + 'static>(align: fn() -> A, inline: bool) {
        let runs = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let make = || Counted::<PAD, A> {
            runs: Arc::clone(&runs),
            drops: Arc::clone(&drops),
            pad: [PAD; PAD],
            _align: align(),
        };
        assert_eq!(Packed::is_inline::<Counted<PAD, A>>(), inline);
        let never = AtomicBool::new(false);

        // Run on another thread, then dropped there: one run, one drop.
        let mut packed = Packed::new(make());
        std::thread::spawn(move || {
            let ran = packed
                .job()
                .run(&never, None, &MonotonicClock, &mut |_, _| {});
            assert!(matches!(ran, Ran::Returned));
            drop(packed);
        })
        .join()
        .unwrap();
        assert_eq!(
            (runs.load(Ordering::SeqCst), drops.load(Ordering::SeqCst)),
            (1, 1)
        );

        // Dropped unrun, moved around first; and found again by type.
        let mut moved = vec![Packed::new(make())];
        let mut packed = moved.pop().unwrap();
        let job = packed.job().as_any().downcast_mut::<Counted<PAD, A>>();
        assert_eq!(job.expect("its own type").pad, [PAD; PAD]);
        assert!(packed.job().as_any().downcast_mut::<u8>().is_none());
        drop(packed);
        assert_eq!(
            (runs.load(Ordering::SeqCst), drops.load(Ordering::SeqCst)),
            (1, 2)
        );
    }

    #[test]
    fn a_job_that_fits_is_stored_inline_runs_once_and_drops_once() {
        // Two `Arc`s and four words: six words, the room there is.
        check::<4, ()>(|| (), true);
    }

    #[test]
    fn a_larger_or_more_aligned_job_is_boxed_and_behaves_the_same() {
        check::<5, ()>(|| (), false);
        check::<0, Wide>(|| Wide, false);
    }
}
