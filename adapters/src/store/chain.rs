//! The per-stream hash chain: every stored event carries the SHA-256 link
//! `hash = H(previous_hash, stream, version, event_id, event_type,
//! schema_version, data)`, where `previous_hash` is the hash of the stream's
//! event just before it (32 zero bytes before version 0).
//!
//! Pure: no IO. Every store computes the link inside its append, from the
//! stream's head at the expected version (see
//! `docs/decisions/0004-hash-chain.md`); `paycode verify` recomputes it.
//!
//! The bytes hashed are a canonical encoding that cannot be read two ways: a
//! domain tag, then fixed-width fields as they are and variable-length fields
//! behind their length (big-endian `u64`). Neither the global position nor
//! the time of recording is covered: both belong to the store that holds the
//! event (EventStoreDB's positions differ from SQLite's), and a ledger copied
//! from one store to another must keep the same chain.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{NewEvent, RecordedEvent};

/// One link of the chain: a SHA-256 digest.
pub type ChainHash = [u8; 32];

/// The `previous_hash` of a stream's first event.
pub const GENESIS: ChainHash = [0; 32];

/// Separates these digests from any other SHA-256 of the same bytes, and
/// names the encoding: a change of encoding is a new tag, never a silent one.
const DOMAIN_TAG: &[u8] = b"paycode/event-chain/v1\n";

