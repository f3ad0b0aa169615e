//! The key/value cache of one sequence and the attention that reads it.

use half::f16;
use half::slice::HalfBitsSliceExt;
use kernels::ThreadPool;

use crate::hparams::HParams;
use crate::EngineError;

/// Values per Q8_0 block (a head's row is a whole number of them).
const Q8_BLOCK: usize = quant::blocks::q8_0::BLOCK_SIZE;

/// How the KV cache stores keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    /// IEEE half floats, 2 bytes a value (the default).
    #[default]
    F16,
    /// GGML Q8_0 blocks along each head's row (f16 scale + 32 int8, 34 bytes per 32 values):
    /// 47% less memory and read bandwidth than f16; needs `head_dim` a multiple of 32.
    Q8_0,
}

impl KvType {
    /// Every type, default first.
    pub const ALL: [KvType; 2] = [KvType::F16, KvType::Q8_0];

    /// The name used on the command line and by llama.cpp (`f16`, `q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes of one head row of `head_dim` values (for Q8_0, `head_dim` a multiple of 32).
    fn row_bytes(self, n: usize) -> usize {
        match self {
            KvType::F16 => n * std::mem::size_of::<f16>(),
            KvType::Q8_0 => kernels::q8_0_bytes(n),
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<KvType, EngineError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            _ => Err(EngineError::BadArgument(format!(
                "unknown KV cache type {s:?} (expected f16 or q8_0)"
            ))),
        }
    }
}

/// One layer's keys or values: `[position][kv_head][head_dim]` in the cache's format.
/// Both are zero-initialised allocations, so they come from the allocator's zero pages and
/// are only touched (and counted in RSS) as positions are filled.
enum Store {
    /// Raw f16 bits.
    F16(Vec<Vec<u16>>),
    /// Q8_0 blocks.
    Q8_0(Vec<Vec<u8>>),
}

/// Key/value cache of one sequence, laid out `[layer][position][kv_head][head_dim]`, f16 or
/// Q8_0 ([`KvType`]).
pub struct KvCache {
    n_ctx: usize,
    kv_dim: usize,
    ty: KvType,
    k: Store,
    v: Store,
}

impl KvCache {
    /// An f16 cache of `n_ctx` positions.
    pub fn new(hp: &HParams, n_ctx: usize) -> KvCache {
        KvCache {
            n_ctx,
            kv_dim: hp.kv_dim(),
            ty: KvType::F16,
            k: Store::F16(zeroed(hp.n_layer, n_ctx * hp.kv_dim())),
            v: Store::F16(zeroed(hp.n_layer, n_ctx * hp.kv_dim())),
        }
    }

    /// A cache of `n_ctx` positions in format `ty`. Errors if the model's head size cannot
    /// be stored in that format (Q8_0 needs a multiple of 32).
    pub fn with_type(hp: &HParams, n_ctx: usize, ty: KvType) -> Result<KvCache, EngineError> {
        check_type(hp, ty)?;
        Ok(match ty {
            KvType::F16 => KvCache::new(hp, n_ctx),
            KvType::Q8_0 => {
                let bytes = n_ctx * ty.row_bytes(hp.kv_dim());
                KvCache {
                    n_ctx,
                    kv_dim: hp.kv_dim(),
                    ty,
                    k: Store::Q8_0(zeroed(hp.n_layer, bytes)),
                    v: Store::Q8_0(zeroed(hp.n_layer, bytes)),
                }
            }
        })
    }

