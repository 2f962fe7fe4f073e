//! Device lifecycle states and transitions (spec §1.1–§1.3).
//!
//! This module is pure data: the [`State`] and [`Transition`] enums with FairMQ's display
//! names (`INITIALIZING DEVICE`) and FSM-internal names (`INITIALIZING_DEVICE`), string
//! parsing from display names, and [`next_state`], the complete transition table.
//! The thread-safe scheduler built on top of it lives in [`crate::state_machine`].

use std::fmt;
use std::str::FromStr;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A string is not the display name of any state.
    #[error("unknown device state '{0}'; valid states are: {list}", list = State::display_names_list())]
    UnknownState(String),
    /// A string is not the display name of any transition.
    #[error("unknown state transition '{0}'; valid transitions are: {list}", list = Transition::display_names_list())]
    UnknownTransition(String),
    /// A transition was requested that is not valid now, or could not be scheduled
    /// (FairMQ's `ChangeStateOrThrow`).
    #[error("Invalid transition: {0}")]
    InvalidTransition(Transition),
}

/// A device state (spec §1.1). The numeric values are FairMQ's enum values.
///
/// `Undefined` is never entered; `Ok` is the initial state of FairMQ's orthogonal "error
/// region" and is never the current lifecycle state either. Both exist so that the full set
/// of FairMQ states can be named and parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// `UNDEFINED` (0): never used.
    Undefined = 0,
    /// `OK` (1): initial state of the error region.
    Ok = 1,
    /// `ERROR` (2): terminal.
    Error = 2,
    /// `IDLE` (3): initial lifecycle state, waits for the controller.
    Idle = 3,
    /// `INITIALIZING DEVICE` (4).
    InitializingDevice = 4,
    /// `INITIALIZED` (5).
    Initialized = 5,
    /// `BINDING` (6): leaves automatically.
    Binding = 6,
    /// `BOUND` (7).
    Bound = 7,
    /// `CONNECTING` (8): leaves automatically.
    Connecting = 8,
    /// `DEVICE READY` (9).
    DeviceReady = 9,
    /// `INITIALIZING TASK` (10): leaves automatically.
    InitializingTask = 10,
    /// `READY` (11).
    Ready = 11,
    /// `RUNNING` (12).
    Running = 12,
    /// `RESETTING TASK` (13): leaves automatically.
    ResettingTask = 13,
    /// `RESETTING DEVICE` (14): leaves automatically.
    ResettingDevice = 14,
    /// `EXITING` (15): terminal.
    Exiting = 15,
}

impl State {
    /// Every state, in FairMQ enum order.
    pub const ALL: [State; 16] = [
        State::Undefined,
        State::Ok,
        State::Error,
        State::Idle,
        State::InitializingDevice,
        State::Initialized,
        State::Binding,
        State::Bound,
        State::Connecting,
        State::DeviceReady,
        State::InitializingTask,
        State::Ready,
        State::Running,
        State::ResettingTask,
        State::ResettingDevice,
        State::Exiting,
    ];

    /// The display name (FairMQ `GetStateName`), e.g. `INITIALIZING DEVICE`.
    pub fn name(self) -> &'static str {
        match self {
            State::Undefined => "UNDEFINED",
            State::Ok => "OK",
            State::Error => "ERROR",
            State::Idle => "IDLE",
            State::InitializingDevice => "INITIALIZING DEVICE",
            State::Initialized => "INITIALIZED",
            State::Binding => "BINDING",
            State::Bound => "BOUND",
            State::Connecting => "CONNECTING",
            State::DeviceReady => "DEVICE READY",
            State::InitializingTask => "INITIALIZING TASK",
            State::Ready => "READY",
            State::Running => "RUNNING",
            State::ResettingTask => "RESETTING TASK",
            State::ResettingDevice => "RESETTING DEVICE",
            State::Exiting => "EXITING",
        }
    }

    /// The FSM-internal name used in `No transition from state …` logs, e.g.
    /// `INITIALIZING_DEVICE` (the display name with `_` instead of spaces).
    pub fn internal_name(self) -> &'static str {
        match self {
            State::InitializingDevice => "INITIALIZING_DEVICE",
            State::DeviceReady => "DEVICE_READY",
            State::InitializingTask => "INITIALIZING_TASK",
            State::ResettingTask => "RESETTING_TASK",
            State::ResettingDevice => "RESETTING_DEVICE",
            other => other.name(),
        }
    }

    /// FairMQ's numeric enum value.
    pub fn value(self) -> u8 {
        self as u8
    }

    /// `true` for the terminal states `ERROR` and `EXITING`: nothing leaves them.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Error | State::Exiting)
    }

    /// `true` for the states that the device leaves by itself with `AUTO`
    /// (BINDING, CONNECTING, INITIALIZING TASK, RESETTING TASK, RESETTING DEVICE).
    pub fn is_auto_exiting(self) -> bool {
        next_state(self, Transition::Auto).is_some()
    }

    fn display_names_list() -> String {
        Self::ALL
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for State {
    type Err = StateError;

    /// Parses a display name (`DEVICE READY`); anything else is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .iter()
            .copied()
            .find(|st| st.name() == s)
            .ok_or_else(|| StateError::UnknownState(s.to_owned()))
    }
}

