//! The one place sheaf takes its synchronization primitives from.
//!
//! Under `--cfg sheaf_loom` every atomic, cell, lock, thread and park call
//! comes from [loom] so the models in `loom-tests/` explore every interleaving;
//! otherwise they are std's (and parking_lot's for the lock). The cfg is
//! namespaced so a downstream `--cfg loom` never flips sheaf's internals.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(sheaf_loom))]
#[allow(unused_imports, dead_code)]
mod imp {
    pub(crate) use std::sync::Arc;

    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    }

    pub(crate) mod thread {
        pub(crate) use std::thread::{
            current, park, park_timeout, yield_now, Builder, JoinHandle, Thread,
        };
    }

    /// A hint that the caller is spinning; under loom it yields to the scheduler instead.
    #[inline]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop()
    }

    /// `UnsafeCell` with loom's closure-based access, so the same code checks
    /// for data races under loom.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// A non-poisoning mutex: a panic while it is held (a user merge, say)
    /// releases it on unwind and leaves it usable. parking_lot's, except
    /// under miri: parking_lot's parking queue casts integers to pointers,
    /// which miri's strict-provenance mode (used in CI on sheaf's own
    /// unsafe code) rejects, so miri runs get std's mutex, poison ignored.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(
        #[cfg(not(miri))] parking_lot::Mutex<T>,
        #[cfg(miri)] std::sync::Mutex<T>,
    );

    #[cfg(not(miri))]
    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
    #[cfg(miri)]
    pub(crate) type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            #[cfg(not(miri))]
            return Self(parking_lot::const_mutex(value));
            #[cfg(miri)]
            return Self(std::sync::Mutex::new(value));
        }

        #[inline]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            #[cfg(not(miri))]
            return self.0.lock();
            #[cfg(miri)]
            return self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }

        #[inline]
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            #[cfg(not(miri))]
            return self.0.try_lock();
            #[cfg(miri)]
            return match self.0.try_lock() {
                Ok(guard) => Some(guard),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
        }
    }
}

#[cfg(sheaf_loom)]
#[allow(unused_imports, dead_code)]
mod imp {
    pub(crate) use loom::sync::Arc;

    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    }

    pub(crate) mod thread {
        pub(crate) use loom::thread::{current, park, yield_now, Builder, JoinHandle, Thread};

        /// Loom has no clock: a timed park is a plain park, woken by an unpark.
        pub(crate) fn park_timeout(_: std::time::Duration) {
            loom::thread::park()
        }
    }

    #[inline]
    pub(crate) fn spin_loop() {
        loom::thread::yield_now()
    }

    pub(crate) use loom::cell::UnsafeCell;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        #[inline]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }

        #[inline]
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }
}

#[allow(unused_imports)]
pub(crate) use imp::*;

/// Reads an atomic through `&mut`, where no other thread can race (in `Drop`).
pub(crate) trait AtomicUsizeExt {
    fn load_mut(&mut self) -> usize;
}

impl AtomicUsizeExt for atomic::AtomicUsize {
    #[inline]
    fn load_mut(&mut self) -> usize {
        #[cfg(not(sheaf_loom))]
        return *self.get_mut();
        #[cfg(sheaf_loom)]
        return self.with_mut(|v| *v);
    }
}

/// A small number fixed per thread (0, 1, 2, ... in order of first use),
/// for spreading threads over per-thread or per-core slots.
#[cfg(not(sheaf_loom))]
#[inline]
pub(crate) fn thread_slot() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    SLOT.try_with(|s| *s).unwrap_or(0)
}

/// Under loom: the thread's index within the execution. (Hashing loom's
/// `ThreadId` would mix in the execution id and make replays diverge; its
/// Debug form, `ThreadId(n)`, is the index.)
#[cfg(sheaf_loom)]
pub(crate) fn thread_slot() -> usize {
    let id = format!("{:?}", thread::current().id());
    id.bytes()
        .filter(u8::is_ascii_digit)
        .fold(0, |n, d| n * 10 + usize::from(d - b'0'))
}

/// Number of CPUs the process may use; loom models pretend there are two so
/// structures sized from it stay small.
pub(crate) fn available_cpus() -> usize {
    if cfg!(sheaf_loom) {
        2
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}
