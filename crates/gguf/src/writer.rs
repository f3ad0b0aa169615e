use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::Path;

use quant::GgmlType;

use crate::{GgufError, Value, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};

/// A tensor to be written: shape in GGML order and its encoded bytes.
pub struct WriterTensor<'a> {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub data: Cow<'a, [u8]>,
}

/// Builds a GGUF v3 file. Output goes to a temporary file in the destination directory that
/// is synced and renamed into place, so a reader never sees a half-written file.
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
            return Err(bad(format!("rank {} outside 1..=4", tensor.dims.len())));
        }
        let n: u64 = tensor
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("element count overflows".into()))?;
        let want = tensor
            .ty
            .bytes_for(n)
            .ok_or_else(|| bad(format!("{n} elements are not whole {} blocks", tensor.ty)))?;
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
        self.tensors.push(tensor);
        Ok(())
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Serialises the whole file into `out`.
    pub fn write(&self, out: &mut impl Write) -> Result<(), GgufError> {
        let io = |e: std::io::Error| GgufError::Write(e.to_string());
        let alignment = self.alignment();
        let mut header = Vec::new();
        header.extend_from_slice(&GGUF_MAGIC.to_le_bytes());
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut header, k);
            header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut header, v)?;
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
        let pad = (header.len() as u64).div_ceil(alignment) * alignment - header.len() as u64;
        header.resize(header.len() + pad as usize, 0);
        out.write_all(&header).map_err(io)?;
        let mut written = 0u64;
        for (t, &o) in self.tensors.iter().zip(&offsets) {
            out.write_all(&vec![0u8; (o - written) as usize])
                .map_err(io)?;
            out.write_all(&t.data).map_err(io)?;
            written = o + t.data.len() as u64;
        }
        Ok(())
    }

    /// Writes atomically to `path` (temp file in the same directory, fsync, rename).
    pub fn write_to_path(&self, path: &Path) -> Result<(), GgufError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .ok_or_else(|| GgufError::Write(format!("{}: not a file path", path.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let result = (|| {
            let f = std::fs::File::create(&tmp).map_err(|e| GgufError::io(&tmp, e))?;
            let mut w = BufWriter::new(f);
            self.write(&mut w)?;
            let f = w
                .into_inner()
                .map_err(|e| GgufError::io(&tmp, e.into_error()))?;
            f.sync_all().map_err(|e| GgufError::io(&tmp, e))?;
            std::fs::rename(&tmp, path).map_err(|e| GgufError::io(path, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) -> Result<(), GgufError> {
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
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                if item.value_type() != *ty {
                    return Err(GgufError::Write(format!(
                        "array of {} holds a {}",
                        ty.name(),
                        item.value_type().name()
                    )));
                }
                put_value(out, item)?;
            }
        }
    }
    Ok(())
}
