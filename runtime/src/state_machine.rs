//! Thread-safe transition scheduler on top of [`next_state`] (spec §1.4, §1.5, §1.8).
//!
//! [`StateMachine`] only *schedules* transitions: [`StateMachine::change_state`] records one
//! pending target state, and the device's worker loop consumes it with
//! [`StateMachine::take_pending_blocking`], then runs its prepare hook, calls
//! [`StateMachine::emit_state_change`] for the subscribers, and runs the state's handler.
//! There is no I/O here, only a mutex, a condition variable and callbacks.
//!
//! Semantics kept from FairMQ:
//! * one pending transition at a time; a second request is refused and logged, except
//!   `ERROR FOUND`, which is always accepted (and replaces the pending target);
//! * invalid requests are logged as `No transition from state <STATE> on transition <EVENT>`
//!   with FSM-internal names; once in `ERROR`, all requests are silently ignored;
//! * new-transition subscribers run synchronously in the requesting thread, before the worker
//!   can see the pending state (so an `Interrupt` done there can never overtake the `Resume`
//!   done on entering the new state);
//! * state-change subscriptions are keyed by a string whose leading integer, if any, is the
//!   ordering group (lower groups first, then subscription order).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::state::{next_state, State, StateError, Transition};

/// Callback for state changes: receives the newly entered state.
pub type StateCallback = Arc<dyn Fn(State) + Send + Sync + 'static>;
/// Callback for newly scheduled transitions: receives the requested transition.
pub type TransitionCallback = Arc<dyn Fn(Transition) + Send + Sync + 'static>;

/// A consumed state change, as returned to the worker loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// The state that was left.
    pub previous: State,
    /// The state that is now current.
    pub current: State,
    /// The transition that caused the change.
    pub transition: Transition,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    target: State,
    transition: Transition,
}

#[derive(Debug)]
struct Core {
    current: State,
    pending: Option<Pending>,
    /// Number of `change_state` calls that recorded a pending state and are still running
    /// the new-transition subscribers. The worker only consumes when this is zero.
    publishing: usize,
}

impl Core {
    fn published(&self) -> Option<Pending> {
        if self.publishing == 0 {
            self.pending
        } else {
            None
        }
    }
}

struct StateSubscriber {
    group: i32,
    seq: u64,
    key: String,
    callback: StateCallback,
}

#[derive(Default)]
struct Subscribers {
    seq: u64,
    /// Kept sorted by (group, seq).
    state_change: Vec<StateSubscriber>,
    new_transition: Vec<(String, TransitionCallback)>,
}

struct Inner {
    core: Mutex<Core>,
    /// `core.pending.is_some()`, readable without the lock: device loops ask it once per
    /// message (FairMQ's `NewStatePending` is an atomic read too). Written under the lock.
    pending_flag: AtomicBool,
    /// Set once by a shutdown request (SIGINT/SIGTERM): every wait of the device ends.
    shutdown: AtomicBool,
    changed: Condvar,
    subscribers: Mutex<Subscribers>,
}

/// The device state machine: current state, at most one pending transition, subscribers.
///
/// Cheap to clone: clones share the same machine.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let core = self.lock_core();
        f.debug_struct("StateMachine")
            .field("current", &core.current)
            .field("pending", &core.pending.map(|p| p.target))
            .finish()
    }
}

impl Default for StateMachine {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the publishing counter and wakes waiters, also if a subscriber panics.
struct PublishGuard<'a> {
    inner: &'a Inner,
}

impl Drop for PublishGuard<'_> {
    fn drop(&mut self) {
        let mut core = self
            .inner
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        core.publishing = core.publishing.saturating_sub(1);
        drop(core);
        self.inner.changed.notify_all();
    }
}

/// The ordering group of a subscription key: its leading (optionally signed) integer, else 0.
///
/// `"10-control"` → 10, `"-1first"` → -1, `"plugin"` → 0. An integer too large for `i32`
/// counts as no integer (group 0).
pub fn subscription_group(key: &str) -> i32 {
    let bytes = key.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let digits_start = end;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if end == digits_start {
        return 0;
    }
    key[..end].parse().unwrap_or(0)
}

