//! `fairmq-testdevice`: a device for the runtime's process tests (the counterpart of
//! FairMQ's `runTestDevice`). Its behaviour is chosen by options:
//!
//! * `--hook <Hook> --action <err|panic|errorfound|sigint|waitfor|hang>`: do something in one hook
//!   (`Init`, `Bind`, `Connect`, `InitTask`, `PreRun`, `Run`, `PostRun`, `ResetTask`, `Reset`);
//! * `--check-transitions true`: in Run, check that invalid transitions are refused;
//! * `--cond-iterations N`: run ConditionalRun N times (paced by `--rate`);
//! * `--send <channel> --send-count N [--send-delay-ms D] [--send-multipart true]`: send N
//!   messages `msg-<i>` in Run;
//! * `--ondata <channel>... --expect N [--ondata-multipart true]`: receive through OnData
//!   handlers until N messages arrived.
//!
//! Every hook logs `hook <Hook>` when entered. The example plugin is linked in, so that
//! `-P p:example` (prelinked) can be tested.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fairmq::{
    Device, DeviceContext, HookResult, MessagePtr, Options, Parts, Properties, PropertyType,
    Transition,
};
use fairmq_plugin_example as _;
// The devices' allocator (jemalloc, for C code too) and their prelinked plugins.
use fairmq_devices as _;

struct TestDevice {
    hook: String,
    action: String,
    check_transitions: bool,
    cond_iterations: u64,
    cond_count: u64,
    cond_start: Option<Instant>,
    send: String,
    send_count: u64,
    send_delay_ms: u64,
    send_multipart: bool,
    ondata: Vec<String>,
    ondata_multipart: bool,
    expect: u64,
    received: u64,
}

impl TestDevice {
    fn new(c: &Properties) -> HookResult<Self> {
        Ok(TestDevice {
            hook: c.get("hook")?,
            action: c.get("action")?,
            check_transitions: c.get("check-transitions")?,
            cond_iterations: c.get("cond-iterations")?,
            cond_count: 0,
            cond_start: None,
            send: c.get("send")?,
            send_count: c.get("send-count")?,
            send_delay_ms: c.get("send-delay-ms")?,
            send_multipart: c.get("send-multipart")?,
            ondata: c.get_or("ondata", Vec::new())?,
            ondata_multipart: c.get("ondata-multipart")?,
            expect: c.get("expect")?,
            received: 0,
        })
    }

    fn act(&mut self, hook: &str, ctx: &mut DeviceContext) -> HookResult {
        tracing::info!("hook {hook}");
        if self.hook != hook {
            return Ok(());
        }
        match self.action.as_str() {
            "err" => return Err(format!("exception in {hook}()").into()),
            "panic" => panic!("test panic in {hook}()"),
            "errorfound" => {
                tracing::info!("going to change to Error state from {hook}()");
                ctx.change_state(Transition::ErrorFound);
            }
            "sigint" => {
                tracing::info!("raising SIGINT in {hook}()");
                signal_hook::low_level::raise(signal_hook::consts::SIGINT)?;
                // Give the signal thread time to see it while this hook still runs.
                std::thread::sleep(Duration::from_millis(300));
                if hook == "Run" {
                    while !ctx.new_state_pending() {
                        ctx.wait_for(Duration::from_millis(100));
                    }
                }
            }
            "waitfor" => {
                tracing::info!("Sleeping for 60s in {hook}()");
                if ctx.wait_for(Duration::from_secs(60)) {
                    tracing::info!("Sleeping Done. Completed.");
                } else {
                    tracing::info!("Sleeping Done. Interrupted.");
                }
            }
            "hang" => {
                // A hook that ignores every request to stop (no wait_for, no new_state_pending):
                // only a second SIGINT (abort) ends the process.
                tracing::info!("Hanging for 60s in {hook}()");
                std::thread::sleep(Duration::from_secs(60));
            }
            "" | "none" => {}
            other => return Err(format!("unknown --action '{other}'").into()),
        }
        Ok(())
    }

