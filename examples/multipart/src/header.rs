//! The header part of the example's multipart messages: FairMQ's `example_multipart::Header`,
//! a struct of one `int32_t stopFlag`, as its 4 bytes in memory on FairMQ's platforms
//! (little-endian), so that FairMQ's sampler and sink interoperate with these.

use std::fmt;

/// The header (first part) of every multipart message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// 1 on the last message of the run (the sink leaves RUNNING), else 0.
    pub stop_flag: i32,
}

/// A header part that does not have the header's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHeader {
    /// The size of the part received as header.
    pub size: usize,
}

impl fmt::Display for BadHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "header part has {} bytes, expected {}",
            self.size,
            Header::SIZE
        )
    }
}

impl std::error::Error for BadHeader {}

impl Header {
    /// The encoded size: `sizeof(example_multipart::Header)`.
    pub const SIZE: usize = 4;

    /// The header's bytes: `stopFlag` little-endian.
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        self.stop_flag.to_le_bytes()
    }

    /// Decodes a header part; any size but [`Header::SIZE`] is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Header, BadHeader> {
        let field: [u8; Self::SIZE] = bytes
            .try_into()
            .map_err(|_| BadHeader { size: bytes.len() })?;
        Ok(Header {
            stop_flag: i32::from_le_bytes(field),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_the_size() {
        for stop_flag in [0, 1, -7, i32::MAX] {
            let h = Header { stop_flag };
            assert_eq!(Header::from_bytes(&h.to_bytes()), Ok(h));
        }
        assert_eq!(Header { stop_flag: 1 }.to_bytes(), [1, 0, 0, 0]);
        assert_eq!(Header::from_bytes(&[1, 0, 0]), Err(BadHeader { size: 3 }));
        assert_eq!(Header::from_bytes(&[]), Err(BadHeader { size: 0 }));
    }
}
