//! The metadata that travels over ZeroMQ in place of a payload: FairMQ's 40-byte `MetaHeader`
//! (spec §5.5), in its single-message and multipart forms.
//!
//! # Sealed frames (what this transport sends)
//!
//! FairMQ trusts whatever arrives on a channel: anyone who reaches a shmem channel's endpoint
//! (a tcp port above all) can make the device read and free arbitrary offsets of the session's
//! memory. This transport therefore appends a **seal** to FairMQ's headers and drops frames
//! whose seal does not hold (see [`super::message`] for the checks of each header):
//!
//! ```text
//! single:    [MetaHeader 40][secret u64][tag u64]                    padded to max(pad, 56)
//! multipart: [n u64][MetaHeader 40 × n][secret u64][tag u64 × n]     padded to max(pad, 16 + 48n)
//! ```
//!
//! * `secret`: the session secret from the management segment (proves the sender can map the
//!   session's memory, i.e. belongs to the session: the objects are readable only by the
//!   session's user or group).
//! * `tag`: per header, the tag that the buffer's allocation wrote into the buffer header (0
//!   for headers without a managed buffer). A buffer's tag is new for every allocation and
//!   cleared when the buffer is released, so a descriptor of a buffer that was already
//!   consumed (a replay, a double free) no longer matches, also after the block was reused.
//!
//! A FairMQ receiver reads the 40 bytes it knows and ignores the rest; the padding rules stay
//! FairMQ's. The seal travels in clear: a peer that can read the traffic of a tcp channel can
//! replay a frame whose buffer is still alive; use ipc channels (or a trusted network).

use fairmq_transport::TransferError;

/// Size of one encoded header.
pub const META_SIZE: usize = 40;

/// Where a payload lives: a managed-segment buffer or a block of an unmanaged region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHeader {
    /// Payload size in bytes.
    pub size: u64,
    /// User hint (region messages).
    pub hint: u64,
    /// Managed: offset of the allocation in segment `segment_id`; region: offset of the data in
    /// the region; -1: no buffer.
    pub handle: i64,
    /// -1: not shared; else the handle of the reference count of a copied region message.
    pub shared: i64,
    /// Unmanaged region id.
    pub region_id: u16,
    /// Managed segment id.
    pub segment_id: u16,
    /// Managed segment buffer (true) or region block (false).
    pub managed: bool,
}

impl MetaHeader {
    /// The header of an empty message.
    pub const EMPTY: MetaHeader = MetaHeader {
        size: 0,
        hint: 0,
        handle: -1,
        shared: -1,
        region_id: 0,
        segment_id: 0,
        managed: true,
    };

    /// Encodes into `out` (40 bytes, little-endian, FairMQ's x86-64 layout).
    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..16].copy_from_slice(&self.hint.to_le_bytes());
        out[16..24].copy_from_slice(&self.handle.to_le_bytes());
        out[24..32].copy_from_slice(&self.shared.to_le_bytes());
        out[32..34].copy_from_slice(&self.region_id.to_le_bytes());
        out[34..36].copy_from_slice(&self.segment_id.to_le_bytes());
        out[36] = u8::from(self.managed);
        out[37..40].fill(0);
    }

    /// Decodes 40 bytes.
    pub fn decode(b: &[u8]) -> MetaHeader {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        MetaHeader {
            size: u64_at(0),
            hint: u64_at(8),
            handle: u64_at(16) as i64,
            shared: u64_at(24) as i64,
            region_id: u16::from_le_bytes([b[32], b[33]]),
            segment_id: u16::from_le_bytes([b[34], b[35]]),
            managed: b[36] != 0,
        }
    }
}

fn invalid(socket: &str, reason: String) -> TransferError {
    TransferError::Other {
        socket: socket.to_string(),
        reason,
    }
}

/// The single-message frame: one header, zero-padded to `max(pad_to, 40)` bytes.
pub fn encode_single(h: &MetaHeader, pad_to: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(pad_to.max(META_SIZE), 0);
    h.encode(&mut buf[..META_SIZE]);
}

/// Decodes a single-message frame.
pub fn decode_single(frame: &[u8], socket: &str) -> Result<MetaHeader, TransferError> {
    if frame.len() < META_SIZE {
        return Err(invalid(
            socket,
            format!(
                "Received message is not a valid FairMQ shared memory message. Possibly due to a misconfigured transport on the sender side. Expected minimum size of {META_SIZE} bytes, received {}",
                frame.len()
            ),
        ));
    }
    Ok(MetaHeader::decode(&frame[..META_SIZE]))
}

/// The multipart frame: `u64 n` followed by n headers, padded to `max(pad_to, 8 + 40n)`.
pub fn encode_multi(hs: &[MetaHeader], pad_to: usize, buf: &mut Vec<u8>) {
    let len = 8 + META_SIZE * hs.len();
    buf.clear();
    buf.resize(pad_to.max(len), 0);
    buf[..8].copy_from_slice(&(hs.len() as u64).to_le_bytes());
    for (i, h) in hs.iter().enumerate() {
        h.encode(&mut buf[8 + i * META_SIZE..8 + (i + 1) * META_SIZE]);
    }
}