    fn count(&mut self) -> bool {
        self.received += 1;
        if self.expect > 0 && self.received >= self.expect {
            tracing::info!("OnData received {} messages", self.received);
            return false;
        }
        true
    }
}

impl Device for TestDevice {
    fn init(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.act("Init", ctx)
    }
    fn bind(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.act("Bind", ctx)
    }
    fn connect(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.act("Connect", ctx)
    }
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        for name in self.ondata.clone() {
            if self.ondata_multipart {
                ctx.on_data_parts(&name);
            } else {
                ctx.on_data(&name);
            }
        }
        self.act("InitTask", ctx)
    }
    fn pre_run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.act("PreRun", ctx)
    }
    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        if self.cond_iterations == 0 {
            return Ok(false);
        }
        let start = *self.cond_start.get_or_insert_with(Instant::now);
        let _ = ctx;
        self.cond_count += 1;
        if self.cond_count >= self.cond_iterations {
            tracing::info!(
                "ConditionalRun ran {} times in {}ms",
                self.cond_count,
                start.elapsed().as_millis()
            );
            return Ok(false);
        }
        Ok(true)
    }
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.act("Run", ctx)?;
        if self.check_transitions {
            if ctx.change_state(Transition::Bind) {
                return Err("BIND was accepted in RUNNING".into());
            }
            if ctx.change_state(Transition::End) {
                return Err("END was accepted in RUNNING".into());
            }
            if !ctx.change_state(Transition::Stop) {
                return Err("STOP was refused in RUNNING".into());
            }
            if ctx.change_state(Transition::Stop) {
                return Err("a second STOP was accepted while one is pending".into());
            }
            tracing::info!("transition checks passed");
        }
        if !self.send.is_empty() {
            if self.send_delay_ms > 0 {
                ctx.wait_for(Duration::from_millis(self.send_delay_ms));
            }
            let ch = ctx.channel(&self.send)?;
            for i in 0..self.send_count {
                let text = format!("msg-{i}").into_bytes();
                let result = if self.send_multipart {
                    let mut parts = Parts::new();
                    parts.add_part(ch.new_message_from(b"header".to_vec())?);
                    parts.add_part(ch.new_message_from(text)?);
                    ch.send_parts(&mut parts)
                } else {
                    let mut m = ch.new_message_from(text)?;
                    ch.send(&mut m)
                };
                if let Err(e) = result {
                    return Err(format!("send {i} failed: {e}").into());
                }
            }
            tracing::info!("sent {} messages", self.send_count);
        }
        Ok(())
    }
    fn post_run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.act("PostRun", ctx)
    }
    fn reset_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.act("ResetTask", ctx)
    }
    fn reset(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.act("Reset", ctx)
    }
    fn handle_data(
        &mut self,
        _ctx: &mut DeviceContext,
        channel: &str,
        msg: MessagePtr,
        index: usize,
    ) -> HookResult<bool> {
        tracing::debug!(
            "OnData {channel}[{index}]: {}",
            String::from_utf8_lossy(msg.data())
        );
        Ok(self.count())
    }
    fn handle_parts(
        &mut self,
        _ctx: &mut DeviceContext,
        channel: &str,
        parts: Parts,
        index: usize,
    ) -> HookResult<bool> {
        if parts.len() != 2 {
            return Err(format!(
                "expected 2 parts on {channel}[{index}], got {}",
                parts.len()
            )
            .into());
        }
        Ok(self.count())
    }
}

/// A second transport for tests: zeromq registered under the name `zeromq-b`, so that a
/// device can have channels of two transports (one OnData thread per transport, automatic
/// copies between them).
mod second_transport {
    use fairmq_transport::{
        FactoryPtr, MessagePtr, OwnedBuffer, PollResult, RegionCallback, RegionConfig,
        RegionEventCallback, RegionInfo, RegionPtr, Socket, SocketPtr, SocketType, TransportConfig,
        TransportError, TransportFactory, TransportRegistration,
    };
    use std::sync::Arc;

