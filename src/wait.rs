//! The one wait list: threads (or async tasks) that wait for a state change
//! another thread announces, with a lock-free "anyone waiting?" fast path.
//!
//! # The handshake
//!
//! A waiter [registers](Waiters::register) (lock, push, `count += 1`, then a
//! SeqCst fence), re-checks its condition, and only then parks. A notifier
//! makes its state change, issues a SeqCst fence, and loads `count`: when
//! nobody waits, a notification costs that fence and one load. The two
//! fences are what make the handshake sound (store-buffering litmus test):
//! either the notifier's fence comes first in the fences' total order, and
//! then the waiter's re-check sees the state change, or the waiter's does,
//! and then the notifier sees `count > 0`. A SeqCst read-modify-write
//! followed by a weaker load is *not* enough on weakly ordered CPUs, and the
//! fences are in the program that ships, not only under loom, so the loom
//! models check exactly what runs.
//!
//! Deadlines are `Option<Instant>`, `None` meaning forever; build them with
//! [`crate::clock::deadline_after`], which turns an unrepresentable
//! `now + Duration::MAX` into `None` instead of panicking.

use std::task::Waker;
use std::time::Instant;

use crate::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, Mutex};

/// How a registered waiter is woken.
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub(crate) enum Wake {
    Thread(Thread),
    Task(Waker),
}

impl Wake {
    /// The current thread.
    pub(crate) fn current_thread() -> Self {
        Wake::Thread(thread::current())
    }
}

struct Entry {
    id: u64,
    wake: Wake,
    notified: Arc<AtomicBool>,
}

#[derive(Default)]
struct List {
    entries: Vec<Entry>,
    next_id: u64,
}

/// Registered waiters of one kind (receivers waiting for items, senders
/// waiting for room, callers waiting for permits ...).
#[derive(Default)]
pub(crate) struct Waiters {
    count: AtomicUsize,
    list: Mutex<List>,
}

/// A registration: remove it with [`Waiters::unregister`] once done waiting.
pub(crate) struct Ticket {
    id: u64,
    pub(crate) notified: Arc<AtomicBool>,
}

impl Waiters {
    /// Adds a waiter. Its caller must re-check its condition before sleeping.
    pub(crate) fn register(&self, wake: Wake) -> Ticket {
        let notified = Arc::new(AtomicBool::new(false));
        let mut list = self.list.lock();
        let id = list.next_id;
        list.next_id += 1;
        list.entries.push(Entry {
            id,
            wake,
            notified: Arc::clone(&notified),
        });
        self.count.fetch_add(1, Ordering::Relaxed);
        drop(list);
        // Orders `count += 1` before the caller's re-check (see the module docs).
        fence(Ordering::SeqCst);
        Ticket { id, notified }
    }