impl StateMachine {
    /// A new machine in state `IDLE` with nothing pending and no subscribers.
    pub fn new() -> Self {
        StateMachine {
            inner: Arc::new(Inner {
                core: Mutex::new(Core {
                    current: State::Idle,
                    pending: None,
                    publishing: 0,
                }),
                pending_flag: AtomicBool::new(false),
                shutdown: AtomicBool::new(false),
                changed: Condvar::new(),
                subscribers: Mutex::new(Subscribers::default()),
            }),
        }
    }

    fn lock_core(&self) -> MutexGuard<'_, Core> {
        self.inner
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_subscribers(&self) -> MutexGuard<'_, Subscribers> {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current state.
    pub fn current_state(&self) -> State {
        self.lock_core().current
    }

    /// The target state of the pending transition, if one is scheduled.
    pub fn pending_state(&self) -> Option<State> {
        self.lock_core().pending.map(|p| p.target)
    }

    /// Schedules `transition`. Returns `true` if it was accepted.
    ///
    /// Refused (returns `false`) when another transition is pending and `transition` is not
    /// `ErrorFound` (logged as `Transition <NAME> incoming, but another state transition is
    /// already ongoing.`), when it is invalid for the current state (logged as `No transition
    /// from state <STATE> on transition <EVENT>`), and, silently, when the machine is in
    /// `ERROR`. On acceptance, the new-transition subscribers are called in this thread
    /// before the pending state becomes visible to the worker loop.
    pub fn change_state(&self, transition: Transition) -> bool {
        let mut core = self.lock_core();
        if core.current == State::Error {
            return false;
        }
        if core.pending.is_some() && transition != Transition::ErrorFound {
            tracing::info!(
                "Transition {} incoming, but another state transition is already ongoing.",
                transition
            );
            return false;
        }
        let Some(target) = next_state(core.current, transition) else {
            tracing::warn!(
                "No transition from state {} on transition {}",
                core.current.internal_name(),
                transition.internal_name()
            );
            return false;
        };
        core.pending = Some(Pending { target, transition });
        self.inner.pending_flag.store(true, Ordering::Release);
        core.publishing += 1;
        drop(core);
        // Waiters of `wait_for` react to the recorded transition right away.
        self.inner.changed.notify_all();

        let _guard = PublishGuard { inner: &self.inner };
        let callbacks: Vec<TransitionCallback> = self
            .lock_subscribers()
            .new_transition
            .iter()
            .map(|(_, cb)| Arc::clone(cb))
            .collect();
        for callback in callbacks {
            callback(transition);
        }
        true
    }

    /// Like [`change_state`](Self::change_state), but a refusal is an error
    /// `Invalid transition: <NAME>` (FairMQ's `ChangeStateOrThrow`).
    pub fn change_state_or_err(&self, transition: Transition) -> Result<(), StateError> {
        if self.change_state(transition) {
            Ok(())
        } else {
            Err(StateError::InvalidTransition(transition))
        }
    }

    /// Schedules a transition given by its display name (`INIT DEVICE`).
    pub fn change_state_by_name(&self, name: &str) -> Result<bool, StateError> {
        Ok(self.change_state(name.parse()?))
    }

