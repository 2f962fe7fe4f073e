//! The header part of a sub-time frame: FairMQ's `example_n_m::Header`, a C struct
//! `{ uint16_t id; int senderIndex; }`, encoded field by field in its C layout.

/// Size of the encoded header: `id` at offset 0 (2 bytes), 2 bytes of padding, `senderIndex`
/// at offset 4 (4 bytes), as the C struct is laid out.
pub const HEADER_SIZE: usize = 8;
const SENDER_INDEX_OFFSET: usize = 4;

/// A sub-time frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Time frame id.
    pub id: u16,
    /// Index of the sender that sent the sub-time frame.
    pub sender_index: i32,
}

impl Header {
    /// The header as bytes, in host byte order like the C struct (padding zeroed).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[..2].copy_from_slice(&self.id.to_ne_bytes());
        out[SENDER_INDEX_OFFSET..].copy_from_slice(&self.sender_index.to_ne_bytes());
        out
    }

    /// Decodes a header; `None` unless `bytes` is exactly [`HEADER_SIZE`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER_SIZE] = bytes.try_into().ok()?;
        let id = u16::from_ne_bytes([bytes[0], bytes[1]]);
        let sender_index = i32::from_ne_bytes(bytes[SENDER_INDEX_OFFSET..].try_into().ok()?);
        Some(Header { id, sender_index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header {
            id: 0xBEEF,
            sender_index: -7,
        };
        let bytes = h.to_bytes();
        assert_eq!(bytes.len(), HEADER_SIZE);
        assert_eq!(&bytes[2..4], &[0, 0]);
        assert_eq!(Header::from_bytes(&bytes), Some(h));
    }

    #[test]
    fn c_layout() {
        let bytes = Header {
            id: 0x0102,
            sender_index: 0x0304_0506,
        }
        .to_bytes();
        assert_eq!(&bytes[..2], &0x0102u16.to_ne_bytes());
        assert_eq!(&bytes[4..], &0x0304_0506i32.to_ne_bytes());
    }

    #[test]
    fn wrong_size_is_rejected() {
        assert_eq!(Header::from_bytes(&[0; 7]), None);
        assert_eq!(Header::from_bytes(&[0; 9]), None);
    }
}
