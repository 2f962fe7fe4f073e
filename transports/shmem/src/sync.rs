//! Process-shared synchronisation primitives that live inside shared memory.
//!
//! * [`RawRobustMutex`]: a `pthread_mutex_t` initialised process-shared, robust and
//!   error-checking. When its owner dies (at any instruction, e.g. SIGKILL), the next locker gets
//!   the lock with [`RobustGuard::owner_died`] set; it must repair the protected data and then the
//!   guard marks the mutex consistent. No process ever waits for a dead owner.
//!
//!   Robust futexes have one gap that the kill tests of this crate hit: an unlock wakes exactly
//!   one waiter; if that waiter is killed before it runs and another thread has meanwhile taken
//!   the lock through the uncontended fast path (which drops the `FUTEX_WAITERS` bit), the
//!   kernel's death handling does not pass the wake-up on (it only does so while the lock word is
//!   still 0), and the remaining waiters sleep forever although the lock is free most of the time.
//!   [`RawRobustMutex::lock`] therefore never sleeps unboundedly: it waits with
//!   `pthread_mutex_timedlock` in slices of [`LOCK_RETRY_SLICE`], so a lost wake-up costs at most
//!   one slice.
//! * [`futex_wait`] / [`futex_wake_all`]: shared (non-private) futex operations on a 32-bit word
//!   in a shared mapping; the kernel keys shared futexes by (inode, offset), so processes that map
//!   the object at different addresses meet on the same word.
//!
//! Also the (hidden) crash-injection hook used by the tests to kill a process right before its
//! n-th store to shared metadata, which proves that every intermediate state is recoverable.
//! It exists only with the cargo feature `crash-injection` (which the crate's own tests turn on
//! through a dev-dependency on the crate itself); otherwise [`store_tick`] is empty and the
//! store paths pay nothing for it.

#[cfg(feature = "crash-injection")]
use std::cell::Cell;
use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// The atomics of lock-free code that runs over plain process memory as well as over a
/// mapping: std's, or loom's under `cfg(loom)`, so that the same code is model-checked (see
/// [`crate::transport`]'s buffer cache). Code over a mapping always uses std's atomics (loom's
/// cannot live in shared memory); code over plain memory uses these.
pub mod atomic {
    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    #[cfg(not(loom))]
    pub use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
}

/// Longest a [`RawRobustMutex::lock`] sleeps before it retries (see the module documentation).
pub const LOCK_RETRY_SLICE: Duration = Duration::from_millis(20);

/// A robust, process-shared, error-checking pthread mutex placed in shared memory.
///
/// The type is `#[repr(C)]` so that it can be embedded in `#[repr(C)]` shared-memory layouts.
/// It has no constructor: it is initialised in place with [`RawRobustMutex::init`] before the
/// object holding it is published to other processes.
#[repr(C, align(8))]
pub struct RawRobustMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a pthread mutex is designed to be used concurrently from several threads (and, being
// PTHREAD_PROCESS_SHARED, processes); all access goes through the pthread functions.
unsafe impl Sync for RawRobustMutex {}
// SAFETY: see above; the mutex does not refer to thread-local state.
unsafe impl Send for RawRobustMutex {}

/// Why a robust mutex could not be locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// A previous owner died and the next one did not mark the mutex consistent.
    NotRecoverable,
    /// This thread already holds the lock.
    Deadlock,
    /// Any other pthread error code.
    Other(i32),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::NotRecoverable => {
                f.write_str("the lock is not recoverable (ENOTRECOVERABLE)")
            }
            LockError::Deadlock => f.write_str("this thread already holds the lock (EDEADLK)"),
            LockError::Other(e) => write!(f, "{}", io::Error::from_raw_os_error(*e)),
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

impl RawRobustMutex {
    /// Initialises the mutex in place: process-shared, robust, error-checking.
    ///
    /// # Safety
    /// The memory must be writable and no other thread or process may use the mutex while it is
    /// being initialised (i.e. the memory is not yet published to anyone else).
    pub unsafe fn init(&self) -> io::Result<()> {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: attr is local storage for the attribute object; it is initialised by
        // pthread_mutexattr_init before any other use and destroyed at the end.
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let attr = attr.as_mut_ptr();
            let result = (|| {
                check(libc::pthread_mutexattr_setpshared(
                    attr,
                    libc::PTHREAD_PROCESS_SHARED,
                ))?;
                check(libc::pthread_mutexattr_setrobust(
                    attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))?;
                check(libc::pthread_mutexattr_settype(
                    attr,
                    libc::PTHREAD_MUTEX_ERRORCHECK,
                ))?;
                // The caller guarantees that nobody else uses the mutex memory.
                check(libc::pthread_mutex_init(self.inner.get(), attr))
            })();
            libc::pthread_mutexattr_destroy(attr);
            result
        }
    }

    /// Locks the mutex, waiting as long as a live process holds it (in slices of
    /// [`LOCK_RETRY_SLICE`], see the module documentation).
    ///
    /// If the previous owner died holding it, the lock is acquired anyway and the returned guard
    /// reports [`RobustGuard::owner_died`]: the caller must repair the protected state.
    ///
    /// # Safety
    /// The mutex must have been initialised with [`RawRobustMutex::init`] (e.g. it lives in an
    /// object whose header and magic were validated).
    pub unsafe fn lock(&self) -> Result<RobustGuard<'_>, LockError> {
        // Uncontended: no clock read, no system call.
        // SAFETY: as below; trylock never blocks.
        let mut rc = unsafe { libc::pthread_mutex_trylock(self.inner.get()) };
        loop {
            if rc == libc::EBUSY {
                let deadline = realtime_after(LOCK_RETRY_SLICE);
                // SAFETY: the caller guarantees the mutex is initialised; the pointer comes from
                // the UnsafeCell and stays valid for the lifetime of &self; deadline is a local.
                rc = unsafe { libc::pthread_mutex_timedlock(self.inner.get(), &deadline) };
            }
            return match rc {
                0 => Ok(RobustGuard {
                    mutex: self,
                    owner_died: false,
                }),
                libc::EOWNERDEAD => Ok(RobustGuard {
                    mutex: self,
                    owner_died: true,
                }),
                // Held by a live process (or a wake-up was lost): try again.
                libc::ETIMEDOUT | libc::EINTR | libc::EAGAIN | libc::EBUSY => {
                    rc = libc::EBUSY;
                    continue;
                }
                libc::ENOTRECOVERABLE => Err(LockError::NotRecoverable),
                libc::EDEADLK => Err(LockError::Deadlock),
                e => Err(LockError::Other(e)),
            };
        }
    }
}

