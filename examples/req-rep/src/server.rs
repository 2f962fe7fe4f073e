//! `fairmq-ex-req-rep-server`: answers every request from `data` with
//! `Thank you for the "<request>"!`; leaves RUNNING after `--max-iterations` replies
//! (0 = until stopped).

use fairmq::{DeviceContext, Handlers, HookResult, MessagePtr, Outcome, TransferResultExt};

/// The server's options (FairMQ's).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ServerOptions {
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
}

/// The server.
#[derive(Debug)]
pub struct Server {
    max_iterations: u64,
    iterations: u64,
}

impl Server {
    /// A server configured from the options, handling `data`.
    pub fn new(o: ServerOptions, h: &mut Handlers<Self>) -> Self {
        h.on_data("data", Self::handle_data);
        Server {
            max_iterations: o.max_iterations,
            iterations: 0,
        }
    }

    fn handle_data(
        &mut self,
        ctx: &mut DeviceContext,
        req: MessagePtr,
        _: usize,
    ) -> HookResult<bool> {
        let text = String::from_utf8_lossy(req.data());
        tracing::info!("Received request from client: \"{text}\"");
        let reply = format!("Thank you for the \"{text}\"!");
        tracing::info!("Sending reply to client.");
        let mut rep = ctx.new_message_from(reply.into_bytes())?;

        // A reply that did not go out (timeout, interruption) stops the handler; a failure
        // ends in ERROR.
        if !matches!(ctx.send(&mut rep, "data").outcome()?, Outcome::Done(n) if n > 0) {
            return Ok(false);
        }
        self.iterations += 1;
        if self.max_iterations > 0 && self.iterations >= self.max_iterations {
            tracing::info!(
                "Configured maximum number of iterations reached. Leaving RUNNING state."
            );
            return Ok(false);
        }
        Ok(true)
    }
}

impl fairmq::Device for Server {}
