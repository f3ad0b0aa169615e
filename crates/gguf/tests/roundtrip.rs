//! Writer -> reader round trips, writer validation, and `write_to_path` atomicity.

mod common;

use std::borrow::Cow;
use std::path::Path;

use common::{all_values, small_valid_file, tensor_specs, XorShift};
use gguf::{GgufError, GgufFile, GgufWriter, Value, ValueType, WriterTensor};
use quant::GgmlType;

/// Builds a writer with every value type and tensors of several GGML types; returns it with
/// the tensor bytes it holds.
fn full_writer(alignment: Option<u32>) -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    for (k, v) in all_values() {
        w.set(k, v);
    }
    if let Some(a) = alignment {
        w.set("general.alignment", Value::U32(a));
    }
    let mut rng = XorShift(0x5EED);
    for (name, dims, ty) in tensor_specs() {
        let n = dims.iter().product();
        let len = ty.bytes_for(n).expect("whole blocks") as usize;
        w.add_tensor(WriterTensor {
            name: name.into(),
            dims,
            ty,
            data: Cow::Owned(rng.bytes(len)),
        })
        .unwrap();
    }
    w
}

fn check_round_trip(alignment: Option<u32>) {
    let w = full_writer(alignment);
    let mut bytes = Vec::new();
    w.write(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    let align = alignment.map_or(32, u64::from);

    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), align);
    assert_eq!(f.data_offset() % align, 0);
    assert_eq!(f.len() % align, 0, "file ends with the last tensor padded");

    let mut want = all_values();
    if let Some(a) = alignment {
        want.push(("general.alignment".into(), Value::U32(a)));
    }
    assert_eq!(f.metadata(), &want[..], "metadata in order, equal");
    for (k, v) in &want {
        assert_eq!(f.get(k), Some(v), "{k}");
        assert!(f.value_offset(k).unwrap() < f.data_offset());
    }
    // -0.0 == 0.0 under PartialEq: check the sign bit survived too.
    assert!(f.get_f32("t.f32.negzero").unwrap().is_sign_negative());
    assert_eq!(
        f.get_str("t.string.unicode"),
        want.iter()
            .find(|(k, _)| k == "t.string.unicode")
            .unwrap()
            .1
            .as_str()
    );
    let nested = f.get_array("t.array.array.string").unwrap();
    assert_eq!(nested.len(), 3);
    assert_eq!(nested[2].as_array().unwrap()[1].as_str(), Some("🦀"));
    assert_eq!(f.get_array("t.array.empty.array"), Some(&[][..]));
    assert_eq!(
        f.get("t.array.empty.string"),
        Some(&Value::Array(ValueType::String, vec![]))
    );

    let mut rng = XorShift(0x5EED);
    let specs = tensor_specs();
    assert_eq!(f.tensors().len(), specs.len());
    for ((name, dims, ty), t) in specs.into_iter().zip(f.tensors()) {
        let n: u64 = dims.iter().product();
        let data = rng.bytes(ty.bytes_for(n).unwrap() as usize);
        assert_eq!(t.name, name);
        assert_eq!(t.dims, dims);
        assert_eq!(t.ty, ty);
        assert_eq!(t.n_elements(), n);
        assert_eq!(t.n_bytes, data.len() as u64);
        assert_eq!(t.offset % align, 0, "{name} aligned");
        assert_eq!(f.tensor_data(t), &data[..], "{name} data");
        assert_eq!(f.tensor_bytes(name), Some(&data[..]));
        assert_eq!(f.tensor(name).unwrap().offset, t.offset);
        assert!(f.descriptor_offset(name).unwrap() < f.data_offset());
    }

    // Writing what was read gives the same bytes again.
    let mut w2 = GgufWriter::new();
    for (k, v) in f.metadata() {
        w2.set(k.clone(), v.clone());
    }
    for t in f.tensors() {
        w2.add_tensor(WriterTensor {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: t.ty,
            data: Cow::Borrowed(f.tensor_data(t)),
        })
        .unwrap();
    }
    let mut again = Vec::new();
    w2.write(&mut again).unwrap();
    assert!(again == bytes, "re-written file differs");
}

#[test]
fn round_trip_every_value_type_and_tensor_type() {
    check_round_trip(None);
}

#[test]
fn round_trip_custom_alignment() {
    check_round_trip(Some(64));
    check_round_trip(Some(1));
    check_round_trip(Some(4096));
}

#[test]
fn round_trip_empty_file() {
    let mut bytes = Vec::new();
    GgufWriter::new().write(&mut bytes).unwrap();
    assert_eq!(bytes.len(), 32, "24-byte header padded to 32");
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert!(f.metadata().is_empty() && f.tensors().is_empty());
}