/// Decodes a multipart frame.
pub fn decode_multi(frame: &[u8], socket: &str) -> Result<Vec<MetaHeader>, TransferError> {
    if frame.len() < 8 {
        return Err(invalid(
            socket,
            format!("received a multipart shared memory frame of {} bytes; expected at least 8 (check that both sides use multipart sends and the shmem transport)", frame.len()),
        ));
    }
    let n = u64::from_le_bytes(frame[..8].try_into().unwrap_or([0; 8]));
    let need = (n as usize)
        .checked_mul(META_SIZE)
        .and_then(|x| x.checked_add(8))
        .filter(|need| *need <= frame.len())
        .ok_or_else(|| {
            invalid(
                socket,
                format!("multipart shared memory frame announces {n} parts but holds {} bytes; the sender probably used a single-message send (both sides must use the same API)", frame.len()),
            )
        })?;
    let _ = need;
    Ok((0..n as usize)
        .map(|i| MetaHeader::decode(&frame[8 + i * META_SIZE..8 + (i + 1) * META_SIZE]))
        .collect())
}

/// Bytes a seal adds to a single-message frame.
pub const SEAL_SIZE: usize = 16;

/// A header together with the tag of the buffer it names (0 if none).
pub type Sealed = (MetaHeader, u64);

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]))
}

/// Size of an unpadded sealed single-message frame.
pub const SINGLE_SEALED_SIZE: usize = META_SIZE + SEAL_SIZE;

/// The sealed single-message frame without padding, into a buffer of its exact size.
pub fn seal_single(h: &MetaHeader, secret: u64, tag: u64, buf: &mut [u8; SINGLE_SEALED_SIZE]) {
    h.encode(&mut buf[..META_SIZE]);
    buf[META_SIZE..META_SIZE + 8].copy_from_slice(&secret.to_le_bytes());
    buf[META_SIZE + 8..].copy_from_slice(&tag.to_le_bytes());
}

/// The sealed single-message frame, padded to `max(pad_to, 56)` bytes.
pub fn encode_single_sealed(
    h: &MetaHeader,
    secret: u64,
    tag: u64,
    pad_to: usize,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    buf.resize(pad_to.max(SINGLE_SEALED_SIZE), 0);
    let mut head = [0u8; SINGLE_SEALED_SIZE];
    seal_single(h, secret, tag, &mut head);
    buf[..SINGLE_SEALED_SIZE].copy_from_slice(&head);
}

/// Whether `frame` is a sealed single-message frame of the session with `secret` (the secret
/// follows the first header), as opposed to a sealed multipart frame, whose bytes at that place
/// belong to its first header: equal to the 64-bit random secret only by a chance of 2^-64. This
/// is what lets a multipart receive take a single message and a single receive take a one-part
/// multipart message (FairMQ's two formats cannot be told apart, spec §5.5 [quirk]).
pub fn is_single_sealed(frame: &[u8], secret: u64) -> bool {
    frame.len() >= META_SIZE + SEAL_SIZE && u64_at(frame, META_SIZE) == secret
}

/// Decodes a sealed single-message frame: the header, the secret and the tag; `Err` says why
/// the frame is no such frame.
pub fn decode_single_sealed(frame: &[u8]) -> Result<(MetaHeader, u64, u64), String> {
    if frame.len() < META_SIZE + SEAL_SIZE {
        return Err(format!(
            "a frame of {} bytes is no shared memory descriptor (expected at least {} bytes; does the sender use the shmem transport of fairmq-rs and the single-message API?)",
            frame.len(),
            META_SIZE + SEAL_SIZE
        ));
    }
    Ok((
        MetaHeader::decode(&frame[..META_SIZE]),
        u64_at(frame, META_SIZE),
        u64_at(frame, META_SIZE + 8),
    ))
}

/// The sealed multipart frame, padded to `max(pad_to, 16 + 48n)` bytes.
pub fn encode_multi_sealed(hs: &[Sealed], secret: u64, pad_to: usize, buf: &mut Vec<u8>) {
    let n = hs.len();
    let seal = 8 + META_SIZE * n;
    buf.clear();
    buf.resize(pad_to.max(seal + 8 + 8 * n), 0);
    buf[..8].copy_from_slice(&(n as u64).to_le_bytes());
    for (i, (h, tag)) in hs.iter().enumerate() {
        h.encode(&mut buf[8 + i * META_SIZE..8 + (i + 1) * META_SIZE]);
        buf[seal + 8 + 8 * i..seal + 16 + 8 * i].copy_from_slice(&tag.to_le_bytes());
    }
    buf[seal..seal + 8].copy_from_slice(&secret.to_le_bytes());
}