/// The hash of an event stored at `version` of `stream`, chained to
/// `previous` (the hash of the event at `version - 1`, or `GENESIS`).
pub fn chain_hash(
    previous: &ChainHash,
    stream: &str,
    version: u64,
    event_id: Uuid,
    event_type: &str,
    schema_version: u32,
    data: &[u8],
) -> ChainHash {
    // Everything but the payload is gathered first (on the stack when it
    // fits) and handed over in one piece: each `update` has a cost of its
    // own, and `paycode verify` makes a million of these a second. The
    // bytes hashed are the same either way.
    let head_len = HEAD_BYTES + stream.len() + event_type.len();
    let mut on_stack = [0u8; STACK_HEAD_BYTES];
    let mut on_heap = Vec::new();
    let head: &mut [u8] = if head_len <= STACK_HEAD_BYTES {
        &mut on_stack[..head_len]
    } else {
        on_heap.resize(head_len, 0);
        &mut on_heap
    };
    let mut written = 0;
    for part in [
        DOMAIN_TAG,
        previous.as_slice(),
        &(stream.len() as u64).to_be_bytes(),
        stream.as_bytes(),
        &version.to_be_bytes(),
        event_id.as_bytes(),
        &(event_type.len() as u64).to_be_bytes(),
        event_type.as_bytes(),
        &schema_version.to_be_bytes(),
        &(data.len() as u64).to_be_bytes(),
    ] {
        head[written..written + part.len()].copy_from_slice(part);
        written += part.len();
    }
    let mut hasher = Sha256::new();
    hasher.update(&head[..written]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The fixed-width bytes of a link's encoding before the payload: the tag,
/// the previous hash, three length prefixes, the version, the event id and
/// the schema version.
const HEAD_BYTES: usize = DOMAIN_TAG.len() + 32 + 3 * 8 + 8 + 16 + 4;

/// Room on the stack for the bytes before the payload: a stream name and an
/// event type of 150 bytes together (paycode's are a few dozen).
const STACK_HEAD_BYTES: usize = HEAD_BYTES + 150;

/// The hash `event` gets when it is stored at `version` of `stream` after
/// an event whose hash is `previous`. Stores call it inside their append.
pub fn link_new(previous: &ChainHash, stream: &str, version: u64, event: &NewEvent) -> ChainHash {
    chain_hash(
        previous,
        stream,
        version,
        event.event_id,
        &event.event_type,
        event.schema_version,
        &event.data,
    )
}

/// The hash a recorded event should carry, recomputed from its own fields
/// and the `previous_hash` it carries.
pub fn recompute(event: &RecordedEvent) -> ChainHash {
    chain_hash(
        &event.previous_hash,
        &event.stream,
        event.version,
        event.event_id,
        &event.event_type,
        event.schema_version,
        &event.data,
    )
}

/// Lower-case hex, as EventStoreDB's metadata and `paycode verify` show it.
pub fn to_hex(hash: &ChainHash) -> String {
    hex::encode(hash)
}

/// The inverse of `to_hex` (either case); `None` unless exactly 64 hex digits.
pub fn from_hex(text: &str) -> Option<ChainHash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut hash = GENESIS;
    for (slot, pair) in hash.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |byte: u8| char::from(byte).to_digit(16);
        *slot = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fields {
        previous: ChainHash,
        stream: String,
        version: u64,
        event_id: Uuid,
        event_type: String,
        schema_version: u32,
        data: Vec<u8>,
    }

    impl Fields {
        fn hash(&self) -> ChainHash {
            chain_hash(
                &self.previous,
                &self.stream,
                self.version,
                self.event_id,
                &self.event_type,
                self.schema_version,
                &self.data,
            )
        }
    }

    fn sample() -> Fields {
        Fields {
            previous: [7; 32],
            stream: "payment-demo-A1".to_owned(),
            version: 3,
            event_id: Uuid::from_u128(0x0190_f5a0_0000_7000_8000_0000_0000_0001),
            event_type: "Submitted".to_owned(),
            schema_version: 1,
            data: b"{\"amount\":\"12.34\"}".to_vec(),
        }
    }

    #[test]
    fn the_hash_is_a_fixed_function_of_its_inputs() {
        // Shows that the link is deterministic and pins its value, so that a
        // change of encoding is a visible diff (every stored chain depends on it).
        // Both vectors were computed independently of this code (Python's
        // hashlib over the encoding the module doc describes).
        let fields = sample();
        assert_eq!(fields.hash(), sample().hash());
        assert_eq!(
            to_hex(&fields.hash()),
            "7d4904abbe2b6daa8f68b5201849a22a9ee86445709bf40b8db1cc474540efd1",
            "the canonical encoding changed: that breaks every stored chain"
        );
        let empty = chain_hash(&GENESIS, "", 0, Uuid::nil(), "", 0, b"");
        assert_eq!(
            to_hex(&empty),
            "fe33ca936a7bf34b1fab48c56330bf09555fd7fb4b94ca456863b0dc6d484102",
            "the canonical encoding changed: that breaks every stored chain"
        );
    }

    #[test]
    fn names_too_long_for_the_stack_hash_as_short_ones_do() {
        // Shows that the head gathered on the heap (a stream name and type
        // past the stack's room) is the same encoding: each link equals the
        // field-by-field digest of the module doc, on both sides of the limit.
        fn field_by_field(fields: &Fields) -> ChainHash {
            let prefixed = |hasher: &mut Sha256, bytes: &[u8]| {
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            };
            let mut hasher = Sha256::new();
            hasher.update(DOMAIN_TAG);
            hasher.update(fields.previous);
            prefixed(&mut hasher, fields.stream.as_bytes());
            hasher.update(fields.version.to_be_bytes());
            hasher.update(fields.event_id.as_bytes());
            prefixed(&mut hasher, fields.event_type.as_bytes());
            hasher.update(fields.schema_version.to_be_bytes());
            prefixed(&mut hasher, &fields.data);
            hasher.finalize().into()
        }
        for stream_len in [0, 1, 100, 149, 150, 151, 500] {
            let fields = Fields {
                stream: "s".repeat(stream_len),
                ..sample()
            };
            assert_eq!(fields.hash(), field_by_field(&fields), "{stream_len}");
        }
    }

    #[test]
    fn changing_any_byte_of_any_field_changes_the_hash() {
        // Shows that every input is covered: each byte of the previous hash,
        // the stream, the version, the event id, the type, the schema version
        // and the data moves the link when flipped.
        let original = sample();
        let base = original.hash();
        let mut variants: Vec<(String, Fields)> = Vec::new();
        for index in 0..32 {
            let mut changed = sample();
            changed.previous[index] ^= 1;
            variants.push((format!("previous[{index}]"), changed));
        }
        for index in 0..original.stream.len() {
            let mut changed = sample();
            let mut bytes = changed.stream.into_bytes();
            bytes[index] ^= 1;
            changed.stream = String::from_utf8(bytes).expect("ascii stays utf-8");
            variants.push((format!("stream[{index}]"), changed));
        }
        for bit in 0..64 {
            let mut changed = sample();
            changed.version ^= 1 << bit;
            variants.push((format!("version bit {bit}"), changed));
        }
        for index in 0..16 {
            let mut changed = sample();
            let mut bytes = *changed.event_id.as_bytes();
            bytes[index] ^= 1;
            changed.event_id = Uuid::from_bytes(bytes);
            variants.push((format!("event_id[{index}]"), changed));
        }
        for index in 0..original.event_type.len() {
            let mut changed = sample();
            let mut bytes = changed.event_type.into_bytes();
            bytes[index] ^= 1;
            changed.event_type = String::from_utf8(bytes).expect("ascii stays utf-8");
            variants.push((format!("event_type[{index}]"), changed));
        }
        for bit in 0..32 {
            let mut changed = sample();
            changed.schema_version ^= 1 << bit;
            variants.push((format!("schema_version bit {bit}"), changed));
        }
        for index in 0..original.data.len() {
            let mut changed = sample();
            changed.data[index] ^= 1;
            variants.push((format!("data[{index}]"), changed));
        }
        let mut appended = sample();
        appended.data.push(b' ');
        variants.push(("data + one byte".to_owned(), appended));
        for (what, changed) in &variants {
            assert_ne!(changed.hash(), base, "{what} is not covered by the hash");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_moved() {
        // Shows that the length prefixes keep bytes from sliding between
        // neighbouring fields: "ab" + "c" and "a" + "bc" hash differently.
        let id = Uuid::nil();
        assert_ne!(
            chain_hash(&GENESIS, "ab", 0, id, "c", 1, b""),
            chain_hash(&GENESIS, "a", 0, id, "bc", 1, b"")
        );
        assert_ne!(
            chain_hash(&GENESIS, "s", 0, id, "ab", 1, b"c"),
            chain_hash(&GENESIS, "s", 0, id, "a", 1, b"bc")
        );
    }

    #[test]
    fn the_genesis_link_is_zero_and_chains_differ_by_their_past() {
        // Shows that a stream starts from 32 zero bytes, and that the same
        // event after a different past gets a different link.
        assert_eq!(GENESIS, [0u8; 32]);
        let mut first = sample();
        first.previous = GENESIS;
        first.version = 0;
        let mut other_past = sample();
        other_past.previous = [1; 32];
        other_past.version = 0;
        assert_ne!(first.hash(), other_past.hash());
    }

    #[test]
    fn hex_round_trips_and_refuses_anything_but_64_digits() {
        // Shows the text form used in EventStoreDB's metadata.
        let hash = sample().hash();
        let text = to_hex(&hash);
        assert_eq!(text.len(), 64);
        assert_eq!(from_hex(&text), Some(hash));
        assert_eq!(from_hex(&text.to_uppercase()), Some(hash));
        assert_eq!(from_hex(&text[..62]), None);
        assert_eq!(from_hex(&format!("{}zz", &text[..62])), None);
        assert_eq!(from_hex(&format!("{text}00")), None);
        assert_eq!(from_hex(&to_hex(&GENESIS)), Some(GENESIS));
    }
}