    /// `true` between scheduling a transition and the worker consuming it: the cooperative
    /// "please stop what you are doing" signal that user loops poll.
    pub fn new_state_pending(&self) -> bool {
        self.inner.pending_flag.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for a pending transition to be published and returns its
    /// target state *without consuming it*; `None` on timeout. Used by INITIALIZING DEVICE,
    /// which first blocks until a transition (normally COMPLETE INIT) is pending.
    pub fn wait_for_pending(&self, timeout: Duration) -> Option<State> {
        let core = self.lock_core();
        let (core, _) = self
            .inner
            .changed
            .wait_timeout_while(core, timeout, |c| c.published().is_none())
            .unwrap_or_else(PoisonError::into_inner);
        core.published().map(|p| p.target)
    }

    /// Blocks until a pending transition is published, makes its target the current state,
    /// clears the pending flag, logs `<OLD> ---> <NEW>` and returns the change.
    /// The worker loop calls this, then the prepare hook, then
    /// [`emit_state_change`](Self::emit_state_change), then the state's handler.
    pub fn take_pending_blocking(&self) -> StateChange {
        let core = self.lock_core();
        let core = self
            .inner
            .changed
            .wait_while(core, |c| c.published().is_none())
            .unwrap_or_else(PoisonError::into_inner);
        self.consume(core)
            .unwrap_or_else(|| unreachable!("wait_while returned without a published transition"))
    }

    /// Like [`take_pending_blocking`](Self::take_pending_blocking), but gives up after
    /// `timeout` and returns `None`.
    pub fn take_pending_timeout(&self, timeout: Duration) -> Option<StateChange> {
        let core = self.lock_core();
        let (core, _) = self
            .inner
            .changed
            .wait_timeout_while(core, timeout, |c| c.published().is_none())
            .unwrap_or_else(PoisonError::into_inner);
        self.consume(core)
    }

    fn consume(&self, mut core: MutexGuard<'_, Core>) -> Option<StateChange> {
        let pending = core.published()?;
        let previous = core.current;
        core.current = pending.target;
        core.pending = None;
        self.inner.pending_flag.store(false, Ordering::Release);
        drop(core);
        self.inner.changed.notify_all();
        tracing::info!("{} ---> {}", previous, pending.target);
        Some(StateChange {
            previous,
            current: pending.target,
            transition: pending.transition,
        })
    }

    /// Records a shutdown request (the first SIGINT/SIGTERM): from now on [`Self::wait_for`]
    /// returns at once and [`Self::shutdown_requested`] is `true`, so that waits that no
    /// transition can end (connecting to a peer that never comes, a hook's own loop) end too.
    pub fn request_shutdown(&self) {
        let _core = self.lock_core();
        self.inner.shutdown.store(true, Ordering::Release);
        self.inner.changed.notify_all();
    }

    /// Whether a shutdown was requested.
    pub fn shutdown_requested(&self) -> bool {
        self.inner.shutdown.load(Ordering::Acquire)
    }

    /// Sleeps up to `duration` or until a transition is scheduled (spec §1.8 `WaitFor`).
    /// Returns `true` if the full duration elapsed, `false` if a transition is pending or a
    /// shutdown was requested (immediately `false` if one already is).
    pub fn wait_for(&self, duration: Duration) -> bool {
        let deadline = Instant::now().checked_add(duration);
        let mut core = self.lock_core();
        loop {
            if core.pending.is_some() || self.shutdown_requested() {
                return false;
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return true;
                    }
                    deadline - now
                }
                // A duration beyond the clock's range: wait in large slices, "forever".
                None => Duration::from_secs(3600),
            };
            core = self
                .inner
                .changed
                .wait_timeout(core, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Calls every state-change subscriber with `state`, ordered by group (the key's leading
    /// integer, lower first) and then by subscription order. Called by the worker loop after
    /// consuming a change, and once for the initial `IDLE`.
    pub fn emit_state_change(&self, state: State) {
        let callbacks: Vec<StateCallback> = self
            .lock_subscribers()
            .state_change
            .iter()
            .map(|s| Arc::clone(&s.callback))
            .collect();
        for callback in callbacks {
            callback(state);
        }
    }

    /// Subscribes `callback` to state changes under `key`. The key's leading integer, if any,
    /// is the ordering group (see [`subscription_group`]). Subscribing again with the same key
    /// replaces the earlier subscription (it then counts as subscribed last).
    pub fn subscribe_to_state_change<F>(&self, key: impl Into<String>, callback: F)
    where
        F: Fn(State) + Send + Sync + 'static,
    {
        let key = key.into();
        let group = subscription_group(&key);
        let mut subs = self.lock_subscribers();
        subs.state_change.retain(|s| s.key != key);
        subs.seq += 1;
        let seq = subs.seq;
        let position = subs
            .state_change
            .partition_point(|s| (s.group, s.seq) < (group, seq));
        subs.state_change.insert(
            position,
            StateSubscriber {
                group,
                seq,
                key,
                callback: Arc::new(callback),
            },
        );
    }

    /// Removes the state-change subscription `key`. Returns whether it existed.
    pub fn unsubscribe_from_state_change(&self, key: &str) -> bool {
        let mut subs = self.lock_subscribers();
        let before = subs.state_change.len();
        subs.state_change.retain(|s| s.key != key);
        subs.state_change.len() != before
    }

    /// Subscribes `callback` to newly scheduled transitions under `key`; it is called in the
    /// requesting thread when a transition is accepted. Subscribing again with the same key
    /// replaces the earlier subscription.
    pub fn subscribe_to_new_transition<F>(&self, key: impl Into<String>, callback: F)
    where
        F: Fn(Transition) + Send + Sync + 'static,
    {
        let key = key.into();
        let mut subs = self.lock_subscribers();
        subs.new_transition.retain(|(k, _)| *k != key);
        subs.new_transition.push((key, Arc::new(callback)));
    }

    /// Removes the new-transition subscription `key`. Returns whether it existed.
    pub fn unsubscribe_from_new_transition(&self, key: &str) -> bool {
        let mut subs = self.lock_subscribers();
        let before = subs.new_transition.len();
        subs.new_transition.retain(|(k, _)| k != key);
        subs.new_transition.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::sync::Barrier;
    use std::thread;

    const GENEROUS: Duration = Duration::from_secs(30);

    #[test]
    fn starts_idle_and_nothing_pending() {
        let sm = StateMachine::new();
        assert_eq!(sm.current_state(), State::Idle);
        assert!(!sm.new_state_pending());
        assert_eq!(sm.pending_state(), None);
        assert_eq!(sm.take_pending_timeout(Duration::from_millis(1)), None);
    }

    #[test]
    fn schedule_and_consume() {
        let sm = StateMachine::new();
        assert!(sm.change_state(Transition::InitDevice));
        assert!(sm.new_state_pending());
        assert_eq!(sm.pending_state(), Some(State::InitializingDevice));
        // Scheduling does not change the current state.
        assert_eq!(sm.current_state(), State::Idle);
        let change = sm.take_pending_blocking();
        assert_eq!(
            change,
            StateChange {
                previous: State::Idle,
                current: State::InitializingDevice,
                transition: Transition::InitDevice
            }
        );
        assert_eq!(sm.current_state(), State::InitializingDevice);
        assert!(!sm.new_state_pending());
    }

    #[test]
    fn second_transition_refused_while_pending() {
        let sm = StateMachine::new();
        assert!(sm.change_state(Transition::InitDevice));
        // END would be valid from IDLE, but a transition is pending.
        assert!(!sm.change_state(Transition::End));
        assert_eq!(sm.pending_state(), Some(State::InitializingDevice));
        sm.take_pending_blocking();
        assert!(sm.change_state(Transition::CompleteInit));
    }

    #[test]
    fn error_found_always_accepted_and_overrides_pending() {
        let sm = StateMachine::new();
        assert!(sm.change_state(Transition::InitDevice));
        assert!(sm.change_state(Transition::ErrorFound));
        assert_eq!(sm.pending_state(), Some(State::Error));
        let change = sm.take_pending_blocking();
        assert_eq!(change.previous, State::Idle);
        assert_eq!(change.current, State::Error);
        assert_eq!(change.transition, Transition::ErrorFound);
    }

    #[test]
    fn invalid_transition_refused() {
        let sm = StateMachine::new();
        assert!(!sm.change_state(Transition::Connect));
        assert!(!sm.new_state_pending());
        assert_eq!(sm.current_state(), State::Idle);
        assert_eq!(
            sm.change_state_or_err(Transition::Run),
            Err(StateError::InvalidTransition(Transition::Run))
        );
        assert_eq!(sm.change_state_or_err(Transition::InitDevice), Ok(()));
    }

    #[test]
    fn change_state_by_name() {
        let sm = StateMachine::new();
        assert_eq!(sm.change_state_by_name("INIT DEVICE"), Ok(true));
        assert_eq!(sm.pending_state(), Some(State::InitializingDevice));
        assert!(sm.change_state_by_name("INIT_DEVICE").is_err());
    }

    #[test]
    fn everything_ignored_in_error() {
        let sm = StateMachine::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        sm.subscribe_to_new_transition("count", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert!(sm.change_state(Transition::ErrorFound));
        sm.take_pending_blocking();
        assert_eq!(sm.current_state(), State::Error);
        for t in Transition::ALL {
            assert!(!sm.change_state(t), "{t} accepted in ERROR");
        }
        assert!(!sm.new_state_pending());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn nothing_leaves_exiting() {
        let sm = StateMachine::new();
        assert!(sm.change_state(Transition::End));
        assert_eq!(sm.take_pending_blocking().current, State::Exiting);
        for t in Transition::ALL {
            assert!(!sm.change_state(t), "{t} accepted in EXITING");
        }
    }

    #[test]
    fn full_lifecycle_walk() {
        let sm = StateMachine::new();
        let steps = [
            (Transition::InitDevice, State::InitializingDevice),
            (Transition::CompleteInit, State::Initialized),
            (Transition::Bind, State::Binding),
            (Transition::Auto, State::Bound),
            (Transition::Connect, State::Connecting),
            (Transition::Auto, State::DeviceReady),
            (Transition::InitTask, State::InitializingTask),
            (Transition::Auto, State::Ready),
            (Transition::Run, State::Running),
            (Transition::Stop, State::Ready),
            (Transition::ResetTask, State::ResettingTask),
            (Transition::Auto, State::DeviceReady),
            (Transition::ResetDevice, State::ResettingDevice),
            (Transition::Auto, State::Idle),
            (Transition::End, State::Exiting),
        ];
        for (t, expected) in steps {
            assert!(sm.change_state(t), "{t}");
            assert_eq!(sm.take_pending_blocking().current, expected);
        }
    }

    #[test]
    fn new_transition_subscribers_run_synchronously_in_caller_thread() {
        let sm = StateMachine::new();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        sm.subscribe_to_new_transition("a", move |t| {
            tx.lock()
                .unwrap()
                .send((t, thread::current().id()))
                .unwrap();
        });
        let caller = thread::spawn({
            let sm = sm.clone();
            move || {
                assert!(sm.change_state(Transition::InitDevice));
                thread::current().id()
            }
        })
        .join()
        .unwrap();
        // Already delivered when change_state returned (synchronous).
        let (t, id) = rx.try_recv().expect("callback must have run");
        assert_eq!(t, Transition::InitDevice);
        assert_eq!(id, caller);
        // Refused transitions do not notify.
        assert!(!sm.change_state(Transition::End));
        assert!(rx.try_recv().is_err());
        assert!(sm.unsubscribe_from_new_transition("a"));
        assert!(!sm.unsubscribe_from_new_transition("a"));
        sm.take_pending_blocking();
        assert!(sm.change_state(Transition::CompleteInit));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn subscriber_may_query_machine_without_deadlock() {
        let sm = StateMachine::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        {
            let sm2 = sm.clone();
            let seen = Arc::clone(&seen);
            sm.subscribe_to_new_transition("q", move |_| {
                seen.lock()
                    .unwrap()
                    .push((sm2.new_state_pending(), sm2.current_state()));
                // A re-entrant request is refused, not deadlocked.
                assert!(!sm2.change_state(Transition::End));
            });
        }
        {
            let sm2 = sm.clone();
            let seen = Arc::clone(&seen);
            sm.subscribe_to_state_change("s", move |s| {
                seen.lock().unwrap().push((sm2.new_state_pending(), s));
            });
        }
        assert!(sm.change_state(Transition::InitDevice));
        let change = sm.take_pending_blocking();
        sm.emit_state_change(change.current);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(true, State::Idle), (false, State::InitializingDevice)]
        );
    }

    #[test]
    fn worker_does_not_consume_before_new_transition_subscribers_finish() {
        let sm = StateMachine::new();
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        {
            let entered_tx = Mutex::new(entered_tx);
            let release_rx = Mutex::new(release_rx);
            let finished = Arc::clone(&finished);
            sm.subscribe_to_new_transition("slow", move |_| {
                entered_tx.lock().unwrap().send(()).unwrap();
                release_rx.lock().unwrap().recv_timeout(GENEROUS).unwrap();
                finished.store(true, Ordering::SeqCst);
            });
        }
        let scheduler = thread::spawn({
            let sm = sm.clone();
            move || sm.change_state(Transition::InitDevice)
        });
        entered_rx.recv_timeout(GENEROUS).unwrap();
        // Recorded (so others are refused and user loops see it) but not yet published.
        assert!(sm.new_state_pending());
        assert!(!sm.change_state(Transition::End));
        let (result_tx, result_rx) = mpsc::channel();
        let worker = thread::spawn({
            let sm = sm.clone();
            let finished = Arc::clone(&finished);
            move || {
                let change = sm.take_pending_blocking();
                result_tx
                    .send((change, finished.load(Ordering::SeqCst)))
                    .unwrap();
            }
        });
        // The worker must still be waiting while the subscriber runs.
        assert!(result_rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(sm.wait_for_pending(Duration::from_millis(1)), None);
        release_tx.send(()).unwrap();
        let (change, finished_before_consume) = result_rx.recv_timeout(GENEROUS).unwrap();
        assert!(finished_before_consume);
        assert_eq!(change.current, State::InitializingDevice);
        assert!(scheduler.join().unwrap());
        worker.join().unwrap();
    }

    #[test]
    fn panicking_subscriber_does_not_wedge_the_machine() {
        let sm = StateMachine::new();
        sm.subscribe_to_new_transition("boom", |_| panic!("subscriber failure"));
        let sm2 = sm.clone();
        let result = thread::spawn(move || sm2.change_state(Transition::InitDevice)).join();
        assert!(result.is_err());
        // The transition was recorded; the worker can still consume it.
        let change = sm.take_pending_timeout(GENEROUS).expect("published");
        assert_eq!(change.current, State::InitializingDevice);
    }

    #[test]
    fn worker_loop_with_threads() {
        let sm = StateMachine::new();
        let (tx, rx) = mpsc::channel();
        let worker = thread::spawn({
            let sm = sm.clone();
            move || loop {
                let change = sm.take_pending_blocking();
                sm.emit_state_change(change.current);
                tx.send(change.current).unwrap();
                match change.current {
                    State::Binding | State::Connecting => {
                        assert!(sm.change_state(Transition::Auto));
                    }
                    State::Exiting | State::Error => break,
                    _ => {}
                }
            }
        });
        let controller = [
            (Transition::InitDevice, vec![State::InitializingDevice]),
            (Transition::CompleteInit, vec![State::Initialized]),
            (Transition::Bind, vec![State::Binding, State::Bound]),
            (
                Transition::Connect,
                vec![State::Connecting, State::DeviceReady],
            ),
            (Transition::ResetDevice, vec![State::ResettingDevice]),
        ];
        for (t, expected) in controller {
            assert!(sm.change_state(t), "{t}");
            for e in expected {
                assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), e);
            }
        }
        assert!(sm.change_state(Transition::Auto));
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), State::Idle);
        assert!(sm.change_state(Transition::End));
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), State::Exiting);
        worker.join().unwrap();
    }

