//! `fairmq-ex-req-rep-client`: once a second, sends `--text` to the server on `data` and
//! prints the reply; `--max-iterations` requests (0 = until stopped).

use std::time::Duration;

use fairmq::{DeviceContext, HookResult, Outcome, TransferResultExt};

/// The client's options (FairMQ's).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOptions {
    /// Text to send out
    #[arg(long, default_value = "Hello")]
    pub text: String,
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
}

/// The client.
#[derive(Debug)]
pub struct Client {
    o: ClientOptions,
    iterations: u64,
}

impl Client {
    /// A client configured from the options.
    pub fn new(o: ClientOptions) -> Self {
        Client { o, iterations: 0 }
    }
}

impl fairmq::Device for Client {
    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        // The request adopts a copy of the text and frees it once the transfer is done.
        let mut req = ctx.new_message_from(self.o.text.clone().into_bytes())?;
        let mut rep = ctx.new_message()?;
        tracing::info!("Sending \"{}\" to server.", self.o.text);

        // As in FairMQ, only a request of at least one byte that went out is answered for;
        // anything else (a timeout, an interruption, an empty request) leaves RUNNING. A
        // failure ends in ERROR.
        if !matches!(ctx.send(&mut req, "data").outcome()?, Outcome::Done(n) if n > 0) {
            return Ok(false);
        }
        if !ctx.receive(&mut rep, "data").outcome()?.is_done() {
            return Ok(false);
        }
        tracing::info!(
            "Received reply from server: \"{}\"",
            String::from_utf8_lossy(rep.data())
        );
        self.iterations += 1;
        if self.o.max_iterations > 0 && self.iterations >= self.o.max_iterations {
            tracing::info!(
                "Configured maximum number of iterations reached. Leaving RUNNING state."
            );
            return Ok(false);
        }
        // Sleeps a second, or less if the device is stopped meanwhile.
        Ok(ctx.wait_for(Duration::from_secs(1)))
    }
}