/// A state transition (event), spec §1.2. The numeric values are FairMQ's enum values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transition {
    /// `AUTO` (0): fired by the device to leave a working state.
    Auto = 0,
    /// `INIT DEVICE` (1).
    InitDevice = 1,
    /// `COMPLETE INIT` (2).
    CompleteInit = 2,
    /// `BIND` (3).
    Bind = 3,
    /// `CONNECT` (4).
    Connect = 4,
    /// `INIT TASK` (5).
    InitTask = 5,
    /// `RUN` (6).
    Run = 6,
    /// `STOP` (7).
    Stop = 7,
    /// `RESET TASK` (8).
    ResetTask = 8,
    /// `RESET DEVICE` (9).
    ResetDevice = 9,
    /// `END` (10).
    End = 10,
    /// `ERROR FOUND` (11): valid from every non-terminal state.
    ErrorFound = 11,
}

impl Transition {
    /// Every transition, in FairMQ enum order.
    pub const ALL: [Transition; 12] = [
        Transition::Auto,
        Transition::InitDevice,
        Transition::CompleteInit,
        Transition::Bind,
        Transition::Connect,
        Transition::InitTask,
        Transition::Run,
        Transition::Stop,
        Transition::ResetTask,
        Transition::ResetDevice,
        Transition::End,
        Transition::ErrorFound,
    ];

    /// The display name, e.g. `INIT DEVICE`.
    pub fn name(self) -> &'static str {
        match self {
            Transition::Auto => "AUTO",
            Transition::InitDevice => "INIT DEVICE",
            Transition::CompleteInit => "COMPLETE INIT",
            Transition::Bind => "BIND",
            Transition::Connect => "CONNECT",
            Transition::InitTask => "INIT TASK",
            Transition::Run => "RUN",
            Transition::Stop => "STOP",
            Transition::ResetTask => "RESET TASK",
            Transition::ResetDevice => "RESET DEVICE",
            Transition::End => "END",
            Transition::ErrorFound => "ERROR FOUND",
        }
    }

    /// The FSM-internal name, e.g. `INIT_DEVICE`.
    pub fn internal_name(self) -> &'static str {
        match self {
            Transition::InitDevice => "INIT_DEVICE",
            Transition::CompleteInit => "COMPLETE_INIT",
            Transition::InitTask => "INIT_TASK",
            Transition::ResetTask => "RESET_TASK",
            Transition::ResetDevice => "RESET_DEVICE",
            Transition::ErrorFound => "ERROR_FOUND",
            other => other.name(),
        }
    }

    /// FairMQ's numeric enum value.
    pub fn value(self) -> u8 {
        self as u8
    }

    fn display_names_list() -> String {
        Self::ALL
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transition {
    type Err = StateError;

    /// Parses a display name (`INIT DEVICE`); anything else is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transition::ALL
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| StateError::UnknownTransition(s.to_owned()))
    }
}

