//! The services a plugin uses (spec §7.1, §7.2): properties, device state, control
//! ownership, channel peers and logging.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::device::DeviceShared;
use crate::error::RuntimeError;
use crate::logging::LogHandle;
use crate::properties::{Properties, PropertyError, PropertyKind, PropertyValue};
use crate::state::{State, StateError, Transition};

/// A refused control operation (spec §7.2), with FairMQ's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceControlError {
    /// Another plugin holds control.
    #[error("Plugin '{plugin}' is not allowed to take over control. Currently, plugin '{owner}' has taken control.")]
    TakeRefused {
        /// The requesting plugin.
        plugin: String,
        /// The controller.
        owner: String,
    },
    /// Another plugin holds control.
    #[error("Plugin '{plugin}' is not allowed to change device states. Currently, plugin '{owner}' has taken control.")]
    ChangeRefused {
        /// The requesting plugin.
        plugin: String,
        /// The controller.
        owner: String,
    },
}

/// Who controls the device: at most one plugin at a time.
#[derive(Debug, Default)]
pub struct ControlOwnership {
    owner: Mutex<Option<String>>,
    released: Condvar,
}

impl ControlOwnership {
    /// Nobody controls the device yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.owner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The controller's name, if any.
    pub fn owner(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Takes control: no controller → `plugin`; already `plugin` → no-op; another → error.
    pub fn take(&self, plugin: &str) -> Result<(), DeviceControlError> {
        let mut owner = self.lock();
        match owner.as_deref() {
            None => {
                *owner = Some(plugin.to_owned());
                Ok(())
            }
            Some(o) if o == plugin => Ok(()),
            Some(o) => Err(DeviceControlError::TakeRefused {
                plugin: plugin.to_owned(),
                owner: o.to_owned(),
            }),
        }
    }

    /// Takes control unconditionally (emergencies such as signal handling).
    pub fn steal(&self, plugin: &str) {
        *self.lock() = Some(plugin.to_owned());
    }

    /// Releases control if `plugin` holds it (otherwise a debug log and no change).
    pub fn release(&self, plugin: &str) {
        let mut owner = self.lock();
        if owner.as_deref() == Some(plugin) {
            *owner = None;
            drop(owner);
            self.released.notify_all();
        } else {
            tracing::debug!(
                "Plugin '{}' tried to release device control, but does not hold it",
                plugin
            );
        }
    }

    /// Checks that `plugin` may change the state, implicitly taking control if nobody has it.
    pub fn check_change(&self, plugin: &str) -> Result<(), DeviceControlError> {
        let mut owner = self.lock();
        match owner.as_deref() {
            None => {
                *owner = Some(plugin.to_owned());
                Ok(())
            }
            Some(o) if o == plugin => Ok(()),
            Some(o) => Err(DeviceControlError::ChangeRefused {
                plugin: plugin.to_owned(),
                owner: o.to_owned(),
            }),
        }
    }

    /// Blocks while a controller exists.
    pub fn wait_for_release(&self) {
        let owner = self.lock();
        let _unused = self
            .released
            .wait_while(owner, |o| o.is_some())
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Blocks while a controller exists, at most `timeout`; returns whether it was released.
    pub fn wait_for_release_timeout(&self, timeout: Duration) -> bool {
        let owner = self.lock();
        let (owner, _) = self
            .released
            .wait_timeout_while(owner, timeout, |o| o.is_some())
            .unwrap_or_else(PoisonError::into_inner);
        owner.is_none()
    }
}

/// A plugin's window onto the device. Cheap to clone; every clone acts as the same plugin.
#[derive(Clone)]
pub struct PluginServices {
    name: String,
    shared: Arc<DeviceShared>,
}

impl std::fmt::Debug for PluginServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServices")
            .field("plugin", &self.name)
            .finish()
    }
}

impl PluginServices {
    pub(crate) fn new(name: &str, shared: Arc<DeviceShared>) -> Self {
        PluginServices {
            name: name.to_owned(),
            shared,
        }
    }

    /// The name of the plugin these services belong to.
    pub fn plugin_name(&self) -> &str {
        &self.name
    }

    // ----- properties -----