/// Decodes a sealed multipart frame: the secret and every header with its tag.
pub fn decode_multi_sealed(frame: &[u8]) -> Result<(u64, Vec<Sealed>), String> {
    if frame.len() < 16 {
        return Err(format!(
            "a frame of {} bytes is no multipart shared memory descriptor (expected at least 16 bytes)",
            frame.len()
        ));
    }
    let n = u64_at(frame, 0);
    let seal = (n as usize)
        .checked_mul(META_SIZE)
        .and_then(|x| x.checked_add(8))
        .filter(|s| {
            // Every sum checked: a count near usize::MAX / 40 put `s` within 8 of the top.
            (n as usize)
                .checked_mul(8)
                .and_then(|t| t.checked_add(*s)?.checked_add(8))
                .is_some_and(|end| end <= frame.len())
        })
        .ok_or_else(|| {
            format!(
                "a multipart shared memory descriptor announcing {n} parts cannot fit in {} bytes (does the sender use the multipart API?)",
                frame.len()
            )
        })?;
    let hs = (0..n as usize)
        .map(|i| {
            (
                MetaHeader::decode(&frame[8 + i * META_SIZE..8 + (i + 1) * META_SIZE]),
                u64_at(frame, seal + 8 + 8 * i),
            )
        })
        .collect();
    Ok((u64_at(frame, seal), hs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_fairmq() {
        let h = MetaHeader {
            size: 0x0102030405060708,
            hint: 42,
            handle: -1,
            shared: 77,
            region_id: 1024,
            segment_id: 3,
            managed: false,
        };
        let mut b = [0xFFu8; 40];
        h.encode(&mut b);
        assert_eq!(&b[0..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[8..16], &42u64.to_le_bytes());
        assert_eq!(&b[16..24], &[0xFF; 8], "handle -1");
        assert_eq!(&b[24..32], &77i64.to_le_bytes());
        assert_eq!(&b[32..34], &1024u16.to_le_bytes());
        assert_eq!(&b[34..36], &3u16.to_le_bytes());
        assert_eq!(b[36], 0);
        assert_eq!(&b[37..40], &[0, 0, 0], "padding zeroed");
        assert_eq!(MetaHeader::decode(&b), h);
    }

    #[test]
    fn single_and_multi_frames_round_trip_with_padding() {
        let h = MetaHeader {
            size: 5,
            handle: 4096,
            ..MetaHeader::EMPTY
        };
        let mut buf = Vec::new();
        encode_single(&h, 0, &mut buf);
        assert_eq!(buf.len(), 40);
        encode_single(&h, 2048, &mut buf);
        assert_eq!(buf.len(), 2048);
        assert_eq!(decode_single(&buf, "s").unwrap(), h);
        let err = decode_single(&buf[..39], "s").unwrap_err().to_string();
        assert!(
            err.contains("Expected minimum size of 40 bytes, received 39"),
            "{err}"
        );

        let hs = [h, MetaHeader::EMPTY, MetaHeader { size: 9, ..h }];
        encode_multi(&hs, 0, &mut buf);
        assert_eq!(buf.len(), 8 + 120);
        assert_eq!(decode_multi(&buf, "s").unwrap(), hs);
        encode_multi(&hs, 1000, &mut buf);
        assert_eq!(buf.len(), 1000);
        assert_eq!(decode_multi(&buf, "s").unwrap(), hs);
        assert!(decode_multi(&buf[..100], "s").is_err());
    }

    #[test]
    fn sealed_frames_round_trip_and_short_ones_are_refused() {
        let h = MetaHeader {
            size: 5,
            handle: 4096,
            ..MetaHeader::EMPTY
        };
        let mut buf = Vec::new();
        encode_single_sealed(&h, 0xABCD, 77, 0, &mut buf);
        assert_eq!(buf.len(), 56);
        assert_eq!(
            decode_single(&buf, "s").unwrap(),
            h,
            "FairMQ's 40 bytes come first"
        );
        assert_eq!(decode_single_sealed(&buf).unwrap(), (h, 0xABCD, 77));
        encode_single_sealed(&h, 1, 2, 4096, &mut buf);
        assert_eq!(buf.len(), 4096);
        assert_eq!(decode_single_sealed(&buf).unwrap(), (h, 1, 2));
        assert!(decode_single_sealed(&buf[..40]).is_err());

        let hs = [
            (h, 7),
            (MetaHeader::EMPTY, 0),
            (MetaHeader { size: 9, ..h }, 9),
        ];
        encode_multi_sealed(&hs, 0x5EC, 0, &mut buf);
        assert_eq!(buf.len(), 8 + 120 + 8 + 24);
        assert_eq!(
            decode_multi(&buf, "s").unwrap(),
            hs.map(|x| x.0),
            "FairMQ's layout first"
        );
        assert_eq!(decode_multi_sealed(&buf).unwrap(), (0x5EC, hs.to_vec()));
        encode_multi_sealed(&hs, 3, 1000, &mut buf);
        assert_eq!(decode_multi_sealed(&buf).unwrap(), (3, hs.to_vec()));
        assert!(decode_multi_sealed(&buf[..150]).is_err());
        let mut huge = vec![0u8; 64];
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_multi_sealed(&huge).is_err(), "no overflow");
        encode_multi_sealed(&[], 3, 0, &mut buf);
        assert_eq!(decode_multi_sealed(&buf).unwrap(), (3, vec![]));
    }
}
