//! The async hook: one ticker thread counts the periods and hands each run
//! to a hook thread; hook threads are started as concurrent runs need them
//! (at most `max_concurrent`) and then reused, never one per tick.

use std::time::Instant;

use super::shared::{Shared, CLOSING, RUNNING};
use super::stats::ErrorOrigin;
use crate::clock::deadline_after;
use crate::sync::atomic::Ordering;
use crate::sync::Arc;
use crate::unwind::catch;

/// The body of the ticker thread; returns once the writer closes.
pub(super) fn run_ticker(shared: Arc<Shared>) {
    let Some((period, max, _)) = shared.async_hook else {
        return;
    };
    let hooks = &shared.hooks;
    let mut threads = 0;
    let mut next: Option<Instant> = None;
    loop {
        let mode = shared.mode();
        if mode >= CLOSING {
            break;
        }
        if mode != RUNNING {
            // No ticks while stopped; the period starts again at start.
            next = None;
            shared.sleep(None, || shared.mode() != mode);
            continue;
        }
        if next.is_none() {
            next = shared.started().and_then(|t| deadline_after(t, period));
        }
        let now = shared.clock.now();
        let Some(at) = next.filter(|at| now >= *at) else {
            shared.sleep(next, || shared.mode() != RUNNING);
            continue;
        };
        // The next tick one period on, skipping ticks missed entirely.
        next = deadline_after(at, period)
            .filter(|n| *n > now)
            .or(deadline_after(now, period));
        // Only this thread raises `in_flight`: check-then-add cannot overshoot.
        let in_flight = hooks.in_flight.load(Ordering::SeqCst);
        if max.is_some_and(|m| in_flight >= m) {
            hooks.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if in_flight >= threads {
            let name = format!("{}-hook", shared.settings.thread_name);
            if let Err(e) = Shared::spawn(&shared, name, |runner| run_hooks(runner)) {
                shared.record_error(ErrorOrigin::AsyncSpawn, e.to_string(), Some(e.kind()), 0);
                continue;
            }
            threads += 1;
        }
        if shared.begin_hook_run() {
            shared.hook_work.notify_one();
        }
    }
    shared.hook_work.notify_all();
}

/// The body of a hook thread: runs the hook once per queued run, until the
/// writer closes and no run is queued.
fn run_hooks(shared: &Shared) {
    let Some((_, _, hook)) = &shared.async_hook else {
        return;
    };
    let hooks = &shared.hooks;
    loop {
        let claim = |queued: usize| queued.checked_sub(1);
        if hooks
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, claim)
            .is_ok()
        {
            if let Err(message) = catch(hook) {
                hooks.panics.fetch_add(1, Ordering::Relaxed);
                shared.record_error(ErrorOrigin::AsyncHookPanic, message, None, 0);
            }
            hooks.in_flight.fetch_sub(1, Ordering::SeqCst);
            shared.answers.notify_all();
            continue;
        }
        if shared.mode() >= CLOSING {
            return;
        }
        shared.hook_work.wait_until(None, || {
            hooks.queued.load(Ordering::SeqCst) > 0 || shared.mode() >= CLOSING
        });
    }
}