    /// The device's property store (every option and `chans.*` setting).
    pub fn properties(&self) -> &Properties {
        &self.shared.config
    }

    /// Whether `key` exists.
    pub fn property_exists(&self, key: &str) -> bool {
        self.shared.config.contains(key)
    }

    /// The typed value of `key`.
    pub fn get_property<T: PropertyKind>(&self, key: &str) -> Result<T, PropertyError> {
        self.shared.config.get(key)
    }

    /// The typed value of `key`, or `default` if it does not exist.
    pub fn get_property_or<T: PropertyKind>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, PropertyError> {
        self.shared.config.get_or(key, default)
    }

    /// The value of `key` as a string.
    pub fn get_property_as_string(&self, key: &str) -> Result<String, PropertyError> {
        self.shared.config.get_as_string(key)
    }

    /// Sets `key`.
    pub fn set_property(&self, key: &str, value: impl Into<PropertyValue>) {
        self.shared.config.set(key, value);
    }

    /// Sets several keys.
    pub fn set_properties(&self, items: BTreeMap<String, PropertyValue>) {
        self.shared.config.set_many(items);
    }

    /// Updates existing keys, all or nothing.
    pub fn update_properties(
        &self,
        items: BTreeMap<String, PropertyValue>,
    ) -> Result<(), PropertyError> {
        self.shared.config.update_many(items)
    }

    /// Deletes `key`.
    pub fn delete_property(&self, key: &str) -> bool {
        self.shared.config.delete(key)
    }

    /// All keys.
    pub fn property_keys(&self) -> Vec<String> {
        self.shared.config.keys()
    }

    /// Channel name → number of sub-channels.
    pub fn channel_info(&self) -> BTreeMap<String, usize> {
        self.shared.config.channel_info()
    }

    /// Subscribes to writes of values of type `T` (subscriber id = plugin name).
    pub fn subscribe_to_property_change<T, F>(&self, callback: F)
    where
        T: PropertyKind,
        F: Fn(&str, &T) + Send + Sync + 'static,
    {
        self.shared
            .config
            .subscribe::<T, F>(self.name.clone(), callback);
    }

    /// Ends the typed subscription for `T`.
    pub fn unsubscribe_from_property_change<T: PropertyKind>(&self) -> bool {
        self.shared.config.unsubscribe::<T>(&self.name)
    }

    /// Subscribes to all writes, values as strings.
    pub fn subscribe_to_property_change_as_string<F>(&self, callback: F)
    where
        F: Fn(&str, &str) + Send + Sync + 'static,
    {
        self.shared
            .config
            .subscribe_as_string(self.name.clone(), callback);
    }

    /// Ends the as-string subscription.
    pub fn unsubscribe_from_property_change_as_string(&self) -> bool {
        self.shared.config.unsubscribe_as_string(&self.name)
    }

    // ----- state and control -----

    /// The current device state.
    pub fn current_state(&self) -> State {
        self.shared.sm.current_state()
    }

    /// Parses a state display name.
    pub fn to_device_state(&self, name: &str) -> Result<State, StateError> {
        name.parse()
    }

    /// Parses a transition display name.
    pub fn to_device_state_transition(&self, name: &str) -> Result<Transition, StateError> {
        name.parse()
    }

    /// Whether a transition is pending.
    pub fn new_state_pending(&self) -> bool {
        self.shared.sm.new_state_pending()
    }

    /// Asks the device to shut down from wherever it is: every wait of the device ends (see
    /// [`crate::StateMachine::request_shutdown`]) and blocking transfers are interrupted. The
    /// caller then drives the state machine to EXITING.
    pub fn request_shutdown(&self) {
        self.shared.sm.request_shutdown();
        self.shared.interrupt_transports();
    }

    /// Takes device control (spec §7.2).
    pub fn take_device_control(&self) -> Result<(), DeviceControlError> {
        self.shared.control.take(&self.name)
    }

    /// Takes device control unconditionally.
    pub fn steal_device_control(&self) {
        self.shared.control.steal(&self.name);
    }

    /// Releases device control (no-op unless this plugin holds it).
    pub fn release_device_control(&self) {
        self.shared.control.release(&self.name);
    }

    /// The controlling plugin, if any.
    pub fn device_controller(&self) -> Option<String> {
        self.shared.control.owner()
    }

