//! Counts the heap bytes a closure leaves allocated on its own thread, for the tests that
//! hold a cache entry's memory to a bound: only the calling thread is metered, so tests running
//! beside it do not count. A test binary installs it as its global allocator:
//! `#[global_allocator] static METER: common::heap_meter::Meter = common::heap_meter::Meter;`
//! (the services install mimalloc itself: `common::Allocator`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    // Const-initialized and without a destructor: safe to touch from inside the allocator.
    static METERED: Cell<Option<isize>> = const { Cell::new(None) };
}

/// mimalloc, metered on the threads that ask ([`net_bytes`]).
pub struct Meter;

fn add(bytes: isize) {
    let _ = METERED.try_with(|m| {
        if let Some(n) = m.get() {
            m.set(Some(n + bytes));
        }
    });
}

// SAFETY: every call is passed on to mimalloc (the services' allocator) unchanged; the metering only
// adds to a thread-local integer, which allocates nothing.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// `f`'s result and the bytes it left allocated (allocated minus freed, on this thread).
pub fn net_bytes<R>(f: impl FnOnce() -> R) -> (R, isize) {
    METERED.with(|m| m.set(Some(0)));
    let r = f();
    let n = METERED.with(|m| m.replace(None)).unwrap_or(0);
    (r, n)
}
