//! Property tests of the descriptor wire format (transport/wire.rs), the bytes a peer sends in
//! place of a payload: FairMQ's single and multipart frames ([`decode_single`],
//! [`decode_multi`]) and this transport's sealed forms ([`decode_single_sealed`],
//! [`decode_multi_sealed`]).
//!
//! Inputs: arbitrary frames of every length around the sizes that matter (40 and 56 bytes for
//! one header; 8 or 16 + n × 40 or 48 for multipart), multipart frames whose count is random,
//! at the edges of the length (n that fit exactly, one too many) and of the integer range
//! (counts whose byte size overflows), and frames encoded from random headers.
//! Properties: no panic and no hang; a short frame is an error whose message is one line and
//! gives the size received; an accepted frame has exactly the announced number of headers,
//! all inside the frame, each field what its bytes say (encoding it again gives the bytes
//! back); whatever was encoded decodes to itself, with any padding. Whether a descriptor names
//! a live block of the session is checked after decoding (transport/message.rs), not here.
//!
//! Cases per test: `PROPTEST_CASES` (default [`CASES`]). A long local run:
//! `PROPTEST_CASES=100000 cargo test -p fairmq-shmem --release --test prop_wire`.

use fairmq_shmem::transport::wire::{
    decode_multi, decode_multi_sealed, decode_single, decode_single_sealed, encode_multi,
    encode_multi_sealed, encode_single, encode_single_sealed, MetaHeader, Sealed, META_SIZE,
    SEAL_SIZE,
};
use fairmq_test_support::{prop_cases, within, PARSE_DEADLINE};
use proptest::prelude::*;

/// Default cases per property.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: prop_cases(CASES),
        ..ProptestConfig::default()
    }
}

fn header() -> impl Strategy<Value = MetaHeader> {
    (
        any::<u64>(),
        any::<u64>(),
        prop_oneof![Just(-1i64), any::<i64>(), 0..1i64 << 32],
        prop_oneof![Just(-1i64), any::<i64>()],
        any::<u16>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(
            |(size, hint, handle, shared, region_id, segment_id, managed)| MetaHeader {
                size,
                hint,
                handle,
                shared,
                region_id,
                segment_id,
                managed,
            },
        )
}

/// Frame lengths: every length up to a little beyond two sealed headers, and some larger.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..=120),
        1 => prop::collection::vec(any::<u8>(), 0..=4096),
    ]
}