    #[test]
    fn wait_for_pending_does_not_consume() {
        let sm = StateMachine::new();
        assert_eq!(sm.wait_for_pending(Duration::from_millis(1)), None);
        let barrier = Arc::new(Barrier::new(2));
        let waiter = thread::spawn({
            let sm = sm.clone();
            let barrier = Arc::clone(&barrier);
            move || {
                barrier.wait();
                sm.wait_for_pending(GENEROUS)
            }
        });
        barrier.wait();
        assert!(sm.change_state(Transition::InitDevice));
        assert_eq!(waiter.join().unwrap(), Some(State::InitializingDevice));
        assert!(sm.new_state_pending());
        assert_eq!(sm.current_state(), State::Idle);
    }

    #[test]
    fn state_change_subscribers_ordered_by_group_then_subscription() {
        let sm = StateMachine::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        for key in ["b", "10-late", "-1-early", "2x", "a", "1y", "2w", "+1z"] {
            let order = Arc::clone(&order);
            let k = key.to_string();
            sm.subscribe_to_state_change(key, move |_| order.lock().unwrap().push(k.clone()));
        }
        sm.emit_state_change(State::Idle);
        assert_eq!(
            *order.lock().unwrap(),
            vec!["-1-early", "b", "a", "1y", "+1z", "2x", "2w", "10-late"]
        );
        order.lock().unwrap().clear();
        assert!(sm.unsubscribe_from_state_change("a"));
        assert!(!sm.unsubscribe_from_state_change("a"));
        // Re-subscribing a key replaces it and moves it to the end of its group.
        let o = Arc::clone(&order);
        sm.subscribe_to_state_change("b", move |_| o.lock().unwrap().push("b2".into()));
        sm.emit_state_change(State::Idle);
        assert_eq!(
            *order.lock().unwrap(),
            vec!["-1-early", "b2", "1y", "+1z", "2x", "2w", "10-late"]
        );
    }