#[test]
fn nan_survives_bit_exact() {
    let nan = f32::from_bits(0x7FC0_1234);
    let mut w = GgufWriter::new();
    w.set("nan", Value::F32(nan));
    w.set("nan64", Value::F64(f64::from_bits(0x7FF8_0000_0000_BEEF)));
    let mut bytes = Vec::new();
    w.write(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(bytes).unwrap();
    match f.get("nan") {
        Some(Value::F32(v)) => assert_eq!(v.to_bits(), 0x7FC0_1234),
        other => panic!("{other:?}"),
    }
    match f.get("nan64") {
        Some(Value::F64(v)) => assert_eq!(v.to_bits(), 0x7FF8_0000_0000_BEEF),
        other => panic!("{other:?}"),
    }
}

#[test]
fn set_replaces_in_place() {
    let mut w = GgufWriter::new();
    w.set("a", Value::U32(1));
    w.set("b", Value::U32(2));
    w.set("a", Value::String("x".into()));
    let mut bytes = Vec::new();
    w.write(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(bytes).unwrap();
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(f.get_str("a"), Some("x"));
}

fn write_err(w: &GgufWriter) -> String {
    match w.write(&mut Vec::new()) {
        Err(GgufError::Write(m)) => m,
        other => panic!("expected GgufError::Write, got {other:?}"),
    }
}

fn tensor(name: &str, dims: Vec<u64>, ty: GgmlType, len: usize) -> WriterTensor<'static> {
    WriterTensor {
        name: name.into(),
        dims,
        ty,
        data: Cow::Owned(vec![0; len]),
    }
}

fn add_err(t: WriterTensor<'static>) -> String {
    match GgufWriter::new().add_tensor(t) {
        Err(e @ GgufError::Write(_)) => e.to_string(),
        other => panic!("expected GgufError::Write, got {other:?}"),
    }
}

#[test]
fn writer_rejects_what_the_reader_would_reject() {
    // Bad alignments: the writer must not write a file it cannot read back.
    for bad in [
        Value::U32(0),
        Value::U32(3),
        Value::U32(1 << 21),
        Value::I32(-32),
        Value::String("32".into()),
    ] {
        let mut w = GgufWriter::new();
        w.set("general.alignment", bad.clone());
        let m = write_err(&w);
        assert!(
            m.contains("general.alignment") && m.contains("power of two"),
            "{m}"
        );
    }
    // Mixed array.
    let mut w = GgufWriter::new();
    w.set(
        "mixed",
        Value::Array(ValueType::U8, vec![Value::U8(1), Value::U16(2)]),
    );
    let m = write_err(&w);
    assert!(
        m.contains("\"mixed\"") && m.contains("holds a u16 at index 1"),
        "{m}"
    );
    // Nesting deeper than the reader accepts.
    let mut v = Value::Array(ValueType::U8, vec![]);
    for _ in 0..gguf::MAX_ARRAY_NESTING {
        v = Value::Array(ValueType::Array, vec![v]);
    }
    let mut w = GgufWriter::new();
    w.set("deep", v);
    let m = write_err(&w);
    assert!(m.contains("nested") && m.contains("\"deep\""), "{m}");

    // Tensors.
    let m = add_err(tensor("r0", vec![], GgmlType::F32, 0));
    assert!(m.contains("\"r0\"") && m.contains("rank 0"), "{m}");
    let m = add_err(tensor("r5", vec![1; 5], GgmlType::F32, 4));
    assert!(m.contains("rank 5"), "{m}");
    let m = add_err(tensor("z", vec![4, 0], GgmlType::F32, 0));
    assert!(m.contains("dimension 1") && m.contains("is 0"), "{m}");
    let m = add_err(tensor("row", vec![16, 2], GgmlType::Q4_0, 18));
    assert!(
        m.contains("row length 16") && m.contains("block size 32"),
        "{m}"
    );
    let m = add_err(tensor("big", vec![u64::MAX, 2], GgmlType::F32, 0));
    assert!(m.contains("elements"), "{m}");
    let m = add_err(tensor("len", vec![4], GgmlType::F32, 15));
    assert!(
        m.contains("15 bytes given") && m.contains("needs 16"),
        "{m}"
    );
    let mut w = GgufWriter::new();
    w.add_tensor(tensor("dup", vec![1], GgmlType::F32, 4))
        .unwrap();
    match w.add_tensor(tensor("dup", vec![1], GgmlType::F32, 4)) {
        Err(GgufError::Write(m)) => assert!(m.contains("\"dup\"") && m.contains("twice")),
        other => panic!("{other:?}"),
    }
}

/// Files in `dir` other than `keep`.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn write_to_path_writes_and_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    let w = full_writer(Some(64));
    w.write_to_path(&path).unwrap();
    let mut want = Vec::new();
    w.write(&mut want).unwrap();
    assert!(std::fs::read(&path).unwrap() == want);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path);
    assert_eq!(f.alignment(), 64);
    assert_eq!(others(dir.path(), &["model.gguf"]), Vec::<String>::new());

    // Replacing an existing file.
    let small = GgufFile::from_bytes(small_valid_file()).unwrap();
    let mut w2 = GgufWriter::new();
    w2.set("x", Value::U8(1));
    w2.write_to_path(&path).unwrap();
    let f2 = GgufFile::open(&path).unwrap();
    assert_eq!(f2.metadata().len(), 1);
    drop(small);
    assert_eq!(others(dir.path(), &["model.gguf"]), Vec::<String>::new());
}

