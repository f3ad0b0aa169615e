use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use quant::GgmlType;

use crate::{
    check_alignment, GgufError, Value, ValueType, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_NESTING,
    MAX_DIMS, MAX_METADATA_VALUES, MAX_TENSORS,
};

/// Smallest encoded key/value: key length (8), value type (4), a one-byte value.
const MIN_KV_BYTES: u64 = 13;
/// Smallest encoded tensor descriptor: name length (8), rank (4), one dim (8), type (4),
/// offset (8).
const MIN_TENSOR_BYTES: u64 = 32;
/// Vectors sized from a count in the file start at most this big and grow as items are
/// actually decoded, so a count alone never makes a large allocation.
const PREALLOC_LIMIT: u64 = 1 << 16;

/// One tensor descriptor. `offset` is absolute (from the start of the file) and has been
/// checked: `offset + n_bytes` lies within the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the fastest-varying (row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (saturating, so a hand-made descriptor cannot make this panic).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }
}

enum Backing {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

/// An opened GGUF file: parsed header, metadata, tensor descriptors and the mapped bytes.
pub struct GgufFile {
    path: PathBuf,
    bytes: Backing,
    version: u32,
    metadata: Vec<(String, Value)>,
    /// Absolute offset of each metadata value (parallel to `metadata`).
    value_offsets: Vec<u64>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// Absolute offset of each tensor descriptor (parallel to `tensors`).
    descriptor_offsets: Vec<u64>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| GgufError::io(path, e))?;
        // SAFETY: the mapping is read-only; we never hand out references that outlive `self`.
        // A file truncated by another process while mapped would fault, which is the
        // accepted mmap trade-off of every GGUF loader (llama.cpp included).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| GgufError::io(path, e))?;
        Self::parse(path.to_path_buf(), Backing::Mmap(map))
    }

    /// Parses a GGUF image held in memory (tests, in-memory conversions).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::parse(PathBuf::from("<memory>"), Backing::Owned(bytes))
    }

    fn parse(path: PathBuf, bytes: Backing) -> Result<GgufFile, GgufError> {
        let data: &[u8] = match &bytes {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        };
        let file_len = data.len() as u64;
        let mut r = Cursor {
            data,
            pos: 0,
            values_left: MAX_METADATA_VALUES,
        };
        let magic = r.u32(|| {
            if file_len == 0 {
                "magic (the file is empty)".into()
            } else {
                "magic".into()
            }
        })?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = r.u32(|| "version".into())?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = r.u64(|| "tensor count".into())?;
        let n_kv = r.u64(|| "metadata count".into())?;
        // Counts that cannot fit in the rest of the file are lies: check them before anything
        // is allocated from them. A key/value takes at least 8 (key length) + 4 (type) + 1
        // bytes, a tensor descriptor at least 8 (name length) + 4 + 8 (one dim) + 4 + 8.
        r.check_count(
            || "tensor count".into(),
            8,
            n_tensors,
            MIN_TENSOR_BYTES,
            MAX_TENSORS,
        )?;
        r.check_count(
            || "metadata count".into(),
            16,
            n_kv,
            MIN_KV_BYTES,
            MAX_METADATA_VALUES,
        )?;
        r.values_left -= n_kv;

        let mut metadata = Vec::with_capacity(n_kv.min(PREALLOC_LIMIT) as usize);
        let mut value_offsets = Vec::with_capacity(n_kv.min(PREALLOC_LIMIT) as usize);
        let mut index = HashMap::with_capacity(n_kv.min(PREALLOC_LIMIT) as usize);
        for i in 0..n_kv {
            let key_offset = r.pos();
            let key = r.raw_string(|| format!("key of metadata entry #{i}"))?;
            let key = std::str::from_utf8(key)
                .map_err(|_| GgufError::BadKey { offset: key_offset })?
                .to_owned();
            if index.contains_key(&key) {
                return Err(GgufError::DuplicateKey {
                    key,
                    offset: key_offset,
                });
            }
            let ty_offset = r.pos();
            let ty_raw = r.u32(|| format!("value type of metadata {key:?}"))?;
            let ty = ValueType::from_u32(ty_raw).ok_or_else(|| GgufError::BadValueType {
                key: key.clone(),
                offset: ty_offset,
                ty: ty_raw,
            })?;
            value_offsets.push(r.pos());
            let value = r.value(&key, ty, 1)?;
            index.insert(key.clone(), metadata.len());
            metadata.push((key, value));
        }

        let alignment = match index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => check_alignment(&metadata[i].1).map_err(|m| GgufError::BadMetadata {
                key: "general.alignment".into(),
                message: format!("value at offset {}: {m}", value_offsets[i]),
            })?,
        };

        // Now that the metadata is consumed, the tensor count can be held to what is left.
        r.check_count(
            || "tensor count".into(),
            8,
            n_tensors,
            MIN_TENSOR_BYTES,
            MAX_TENSORS,
        )?;
        let mut raw_tensors = Vec::with_capacity(n_tensors.min(PREALLOC_LIMIT) as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors.min(PREALLOC_LIMIT) as usize);
        for i in 0..n_tensors {
            let desc_offset = r.pos();
            let name = r.raw_string(|| format!("name of tensor #{i}"))?;
            let name = match std::str::from_utf8(name) {
                Ok(s) => s.to_owned(),
                Err(e) => {
                    return Err(GgufError::BadTensor {
                        name: String::from_utf8_lossy(name).into_owned(),
                        offset: desc_offset,
                        message: format!(
                            "name is not valid UTF-8 (bad byte at offset {})",
                            desc_offset + 8 + e.valid_up_to() as u64
                        ),
                    })
                }
            };
            if tensor_index.contains_key(&name) {
                return Err(GgufError::DuplicateTensor {
                    name,
                    offset: desc_offset,
                });
            }
            let bad = |message: String| GgufError::BadTensor {
                name: name.clone(),
                offset: desc_offset,
                message,
            };
            let field = |f: &str| format!("{f} of tensor {name:?}");
            let rank_offset = r.pos();
            let n_dims = r.u32(|| field("rank"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(bad(format!(
                    "rank {n_dims} at offset {rank_offset} is outside 1..={MAX_DIMS}"
                )));
            }
            let dims_offset = r.pos();
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64(|| field("dimensions"))?);
            }
            let ty_offset = r.pos();
            let ty_raw = r.u32(|| field("type"))?;
            let off_offset = r.pos();
            let rel_offset = r.u64(|| field("data offset"))?;
            let ty = GgmlType::from_id(ty_raw).ok_or_else(|| {
                bad(format!(
                    "unknown tensor type id {ty_raw} at offset {ty_offset}"
                ))
            })?;
            let mut n_elements: u64 = 1;
            for (k, &d) in dims.iter().enumerate() {
                if d == 0 {
                    return Err(bad(format!(
                        "dimension {k} of shape {dims:?} (at offset {dims_offset}) is 0"
                    )));
                }
                n_elements = n_elements
                    .checked_mul(d)
                    .filter(|&n| n <= i64::MAX as u64)
                    .ok_or_else(|| {
                        bad(format!(
                            "shape {dims:?} (at offset {dims_offset}) has more than 2^63-1 elements"
                        ))
                    })?;
            }
            let block = ty.block_size() as u64;
            if dims[0] % block != 0 {
                return Err(bad(format!(
                    "row length {} (at offset {dims_offset}) is not a multiple of the {ty} block size {block}",
                    dims[0]
                )));
            }
            let n_bytes = ty.bytes_for(n_elements).ok_or_else(|| {
                bad(format!(
                    "byte size of shape {dims:?} as {ty} overflows (shape at offset {dims_offset})"
                ))
            })?;
            if rel_offset % alignment != 0 {
                return Err(bad(format!(
                    "data offset {rel_offset} (at offset {off_offset}) is not a multiple of the alignment {alignment}"
                )));
            }
            tensor_index.insert(name.clone(), raw_tensors.len());
            raw_tensors.push((name, dims, ty, rel_offset, n_bytes, desc_offset, off_offset));
        }

        let header_end = r.pos();
        // header_end <= file_len and alignment <= MAX_ALIGNMENT: this cannot overflow.
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw_tensors.len());
        let mut descriptor_offsets = Vec::with_capacity(raw_tensors.len());
        for (name, dims, ty, rel_offset, n_bytes, desc_offset, off_offset) in raw_tensors {
            let start = data_offset.checked_add(rel_offset);
            match start.and_then(|s| s.checked_add(n_bytes)) {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(GgufError::BadTensor {
                        name,
                        offset: desc_offset,
                        message: format!(
                            "data offset {rel_offset} (at offset {off_offset}) puts its {n_bytes} bytes at \
                             {data_offset} + {rel_offset}, past the end of the file ({file_len} bytes)"
                        ),
                    });
                }
            }
            descriptor_offsets.push(desc_offset);
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset: data_offset + rel_offset,
                n_bytes,
            });
        }

        Ok(GgufFile {
            path,
            bytes,
            version,
            metadata,
            value_offsets,
            index,
            tensors,
            tensor_index,
            descriptor_offsets,
            alignment,
            data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset where the tensor data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        }
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Removes a metadata entry and returns it. Used to free large arrays (the vocabulary)
    /// once another structure owns their content; the rest of the metadata stays intact.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, value) = self.metadata.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(value)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// An integer value that fits a u32.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key).and_then(Value::as_f32)
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }

    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        self.get(key).and_then(Value::as_array)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Drops this process's resident pages of `part`, a sub-slice of a tensor's bytes the
    /// caller has copied elsewhere (repacked weights); only whole pages inside it. The bytes
    /// stay readable and are read back from the page cache if touched again. No effect on an
    /// in-memory image or on a slice that is not inside this file's mapping.
    pub fn release_pages(&self, part: &[u8]) {
        let Backing::Mmap(m) = &self.bytes else {
            return;
        };
        let (base, p) = (m.as_ptr() as usize, part.as_ptr() as usize);
        if p < base || p + part.len() > base + m.len() {
            return;
        }
        const PAGE: usize = 4096;
        let start = p - base;
        let (lo, hi) = (
            start.next_multiple_of(PAGE),
            (start + part.len()) / PAGE * PAGE,
        );
        if hi > lo {
            // SAFETY: the mapping is read-only and never written, so MADV_DONTNEED cannot lose
            // data: a later read faults the same file bytes back in. The mapping's base is
            // page-aligned, so `lo` is too. Failure only means the pages stay resident.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo)
            };
        }
    }

    /// The bytes of `t`, borrowed from the mapping (bounds were checked at open).
    ///
    /// # Panics
    ///
    /// If `t` does not lie inside this file, which happens only for a [`TensorInfo`] made
    /// by hand or taken from another file. Descriptors from [`tensors`](Self::tensors) and
    /// [`tensor`](Self::tensor) never panic; use [`try_tensor_data`](Self::try_tensor_data)
    /// for the others.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        match self.try_tensor_data(t) {
            Some(s) => s,
            None => panic!(
                "tensor {:?}: bytes [{}, +{}) are not inside {} ({} bytes); \
                 was this TensorInfo taken from another file?",
                t.name,
                t.offset,
                t.n_bytes,
                self.path.display(),
                self.len()
            ),
        }
    }

    /// The bytes of `t`, or `None` when `t.offset + t.n_bytes` is not inside this file.
    pub fn try_tensor_data(&self, t: &TensorInfo) -> Option<&[u8]> {
        let end = t.offset.checked_add(t.n_bytes)?;
        let start = usize::try_from(t.offset).ok()?;
        let end = usize::try_from(end).ok()?;
        self.bytes().get(start..end)
    }

    /// The bytes of the tensor called `name`.
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| self.tensor_data(t))
    }

    /// Absolute offset of the value of metadata `key` (after its type tag), for error
    /// messages that point at the bytes.
    pub fn value_offset(&self, key: &str) -> Option<u64> {
        self.index.get(key).map(|&i| self.value_offsets[i])
    }

    /// Absolute offset of the descriptor of tensor `name` (its name length field).
    pub fn descriptor_offset(&self, name: &str) -> Option<u64> {
        self.tensor_index
            .get(name)
            .map(|&i| self.descriptor_offsets[i])
    }
}