    /// Writes every page of the cache now, so that no position written later takes a page
    /// fault. A server calls this when it allocates its slots: a fault inside a decode step
    /// stalls every sequence of the step (on the 2-core test machine the first 8-stream
    /// round on a fresh server, which faults in ~4,000 pages, ran at 860 tokens/s against
    /// 1,060-1,120 for the next rounds).
    pub fn prefault(&mut self) {
        // One write per 4 KiB page: cheaper than a full fill, and zero is what is there.
        fn touch<T: Copy + Default>(bufs: &mut [Vec<T>]) {
            let step = (4096 / std::mem::size_of::<T>()).max(1);
            for buf in bufs {
                // The last element too: a buffer rarely starts on a page boundary.
                let last = buf.len().checked_sub(1);
                for i in (0..buf.len()).step_by(step).chain(last) {
                    // SAFETY: in bounds; a volatile write so that the store is not elided.
                    unsafe { std::ptr::write_volatile(&mut buf[i], T::default()) };
                }
            }
        }
        for store in [&mut self.k, &mut self.v] {
            match store {
                Store::F16(b) => touch(b),
                Store::Q8_0(b) => touch(b),
            }
        }
    }

    /// The exact bytes a cache of `n_ctx` positions in format `ty` holds for this model (what
    /// [`KvCache::bytes`] will report), without allocating it. Errors as
    /// [`KvCache::with_type`] does.
    pub fn bytes_for(hp: &HParams, n_ctx: usize, ty: KvType) -> Result<usize, EngineError> {
        check_type(hp, ty)?;
        Ok(2 * hp.n_layer * n_ctx * ty.row_bytes(hp.kv_dim()))
    }

    /// Positions the cache can hold.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The storage format.
    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        let n_layer = match &self.k {
            Store::F16(k) => k.len(),
            Store::Q8_0(k) => k.len(),
        };
        2 * n_layer * self.n_ctx * self.ty.row_bytes(self.kv_dim)
    }

    /// Writes the keys and values of positions `pos0..pos0 + k.len() / kv_dim` of layer `il`.
    pub(crate) fn store(&mut self, il: usize, pos0: usize, k: &[f32], v: &[f32]) {
        match (&mut self.k, &mut self.v) {
            (Store::F16(kc), Store::F16(vc)) => {
                let range = pos0 * self.kv_dim..pos0 * self.kv_dim + k.len();
                kernels::f32_to_f16(k, kc[il][range.clone()].reinterpret_cast_mut());
                kernels::f32_to_f16(v, vc[il][range].reinterpret_cast_mut());
            }
            (Store::Q8_0(kc), Store::Q8_0(vc)) => {
                let row = kernels::q8_0_bytes(self.kv_dim);
                let n = k.len() / self.kv_dim;
                let range = pos0 * row..(pos0 + n) * row;
                kernels::quantize_kv_q8_0(k, &mut kc[il][range.clone()]);
                kernels::quantize_kv_q8_0(v, &mut vc[il][range]);
            }
            _ => unreachable!("K and V are built in the same format"),
        }
    }

    /// Causal attention of `n_tokens` query rows at positions `pos0..` over positions
    /// `0..pos0 + n_tokens` of layer `il`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention(
        &self,
        pool: &ThreadPool,
        hp: &HParams,
        il: usize,
        q: &[f32],
        n_tokens: usize,
        pos0: usize,
        window: Option<usize>,
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let n_pos = pos0 + n_tokens;
        match (&self.k, &self.v) {
            (Store::F16(kc), Store::F16(vc)) => {
                let len = n_pos * self.kv_dim;
                kernels::attention(
                    pool,
                    q,
                    n_tokens,
                    hp.n_head,
                    hp.n_head_kv,
                    hp.head_dim,
                    kc[il][..len].reinterpret_cast(),
                    vc[il][..len].reinterpret_cast(),
                    pos0,
                    window,
                    hp.attn_scale,
                    out,
                )?;
            }
            (Store::Q8_0(kc), Store::Q8_0(vc)) => {
                let len = n_pos * kernels::q8_0_bytes(self.kv_dim);
                // The queries are rounded to Q8_0 for the scores, as ggml does for a Q8_0 K:
                // integer dot products, a third less work in decode than converting K.
                kernels::attention_q8_0_int8_query(
                    pool,
                    q,
                    n_tokens,
                    hp.n_head,
                    hp.n_head_kv,
                    hp.head_dim,
                    &kc[il][..len],
                    &vc[il][..len],
                    pos0,
                    window,
                    hp.attn_scale,
                    out,
                )?;
            }
            _ => unreachable!("K and V are built in the same format"),
        }
        Ok(())
    }
}