/// The transition table of spec §1.3: the state reached from `state` on `transition`, or
/// `None` if the transition is not valid there.
///
/// `ErrorFound` leads to `Error` from every state except the terminal `Error` and `Exiting`
/// (this includes `Ok`, the error region's initial state, and the unused `Undefined`).
/// Nothing leaves `Error` or `Exiting`.
pub fn next_state(state: State, transition: Transition) -> Option<State> {
    use State as S;
    use Transition as T;
    if state.is_terminal() {
        return None;
    }
    let next = match (state, transition) {
        (_, T::ErrorFound) => S::Error,
        (S::Idle, T::End) => S::Exiting,
        (S::Idle, T::InitDevice) => S::InitializingDevice,
        (S::InitializingDevice, T::CompleteInit) => S::Initialized,
        (S::Initialized, T::Bind) => S::Binding,
        (S::Initialized, T::ResetDevice) => S::ResettingDevice,
        (S::Binding, T::Auto) => S::Bound,
        (S::Bound, T::Connect) => S::Connecting,
        (S::Bound, T::ResetDevice) => S::ResettingDevice,
        (S::Connecting, T::Auto) => S::DeviceReady,
        (S::DeviceReady, T::InitTask) => S::InitializingTask,
        (S::DeviceReady, T::ResetDevice) => S::ResettingDevice,
        (S::InitializingTask, T::Auto) => S::Ready,
        (S::Ready, T::Run) => S::Running,
        (S::Ready, T::ResetTask) => S::ResettingTask,
        (S::Running, T::Stop) => S::Ready,
        (S::ResettingTask, T::Auto) => S::DeviceReady,
        (S::ResettingDevice, T::Auto) => S::Idle,
        _ => return None,
    };
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The expected table, written out independently of `next_state`'s match.
    const LIFECYCLE_ROWS: &[(&str, &str, &str)] = &[
        ("IDLE", "END", "EXITING"),
        ("IDLE", "INIT DEVICE", "INITIALIZING DEVICE"),
        ("INITIALIZING DEVICE", "COMPLETE INIT", "INITIALIZED"),
        ("INITIALIZED", "BIND", "BINDING"),
        ("INITIALIZED", "RESET DEVICE", "RESETTING DEVICE"),
        ("BINDING", "AUTO", "BOUND"),
        ("BOUND", "CONNECT", "CONNECTING"),
        ("BOUND", "RESET DEVICE", "RESETTING DEVICE"),
        ("CONNECTING", "AUTO", "DEVICE READY"),
        ("DEVICE READY", "INIT TASK", "INITIALIZING TASK"),
        ("DEVICE READY", "RESET DEVICE", "RESETTING DEVICE"),
        ("INITIALIZING TASK", "AUTO", "READY"),
        ("READY", "RUN", "RUNNING"),
        ("READY", "RESET TASK", "RESETTING TASK"),
        ("RUNNING", "STOP", "READY"),
        ("RESETTING TASK", "AUTO", "DEVICE READY"),
        ("RESETTING DEVICE", "AUTO", "IDLE"),
    ];

    /// States from which `ERROR FOUND` leads to `ERROR`: all but ERROR and EXITING.
    const ERROR_FOUND_SOURCES: &[&str] = &[
        "UNDEFINED",
        "OK",
        "IDLE",
        "INITIALIZING DEVICE",
        "INITIALIZED",
        "BINDING",
        "BOUND",
        "CONNECTING",
        "DEVICE READY",
        "INITIALIZING TASK",
        "READY",
        "RUNNING",
        "RESETTING TASK",
        "RESETTING DEVICE",
    ];

    fn expected_table() -> HashMap<(State, Transition), State> {
        let mut table = HashMap::new();
        for (from, t, to) in LIFECYCLE_ROWS {
            let key = (from.parse().unwrap(), t.parse().unwrap());
            assert!(table.insert(key, to.parse().unwrap()).is_none());
        }
        for from in ERROR_FOUND_SOURCES {
            let key = (from.parse().unwrap(), Transition::ErrorFound);
            assert!(table.insert(key, State::Error).is_none());
        }
        table
    }

    #[test]
    fn every_state_transition_pair_matches_the_table() {
        let table = expected_table();
        assert_eq!(table.len(), 17 + 14);
        let mut checked = 0;
        for state in State::ALL {
            for transition in Transition::ALL {
                assert_eq!(
                    next_state(state, transition),
                    table.get(&(state, transition)).copied(),
                    "{state} on {transition}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 16 * 12);
    }

    #[test]
    fn terminal_states_have_no_transitions() {
        for t in Transition::ALL {
            assert_eq!(next_state(State::Error, t), None);
            assert_eq!(next_state(State::Exiting, t), None);
        }
        assert!(State::Error.is_terminal());
        assert!(State::Exiting.is_terminal());
        assert!(!State::Idle.is_terminal());
    }

    #[test]
    fn auto_exiting_states() {
        let auto: Vec<State> = State::ALL
            .into_iter()
            .filter(|s| s.is_auto_exiting())
            .collect();
        assert_eq!(
            auto,
            vec![
                State::Binding,
                State::Connecting,
                State::InitializingTask,
                State::ResettingTask,
                State::ResettingDevice
            ]
        );
    }

    #[test]
    fn state_names_and_values() {
        let expected = [
            (0, "UNDEFINED", "UNDEFINED"),
            (1, "OK", "OK"),
            (2, "ERROR", "ERROR"),
            (3, "IDLE", "IDLE"),
            (4, "INITIALIZING DEVICE", "INITIALIZING_DEVICE"),
            (5, "INITIALIZED", "INITIALIZED"),
            (6, "BINDING", "BINDING"),
            (7, "BOUND", "BOUND"),
            (8, "CONNECTING", "CONNECTING"),
            (9, "DEVICE READY", "DEVICE_READY"),
            (10, "INITIALIZING TASK", "INITIALIZING_TASK"),
            (11, "READY", "READY"),
            (12, "RUNNING", "RUNNING"),
            (13, "RESETTING TASK", "RESETTING_TASK"),
            (14, "RESETTING DEVICE", "RESETTING_DEVICE"),
            (15, "EXITING", "EXITING"),
        ];
        assert_eq!(State::ALL.len(), expected.len());
        for (state, (value, name, internal)) in State::ALL.into_iter().zip(expected) {
            assert_eq!(state.value(), value);
            assert_eq!(state.name(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(state.internal_name(), internal);
            assert_eq!(name.parse::<State>(), Ok(state));
        }
    }

    #[test]
    fn transition_names_and_values() {
        let expected = [
            (0, "AUTO", "AUTO"),
            (1, "INIT DEVICE", "INIT_DEVICE"),
            (2, "COMPLETE INIT", "COMPLETE_INIT"),
            (3, "BIND", "BIND"),
            (4, "CONNECT", "CONNECT"),
            (5, "INIT TASK", "INIT_TASK"),
            (6, "RUN", "RUN"),
            (7, "STOP", "STOP"),
            (8, "RESET TASK", "RESET_TASK"),
            (9, "RESET DEVICE", "RESET_DEVICE"),
            (10, "END", "END"),
            (11, "ERROR FOUND", "ERROR_FOUND"),
        ];
        assert_eq!(Transition::ALL.len(), expected.len());
        for (t, (value, name, internal)) in Transition::ALL.into_iter().zip(expected) {
            assert_eq!(t.value(), value);
            assert_eq!(t.name(), name);
            assert_eq!(t.to_string(), name);
            assert_eq!(t.internal_name(), internal);
            assert_eq!(name.parse::<Transition>(), Ok(t));
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            "DEVICE_READY".parse::<State>(),
            Err(StateError::UnknownState("DEVICE_READY".into()))
        );
        assert!("idle".parse::<State>().is_err());
        assert!("".parse::<State>().is_err());
        assert_eq!(
            "INIT_DEVICE".parse::<Transition>(),
            Err(StateError::UnknownTransition("INIT_DEVICE".into()))
        );
        let msg = "FOO".parse::<State>().unwrap_err().to_string();
        assert!(msg.starts_with("unknown device state 'FOO'"), "{msg}");
        assert!(msg.contains("DEVICE READY"), "{msg}");
        assert_eq!(
            StateError::InvalidTransition(Transition::InitTask).to_string(),
            "Invalid transition: INIT TASK"
        );
    }
}
