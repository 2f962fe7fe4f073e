//! Exclusive use of a libzmq socket from a `Sync` socket object, at the cost of one
//! compare-and-swap per transfer.
//!
//! libzmq sockets must not be used by two threads at once; FairMQ leaves that to its users.
//! Our sockets are `Sync` (the transport API takes `&self`), so every use first *claims* the
//! socket: one compare-and-swap to take it, a plain release store to give it back (a mutex
//! costs a second atomic read-modify-write on release, to find sleeping waiters). Claims are
//! uncontended in a device (one thread per socket); when another thread holds the claim, the
//! caller spins briefly, then yields, then sleeps in short, growing steps (at most 1 ms), which
//! bounds the extra latency of a contended socket without a futex word to wake.
//!
//! While claimed, the holder may also update the socket's counters with plain stores (see
//! `Counters`), which saves two more atomic read-modify-writes per message.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A value (a libzmq socket) that one thread at a time may use.
pub struct Claimable<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a `Claimed` guard, and at most one guard exists at a
// time (the compare-and-swap in `claim`); the guard's acquire/release pair orders the holders'
// accesses. `T: Send` because successive holders may be different threads.
unsafe impl<T: Send> Sync for Claimable<T> {}

impl<T> Claimable<T> {
    /// `value`, unclaimed.
    pub fn new(value: T) -> Self {
        Claimable {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the value for exclusive use, waiting while another thread has it.
    #[inline]
    pub fn claim(&self) -> Claimed<'_, T> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.wait_and_claim();
        }
        Claimed { owner: self }
    }

    #[cold]
    fn wait_and_claim(&self) {
        let mut round = 0u32;
        loop {
            if !self.busy.load(Ordering::Relaxed)
                && self
                    .busy
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            round += 1;
            match round {
                0..=64 => std::hint::spin_loop(),
                65..=80 => std::thread::yield_now(),
                _ => std::thread::sleep(Duration::from_micros(
                    (u64::from(round - 80) * 20).min(1000),
                )),
            }
        }
    }

    /// Direct access when nobody else can hold a claim (`&mut self`).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// Exclusive access to a [`Claimable`]'s value until dropped.
pub struct Claimed<'a, T> {
    owner: &'a Claimable<T>,
}

impl<T> Deref for Claimed<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `Claimable`'s Sync impl).
        unsafe { &*self.owner.value.get() }
    }
}

impl<T> DerefMut for Claimed<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the reference unique.
        unsafe { &mut *self.owner.value.get() }
    }
}

impl<T> Drop for Claimed<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.owner.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn claims_exclude_each_other() {
        // A non-atomic counter behind the claim: lost updates would show as a short count.
        let c = Arc::new(Claimable::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let mut g = c.claim();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*c.claim(), 80_000);
    }
}
