//! `fairmq-ex-multipart-sink`: receives the sampler's seven-part messages on `data`, checks
//! and prints their parts, and leaves RUNNING after the one whose header has stop flag 1.

use fairmq::{DeviceContext, Handlers, HookResult, Parts};

use crate::header::Header;
use crate::BODY_SIZES;

/// The sink.
#[derive(Debug, Default)]
pub struct Sink;

impl Sink {
    /// The sink, handling multipart messages on `data`.
    pub fn new(h: &mut Handlers<Self>) -> Self {
        h.on_data_parts("data", Self::handle_data);
        Sink
    }

    fn handle_data(&mut self, _: &mut DeviceContext, parts: Parts, _: usize) -> HookResult<bool> {
        tracing::info!("Received message with {} parts", parts.len());
        let expected = 1 + BODY_SIZES.len();
        if parts.len() != expected {
            return Err(format!("Number of received parts != {expected}").into());
        }
        let header = Header::from_bytes(parts[0].data())?;
        tracing::info!(
            "Received part 1 (header) with stopFlag: {}",
            header.stop_flag
        );
        for (i, &size) in BODY_SIZES.iter().enumerate() {
            let got = parts[i + 1].size();
            tracing::info!("Received part {} of size: {got}", i + 2);
            if got != size {
                return Err(format!("part {} has {got} bytes, expected {size}", i + 2).into());
            }
        }
        if header.stop_flag == 1 {
            tracing::info!("stopFlag is 1, going IDLE");
            return Ok(false);
        }
        Ok(true)
    }
}

impl fairmq::Device for Sink {}
