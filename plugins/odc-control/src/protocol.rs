//! The wire protocol between the `odc` plugin (one in every device) and a controller such as
//! `fairmq-topology`.
//!
//! * One TCP connection per device, opened by the device to `--odc-controller <host:port>`
//!   (the controller listens; devices on any node only need to reach it, the controller needs
//!   to know nothing about them in advance).
//! * Every message is one line of JSON (UTF-8, terminated by `\n`, at most [`MAX_LINE`]
//!   bytes). Unknown fields are ignored, so both sides may add optional fields.
//! * Device → controller: [`DeviceMessage`]: first a [`Hello`] (protocol version, id, pid,
//!   host, Slurm task, current state), then a `state` message for every state the device
//!   enters, `stats` (the channels' counters) every `--odc-stats-interval` ms while channels
//!   exist, and exactly one [`Reply`] per [`Request`], in request order.
//! * Controller → device: [`Request`]s, each with a sequence number that the reply repeats.
//!   Commands: change the state (a FairMQ transition by its display name, e.g. `INIT DEVICE`),
//!   set the channel configuration (FairMQ's `--mq-config` JSON), set properties, read
//!   properties by prefix, read the channel counters now.
//!
//! State and transition names are FairMQ's display names (`DEVICE READY`, `RESET TASK`).
//! Closing the connection is meaningful both ways: the controller sees a device that dies as
//! end of stream before `EXITING`; a device that loses its controller shuts itself down.

use std::collections::BTreeMap;
use std::io::{BufRead, Read as _, Write};

use serde::{Deserialize, Serialize};

/// The protocol version carried in [`Hello::protocol`]; a controller refuses other versions.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side accepts (1 MiB): a longer one is a protocol error.
pub const MAX_LINE: usize = 1 << 20;

/// Errors reading or writing protocol messages.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The connection failed.
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
    /// A line was not a valid message.
    #[error("control connection: invalid message {line:?}: {source}")]
    Json {
        /// The line (cut to 200 characters).
        line: String,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A message could not be encoded.
    #[error("control connection: cannot encode message: {0}")]
    Encode(#[source] serde_json::Error),
    /// A line longer than [`MAX_LINE`].
    #[error("control connection: message longer than {MAX_LINE} bytes")]
    TooLong,
}

/// Where a device runs when it is a Slurm task (from the task's environment).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SlurmTask {
    /// `SLURM_JOB_ID`.
    pub job_id: String,
    /// `SLURM_STEP_ID`.
    #[serde(default)]
    pub step_id: Option<String>,
    /// `SLURM_PROCID`: the task's rank in the step.
    #[serde(default)]
    pub proc_id: Option<u32>,
    /// `SLURMD_NODENAME`: the Slurm node the task runs on.
    #[serde(default)]
    pub node_name: Option<String>,
}

impl SlurmTask {
    /// The task described by `SLURM_*` variables of `env`, if `SLURM_JOB_ID` is set.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Option<SlurmTask> {
        Some(SlurmTask {
            job_id: env("SLURM_JOB_ID")?,
            step_id: env("SLURM_STEP_ID"),
            proc_id: env("SLURM_PROCID").and_then(|p| p.parse().ok()),
            node_name: env("SLURMD_NODENAME"),
        })
    }
}

/// The first message of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the device.
    pub protocol: u32,
    /// The device id (`--id`).
    pub id: String,
    /// The device's process id.
    pub pid: u32,
    /// The host name of the machine (or UTS namespace) the device runs in.
    pub hostname: String,
    /// The Slurm task, if the device is one.
    #[serde(default)]
    pub slurm: Option<SlurmTask>,
    /// The shared-memory session (`--session`).
    #[serde(default)]
    pub session: String,
    /// The current state (display name).
    pub state: String,
}

/// The counters of one sub-channel (one socket).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Channel name.
    pub name: String,
    /// Sub-channel index.
    pub index: usize,
    /// Transport name (`zeromq`, `shmem`).
    pub transport: String,
    /// The address as attached (the actual port after an auto-bind).
    pub address: String,
    /// `bind` or `connect`.
    pub method: String,
    /// Number of connected peers.
    pub peers: usize,
    /// Messages received (a multipart message counts once).
    pub msgs_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
}

impl ChannelStats {
    /// `name[index]`.
    pub fn full_name(&self) -> String {
        format!("{}[{}]", self.name, self.index)
    }
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reply {
    /// The request's sequence number.
    pub seq: u64,
    /// Whether the command was done (for `change_state`: whether the transition was accepted).
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `get_properties`: the properties as strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// `get_stats`: the channels' counters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelStats>,
}

/// Device → controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceMessage {
    /// The first message.
    Hello(Hello),
    /// The device entered `state` (display name).
    State {
        /// The new state.
        state: String,
    },
    /// Periodic channel counters.
    Stats {
        /// One entry per sub-channel.
        channels: Vec<ChannelStats>,
    },
    /// The answer to a request.
    Reply(Reply),
}