/// Reads little-endian fields with bounds checks. Field descriptions are closures so that
/// the happy path formats nothing.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// Metadata values (keys and array elements) still allowed by [`MAX_METADATA_VALUES`].
    values_left: u64,
}

impl<'a> Cursor<'a> {
    fn pos(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos(),
                len: self.data.len() as u64,
            });
        }
        // n <= remaining, which is a usize.
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Rejects a count of items, each at least `min_item_bytes` long, that cannot fit in
    /// what is left of the file or exceeds `hard_limit`. The count was read at `offset`.
    fn check_count(
        &self,
        what: impl FnOnce() -> String,
        offset: u64,
        count: u64,
        min_item_bytes: u64,
        hard_limit: u64,
    ) -> Result<(), GgufError> {
        let limit = (self.remaining() / min_item_bytes.max(1)).min(hard_limit);
        if count > limit {
            return Err(GgufError::TooLarge {
                what: what(),
                offset,
                value: count,
                limit,
            });
        }
        Ok(())
    }

    /// A length-prefixed byte string, borrowed from the file.
    fn raw_string(&mut self, what: impl Fn() -> String) -> Result<&'a [u8], GgufError> {
        let len_offset = self.pos();
        let len = self.u64(|| format!("length of {}", what()))?;
        if len > self.remaining() {
            return Err(GgufError::TooLarge {
                what: format!("length of {}", what()),
                offset: len_offset,
                value: len,
                limit: self.remaining(),
            });
        }
        self.take(len, what)
    }

    /// A metadata value of type `ty`; `depth` is 1 for a top-level value.
    fn value(&mut self, key: &str, ty: ValueType, depth: usize) -> Result<Value, GgufError> {
        let what = || format!("value of metadata {key:?}");
        Ok(match ty {
            ValueType::String => {
                Value::String(String::from_utf8_lossy(self.raw_string(what)?).into_owned())
            }
            ValueType::Array => self.array_value(key, depth)?,
            scalar => {
                let size = scalar.scalar_size().unwrap_or(1) as u64;
                let offset = self.pos();
                decode_scalar(key, scalar, self.take(size, what)?, offset)?
            }
        })
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Value, GgufError> {
        let what = || format!("array header of metadata {key:?}");
        let start = self.pos();
        if depth > MAX_ARRAY_NESTING {
            return Err(GgufError::BadMetadata {
                key: key.to_string(),
                message: format!(
                    "array at offset {start} is nested {depth} deep, more than the limit {MAX_ARRAY_NESTING}"
                ),
            });
        }
        let elem_raw = self.u32(what)?;
        let elem_ty = ValueType::from_u32(elem_raw).ok_or_else(|| GgufError::BadValueType {
            key: key.to_string(),
            offset: start,
            ty: elem_raw,
        })?;
        let count_offset = self.pos();
        let count = self.u64(what)?;
        let min = match elem_ty {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.scalar_size().unwrap_or(1) as u64,
        };
        self.check_count(
            || format!("array length of metadata {key:?}"),
            count_offset,
            count,
            min,
            u64::MAX,
        )?;
        if count > self.values_left {
            return Err(GgufError::TooLarge {
                what: format!(
                    "array length of metadata {key:?} (all keys and array elements of a file together)"
                ),
                offset: count_offset,
                value: count,
                limit: self.values_left,
            });
        }
        self.values_left -= count;
        let mut items = Vec::with_capacity(count.min(PREALLOC_LIMIT) as usize);
        match elem_ty.scalar_size() {
            Some(size) => {
                // check_count guaranteed count * size <= remaining.
                let offset = self.pos();
                let bytes =
                    self.take(count * size as u64, || format!("value of metadata {key:?}"))?;
                for (i, chunk) in bytes.chunks_exact(size).enumerate() {
                    items.push(decode_scalar(
                        key,
                        elem_ty,
                        chunk,
                        offset + (i * size) as u64,
                    )?);
                }
            }
            None => {
                for _ in 0..count {
                    items.push(self.value(key, elem_ty, depth + 1)?);
                }
            }
        }
        Ok(Value::Array(elem_ty, items))
    }
}

