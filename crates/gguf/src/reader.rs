use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use quant::GgmlType;

use crate::{GgufError, Value, ValueType, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};

/// Arrays nested deeper than this are rejected (real files nest at most one level).
const MAX_NESTING: usize = 8;

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
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
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
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
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
        let mut r = Cursor { data, pos: 0 };
        let magic = r.u32("magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor descriptor
        // at least 8 + 4 + 4 + 8 bytes. Counts that cannot fit in the file are lies.
        r.check_count("metadata count", 8, n_kv, 13)?;
        r.check_count("tensor count", 16, n_tensors, 24)?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key_offset = r.pos as u64;
            let key = r.string("metadata key")?;
            if key.contains('\u{FFFD}') {
                return Err(GgufError::BadKey { offset: key_offset });
            }
            let ty_offset = r.pos as u64;
            let ty_raw = r.u32("metadata value type")?;
            let ty = ValueType::from_u32(ty_raw).ok_or_else(|| GgufError::BadValueType {
                key: key.clone(),
                offset: ty_offset,
                ty: ty_raw,
            })?;
            let value = r.value(&key, ty, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey {
                    key,
                    offset: key_offset,
                });
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.get(index.get("general.alignment").copied().unwrap_or(usize::MAX)) {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(GgufError::BadMetadata {
                        key: "general.alignment".into(),
                        message: format!(
                            "must be a power of two between 1 and 1048576, found {}",
                            v.display_short(4)
                        ),
                    })
                }
            },
        };

        let mut raw_tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let desc_offset = r.pos as u64;
            let name = r.string("tensor name")?;
            let bad = |message: String| GgufError::BadTensor {
                name: name.clone(),
                offset: desc_offset,
                message,
            };
            let n_dims = r.u32("tensor rank")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(bad(format!("rank {n_dims} is outside 1..={MAX_DIMS}")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let ty_raw = r.u32("tensor type")?;
            let rel_offset = r.u64("tensor offset")?;
            let ty = GgmlType::from_id(ty_raw)
                .ok_or_else(|| bad(format!("unknown tensor type id {ty_raw}")))?;
            let mut n_elements: u64 = 1;
            for &d in &dims {
                if d == 0 || d > i64::MAX as u64 {
                    return Err(bad(format!("dimension {d} in shape {dims:?} is invalid")));
                }
                n_elements = n_elements
                    .checked_mul(d)
                    .ok_or_else(|| bad(format!("shape {dims:?} overflows the element count")))?;
            }
            if dims[0] % ty.block_size() as u64 != 0 {
                return Err(bad(format!(
                    "row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    ty,
                    ty.block_size()
                )));
            }
            let n_bytes = ty
                .bytes_for(n_elements)
                .ok_or_else(|| bad(format!("byte size of shape {dims:?} as {ty} overflows")))?;
            if rel_offset % alignment != 0 {
                return Err(bad(format!(
                    "data offset {rel_offset} is not a multiple of the alignment {alignment}"
                )));
            }
            raw_tensors.push((name, dims, ty, rel_offset, n_bytes, desc_offset));
        }

        let header_end = r.pos as u64;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let file_len = data.len() as u64;
        let mut tensors = Vec::with_capacity(raw_tensors.len());
        let mut tensor_index = HashMap::with_capacity(raw_tensors.len());
        for (name, dims, ty, rel_offset, n_bytes, desc_offset) in raw_tensors {
            let end = data_offset
                .checked_add(rel_offset)
                .and_then(|o| o.checked_add(n_bytes));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(GgufError::BadTensor {
                        name,
                        offset: desc_offset,
                        message: format!(
                            "data [{} + {rel_offset}, +{n_bytes} bytes) lies past the end of the file ({file_len} bytes)",
                            data_offset
                        ),
                    })
                }
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor {
                    name,
                    offset: desc_offset,
                });
            }
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
            index,
            tensors,
            tensor_index,
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

    /// The bytes of `t`, borrowed from the mapping (bounds were checked at open).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        &self.bytes()[t.offset as usize..(t.offset + t.n_bytes) as usize]
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                len: self.data.len() as u64,
            });
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Rejects a count of items, each at least `min_item_bytes` long, that cannot fit in
    /// what is left of the file. `field_offset_back` is how far back the count was read.
    fn check_count(
        &self,
        what: &str,
        field_offset_back: u64,
        count: u64,
        min_item_bytes: u64,
    ) -> Result<(), GgufError> {
        let limit = self.remaining() / min_item_bytes;
        if count > limit {
            return Err(GgufError::TooLarge {
                what: what.to_string(),
                offset: (self.pos as u64).saturating_sub(field_offset_back),
                value: count,
                limit,
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len_offset = self.pos as u64;
        let len = self.u64(what)?;
        if len > self.remaining() {
            return Err(GgufError::TooLarge {
                what: format!("{what} length"),
                offset: len_offset,
                value: len,
                limit: self.remaining(),
            });
        }
        let bytes = self.take(len, what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, key: &str, ty: ValueType, depth: usize) -> Result<Value, GgufError> {
        let what = || format!("value of {key:?}");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what())?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what())?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what())?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what())?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what())?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what())?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what())?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what())?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what())?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what())?)),
            ValueType::Bool => {
                let offset = self.pos as u64;
                match self.array::<1>(&what())?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(GgufError::BadMetadata {
                            key: key.to_string(),
                            message: format!("bool at offset {offset} has byte {b}, not 0 or 1"),
                        })
                    }
                }
            }
            ValueType::String => Value::String(self.string(&what())?),
            ValueType::Array => {
                if depth >= MAX_NESTING {
                    return Err(GgufError::BadMetadata {
                        key: key.to_string(),
                        message: format!(
                            "arrays nested more than {MAX_NESTING} deep at offset {}",
                            self.pos
                        ),
                    });
                }
                let ty_offset = self.pos as u64;
                let elem_raw = self.u32(&what())?;
                let elem_ty =
                    ValueType::from_u32(elem_raw).ok_or_else(|| GgufError::BadValueType {
                        key: key.to_string(),
                        offset: ty_offset,
                        ty: elem_raw,
                    })?;
                let count = self.u64(&what())?;
                let min = match elem_ty {
                    ValueType::String => 8,
                    ValueType::Array => 12,
                    t => t.scalar_size().unwrap_or(1) as u64,
                };
                self.check_count(&format!("array length of {key:?}"), 8, count, min)?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(key, elem_ty, depth + 1)?);
                }
                Value::Array(elem_ty, items)
            }
        })
    }
}
