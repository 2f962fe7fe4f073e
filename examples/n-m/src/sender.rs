//! `fairmq-ex-n-m-sender`: for every time frame id from `sync`, sends a sub-time frame
//! (header + `--subtimeframe-size` bytes) to receiver `id % --num-receivers`, i.e. on
//! sub-channel `data[id % num-receivers]`, without waiting if it cannot be queued.

use fairmq::{DeviceContext, HookResult, Outcome, Parts, Timeout, TransferResultExt};

use crate::header::Header;

/// The sender's options (FairMQ's).
#[derive(Debug, Clone, clap::Args)]
pub struct SenderOptions {
    /// Sender Index
    #[arg(long, default_value_t = 0)]
    pub sender_index: i32,
    /// Subtimeframe size in bytes
    #[arg(long, default_value_t = 1000)]
    pub subtimeframe_size: i32,
    /// Number of EPNs
    #[arg(long)]
    pub num_receivers: i32,
}

/// The sender.
#[derive(Debug)]
pub struct Sender {
    o: SenderOptions,
}

impl Sender {
    /// A sender configured from the options.
    pub fn new(o: SenderOptions) -> Self {
        Sender { o }
    }
}

impl fairmq::Device for Sender {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.o = ctx.options()?;
        if self.o.num_receivers <= 0 {
            return Err(format!(
                "--num-receivers must be positive, got {}",
                self.o.num_receivers
            )
            .into());
        }
        if self.o.subtimeframe_size < 0 {
            return Err(format!(
                "--subtimeframe-size must not be negative, got {}",
                self.o.subtimeframe_size
            )
            .into());
        }
        Ok(())
    }

    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        // Checked in init_task: both are non-negative.
        let num_receivers = self.o.num_receivers.unsigned_abs() as usize;
        let size = self.o.subtimeframe_size.unsigned_abs() as usize;
        while !ctx.new_state_pending() {
            let mut id_msg = ctx.new_message()?;
            match ctx.receive(&mut id_msg, "sync").outcome()? {
                Outcome::Done(_) => {}
                Outcome::TimedOut => continue,
                Outcome::Interrupted => break,
            }
            let id = crate::decode_id(id_msg.data()).ok_or_else(|| {
                format!(
                    "malformed time frame id on 'sync': {} bytes, expected 2",
                    id_msg.size()
                )
            })?;
            let header = Header {
                id,
                sender_index: self.o.sender_index,
            };

            let direction = usize::from(id) % num_receivers;
            let channel = ctx.channel(("data", direction))?;
            let mut parts = Parts::new();
            parts.add_part(channel.new_message_from(header.to_bytes().to_vec())?);
            parts.add_part(channel.new_message_with_size(size)?);
            if !channel
                .send_parts_timeout(&mut parts, Timeout::Immediately)
                .outcome()?
                .is_done()
            {
                tracing::debug!("Failed to queue Subtimeframe #{id} to Receiver[{direction}]");
            }
        }
        Ok(())
    }
}