/// `CLOCK_REALTIME` now + `d` (the clock of `pthread_mutex_timedlock`).
fn realtime_after(d: Duration) -> libc::timespec {
    let mut now = MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: clock_gettime writes a timespec to the valid pointer; CLOCK_REALTIME always exists.
    let now = unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, now.as_mut_ptr());
        now.assume_init()
    };
    let nanos = now.tv_nsec as u64 + u64::from(d.subsec_nanos());
    libc::timespec {
        tv_sec: now.tv_sec + d.as_secs() as libc::time_t + (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

/// Holds a [`RawRobustMutex`]; unlocks it when dropped.
pub struct RobustGuard<'a> {
    mutex: &'a RawRobustMutex,
    owner_died: bool,
}

impl RobustGuard<'_> {
    /// Whether the previous owner died while holding the lock (and the state it protects may be
    /// half-updated). Cleared by [`RobustGuard::mark_consistent`].
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Declares the protected state repaired. Called automatically on drop, so that an owner
    /// death never makes the mutex permanently unusable (ENOTRECOVERABLE); callers that cannot
    /// repair must record that in the protected state instead.
    pub fn mark_consistent(&mut self) {
        if self.owner_died {
            // SAFETY: this thread holds the lock (acquired with EOWNERDEAD), which is the
            // precondition of pthread_mutex_consistent.
            unsafe {
                libc::pthread_mutex_consistent(self.mutex.inner.get());
            }
            self.owner_died = false;
        }
    }
}

impl Drop for RobustGuard<'_> {
    fn drop(&mut self) {
        self.mark_consistent();
        // SAFETY: this guard exists only while this thread holds the lock.
        unsafe {
            libc::pthread_mutex_unlock(self.mutex.inner.get());
        }
    }
}

/// Waits until `word` no longer holds `expected`, a wake-up arrives, or `timeout` passes.
/// Returns `false` on timeout, `true` otherwise (woken, value already different, or a signal);
/// callers re-check their condition either way.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the 4-byte aligned word (valid for the lifetime of the reference)
    // and the timespec (a local); the remaining arguments are ignored for FUTEX_WAIT.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::ETIMEDOUT)
}

/// Wakes every process and thread waiting on `word` with [`futex_wait`].
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; the remaining arguments are ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(feature = "crash-injection")]
thread_local! {
    static CRASH_COUNTDOWN: Cell<i64> = const { Cell::new(-1) };
    static STORE_COUNT: Cell<u64> = const { Cell::new(0) };
}

/// Called before every store to shared allocator/registry metadata. Without the feature
/// `crash-injection`: nothing.
#[cfg(not(feature = "crash-injection"))]
#[inline(always)]
pub(crate) fn store_tick() {}

/// Called before every store to shared allocator/registry metadata. Counts stores and, when the
/// test hook armed it, kills this process with SIGKILL right before the chosen store.
#[cfg(feature = "crash-injection")]
#[inline]
pub(crate) fn store_tick() {
    STORE_COUNT.with(|c| c.set(c.get().wrapping_add(1)));
    CRASH_COUNTDOWN.with(|c| {
        let left = c.get();
        if left == 0 {
            // SAFETY: raising SIGKILL on ourselves has no memory-safety preconditions; the
            // process ends before the store that follows.
            unsafe {
                libc::raise(libc::SIGKILL);
                loop {
                    libc::pause();
                }
            }
        } else if left > 0 {
            c.set(left - 1);
        }
    });
}

/// Crash injection for robustness tests (feature `crash-injection`). Not part of the supported
/// API.
#[cfg(feature = "crash-injection")]
#[doc(hidden)]
pub mod testing {
    use super::{CRASH_COUNTDOWN, STORE_COUNT};

    /// Arms (or with `None` disarms) the crash hook of the calling thread: after `n` more
    /// stores to shared metadata the process kills itself with SIGKILL, before the next store.
    pub fn crash_after_stores(n: Option<u64>) {
        CRASH_COUNTDOWN.with(|c| c.set(n.map(|n| n as i64).unwrap_or(-1)));
    }

    /// Number of stores to shared metadata made by the calling thread so far.
    pub fn store_count() -> u64 {
        STORE_COUNT.with(|c| c.get())
    }
}