    #[test]
    fn state_subscribers_receive_the_state() {
        let sm = StateMachine::new();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        sm.subscribe_to_state_change("s", move |s| tx.lock().unwrap().send(s).unwrap());
        sm.emit_state_change(State::Idle);
        assert!(sm.change_state(Transition::End));
        let change = sm.take_pending_blocking();
        sm.emit_state_change(change.current);
        assert_eq!(
            rx.try_iter().collect::<Vec<_>>(),
            [State::Idle, State::Exiting]
        );
    }

    #[test]
    fn subscription_groups() {
        assert_eq!(subscription_group("10-control"), 10);
        assert_eq!(subscription_group("-3abc"), -3);
        assert_eq!(subscription_group("+4"), 4);
        assert_eq!(subscription_group("plugin"), 0);
        assert_eq!(subscription_group(""), 0);
        assert_eq!(subscription_group("-"), 0);
        assert_eq!(subscription_group("99999999999x"), 0);
        assert_eq!(subscription_group("007"), 7);
    }

    #[test]
    fn wait_for_elapses_without_transition() {
        let sm = StateMachine::new();
        let start = Instant::now();
        assert!(sm.wait_for(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(sm.wait_for(Duration::ZERO));
    }

    #[test]
    fn wait_for_returns_false_when_pending() {
        let sm = StateMachine::new();
        assert!(sm.change_state(Transition::InitDevice));
        assert!(!sm.wait_for(GENEROUS));
        assert!(!sm.wait_for(Duration::ZERO));
    }

    #[test]
    fn wait_for_interrupted_by_transition() {
        let sm = StateMachine::new();
        let barrier = Arc::new(Barrier::new(2));
        let waiter = thread::spawn({
            let sm = sm.clone();
            let barrier = Arc::clone(&barrier);
            move || {
                barrier.wait();
                // Effectively forever: only a transition can end this early.
                sm.wait_for(Duration::from_secs(3600))
            }
        });
        barrier.wait();
        assert!(sm.change_state(Transition::End));
        assert!(!waiter.join().unwrap());
    }

    #[test]
    fn wait_for_huge_duration_is_interruptible() {
        let sm = StateMachine::new();
        let barrier = Arc::new(Barrier::new(2));
        let waiter = thread::spawn({
            let sm = sm.clone();
            let barrier = Arc::clone(&barrier);
            move || {
                barrier.wait();
                sm.wait_for(Duration::MAX)
            }
        });
        barrier.wait();
        assert!(sm.change_state(Transition::InitDevice));
        assert!(!waiter.join().unwrap());
    }

    #[test]
    fn concurrent_requests_accept_exactly_one() {
        let sm = StateMachine::new();
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let sm = sm.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let t = if i % 2 == 0 {
                        Transition::InitDevice
                    } else {
                        Transition::End
                    };
                    sm.change_state(t)
                })
            })
            .collect();
        let accepted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(accepted, 1);
        let change = sm.take_pending_blocking();
        assert!(matches!(
            change.current,
            State::InitializingDevice | State::Exiting
        ));
    }
}
