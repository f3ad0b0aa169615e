use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use quant::GgmlType;

use crate::{
    check_alignment, GgufError, Value, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_NESTING, MAX_DIMS,
    MAX_METADATA_VALUES, MAX_TENSORS,
};

/// A tensor to be written: shape in GGML order and its encoded bytes.
pub struct WriterTensor<'a> {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub data: Cow<'a, [u8]>,
}

/// Builds a GGUF v3 file. Output goes to a temporary file in the destination directory that
/// is synced and renamed into place, so a reader never sees a half-written file.
///
/// The layout is the one llama.cpp and gguf-py write: header, metadata and tensor
/// descriptors in insertion order, zero padding to the alignment, then each tensor's data
/// padded with zeros to the alignment (the last one included). Everything the reader would
/// reject (bad shapes, a bad `general.alignment`, arrays nested too deep, mixed arrays) is
/// rejected here first, so a written file always reads back.
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value)>,
    tensors: Vec<WriterTensor<'a>>,
}

impl<'a> GgufWriter<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`, replacing an earlier value of the same key in place.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key, value));
        }
    }

    pub fn add_tensor(&mut self, tensor: WriterTensor<'a>) -> Result<(), GgufError> {
        let bad = |m: String| GgufError::Write(format!("tensor {:?}: {m}", tensor.name));
        if tensor.dims.is_empty() || tensor.dims.len() > MAX_DIMS as usize {
            return Err(bad(format!(
                "rank {} outside 1..={MAX_DIMS}",
                tensor.dims.len()
            )));
        }
        if let Some(k) = tensor.dims.iter().position(|&d| d == 0) {
            return Err(bad(format!(
                "dimension {k} of shape {:?} is 0",
                tensor.dims
            )));
        }
        let n: u64 = tensor
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                bad(format!(
                    "shape {:?} has more than 2^63-1 elements",
                    tensor.dims
                ))
            })?;
        let block = tensor.ty.block_size() as u64;
        if !tensor.dims[0].is_multiple_of(block) {
            return Err(bad(format!(
                "row length {} is not a multiple of the {} block size {block}",
                tensor.dims[0], tensor.ty
            )));
        }
        let want = tensor
            .ty
            .bytes_for(n)
            .ok_or_else(|| bad(format!("byte size of {n} {} elements overflows", tensor.ty)))?;
        if want != tensor.data.len() as u64 {
            return Err(bad(format!(
                "{} bytes given, shape {:?} as {} needs {want}",
                tensor.data.len(),
                tensor.dims,
                tensor.ty
            )));
        }
        if self.tensors.iter().any(|t| t.name == tensor.name) {
            return Err(bad("added twice".into()));
        }
        if self.tensors.len() as u64 >= MAX_TENSORS {
            return Err(bad(format!("more than {MAX_TENSORS} tensors")));
        }
        self.tensors.push(tensor);
        Ok(())
    }

    /// The alignment the file will use: `general.alignment` if set (and valid), else 32.
    fn alignment(&self) -> Result<u64, GgufError> {
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, v)) => check_alignment(v)
                .map_err(|m| GgufError::Write(format!("metadata \"general.alignment\": {m}"))),
        }
    }

    /// Validates everything and encodes the header (up to the aligned start of the data).
    /// Returns the header and each tensor's offset relative to the data section.
    fn encode_header(&self) -> Result<(Vec<u8>, Vec<u64>, u64), GgufError> {
        let alignment = self.alignment()?;
        let mut header = Vec::new();
        header.extend_from_slice(&GGUF_MAGIC.to_le_bytes());
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        let mut n_values = self.metadata.len() as u64;
        for (k, v) in &self.metadata {
            put_str(&mut header, k);
            header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut header, v, 1, &mut n_values)
                .map_err(|m| GgufError::Write(format!("metadata {k:?}: {m}")))?;
        }
        if n_values > MAX_METADATA_VALUES {
            return Err(GgufError::Write(format!(
                "{n_values} metadata values (keys plus array elements), more than the limit {MAX_METADATA_VALUES}"
            )));
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).div_ceil(alignment) * alignment;
        }
        let padded = (header.len() as u64).div_ceil(alignment) * alignment;
        header.resize(padded as usize, 0);
        Ok((header, offsets, alignment))
    }

    fn write_encoded(
        &self,
        out: &mut impl Write,
        header: &[u8],
        offsets: &[u64],
        alignment: u64,
    ) -> std::io::Result<()> {
        out.write_all(header)?;
        let zeros = vec![0u8; alignment as usize];
        for (t, &o) in self.tensors.iter().zip(offsets) {
            out.write_all(&t.data)?;
            let end = o + t.data.len() as u64;
            let pad = end.div_ceil(alignment) * alignment - end;
            out.write_all(&zeros[..pad as usize])?;
        }
        out.flush()
    }

    /// Serialises the whole file into `out`. Invalid content is reported before anything
    /// is written.
    pub fn write(&self, out: &mut impl Write) -> Result<(), GgufError> {
        let (header, offsets, alignment) = self.encode_header()?;
        self.write_encoded(out, &header, &offsets, alignment)
            .map_err(|e| GgufError::Write(e.to_string()))
    }

    /// Writes atomically to `path`: a new temporary file in the same directory, fsync,
    /// rename over `path`, fsync of the directory. On any error the temporary file is
    /// removed and `path` is untouched (an older file there stays as it was).
    pub fn write_to_path(&self, path: &Path) -> Result<(), GgufError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .ok_or_else(|| GgufError::Write(format!("{}: not a file path", path.display())))?;
        // Validate before touching the file system.
        let (header, offsets, alignment) = self.encode_header()?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // create_new: never follow or clobber something already at the temporary name.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| GgufError::io(&tmp, e))?;
        let result = (|| {
            let mut w = BufWriter::with_capacity(1 << 20, f);
            self.write_encoded(&mut w, &header, &offsets, alignment)
                .map_err(|e| GgufError::io(&tmp, e))?;
            let f = w
                .into_inner()
                .map_err(|e| GgufError::io(&tmp, e.into_error()))?;
            f.sync_all().map_err(|e| GgufError::io(&tmp, e))?;
            drop(f);
            std::fs::rename(&tmp, path).map_err(|e| GgufError::io(path, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return result;
        }
        // Make the rename itself durable. Best effort: not every platform can open a
        // directory, and the file is already complete and in place.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes `v`; `depth` is 1 for a top-level value. Counts array elements into `n_values`.
fn put_value(out: &mut Vec<u8>, v: &Value, depth: usize, n_values: &mut u64) -> Result<(), String> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(b) => out.push(*b as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(ty, items) => {
            if depth > MAX_ARRAY_NESTING {
                return Err(format!(
                    "arrays nested {depth} deep, more than the limit {MAX_ARRAY_NESTING}"
                ));
            }
            *n_values = n_values.saturating_add(items.len() as u64);
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for (i, item) in items.iter().enumerate() {
                if item.value_type() != *ty {
                    return Err(format!(
                        "array of {} holds a {} at index {i}",
                        ty.name(),
                        item.value_type().name()
                    ));
                }
                put_value(out, item, depth + 1, n_values)?;
            }
        }
    }
    Ok(())
}