    /// Replaces the waker of a still-registered task (re-poll of a future).
    /// Returns `false` if the ticket was already notified and removed.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn update(&self, ticket: &Ticket, waker: &Waker) -> bool {
        let mut list = self.list.lock();
        match list.entries.iter_mut().find(|e| e.id == ticket.id) {
            Some(entry) => {
                if let Wake::Task(w) = &mut entry.wake {
                    if !w.will_wake(waker) {
                        *w = waker.clone();
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Removes a registration. If it had been notified and the caller did not
    /// use the notification (`used == false`), it is passed on, so a
    /// wake-up is never lost to a waiter that gave up.
    pub(crate) fn unregister(&self, ticket: Ticket, used: bool) {
        let mut list = self.list.lock();
        if let Some(pos) = list.entries.iter().position(|e| e.id == ticket.id) {
            list.entries.remove(pos);
            self.count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        drop(list);
        if ticket.notified.load(Ordering::Acquire) && !used {
            self.notify_one();
        }
    }

    /// Wakes the longest waiter, if any. Call after the state change it
    /// announces; costs a fence and one load when nobody waits.
    #[inline]
    pub(crate) fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.notify_slow(false);
    }

    /// Wakes every waiter (a close, or a change many may use).
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.notify_slow(true);
    }

    #[cold]
    fn notify_slow(&self, all: bool) {
        let woken: Vec<Wake> = {
            let mut list = self.list.lock();
            // FIFO: the longest waiter first.
            let n = if all {
                list.entries.len()
            } else {
                list.entries.len().min(1)
            };
            self.count.fetch_sub(n, Ordering::Relaxed);
            list.entries
                .drain(..n)
                .map(|entry| {
                    entry.notified.store(true, Ordering::Release);
                    entry.wake
                })
                .collect()
        };
        for wake in woken {
            match wake {
                Wake::Thread(t) => t.unpark(),
                Wake::Task(w) => w.wake(),
            }
        }
    }

    /// Number of registered waiters (for stats).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Blocks the calling thread until `ready()` returns `true` or
    /// `deadline` passes (`None`: never); returns `ready()`'s last answer.
    /// The state `ready` reads must be changed before a `notify_*` call.
    #[allow(dead_code)]
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        loop {
            if ready() {
                return true;
            }
            let ticket = self.register(Wake::current_thread());
            if ready() {
                self.unregister(ticket, false);
                return true;
            }
            let notified = park_until(&ticket, deadline);
            self.unregister(ticket, notified);
            if !notified && deadline_passed(deadline) {
                return ready();
            }
        }
    }
}

/// `true` once `deadline` has passed (never for `None`, nor under loom,
/// which has no clock).
#[inline]
pub(crate) fn deadline_passed(deadline: Option<Instant>) -> bool {
    !cfg!(sheaf_loom) && deadline.is_some_and(|d| Instant::now() >= d)
}

/// Parks the current thread until `ticket` is notified or `deadline` passes.
/// Returns `true` if notified.
pub(crate) fn park_until(ticket: &Ticket, deadline: Option<Instant>) -> bool {
    // Loom has no clock: a timed wait is modelled as an untimed one, and
    // reading the real clock would make replays diverge.
    let deadline = if cfg!(sheaf_loom) { None } else { deadline };
    loop {
        if ticket.notified.load(Ordering::Acquire) {
            return true;
        }
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return ticket.notified.load(Ordering::Acquire);
                }
                thread::park_timeout(deadline - now);
            }
        }
    }
}

#[cfg(all(test, not(sheaf_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    #[test]
    fn notify_one_wakes_in_registration_order() {
        let waiters = Waiters::default();
        let a = waiters.register(Wake::current_thread());
        let b = waiters.register(Wake::current_thread());
        assert_eq!(waiters.len(), 2);
        waiters.notify_one();
        assert!(a.notified.load(Ordering::Acquire));
        assert!(!b.notified.load(Ordering::Acquire));
        waiters.unregister(a, true);
        waiters.unregister(b, false);
        assert_eq!(waiters.len(), 0);
    }

    #[test]
    fn an_unused_notification_is_passed_on() {
        let waiters = Waiters::default();
        let a = waiters.register(Wake::current_thread());
        let b = waiters.register(Wake::current_thread());
        waiters.notify_one();
        // `a` gives up without using its wake-up: `b` gets it.
        waiters.unregister(a, false);
        assert!(b.notified.load(Ordering::Acquire));
        waiters.unregister(b, true);
    }

    #[test]
    fn wait_until_sees_a_change_made_before_the_notify() {
        let waiters = Arc::new(Waiters::default());
        let value = Arc::new(AtomicU64::new(0));
        let waiter = {
            let (waiters, value) = (Arc::clone(&waiters), Arc::clone(&value));
            std::thread::spawn(move || {
                waiters.wait_until(None, || value.load(Ordering::Acquire) == 3)
            })
        };
        for _ in 0..3 {
            value.fetch_add(1, Ordering::Release);
            waiters.notify_all();
        }
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn wait_until_times_out_and_forever_does_not_panic() {
        let waiters = Waiters::default();
        let deadline = crate::clock::deadline_after(Instant::now(), Duration::from_millis(1));
        assert!(!waiters.wait_until(deadline, || false));
        assert_eq!(waiters.len(), 0);
        // `Duration::MAX` is "forever": no deadline, and no overflow panic.
        assert_eq!(
            crate::clock::deadline_after(Instant::now(), Duration::MAX),
            None
        );
    }
}