#[test]
fn failed_write_to_path_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = full_writer(None);

    // Missing directory: an Io error naming the path, nothing created.
    let missing = dir.path().join("no/such/dir/model.gguf");
    match w.write_to_path(&missing) {
        Err(e @ GgufError::Io { .. }) => assert!(e.to_string().contains("no/such/dir"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(others(dir.path(), &[]), Vec::<String>::new());

    // Invalid content: rejected before the file system is touched; an existing file stays.
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"old").unwrap();
    let mut bad = GgufWriter::new();
    bad.set("general.alignment", Value::U32(3));
    assert!(matches!(bad.write_to_path(&path), Err(GgufError::Write(_))));
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(others(dir.path(), &["model.gguf"]), Vec::<String>::new());

    // Failure after the temporary file was fully written: the destination is a non-empty
    // directory, so the final rename fails. The temporary file must be cleaned up.
    let blocker = dir.path().join("blocked.gguf");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("inside"), b"x").unwrap();
    match w.write_to_path(&blocker) {
        Err(e @ GgufError::Io { .. }) => assert!(e.to_string().contains("blocked.gguf"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(blocker.is_dir());
    let mut left = others(dir.path(), &["model.gguf", "blocked.gguf"]);
    left.sort();
    assert_eq!(left, Vec::<String>::new(), "temporary files left behind");

    // A path with no file name.
    assert!(matches!(
        w.write_to_path(Path::new("/")),
        Err(GgufError::Write(_))
    ));
}

/// While files are repeatedly written over one path, a reader polling that path only ever
/// sees a complete, valid file of one of the two versions.
#[test]
fn write_to_path_is_never_seen_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let make = |seed: u64, n: usize| {
        let mut w = GgufWriter::new();
        w.set("seed", Value::U64(seed));
        w.add_tensor(WriterTensor {
            name: "w".into(),
            dims: vec![n as u64],
            ty: GgmlType::I8,
            data: Cow::Owned(XorShift(seed).bytes(n)),
        })
        .unwrap();
        w
    };
    let writers = [make(1, 3 << 20), make(2, 5 << 20)];
    let sizes: Vec<usize> = writers
        .iter()
        .map(|w| {
            let mut v = Vec::new();
            w.write(&mut v).unwrap();
            v.len()
        })
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut seen = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(bytes) = std::fs::read(&path) {
                    assert!(sizes.contains(&bytes.len()), "saw {} bytes", bytes.len());
                    let f = GgufFile::from_bytes(bytes).expect("complete file");
                    let seed = f.get_u64("seed").unwrap();
                    let t = f.tensor("w").unwrap();
                    assert_eq!(f.tensor_data(t)[..64], XorShift(seed).bytes(64)[..]);
                    seen += 1;
                }
            }
            seen
        });
        for i in 0..12 {
            writers[i % 2].write_to_path(&path).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = reader.join().unwrap();
        assert!(seen > 0, "reader never saw the file");
    });
    assert_eq!(others(dir.path(), &["m.gguf"]), Vec::<String>::new());
}

#[test]
fn remove_drops_one_key_and_keeps_the_others_reachable() {
    let mut w = gguf::GgufWriter::new();
    w.set("a", gguf::Value::U32(1));
    w.set(
        "big",
        gguf::Value::Array(gguf::ValueType::U8, vec![gguf::Value::U8(7); 100]),
    );
    w.set("c", gguf::Value::String("three".into()));
    let mut bytes = Vec::new();
    w.write(&mut bytes).unwrap();
    let mut f = gguf::GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(f.remove("big").unwrap().as_array().unwrap().len(), 100);
    assert!(f.remove("big").is_none());
    assert!(f.get("big").is_none());
    assert_eq!(f.get_u32("a"), Some(1));
    assert_eq!(f.get_str("c"), Some("three"));
    assert_eq!(f.metadata().len(), 2);
}
