//! A wait list with a lock-free "anyone waiting?" fast path.
//!
//! `notify_one` costs one load when nobody waits. A waiter registers (lock,
//! push, count += 1), re-checks its condition, and only then sleeps; the
//! notifier's state change (a SeqCst CAS on head or tail) happens before its
//! load of the count, so one of the two always sees the other.

use std::task::Waker;

use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, Mutex};

/// How a registered waiter is woken.
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub(crate) enum Wake {
    Thread(Thread),
    Task(Waker),
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

/// Registered waiters of one kind (receivers waiting for items, or senders
/// waiting for room).
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
        self.count.fetch_add(1, Ordering::SeqCst);
        drop(list);
        crate::sync::loom_seqcst_fence();
        Ticket { id, notified }
    }

    /// Replaces the waker of a still-registered task (re-poll of a future).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    /// Returns `false` if the ticket was already notified and removed.
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
    /// use the notification (`consumed == false`), it is passed on, so a
    /// wake-up is never lost to a waiter that gave up.
    pub(crate) fn unregister(&self, ticket: Ticket, consumed: bool) {
        let mut list = self.list.lock();
        if let Some(pos) = list.entries.iter().position(|e| e.id == ticket.id) {
            list.entries.swap_remove(pos);
            self.count.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        drop(list);
        if ticket.notified.load(Ordering::Acquire) && !consumed {
            self.notify_one();
        }
    }

    /// Wakes one waiter, if any. One load when nobody waits.
    #[inline]
    pub(crate) fn notify_one(&self) {
        crate::sync::loom_seqcst_fence();
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.notify_slow(false);
    }

    /// Wakes every waiter (disconnection).
    pub(crate) fn notify_all(&self) {
        crate::sync::loom_seqcst_fence();
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.notify_slow(true);
    }

    #[cold]
    fn notify_slow(&self, all: bool) {
        let mut woken = Vec::new();
        {
            let mut list = self.list.lock();
            while !list.entries.is_empty() {
                // FIFO: wake the longest waiter first.
                let entry = list.entries.remove(0);
                self.count.fetch_sub(1, Ordering::SeqCst);
                entry.notified.store(true, Ordering::Release);
                woken.push(entry.wake);
                if !all {
                    break;
                }
            }
        }
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
}

/// Parks the current thread until `ticket` is notified or `deadline` passes.
/// Returns `true` if notified.
pub(crate) fn park_until(ticket: &Ticket, deadline: Option<std::time::Instant>) -> bool {
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
                let now = std::time::Instant::now();
                if now >= deadline {
                    return ticket.notified.load(Ordering::Acquire);
                }
                thread::park_timeout(deadline - now);
            }
        }
    }
}
