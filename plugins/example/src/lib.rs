//! An example fairmq plugin, usable both ways:
//!
//! * dynamically: the `cdylib` `libfairmq_plugin_example.so`, loaded with `-P example`
//!   (or `-P d:example`) from the `-S` search path or the executable's directory;
//! * prelinked: link the `rlib` into an executable (`use fairmq_plugin_example as _;`) and
//!   load it with `-P p:example`.
//!
//! It adds two options: `--example-greeting <text>` (logged with every state change) and
//! `--example-control <bool>`: when true the plugin takes device control and drives the device
//! itself (up to RUNNING, then back down to EXITING once RUNNING ends), showing how a plugin
//! replaces the built-in `control` plugin.

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use fairmq::plugin::{Plugin, PluginRegistration, PluginServices, PluginVersion};
use fairmq::{HookResult, Options, State, Transition};

/// The plugin's registration.
pub static EXAMPLE: PluginRegistration = PluginRegistration {
    name: "example",
    version: PluginVersion {
        major: 0,
        minor: 1,
        patch: 0,
    },
    maintainer: "fairmq-rs",
    homepage: "https://example.invalid/fairmq-rs",
    options: Some(add_options),
    create,
};

fairmq::register_plugin!(EXAMPLE);
fairmq::declare_dynamic_plugin!("example", EXAMPLE);

fn add_options(o: &mut Options) {
    o.group("Example plugin");
    o.add(
        "example-greeting",
        "hello".to_owned(),
        "Text the example plugin logs with every state change.",
    );
    o.add(
        "example-control",
        false,
        "Let the example plugin control the device instead of the control plugin.",
    );
}

struct Example {
    services: PluginServices,
    driver: Option<JoinHandle<()>>,
}

impl Plugin for Example {}

impl Drop for Example {
    fn drop(&mut self) {
        self.services.unsubscribe_from_device_state_change();
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
        tracing::info!("example plugin: unloaded");
    }
}

fn create(services: PluginServices) -> HookResult<Box<dyn Plugin>> {
    let greeting: String = services.get_property("example-greeting")?;
    let control: bool = services.get_property("example-control")?;
    tracing::info!("example plugin: instantiated (greeting '{greeting}', control {control})");
    let (tx, rx) = mpsc::channel::<State>();
    let tx = Mutex::new(tx);
    services.subscribe_to_device_state_change(move |state| {
        tracing::info!("example plugin: {greeting}, device is in state {state}");
        let _ = tx.lock().map(|t| t.send(state));
    });
    let driver = if control {
        services.take_device_control()?;
        let s = services.clone();
        Some(std::thread::spawn(move || drive(&s, &rx)))
    } else {
        None
    };
    Ok(Box::new(Example { services, driver }))
}

fn wait_for(rx: &mpsc::Receiver<State>, target: State) -> bool {
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(s) if s == target => return true,
            Ok(State::Error) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// Drives the device up to RUNNING and, once RUNNING ends, down to EXITING.
fn drive(s: &PluginServices, rx: &mpsc::Receiver<State>) {
    let steps = [
        (Transition::InitDevice, State::InitializingDevice),
        (Transition::CompleteInit, State::Initialized),
        (Transition::Bind, State::Bound),
        (Transition::Connect, State::DeviceReady),
        (Transition::InitTask, State::Ready),
        (Transition::Run, State::Running),
    ];
    let mut ok = true;
    for (t, target) in steps {
        if s.change_device_state(t).is_err() || !wait_for(rx, target) {
            ok = false;
            break;
        }
    }
    if ok && wait_for(rx, State::Ready) {
        for (t, target) in [
            (Transition::ResetTask, State::DeviceReady),
            (Transition::ResetDevice, State::Idle),
            (Transition::End, State::Exiting),
        ] {
            if s.change_device_state(t).is_err() || !wait_for(rx, target) {
                break;
            }
        }
    }
    tracing::info!("example plugin: releasing device control");
    s.release_device_control();
}
