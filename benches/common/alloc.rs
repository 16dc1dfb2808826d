//! A global allocator that counts live heap bytes, for the memory figures
//! of the benches and tests (each such target is its own binary, so no
//! other target's allocations count). Include it with
//! `#[path = ".../benches/common/alloc.rs"] mod alloc;` and install it with
//! `#[global_allocator] static ALLOCATOR: alloc::Counting = alloc::Counting;`.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Forwards to `System` and keeps [`live`] up to date.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// The counter is arithmetic on the side that never touches the memory.
// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // Every allocation goes through `alloc` or `realloc` above.
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `dealloc`; the caller guarantees `new_size` is valid.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap bytes allocated and not yet freed, by every thread.
pub fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Net heap bytes `f` leaves allocated (what it returns included).
pub fn measure<R>(f: impl FnOnce() -> R) -> (isize, R) {
    let before = live();
    let r = f();
    (live() - before, r)
}