/// What the controller asks a device to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Schedule a transition (display name, e.g. `INIT DEVICE`). The reply's `ok` is whether
    /// the state machine accepted it; the new state arrives as a `state` message.
    ChangeState {
        /// The transition.
        transition: String,
    },
    /// Replace the device's channel configuration with the channels of this FairMQ
    /// `--mq-config` document for the device's id (every `chans.*` property is rewritten).
    /// Only useful in `INITIALIZING DEVICE`, before `COMPLETE INIT`.
    SetChannels {
        /// `{"fairMQOptions": {"devices": [{"id": ..., "channels": [...]}]}}`.
        config: serde_json::Value,
    },
    /// Set properties. A key that exists keeps its type (the text is parsed as that type);
    /// a new key is stored as a string.
    SetProperties {
        /// Key → value as text.
        properties: BTreeMap<String, String>,
    },
    /// Read every property whose key starts with `prefix`, as strings.
    GetProperties {
        /// The key prefix (`chans.` for the channel configuration, `""` for everything).
        prefix: String,
    },
    /// Read the channel counters now.
    GetStats,
}

/// One controller → device message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Sequence number, repeated in the reply.
    pub seq: u64,
    /// The command.
    #[serde(flatten)]
    pub command: Command,
}

/// Writes `message` as one line and flushes.
pub fn write_message<T: Serialize>(out: &mut impl Write, message: &T) -> Result<(), ProtocolError> {
    let mut line = serde_json::to_vec(message).map_err(ProtocolError::Encode)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

/// Reads the next message; `Ok(None)` at end of stream.
pub fn read_message<T: for<'de> Deserialize<'de>>(
    input: &mut impl BufRead,
) -> Result<Option<T>, ProtocolError> {
    let mut line = Vec::new();
    let n = input
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if line.len() > MAX_LINE {
            return Err(ProtocolError::TooLong);
        }
        // The peer closed in the middle of a line: treat it as the end of the stream.
        return Ok(None);
    }
    serde_json::from_slice(&line).map(Some).map_err(|source| {
        let text = String::from_utf8_lossy(&line);
        ProtocolError::Json {
            line: text.trim_end().chars().take(200).collect(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T>(m: &T) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let mut buf = Vec::new();
        write_message(&mut buf, m).unwrap();
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
        read_message(&mut buf.as_slice()).unwrap().unwrap()
    }

    #[test]
    fn messages_roundtrip() {
        let hello = DeviceMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            id: "sampler-0".into(),
            pid: 42,
            hostname: "n1".into(),
            slurm: Some(SlurmTask {
                job_id: "7".into(),
                step_id: Some("0".into()),
                proc_id: Some(3),
                node_name: Some("n1".into()),
            }),
            session: "s".into(),
            state: "IDLE".into(),
        });
        assert_eq!(roundtrip(&hello), hello);
        let reply = DeviceMessage::Reply(Reply {
            seq: 9,
            ok: false,
            error: Some("no".into()),
            ..Reply::default()
        });
        assert_eq!(roundtrip(&reply), reply);
        for command in [
            Command::ChangeState {
                transition: "INIT DEVICE".into(),
            },
            Command::GetStats,
            Command::GetProperties {
                prefix: "chans.".into(),
            },
            Command::SetChannels {
                config: serde_json::json!({"fairMQOptions": {"devices": []}}),
            },
        ] {
            let r = Request { seq: 1, command };
            assert_eq!(roundtrip(&r), r);
        }
    }

    #[test]
    fn wire_form_is_flat() {
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &Request {
                seq: 3,
                command: Command::ChangeState {
                    transition: "RUN".into(),
                },
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"seq\":3,\"cmd\":\"change_state\",\"transition\":\"RUN\"}\n"
        );
    }

    #[test]
    fn end_of_stream_garbage_and_long_lines() {
        let empty: &[u8] = b"";
        assert!(read_message::<Request>(&mut &*empty).unwrap().is_none());
        let partial: &[u8] = b"{\"seq\":1";
        assert!(read_message::<Request>(&mut &*partial).unwrap().is_none());
        let bad: &[u8] = b"not json\n";
        let e = read_message::<Request>(&mut &*bad).unwrap_err();
        assert!(e.to_string().contains("not json"), "{e}");
        let long = vec![b' '; MAX_LINE + 10];
        assert!(matches!(
            read_message::<Request>(&mut long.as_slice()),
            Err(ProtocolError::TooLong)
        ));
    }
}