/// A multipart frame: a count (small, or at the integer edges) and a body whose length is
/// around what the count needs in the plain and the sealed form.
fn multipart_frame() -> impl Strategy<Value = Vec<u8>> {
    let count = prop_oneof![
        6 => 0u64..12,
        1 => proptest::sample::select(vec![
            u64::MAX,
            u64::MAX / 40,
            u64::MAX / 40 + 1,
            u64::MAX / 48 + 1,
            (usize::MAX / META_SIZE) as u64,
            1 << 32,
            1 << 61,
            i64::MAX as u64,
        ]),
        1 => any::<u64>(),
    ];
    (count, -3i64..=3, any::<bool>(), any::<u64>()).prop_flat_map(|(n, delta, sealed, seed)| {
        let per = if sealed { META_SIZE + 8 } else { META_SIZE } as u64;
        let base = if sealed { 16 } else { 8 };
        let need = n.saturating_mul(per).saturating_add(base).min(2048);
        let len = (need as i64 + delta).clamp(0, 2100) as usize;
        prop::collection::vec(any::<u8>(), len..=len).prop_map(move |mut body| {
            if body.len() >= 8 {
                body[..8].copy_from_slice(&n.to_le_bytes());
            }
            // Vary the seal area too, so it is not always the random body.
            if sealed && body.len() >= 16 {
                body[8..16].copy_from_slice(&seed.to_le_bytes());
            }
            body
        })
    })
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

/// `h` is what `bytes` (40) say: encoding it gives the bytes back, but for the flag byte
/// (any non-zero byte is "managed", encoded as 1) and the three padding bytes (zeroed).
fn check_header(h: &MetaHeader, bytes: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(bytes.len(), META_SIZE);
    let mut again = [0u8; META_SIZE];
    h.encode(&mut again);
    prop_assert_eq!(&again[..36], &bytes[..36]);
    prop_assert_eq!(again[36], u8::from(bytes[36] != 0));
    prop_assert_eq!(&again[37..], &[0u8; 3][..]);
    prop_assert_eq!(h.managed, bytes[36] != 0);
    Ok(())
}

fn check_message(message: &str, len: usize) -> Result<(), TestCaseError> {
    prop_assert!(!message.contains(['\n', '\r']), "spans lines: {message:?}");
    prop_assert!(
        message.contains(&len.to_string()),
        "{message:?} gives the size received ({len})"
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn single_frames(frame in frame()) {
        let f = frame.clone();
        let plain = within(PARSE_DEADLINE, &frame, move || {
            (decode_single(&f, "prop").map_err(|e| e.to_string()), decode_single_sealed(&f))
        });
        let (plain, sealed) = plain;
        match plain {
            Ok(h) => {
                prop_assert!(frame.len() >= META_SIZE);
                check_header(&h, &frame[..META_SIZE])?;
            }
            Err(message) => {
                prop_assert!(frame.len() < META_SIZE, "a frame of {} bytes refused: {}", frame.len(), message);
                check_message(&message, frame.len())?;
            }
        }
        match sealed {
            Ok((h, secret, tag)) => {
                prop_assert!(frame.len() >= META_SIZE + SEAL_SIZE);
                check_header(&h, &frame[..META_SIZE])?;
                prop_assert_eq!(secret, u64_at(&frame, META_SIZE));
                prop_assert_eq!(tag, u64_at(&frame, META_SIZE + 8));
            }
            Err(message) => {
                prop_assert!(frame.len() < META_SIZE + SEAL_SIZE, "a frame of {} bytes refused: {}", frame.len(), message);
                check_message(&message, frame.len())?;
            }
        }
    }

    #[test]
    fn multipart_frames(frame in prop_oneof![multipart_frame(), frame()]) {
        let f = frame.clone();
        let (plain, sealed) = within(PARSE_DEADLINE, &frame, move || {
            (decode_multi(&f, "prop").map_err(|e| e.to_string()), decode_multi_sealed(&f))
        });
        let announced = (frame.len() >= 8).then(|| u64_at(&frame, 0));
        let fits = |per: u128, base: u128| {
            announced.is_some_and(|n| u128::from(n) * per + base <= frame.len() as u128)
        };
        match plain {
            Ok(hs) => {
                prop_assert!(fits(META_SIZE as u128, 8), "accepted {} headers in {} bytes", hs.len(), frame.len());
                prop_assert_eq!(Some(hs.len() as u64), announced);
                for (i, h) in hs.iter().enumerate() {
                    check_header(h, &frame[8 + i * META_SIZE..8 + (i + 1) * META_SIZE])?;
                }
            }
            Err(message) => {
                prop_assert!(!fits(META_SIZE as u128, 8), "a fitting frame refused: {}", message);
                check_message(&message, frame.len())?;
            }
        }
        match sealed {
            Ok((secret, hs)) => {
                prop_assert!(fits(META_SIZE as u128 + 8, 16), "accepted {} sealed headers in {} bytes", hs.len(), frame.len());
                let n = hs.len();
                prop_assert_eq!(Some(n as u64), announced);
                let seal = 8 + META_SIZE * n;
                prop_assert_eq!(secret, u64_at(&frame, seal));
                for (i, (h, tag)) in hs.iter().enumerate() {
                    check_header(h, &frame[8 + i * META_SIZE..8 + (i + 1) * META_SIZE])?;
                    prop_assert_eq!(*tag, u64_at(&frame, seal + 8 + 8 * i));
                }
            }
            Err(message) => {
                prop_assert!(!fits(META_SIZE as u128 + 8, 16), "a fitting sealed frame refused: {}", message);
                check_message(&message, frame.len())?;
            }
        }
    }

    /// Whatever is encoded decodes to itself, with any padding, in all four forms; a frame
    /// cut short by one byte is refused.
    #[test]
    fn encoded_frames_round_trip(
        hs in prop::collection::vec((header(), any::<u64>()), 0..6),
        secret in any::<u64>(),
        pad in prop_oneof![Just(0usize), 0..400usize],
    ) {
        let mut buf = Vec::new();
        let headers: Vec<MetaHeader> = hs.iter().map(|(h, _)| *h).collect();
        let sealed: Vec<Sealed> = hs.clone();

        encode_multi(&headers, pad, &mut buf);
        prop_assert_eq!(buf.len(), pad.max(8 + META_SIZE * headers.len()));
        prop_assert_eq!(decode_multi(&buf, "p").unwrap(), headers.clone());
        if pad <= 8 + META_SIZE * headers.len() {
            prop_assert!(decode_multi(&buf[..buf.len() - 1], "p").is_err());
        }

        encode_multi_sealed(&sealed, secret, pad, &mut buf);
        prop_assert_eq!(decode_multi_sealed(&buf).unwrap(), (secret, sealed.clone()));
        prop_assert_eq!(decode_multi(&buf, "p").unwrap(), headers.clone(), "FairMQ reads its part");
        if pad <= 16 + 48 * sealed.len() {
            prop_assert!(decode_multi_sealed(&buf[..buf.len() - 1]).is_err());
        }

        for (h, tag) in &hs {
            encode_single(h, pad, &mut buf);
            prop_assert_eq!(buf.len(), pad.max(META_SIZE));
            prop_assert_eq!(decode_single(&buf, "p").unwrap(), *h);
            encode_single_sealed(h, secret, *tag, pad, &mut buf);
            prop_assert_eq!(decode_single_sealed(&buf).unwrap(), (*h, secret, *tag));
            prop_assert_eq!(decode_single(&buf, "p").unwrap(), *h, "FairMQ reads its part");
            prop_assert!(decode_single_sealed(&buf[..META_SIZE + SEAL_SIZE - 1]).is_err());
        }
    }
}

/// Every length from 0 to 130 bytes, all zero and all 0xFF (deterministic): the boundaries
/// 40, 56 (single) and 8 + 40n, 16 + 48n (multipart) are hit exactly.
#[test]
fn every_length_around_the_boundaries() {
    for fill in [0u8, 0xFF, 1] {
        for len in 0..=130 {
            let mut frame = vec![fill; len];
            assert_eq!(decode_single(&frame, "s").is_ok(), len >= 40, "{len}");
            assert_eq!(decode_single_sealed(&frame).is_ok(), len >= 56, "{len}");
            if len >= 8 {
                frame[..8].copy_from_slice(&2u64.to_le_bytes());
            }
            assert_eq!(decode_multi(&frame, "s").is_ok(), len >= 88, "{len}");
            assert_eq!(decode_multi_sealed(&frame).is_ok(), len >= 112, "{len}");
        }
    }
}

/// A sealed multipart count whose header bytes end within 8 of `usize::MAX`
/// (0x0666_6666_6666_6666 × 40 + 8 = usize::MAX - 7) overflowed the length check of
/// `decode_multi_sealed` (a panic in debug builds, found by `multipart_frames`); it is refused.
#[test]
fn sealed_count_at_the_top_of_usize_is_refused() {
    for n in [
        0x0666_6666_6666_6666u64,
        u64::MAX / 40,
        u64::MAX / 48,
        u64::MAX,
    ] {
        let mut frame = vec![0u8; 64];
        frame[..8].copy_from_slice(&n.to_le_bytes());
        let err = decode_multi_sealed(&frame).expect_err("cannot fit");
        assert!(err.contains(&format!("announcing {n} parts")), "{err}");
        assert!(decode_multi(&frame, "s").is_err());
    }
}