    struct B(fairmq_zeromq::ZmqFactory);

    impl TransportFactory for B {
        fn name(&self) -> &'static str {
            "zeromq-b"
        }
        fn id(&self) -> &str {
            self.0.id()
        }
        fn new_message(&self) -> MessagePtr {
            self.0.new_message()
        }
        fn new_message_aligned(&self, alignment: usize) -> MessagePtr {
            self.0.new_message_aligned(alignment)
        }
        fn new_message_with_size(
            &self,
            size: usize,
            alignment: Option<usize>,
        ) -> Result<MessagePtr, TransportError> {
            self.0.new_message_with_size(size, alignment)
        }
        fn new_message_from_buffer(
            &self,
            buffer: OwnedBuffer,
        ) -> Result<MessagePtr, TransportError> {
            self.0.new_message_from_buffer(buffer)
        }
        fn new_region_message(
            &self,
            region: &RegionPtr,
            offset: usize,
            size: usize,
            hint: u64,
        ) -> Result<MessagePtr, TransportError> {
            self.0.new_region_message(region, offset, size, hint)
        }
        fn new_socket(
            &self,
            socket_type: SocketType,
            name: &str,
        ) -> Result<SocketPtr, TransportError> {
            self.0.new_socket(socket_type, name)
        }
        fn poll(
            &self,
            sockets: &[&dyn Socket],
            timeout_ms: i64,
        ) -> Result<PollResult, TransportError> {
            self.0.poll(sockets, timeout_ms)
        }
        fn new_unmanaged_region(
            &self,
            config: RegionConfig,
            callback: RegionCallback,
        ) -> Result<RegionPtr, TransportError> {
            self.0.new_unmanaged_region(config, callback)
        }
        fn subscribe_to_region_events(&self, callback: RegionEventCallback) {
            self.0.subscribe_to_region_events(callback)
        }
        fn subscribed_to_region_events(&self) -> bool {
            self.0.subscribed_to_region_events()
        }
        fn unsubscribe_from_region_events(&self) {
            self.0.unsubscribe_from_region_events()
        }
        fn region_info(&self) -> Vec<RegionInfo> {
            self.0.region_info()
        }
        fn interrupt(&self) {
            self.0.interrupt()
        }
        fn resume(&self) {
            self.0.resume()
        }
        fn interrupted(&self) -> bool {
            self.0.interrupted()
        }
        fn reset(&self) {
            self.0.reset()
        }
    }

    fn create(config: &TransportConfig) -> Result<FactoryPtr, TransportError> {
        Ok(Arc::new(B(fairmq_zeromq::ZmqFactory::new(config)?)))
    }

    inventory::submit! {
        TransportRegistration { name: "zeromq-b", create }
    }
}

fn add_options(o: &mut Options) {
    o.add("hook", String::new(), "Hook in which to do --action");
    o.add(
        "action",
        "none".to_owned(),
        "err, panic, errorfound, sigint, waitfor or none",
    );
    o.add(
        "check-transitions",
        false,
        "Check transition refusals in Run",
    );
    o.add(
        "cond-iterations",
        0u64,
        "Number of ConditionalRun iterations (0 = no ConditionalRun)",
    );
    o.add(
        "send",
        String::new(),
        "Channel to send test messages on in Run",
    );
    o.add("send-count", 0u64, "Number of messages to send");
    o.add("send-delay-ms", 0u64, "Delay before sending");
    o.add("send-multipart", false, "Send two-part messages");
    o.add_without_default(
        "ondata",
        PropertyType::Strings,
        "Channels to receive from with OnData",
    );
    o.add("ondata-multipart", false, "Use multipart OnData handlers");
    o.add("expect", 0u64, "Stop after this many OnData messages");
}

fn main() -> ExitCode {
    fairmq::run_device(add_options, |c| Ok(Box::new(TestDevice::new(c)?)))
}