    /// Blocks while any plugin controls the device.
    pub fn wait_for_release_device_control(&self) {
        self.shared.control.wait_for_release();
    }

    /// Requests a transition. Without a controller this plugin implicitly takes control;
    /// another controller makes it an error. `ERROR FOUND` is always allowed (reporting an
    /// error is not controlling). `Ok(false)` if the state machine refused the transition.
    pub fn change_device_state(&self, transition: Transition) -> Result<bool, DeviceControlError> {
        if transition != Transition::ErrorFound {
            self.shared.control.check_change(&self.name)?;
        }
        Ok(self.shared.sm.change_state(transition))
    }

    /// Subscribes to device state changes (key = plugin name; replaces an earlier one).
    pub fn subscribe_to_device_state_change<F>(&self, callback: F)
    where
        F: Fn(State) + Send + Sync + 'static,
    {
        self.shared
            .sm
            .subscribe_to_state_change(self.name.clone(), callback);
    }

    /// Ends the state subscription.
    pub fn unsubscribe_from_device_state_change(&self) -> bool {
        self.shared.sm.unsubscribe_from_state_change(&self.name)
    }

    /// Number of peers connected to sub-channel `name[index]`.
    pub fn number_of_connected_peers(
        &self,
        name: &str,
        index: usize,
    ) -> Result<usize, RuntimeError> {
        self.shared
            .channel(name, index)
            .map(|c| c.connected_peers())
    }

    /// Channel name → number of sub-channels that exist as sockets now.
    pub fn live_channels(&self) -> BTreeMap<String, usize> {
        self.shared.channel_counts()
    }

    /// The sub-channels that exist now (built at INITIALIZING DEVICE, dropped at RESETTING
    /// DEVICE), by name then index: their addresses, transports and socket counters, e.g. for
    /// a plugin that reports rates to a remote controller.
    pub fn channels(&self) -> Vec<Arc<crate::channel::Channel>> {
        self.shared.all_channels()
    }

    // ----- logging -----

    /// The logger.
    pub fn logger(&self) -> LogHandle {
        self.shared.log.clone()
    }

    /// Console severity one step towards `nolog`.
    pub fn cycle_log_console_severity_up(&self) -> &'static str {
        self.shared.log.cycle_console_severity(true)
    }

    /// Console severity one step towards `trace`.
    pub fn cycle_log_console_severity_down(&self) -> &'static str {
        self.shared.log.cycle_console_severity(false)
    }

    /// Verbosity one step up.
    pub fn cycle_log_verbosity_up(&self) -> &'static str {
        self.shared.log.cycle_verbosity(true)
    }

    /// Verbosity one step down.
    pub fn cycle_log_verbosity_down(&self) -> &'static str {
        self.shared.log.cycle_verbosity(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ownership_rules() {
        let c = ControlOwnership::new();
        assert_eq!(c.owner(), None);
        c.take("a").unwrap();
        c.take("a").unwrap();
        assert_eq!(
            c.take("b").unwrap_err().to_string(),
            "Plugin 'b' is not allowed to take over control. Currently, plugin 'a' has taken control."
        );
        assert_eq!(
            c.check_change("b").unwrap_err().to_string(),
            "Plugin 'b' is not allowed to change device states. Currently, plugin 'a' has taken control."
        );
        c.release("b");
        assert_eq!(c.owner().as_deref(), Some("a"));
        c.steal("b");
        assert_eq!(c.owner().as_deref(), Some("b"));
        assert!(!c.wait_for_release_timeout(Duration::from_millis(10)));
        c.release("b");
        assert!(c.wait_for_release_timeout(Duration::from_millis(10)));
        // Changing without a controller takes control implicitly.
        c.check_change("c").unwrap();
        assert_eq!(c.owner().as_deref(), Some("c"));
    }

    #[test]
    fn wait_for_release_wakes_up() {
        let c = Arc::new(ControlOwnership::new());
        c.take("ctl").unwrap();
        let c2 = Arc::clone(&c);
        let waiter = std::thread::spawn(move || c2.wait_for_release());
        c.release("ctl");
        waiter.join().unwrap();
        assert_eq!(c.owner(), None);
    }
}