/// Decodes a scalar of type `ty` from exactly `ty.scalar_size()` bytes read at `offset`.
fn decode_scalar(key: &str, ty: ValueType, b: &[u8], offset: u64) -> Result<Value, GgufError> {
    fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&b[..N]);
        out
    }
    Ok(match ty {
        ValueType::U8 => Value::U8(b[0]),
        ValueType::I8 => Value::I8(b[0] as i8),
        ValueType::U16 => Value::U16(u16::from_le_bytes(arr(b))),
        ValueType::I16 => Value::I16(i16::from_le_bytes(arr(b))),
        ValueType::U32 => Value::U32(u32::from_le_bytes(arr(b))),
        ValueType::I32 => Value::I32(i32::from_le_bytes(arr(b))),
        ValueType::F32 => Value::F32(f32::from_le_bytes(arr(b))),
        ValueType::U64 => Value::U64(u64::from_le_bytes(arr(b))),
        ValueType::I64 => Value::I64(i64::from_le_bytes(arr(b))),
        ValueType::F64 => Value::F64(f64::from_le_bytes(arr(b))),
        ValueType::Bool => match b[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            x => {
                return Err(GgufError::BadMetadata {
                    key: key.to_string(),
                    message: format!("bool at offset {offset} has byte {x}, not 0 or 1"),
                })
            }
        },
        ValueType::String | ValueType::Array => {
            return Err(GgufError::BadMetadata {
                key: key.to_string(),
                message: format!(
                    "internal error: {} at offset {offset} decoded as a scalar",
                    ty.name()
                ),
            })
        }
    })
}
