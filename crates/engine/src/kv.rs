//! The key/value cache of one sequence and the attention that reads it.

use half::f16;
use half::slice::HalfBitsSliceExt;
use kernels::ThreadPool;

use crate::hparams::HParams;
use crate::EngineError;

/// Key/value cache of one sequence, f16, laid out `[layer][position][kv_head][head_dim]`.
/// Stored as raw f16 bits so the zeroed allocation comes from the allocator's zero pages:
/// memory is only touched (and counted in RSS) as positions are filled.
pub struct KvCache {
    n_ctx: usize,
    kv_dim: usize,
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
}

impl KvCache {
    pub fn new(hp: &HParams, n_ctx: usize) -> KvCache {
        let kv_dim = hp.kv_dim();
        KvCache {
            n_ctx,
            kv_dim,
            k: (0..hp.n_layer)
                .map(|_| vec![0u16; n_ctx * kv_dim])
                .collect(),
            v: (0..hp.n_layer)
                .map(|_| vec![0u16; n_ctx * kv_dim])
                .collect(),
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        2 * self.k.len() * self.n_ctx * self.kv_dim * std::mem::size_of::<f16>()
    }

    /// Writes the keys and values of positions `pos0..pos0 + k.len() / kv_dim` of layer `il`.
    pub(crate) fn store(&mut self, il: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let range = pos0 * self.kv_dim..pos0 * self.kv_dim + k.len();
        kernels::f32_to_f16(k, self.k[il][range.clone()].reinterpret_cast_mut());
        kernels::f32_to_f16(v, self.v[il][range].reinterpret_cast_mut());
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
        let len = (pos0 + n_tokens) * self.kv_dim;
        kernels::attention(
            pool,
            q,
            n_tokens,
            hp.n_head,
            hp.n_head_kv,
            hp.head_dim,
            self.k[il][..len].reinterpret_cast(),
            self.v[il][..len].reinterpret_cast(),
            pos0,
            window,
            hp.attn_scale,
            out,
        )?;
        Ok(())
    }
}