/// `n_layer` zeroed buffers of `len` elements (zero pages until written).
fn zeroed<T: Clone + Default>(n_layer: usize, len: usize) -> Vec<Vec<T>> {
    (0..n_layer).map(|_| vec![T::default(); len]).collect()
}

fn check_type(hp: &HParams, ty: KvType) -> Result<(), EngineError> {
    if ty == KvType::Q8_0 && !hp.head_dim.is_multiple_of(Q8_BLOCK) {
        return Err(EngineError::BadArgument(format!(
            "a q8_0 KV cache needs a head size that is a multiple of {Q8_BLOCK}; this model's \
             is {} (use the f16 KV cache)",
            hp.head_dim
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `[ptr, ptr + len)` present in memory, and all its pages (/proc/self/pagemap:
    /// bit 63 of each page's entry; readable without privileges).
    #[cfg(target_os = "linux")]
    fn present_pages(ranges: &[(usize, usize)]) -> (usize, usize) {
        use std::io::{Read, Seek, SeekFrom};
        const PAGE: usize = 4096;
        let mut f = std::fs::File::open("/proc/self/pagemap").unwrap();
        let (mut present, mut total) = (0, 0);
        for &(ptr, len) in ranges {
            for page in ptr / PAGE..(ptr + len).div_ceil(PAGE) {
                f.seek(SeekFrom::Start((page * 8) as u64)).unwrap();
                let mut e = [0u8; 8];
                f.read_exact(&mut e).unwrap();
                present += (u64::from_le_bytes(e) >> 63) as usize;
                total += 1;
            }
        }
        (present, total)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn prefault_makes_the_whole_cache_resident_and_keeps_it_zero() {
        let f = gguf::GgufFile::open(testdata::model("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
        let hp = HParams::from_gguf(&f).unwrap();
        for ty in KvType::ALL {
            let mut kv = KvCache::with_type(&hp, 4096, ty).unwrap();
            let ranges = |kv: &KvCache| -> Vec<(usize, usize)> {
                [&kv.k, &kv.v]
                    .into_iter()
                    .flat_map(|s| match s {
                        Store::F16(b) => b
                            .iter()
                            .map(|v| (v.as_ptr() as usize, 2 * v.len()))
                            .collect::<Vec<_>>(),
                        Store::Q8_0(b) => {
                            b.iter().map(|v| (v.as_ptr() as usize, v.len())).collect()
                        }
                    })
                    .collect()
            };
            // Fresh allocations of this size are mostly untouched (not asserted: memory
            // another test freed may be reused).
            let (before, total) = present_pages(&ranges(&kv));
            kv.prefault();
            let (after, _) = present_pages(&ranges(&kv));
            assert_eq!(
                after, total,
                "{ty}: {total} pages of cache, {before} present before prefault, {after} after"
            );
            let all_zero = match &kv.k {
                Store::F16(b) => b.iter().all(|v| v.iter().all(|&x| x == 0)),
                Store::Q8_0(b) => b.iter().all(|v| v.iter().all(|&x| x == 0)),
            };
            assert!(all_zero, "{ty}: prefault changed the cache");
        }
    }

    #[test]
    fn kv_type_names_round_trip() {
        for ty in KvType::ALL {
            assert_eq!(ty.name().parse::<KvType>().unwrap(), ty);
            assert_eq!(ty.to_string(), ty.name());
        }
        assert_eq!(" Q8_0 ".parse::<KvType>().unwrap(), KvType::Q8_0);
        assert_eq!(KvType::default(), KvType::F16);
        for bad in ["", "q4_0", "f32", "q8"] {
            let e = bad.parse::<KvType>().unwrap_err().to_string();
            assert!(e.contains("f16 or q8_0"), "{bad}: {e}");
        }
    }
}
