//! `fairmq-ex-n-m-receiver`: collects the sub-time frames arriving on any sub-channel of
//! `data`, by time frame id, until `--num-senders` of them complete a time frame; leaves
//! RUNNING after `--max-timeframes` complete time frames (0 = until stopped).

use std::collections::HashMap;

use fairmq::{DeviceContext, Handlers, HookResult, MessagePtr, Parts};

use crate::header::Header;

/// The receiver's options (FairMQ's).
#[derive(Debug, Clone, clap::Args)]
pub struct ReceiverOptions {
    /// Buffer timeout in milliseconds
    #[arg(long, default_value_t = 1000)]
    pub buffer_timeout: i32,
    /// Number of senders
    #[arg(long)]
    pub num_senders: i32,
    /// Maximum number of timeframes to receive (0 - unlimited)
    #[arg(long, default_value_t = 0)]
    pub max_timeframes: i32,
}

/// The sub-time frames of one time frame received so far.
#[derive(Default)]
struct TimeframeBuffer {
    /// The data parts.
    parts: Vec<MessagePtr>,
}

/// The receiver.
pub struct Receiver {
    o: ReceiverOptions,
    buffer: HashMap<u16, TimeframeBuffer>,
    completed: i32,
}

impl Receiver {
    /// A receiver configured from the options, handling `data`.
    pub fn new(o: ReceiverOptions, h: &mut Handlers<Self>) -> Self {
        h.on_data_parts("data", Self::handle_data);
        Receiver {
            o,
            buffer: HashMap::new(),
            completed: 0,
        }
    }

    fn handle_data(
        &mut self,
        _: &mut DeviceContext,
        parts: Parts,
        index: usize,
    ) -> HookResult<bool> {
        if parts.len() != 2 {
            return Err(format!(
                "a sub-time frame has 2 parts (header, data), got {} on data[{index}]",
                parts.len()
            )
            .into());
        }
        let mut parts = parts.into_vec();
        let data = parts.pop().ok_or("no data part")?;
        let header = parts
            .pop()
            .and_then(|h| Header::from_bytes(h.data()))
            .ok_or_else(|| format!("malformed sub-time frame header on data[{index}]"))?;
        tracing::debug!(
            "Received sub-time frame #{} from Sender{} ({} bytes)",
            header.id,
            header.sender_index,
            data.size()
        );

        let tf = self.buffer.entry(header.id).or_default();
        tf.parts.push(data);
        if i64::try_from(tf.parts.len()) == Ok(i64::from(self.o.num_senders)) {
            tracing::info!("Successfully completed timeframe #{}", header.id);
            self.buffer.remove(&header.id);
            self.completed += 1;
            if self.o.max_timeframes > 0 && self.completed >= self.o.max_timeframes {
                tracing::info!(
                    "Reached configured maximum number of timeframes ({}). Exiting RUNNING state.",
                    self.o.max_timeframes
                );
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl fairmq::Device for Receiver {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.o = ctx.options()?;
        if self.o.num_senders <= 0 {
            return Err(
                format!("--num-senders must be positive, got {}", self.o.num_senders).into(),
            );
        }
        Ok(())
    }
}
