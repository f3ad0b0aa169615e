//! Hostile and broken files: each must give the specific error, with a message that names
//! the problem and where it is, and nothing may panic or allocate from an unchecked count.

mod common;

use common::{small_valid_file, Raw, XorShift};
use gguf::{GgufError, GgufFile, ValueType, MAX_ARRAY_NESTING, MAX_METADATA_VALUES};

fn err(bytes: Vec<u8>) -> GgufError {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => e,
    }
}

/// Asserts that the message contains every needle.
fn says(e: &GgufError, needles: &[&str]) {
    let m = e.to_string();
    for n in needles {
        assert!(m.contains(n), "message {m:?} does not mention {n:?}");
    }
}

#[test]
fn empty_file() {
    let e = err(vec![]);
    assert!(
        matches!(&e, GgufError::Truncated { what, offset: 0, len: 0 } if what.contains("magic"))
    );
    says(&e, &["empty", "offset 0"]);

    // The same through open(), which maps the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.gguf");
    std::fs::write(&p, b"").unwrap();
    let e = GgufFile::open(&p).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { len: 0, .. }), "{e}");

    // A directory cannot be mapped: an Io error naming it.
    let e = GgufFile::open(dir.path()).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }), "{e:?}");

    // A missing file is an Io error naming the path.
    let e = GgufFile::open(dir.path().join("nope.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }));
    says(&e, &["nope.gguf"]);
}

#[test]
fn every_prefix_of_a_valid_file_is_an_error() {
    let full = small_valid_file();
    let f = GgufFile::from_bytes(full.clone()).unwrap();
    let last_end = f
        .tensors()
        .iter()
        .map(|t| t.offset + t.n_bytes)
        .max()
        .unwrap();
    assert_eq!(
        last_end,
        full.len() as u64,
        "helper must end at the last tensor's data"
    );
    let header_end = f.data_offset();
    for n in 0..full.len() {
        let e = err(full[..n].to_vec());
        let m = e.to_string();
        assert!(m.contains("offset"), "prefix {n}: {m}");
        if (n as u64) < header_end.saturating_sub(32) {
            // Cut inside the header: a truncation, or a count/length that no longer fits.
            assert!(
                matches!(e, GgufError::Truncated { .. } | GgufError::TooLarge { .. }),
                "prefix {n}: {e:?}"
            );
        } else if n as u64 >= header_end {
            // Cut inside the tensor data.
            assert!(
                matches!(&e, GgufError::BadTensor { message, .. } if message.contains("past the end")),
                "prefix {n}: {e:?}"
            );
        }
    }
}

#[test]
fn wrong_magic() {
    let mut b = small_valid_file();
    b[..4].copy_from_slice(b"GGML");
    let e = err(b);
    assert!(matches!(e, GgufError::BadMagic { found: 0x4c4d_4747 }));
    says(&e, &["not a GGUF file", "0x4c4d4747", "offset 0"]);
}

#[test]
fn unsupported_versions() {
    for v in [0u32, 1, 4, u32::MAX] {
        let e = err(Raw::header(v, 0, 0).bytes());
        assert!(matches!(e, GgufError::UnsupportedVersion(x) if x == v));
        says(&e, &[&format!("version {v}"), "offset 4"]);
    }
    says(&err(Raw::header(1, 0, 0).bytes()), &["v1"]);
    // A big-endian v3 file.
    says(
        &err(Raw::header(0x0300_0000, 0, 0).bytes()),
        &["big-endian"],
    );
}

#[test]
fn absurd_metadata_count() {
    let e = err(Raw::header(3, 0, u64::MAX).bytes());
    assert!(matches!(
        &e,
        GgufError::TooLarge { what, offset: 16, value: u64::MAX, .. } if what == "metadata count"
    ));
    says(&e, &["metadata count", "offset 16", &u64::MAX.to_string()]);

    // Plausible-looking but still more than the bytes that follow could hold.
    let mut r = Raw::header(3, 0, 3);
    r.kv_u32("a", 1);
    let e = err(r.bytes());
    assert!(
        matches!(
            e,
            GgufError::TooLarge {
                offset: 16,
                value: 3,
                limit: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn absurd_tensor_count() {
    let e = err(Raw::header(3, u64::MAX, 0).bytes());
    assert!(matches!(
        &e,
        GgufError::TooLarge { what, offset: 8, value: u64::MAX, .. } if what == "tensor count"
    ));
    says(&e, &["tensor count", "offset 8"]);

    // A count that fits the file as a whole but not what is left after the metadata.
    let mut r = Raw::header(3, 2, 1);
    r.kv_str("k", &"x".repeat(100));
    r.tensor("t", &[4], 0, 0);
    let e = err(r.bytes());
    assert!(
        matches!(
            e,
            GgufError::TooLarge {
                offset: 8,
                value: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn string_length_larger_than_file() {
    // Key length.
    let mut r = Raw::header(3, 0, 1);
    r.u64(1 << 40).raw(b"abc").u32(4).u32(0);
    let e = err(r.bytes());
    assert!(
        matches!(
            e,
            GgufError::TooLarge {
                offset: 24,
                value: 0x100_0000_0000,
                ..
            }
        ),
        "{e:?}"
    );
    says(&e, &["length of key of metadata entry #0", "offset 24"]);

    // Value length.
    let mut r = Raw::header(3, 0, 1);
    r.key("general.name", ValueType::String);
    let at = r.pos();
    r.u64(u64::MAX).raw(b"short");
    let e = err(r.bytes());
    assert!(
        matches!(e, GgufError::TooLarge { offset, .. } if offset == at),
        "{e:?}"
    );
    says(&e, &["\"general.name\"", &format!("offset {at}")]);

    // Tensor name length.
    let mut r = Raw::header(3, 1, 0);
    r.u64(1000).raw(b"w").zeros(40);
    let e = err(r.bytes());
    assert!(matches!(e, GgufError::TooLarge { offset: 24, .. }), "{e:?}");
    says(&e, &["name of tensor #0"]);
}

#[test]
fn huge_array_count() {
    let mut r = Raw::header(3, 0, 1);
    r.key("tokenizer.ggml.tokens", ValueType::Array)
        .u32(ValueType::String as u32);
    let at = r.pos();
    r.u64(u64::MAX / 2).zeros(64);
    let e = err(r.bytes());
    assert!(
        matches!(e, GgufError::TooLarge { offset, limit: 8, .. } if offset == at),
        "{e:?}"
    );
    says(
        &e,
        &[
            "array length",
            "\"tokenizer.ggml.tokens\"",
            &format!("offset {at}"),
        ],
    );

    // Scalar arrays: the count times the element size must fit.
    let mut r = Raw::header(3, 0, 1);
    r.key("s", ValueType::Array)
        .u32(ValueType::U64 as u32)
        .u64(3)
        .u64(1)
        .u64(2);
    assert!(matches!(
        err(r.bytes()),
        GgufError::TooLarge {
            value: 3,
            limit: 2,
            ..
        }
    ));
}

#[test]
fn too_many_metadata_values_in_total() {
    // Every element is really there (a u8 array one element over the limit), so only the
    // global cap stops it: a decoded Value is 32 bytes, 32x the file's byte per element.
    let n = MAX_METADATA_VALUES; // plus the one key
    let mut r = Raw::header(3, 0, 1);
    r.key("big", ValueType::Array).u32(ValueType::U8 as u32);
    let at = r.pos();
    r.u64(n).zeros(n as usize);
    let e = err(r.bytes());
    assert!(
        matches!(e, GgufError::TooLarge { offset, value, limit, .. }
            if offset == at && value == n && limit == n - 1),
        "{e:?}"
    );
    says(&e, &["\"big\"", "all keys and array elements"]);
}

#[test]
fn nested_array_depth_bomb() {
    // 100,000 nested array headers: must stop at the limit, not recurse into a stack overflow.
    let mut r = Raw::header(3, 0, 1);
    r.key("bomb", ValueType::Array);
    for _ in 0..100_000 {
        r.u32(ValueType::Array as u32).u64(1);
    }
    let e = err(r.bytes());
    match &e {
        GgufError::BadMetadata { key, message } => {
            assert_eq!(key, "bomb");
            assert!(message.contains(&format!("more than the limit {MAX_ARRAY_NESTING}")));
        }
        other => panic!("{other:?}"),
    }
    let depth_limit_at = 24 + 8 + 4 + 4 + 12 * MAX_ARRAY_NESTING as u64;
    says(&e, &[&format!("offset {depth_limit_at}")]);

    // Exactly at the limit is fine.
    let mut r = Raw::header(3, 0, 1);
    r.key("ok", ValueType::Array);
    for _ in 0..MAX_ARRAY_NESTING - 1 {
        r.u32(ValueType::Array as u32).u64(1);
    }
    r.u32(ValueType::U8 as u32).u64(1).u8(7);
    let f = GgufFile::from_bytes(r.bytes()).unwrap();
    assert!(f.get_array("ok").is_some());
}

#[test]
fn unknown_value_type() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k");
    let at = r.pos();
    r.u32(13).u32(0);
    let e = err(r.bytes());
    assert!(
        matches!(&e, GgufError::BadValueType { key, offset, ty: 13 } if key == "k" && *offset == at)
    );
    says(
        &e,
        &["\"k\"", "unknown value type 13", &format!("offset {at}")],
    );

    // As an array element type.
    let mut r = Raw::header(3, 0, 1);
    r.key("arr", ValueType::Array);
    let at = r.pos();
    r.u32(0xFFFF_FFFF).u64(0);
    let e = err(r.bytes());
    assert!(matches!(e, GgufError::BadValueType { offset, ty: 0xFFFF_FFFF, .. } if offset == at));
}

#[test]
fn bool_byte_two() {
    let mut r = Raw::header(3, 0, 1);
    r.key("tokenizer.ggml.add_bos_token", ValueType::Bool);
    let at = r.pos();
    r.u8(2);
    let e = err(r.bytes());
    assert!(
        matches!(&e, GgufError::BadMetadata { key, .. } if key == "tokenizer.ggml.add_bos_token")
    );
    says(&e, &["bool", "byte 2", &format!("offset {at}")]);

    // Inside an array: the offset is the offending element's.
    let mut r = Raw::header(3, 0, 1);
    r.key("flags", ValueType::Array)
        .u32(ValueType::Bool as u32)
        .u64(3)
        .u8(1)
        .u8(0);
    let at = r.pos();
    r.u8(0xFF);
    let e = err(r.bytes());
    assert!(matches!(e, GgufError::BadMetadata { .. }));
    says(&e, &["byte 255", &format!("offset {at}")]);
}

#[test]
fn duplicate_key() {
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("llama.block_count", 1);
    let at = r.pos();
    r.kv_u32("llama.block_count", 2);
    let e = err(r.bytes());
    assert!(
        matches!(&e, GgufError::DuplicateKey { key, offset } if key == "llama.block_count" && *offset == at)
    );
    says(
        &e,
        &["\"llama.block_count\"", "twice", &format!("offset {at}")],
    );
}

#[test]
fn key_not_utf8() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(2).raw(&[0xC3, 0x28]).u32(ValueType::U8 as u32).u8(0);
    let e = err(r.bytes());
    assert!(matches!(e, GgufError::BadKey { offset: 24 }));
    says(&e, &["UTF-8", "offset 24"]);
}

/// One tensor descriptor after no metadata, then padding and `data_len` bytes of data.
fn one_tensor(name: &str, dims: &[u64], ty: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let mut r = Raw::header(3, 1, 0);
    r.tensor(name, dims, ty, offset).pad(32).zeros(data_len);
    r.bytes()
}

fn bad_tensor(bytes: Vec<u8>, name: &str, needles: &[&str]) {
    let e = err(bytes);
    match &e {
        GgufError::BadTensor {
            name: n,
            offset: 24,
            ..
        } => assert_eq!(n, name),
        other => panic!("expected BadTensor for {name:?} at 24, got {other:?}"),
    }
    says(&e, &[&format!("{name:?}"), "offset 24"]);
    says(&e, needles);
}

#[test]
fn tensor_rank() {
    // Descriptor: name length 8 + "w" 1, then the rank at offset 33.
    bad_tensor(
        one_tensor("w", &[], 0, 0, 64),
        "w",
        &["rank 0", "offset 33", "1..=4"],
    );
    bad_tensor(
        one_tensor("w", &[1; 5], 0, 0, 64),
        "w",
        &["rank 5", "offset 33"],
    );
}

#[test]
fn tensor_zero_dim() {
    bad_tensor(
        one_tensor("w", &[4, 0], 0, 0, 64),
        "w",
        &["dimension 1", "is 0", "offset 37"],
    );
}

#[test]
fn tensor_dims_product_overflows() {
    bad_tensor(
        one_tensor("w", &[1 << 32, 1 << 32], 0, 0, 64),
        "w",
        &["more than 2^63-1 elements", "offset 37"],
    );
    // Fits u64 but not i64 (ggml's element count type).
    bad_tensor(
        one_tensor("w", &[1 << 32, 1 << 31], 0, 0, 64),
        "w",
        &["more than 2^63-1 elements"],
    );
    bad_tensor(one_tensor("w", &[u64::MAX], 0, 0, 64), "w", &["elements"]);
}

#[test]
fn tensor_byte_size_overflows() {
    // 2^62 F32 elements are 2^64 bytes.
    bad_tensor(
        one_tensor("w", &[1 << 62], 0, 0, 64),
        "w",
        &["byte size", "overflows"],
    );
}

#[test]
fn tensor_row_not_whole_blocks() {
    bad_tensor(
        one_tensor("blk.0.attn_q.weight", &[33], 2, 0, 64),
        "blk.0.attn_q.weight",
        &["row length 33", "Q4_0 block size 32"],
    );
    // The total is whole blocks but a row is not.
    bad_tensor(one_tensor("w", &[16, 2], 2, 0, 64), "w", &["row length 16"]);
}

#[test]
fn tensor_unknown_type() {
    // Type id at 24 + 9 (name) + 4 (rank) + 8 (one dim) = 45.
    bad_tensor(
        one_tensor("w", &[4], 99, 0, 64),
        "w",
        &["unknown tensor type id 99", "offset 45"],
    );
}

#[test]
fn tensor_data_past_end() {
    // 4 F32 = 16 bytes, only 15 present.
    bad_tensor(
        one_tensor("w", &[4], 0, 0, 15),
        "w",
        &["past the end of the file", "16 bytes"],
    );
    // Offset far away; also one whose offset + size overflows u64.
    bad_tensor(
        one_tensor("w", &[4], 0, 1 << 40, 64),
        "w",
        &["past the end", "offset 49"],
    );
    bad_tensor(
        one_tensor("w", &[4], 0, u64::MAX - 31, 64),
        "w",
        &["past the end"],
    );
    // Exactly fitting is fine, and the data section is at the aligned header end.
    let f = GgufFile::from_bytes(one_tensor("w", &[4], 0, 0, 16)).unwrap();
    assert_eq!(f.data_offset(), 64);
    assert_eq!(f.tensors()[0].offset, 64);
    assert_eq!(f.tensor_data(&f.tensors()[0]).len(), 16);
}

#[test]
fn overlapping_tensors_are_accepted() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0)
        .tensor("b", &[4], 0, 0)
        .pad(32)
        .zeros(32);
    let f = GgufFile::from_bytes(r.bytes()).unwrap();
    assert_eq!(f.tensor("a").unwrap().offset, f.tensor("b").unwrap().offset);
}

#[test]
fn tensor_offset_not_aligned() {
    bad_tensor(
        one_tensor("w", &[4], 0, 8, 64),
        "w",
        &[
            "data offset 8",
            "offset 49",
            "not a multiple of the alignment 32",
        ],
    );
}

#[test]
fn duplicate_tensor_name() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("w", &[4], 0, 0);
    let at = r.pos();
    r.tensor("w", &[4], 0, 32).pad(32).zeros(64);
    let e = err(r.bytes());
    assert!(
        matches!(&e, GgufError::DuplicateTensor { name, offset } if name == "w" && *offset == at)
    );
    says(&e, &["\"w\"", "twice", &format!("offset {at}")]);
}

#[test]
fn tensor_name_not_utf8() {
    let mut r = Raw::header(3, 1, 0);
    r.u64(3)
        .raw(&[b'a', 0xFF, b'b'])
        .u32(1)
        .u64(4)
        .u32(0)
        .u64(0)
        .pad(32)
        .zeros(16);
    let e = err(r.bytes());
    assert!(
        matches!(e, GgufError::BadTensor { offset: 24, .. }),
        "{e:?}"
    );
    says(&e, &["UTF-8", "offset 33"]);
}

#[test]
fn bad_alignment_values() {
    for (value, shown) in [(3u32, "3"), (0, "0"), (1 << 21, "2097152")] {
        let mut r = Raw::header(3, 0, 1);
        r.key("general.alignment", ValueType::U32);
        let at = r.pos();
        r.u32(value);
        let e = err(r.bytes());
        assert!(matches!(&e, GgufError::BadMetadata { key, .. } if key == "general.alignment"));
        says(
            &e,
            &[
                "power of two",
                &format!("found {shown}"),
                &format!("offset {at}"),
            ],
        );
    }
    // Wrong type.
    let mut r = Raw::header(3, 0, 1);
    r.kv_str("general.alignment", "32");
    let e = err(r.bytes());
    says(&e, &["general.alignment", "string"]);
    // A valid custom alignment is used for the data section and offsets.
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 64)
        .tensor("w", &[4], 0, 0)
        .pad(64)
        .zeros(16);
    let f = GgufFile::from_bytes(r.bytes()).unwrap();
    assert_eq!((f.alignment(), f.data_offset() % 64), (64, 0));
}

/// Seeded random damage to a valid file: flipped bits, random bytes, interesting 32- and
/// 64-bit values written over fields, truncation, and combinations. Nothing may panic; every
/// error must say where it is; every accepted file's tensors must lie inside it.
#[test]
fn random_mutations_never_panic() {
    let base = small_valid_file();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let interesting: [u64; 10] = [
        0,
        1,
        2,
        u32::MAX as u64,
        u64::MAX,
        i64::MAX as u64,
        base.len() as u64,
        base.len() as u64 - 1,
        1 << 32,
        13,
    ];
    let (mut ok, mut errs) = (0, 0);
    for i in 0..5000 {
        let mut b = base.clone();
        let n_mutations = 1 + rng.below(3);
        for _ in 0..n_mutations {
            let len = b.len() as u64;
            if len == 0 {
                break;
            }
            match rng.below(6) {
                0 => {
                    let p = rng.below(len) as usize;
                    b[p] ^= 1 << rng.below(8);
                }
                1 => {
                    let p = rng.below(len) as usize;
                    b[p] = rng.next() as u8;
                }
                2 | 3 => {
                    let v = interesting[rng.below(interesting.len() as u64) as usize];
                    let width = if rng.below(2) == 0 { 4 } else { 8 };
                    let p = rng.below(len) as usize;
                    let bytes = v.to_le_bytes();
                    for (k, &x) in bytes[..width].iter().enumerate() {
                        if let Some(slot) = b.get_mut(p + k) {
                            *slot = x;
                        }
                    }
                }
                4 => b.truncate(rng.below(len) as usize),
                _ => {
                    // Mostly aim at the header, where the structure is.
                    let p = rng.below(len.min(400)) as usize;
                    b[p] = rng.next() as u8;
                }
            }
        }
        match GgufFile::from_bytes(b.clone()) {
            Ok(f) => {
                ok += 1;
                for t in f.tensors() {
                    assert!(t.offset + t.n_bytes <= f.len(), "iteration {i}");
                    assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
                }
            }
            Err(e) => {
                errs += 1;
                let m = e.to_string();
                assert!(
                    m.contains("offset"),
                    "iteration {i}: error without offset: {m}"
                );
            }
        }
    }
    // The loop must actually exercise both outcomes.
    assert!(ok > 100 && errs > 1000, "ok {ok}, errors {errs}");
}

/// A hand-made or foreign `TensorInfo` cannot make `try_tensor_data` panic.
#[test]
fn foreign_tensor_info() {
    let f = GgufFile::from_bytes(small_valid_file()).unwrap();
    let mut t = f.tensors()[0].clone();
    t.offset = u64::MAX - 1;
    assert!(f.try_tensor_data(&t).is_none());
    t.offset = 0;
    t.n_bytes = f.len() + 1;
    assert!(f.try_tensor_data(&t).is_none());
    t.dims = vec![u64::MAX, u64::MAX];
    assert_eq!(t.n_elements(), u64::MAX);
    let r = std::panic::catch_unwind(|| f.tensor_data(&t).len());
    assert!(
        r.is_err(),
        "tensor_data documents a panic for foreign descriptors"
    );
}
