//! What running a model costs, worked out from its GGUF metadata without loading it: memory
//! at full context (weights, KV cache, activation scratch, tokenizer, process baseline), the
//! bytes a decoded token reads (hence the bandwidth-bound decode speed), the same model's size
//! at other quantizations, and the machine's available memory and read bandwidth.
//!
//! The memory terms follow what the engine allocates (`forward.rs` `Scratch`, `kv.rs`,
//! `model.rs`, the tokenizer's tables) so that the total matches the peak RSS of a run that
//! fills its context; `crates/cli/tests/fit.rs` holds it within 10% of `freehold run`'s.

use std::path::Path;
use std::time::{Duration, Instant};

use gguf::GgufFile;
use quant::GgmlType;

use crate::hparams::HParams;
use crate::kv::{KvCache, KvType};
use crate::EngineError;

/// Resident memory of the `freehold` process that no model term accounts for: the binary's
/// code and data pages, libc, thread stacks and the kernels' per-thread buffers, the
/// allocator's arenas, the chat template and the metadata kept after load. Measured on the
/// test models (SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M; 2 threads, contexts 512 and 2048) as
/// peak RSS minus every other term of [`estimate`]: 9.5-10.5 MiB (of which `freehold
/// --version` alone is 4.4 MiB).
pub const BASELINE_BYTES: u64 = 10 << 20;

/// Page size assumed when rounding mappings and large allocations.
const PAGE: u64 = 4096;

/// Bytes of one sequence's KV cache of `n_ctx` positions ([`KvCache::bytes_for`]), as u64.
/// Sizes from hostile metadata (or a huge context) that could overflow are refused first:
/// no format takes more than 4 bytes a value.
fn kv_bytes(hp: &HParams, n_ctx: usize, ty: KvType) -> Result<u64, EngineError> {
    let bound = 2 * hp.n_layer as u128 * n_ctx as u128 * hp.kv_dim() as u128 * 4;
    if bound >= 1 << 62 {
        return Err(EngineError::BadArgument(format!(
            "a KV cache of {n_ctx} positions x {} layers x {} values is too large to compute",
            hp.n_layer,
            hp.kv_dim()
        )));
    }
    Ok(KvCache::bytes_for(hp, n_ctx, ty)? as u64)
}

/// What an estimate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EstimateParams {
    /// Context positions per sequence.
    pub n_ctx: usize,
    /// Sequences held at once (each with its own KV cache and logits).
    pub parallel: usize,
    /// KV cache format.
    pub kv_type: KvType,
    /// Most tokens evaluated in one forward pass ([`crate::DEFAULT_BATCH`] for `run`).
    pub n_batch: usize,
}

impl EstimateParams {
    /// One sequence of `n_ctx` positions, f16 KV, the default prompt batch.
    pub fn new(n_ctx: usize) -> EstimateParams {
        EstimateParams {
            n_ctx,
            parallel: 1,
            kv_type: KvType::F16,
            n_batch: crate::DEFAULT_BATCH,
        }
    }
}

/// Resident bytes of a model in use with every context position filled, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The mapped file: every page is read (header and metadata at load, every tensor by the
    /// forward pass; a tied output reads the whole token embedding each step).
    pub weights: u64,
    /// KV caches of all sequences.
    pub kv: u64,
    /// Activation buffers, the kernels' quantized activations, logits and sampler candidates.
    pub scratch: u64,
    /// The tokenizer's vocabulary, lookup table and merge ranks.
    pub tokenizer: u64,
    /// [`BASELINE_BYTES`].
    pub baseline: u64,
}

impl MemoryEstimate {
    /// All parts together.
    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.scratch + self.tokenizer + self.baseline
    }
}

/// Estimates peak resident memory of running the model in `file` (hyper-parameters `hp`) with
/// every context position of every sequence filled. Reads metadata only; no tensor data.
pub fn estimate(
    file: &GgufFile,
    hp: &HParams,
    p: &EstimateParams,
) -> Result<MemoryEstimate, EngineError> {
    if p.n_ctx == 0 || p.parallel == 0 || p.n_batch == 0 {
        return Err(EngineError::BadArgument(format!(
            "context ({}), parallel sequences ({}) and batch ({}) must be at least 1",
            p.n_ctx, p.parallel, p.n_batch
        )));
    }
    let kv = kv_bytes(hp, p.n_ctx, p.kv_type)?
        .checked_mul(p.parallel as u64)
        .filter(|&b| b < 1 << 62)
        .ok_or_else(|| {
            EngineError::BadArgument(format!(
                "{} sequences of {} positions: the KV cache size overflows",
                p.parallel, p.n_ctx
            ))
        })?;
    Ok(MemoryEstimate {
        weights: round_up(file.len(), PAGE),
        kv,
        scratch: scratch_bytes(file, hp, p),
        tokenizer: tokenizer_bytes(file),
        baseline: BASELINE_BYTES,
    })
}

/// The forward pass's buffers at their largest: `Scratch` holds, per token row of a step,
/// the residual stream, its norm and the projection output (`n_embd` each), Q and the
/// attention output (`q_dim`), K and V (`kv_dim`), gate and up (`n_ff`), all f32, and a u32
/// position; the matmul kernels quantize their input once per weight family into a buffer of
/// the widest input (1 + 12/32 bytes a value for the 32-blocks, 292/256 for Q8_K). Each
/// sequence keeps one row of logits and the sampler's (id, logit) candidates; a batch of
/// several sequences has one more logits row per sequence.
fn scratch_bytes(file: &GgufFile, hp: &HParams, p: &EstimateParams) -> u64 {
    let rows = p.n_batch.min(p.n_ctx.saturating_mul(p.parallel)) as u64;
    let (d, qd, kvd, ff) = (
        hp.n_embd as u64,
        hp.q_dim() as u64,
        hp.kv_dim() as u64,
        hp.n_ff as u64,
    );
    let alloc = |bytes: u64| round_up(bytes, PAGE);
    let mut total = 3 * alloc(rows * d * 4)
        + 2 * alloc(rows * qd * 4)
        + 2 * alloc(rows * kvd * 4)
        + 2 * alloc(rows * ff * 4)
        + alloc(rows * 4);
    let widest = |family: &[GgmlType]| {
        file.tensors()
            .iter()
            .filter(|t| family.contains(&t.ty) && t.dims.len() >= 2)
            .map(|t| t.dims[0])
            .max()
    };
    use GgmlType::*;
    if let Some(cols) = widest(&[Q4_0, Q4_1, Q5_0, Q5_1, Q8_0]) {
        total += alloc(rows * cols) + alloc(rows * cols / 32 * 12);
    }
    if let Some(cols) = widest(&[Q2_K, Q3_K, Q4_K, Q5_K, Q6_K]) {
        total += alloc(rows * cols / 256 * 292);
    }
    let vocab = hp.n_vocab as u64;
    let par = p.parallel as u64;
    let batcher_logits = if p.parallel > 1 { par } else { 0 };
    total + (par + batcher_logits) * alloc(vocab * 4) + par * alloc(vocab * 8)
}

/// glibc's heap chunk for a request of `n` bytes: 8 bytes of header, 16-byte granules, 32 at
/// least; requests past the mmap threshold are page-rounded mappings instead.
fn malloc_chunk(n: u64) -> u64 {
    if n == 0 {
        0
    } else if n >= 128 * 1024 {
        round_up(n, PAGE)
    } else {
        round_up(n + 8, 16).max(32)
    }
}

/// Buckets of a hashbrown table holding `n` items (7/8 load, powers of two).
fn hash_buckets(n: u64) -> u64 {
    if n < 8 {
        return if n < 4 { 4 } else { 8 };
    }
    (n * 8 / 7).next_power_of_two()
}

/// Bytes of a hashbrown table of `n` entries of `entry` bytes: slots plus one control byte
/// each and a 16-byte trailing group.
fn hash_table(n: u64, entry: u64) -> u64 {
    let b = hash_buckets(n);
    malloc_chunk(b * entry + b + 16)
}

/// The tokenizer built from `tokenizer.ggml.*`: each token's text twice (the id-to-text list
/// and the text-to-id map's key), the list of `String`s, scores and attributes (4 bytes each),
/// the map (a `String` and a `u32` per slot), and for BPE each merge as a `"left right"` key
/// in a map of ranks. The metadata arrays themselves are dropped after load.
fn tokenizer_bytes(file: &GgufFile) -> u64 {
    const STRING: u64 = 24;
    const ENTRY: u64 = 32;
    let Some(tokens) = file.get_array("tokenizer.ggml.tokens") else {
        return 0;
    };
    let n = tokens.len() as u64;
    let mut total = malloc_chunk(n * STRING) + 2 * malloc_chunk(n * 4) + hash_table(n, ENTRY);
    for (i, t) in tokens.iter().enumerate() {
        let len = match t.as_str() {
            Some("") | None => format!("[EMPTY_{i}]").len(),
            Some(s) => s.len(),
        } as u64;
        total += 2 * malloc_chunk(len);
    }
    if let Some(merges) = file.get_array("tokenizer.ggml.merges") {
        let m = merges.len() as u64;
        total += hash_table(m, ENTRY);
        total += merges
            .iter()
            .map(|v| malloc_chunk(v.as_str().map_or(0, |s| s.len() as u64)))
            .sum::<u64>();
    }
    total
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Is the output projection the token embedding (no `output.weight`)?
fn tied_output(file: &GgufFile) -> bool {
    file.tensor("output.weight").is_none()
}

/// Bytes one decoding step reads from memory for `parallel` sequences at context `n_ctx`:
/// every weight matrix once (the token embedding only when it doubles as the output; norms
/// are copied out at load), and each sequence's keys and values over the positions its layers
/// attend to (a sliding-window layer reads at most its window).
pub fn decode_bytes_per_step(
    file: &GgufFile,
    hp: &HParams,
    n_ctx: usize,
    parallel: usize,
    kv_type: KvType,
) -> Result<u64, EngineError> {
    let tied = tied_output(file);
    let weights: u64 = file
        .tensors()
        .iter()
        .filter(|t| t.dims.iter().filter(|&&d| d > 1).count() >= 2)
        .filter(|t| tied || t.name != "token_embd.weight")
        .map(|t| t.n_bytes)
        .sum();
    // Keys and values of one position in one layer.
    let row = kv_bytes(hp, 1, kv_type)? / hp.n_layer.max(1) as u64;
    let kv: u64 = hp
        .layers
        .iter()
        .map(|l| row.saturating_mul(l.window.map_or(n_ctx, |w| w.min(n_ctx)) as u64))
        .fold(0, u64::saturating_add);
    Ok(weights.saturating_add(kv.saturating_mul(parallel as u64)))
}

/// A quantization scheme the way llama.cpp's quantizer applies it: one block type for the
/// weight matrices, with the output projection (and, in the `_M` mixes, `attn_v` and
/// `ffn_down` of half the layers) given more bits, and a fallback where a row is not a whole
/// number of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantScheme {
    /// llama.cpp's name (`Q4_K_M`).
    pub name: &'static str,
    base: GgmlType,
    /// Type of the output projection.
    output: GgmlType,
    /// `_M` mixes: type of `attn_v` and `ffn_down` in the layers that get more bits.
    more_bits: Option<GgmlType>,
}

/// Schemes from highest quality to lowest.
pub const QUANT_SCHEMES: [QuantScheme; 10] = {
    use GgmlType::*;
    const fn s(
        name: &'static str,
        base: GgmlType,
        output: GgmlType,
        more_bits: Option<GgmlType>,
    ) -> QuantScheme {
        QuantScheme {
            name,
            base,
            output,
            more_bits,
        }
    }
    [
        s("F16", F16, F16, None),
        s("Q8_0", Q8_0, Q8_0, None),
        s("Q6_K", Q6_K, Q6_K, None),
        s("Q5_K_M", Q5_K, Q6_K, Some(Q6_K)),
        s("Q5_0", Q5_0, Q6_K, None),
        s("Q4_K_M", Q4_K, Q6_K, Some(Q6_K)),
        s("Q4_1", Q4_1, Q6_K, None),
        s("Q4_0", Q4_0, Q6_K, None),
        s("Q3_K_S", Q3_K, Q6_K, None),
        s("Q2_K", Q2_K, Q6_K, None),
    ]
};

/// llama.cpp's choice of layers that get more bits in the `_M` mixes: the first and last
/// eighth and every third layer between.
fn use_more_bits(il: usize, n_layer: usize) -> bool {
    il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2
}

/// The type a row of `cols` values falls back to when it is not a whole number of `ty`'s
/// blocks (llama.cpp's fallbacks, same size class).
fn fallback(ty: GgmlType, cols: u64) -> GgmlType {
    use GgmlType::*;
    if cols.is_multiple_of(ty.block_size() as u64) {
        return ty;
    }
    let f = match ty {
        Q2_K | Q3_K => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        _ => F16,
    };
    if cols.is_multiple_of(f.block_size() as u64) {
        f
    } else {
        F16
    }
}

impl QuantScheme {
    /// The type this scheme gives tensor `name` of row length `cols` in a model of `n_layer`
    /// layers whose output is (`tied`) or is not the token embedding.
    fn type_for(&self, name: &str, cols: u64, n_layer: usize, tied: bool) -> GgmlType {
        let is_output = name == "output.weight" || (tied && name == "token_embd.weight");
        let layer = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse::<usize>().ok());
        let ty = match (self.more_bits, layer) {
            _ if is_output => self.output,
            (Some(more), Some(il))
                if (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight"))
                    && il < n_layer
                    && use_more_bits(il, n_layer) =>
            {
                more
            }
            _ => self.base,
        };
        fallback(ty, cols)
    }
}

/// The model's file size if its weight matrices were quantized with `scheme` (vectors such as
/// norms keep their type; header and metadata are unchanged).
pub fn file_bytes_as(file: &GgufFile, hp: &HParams, scheme: &QuantScheme) -> u64 {
    let tied = tied_output(file);
    let mut total = file.len();
    for t in file.tensors() {
        let is_matrix = t.dims.iter().filter(|&&d| d > 1).count() >= 2;
        if !is_matrix {
            continue;
        }
        let cols = t.dims[0];
        let ty = scheme.type_for(&t.name, cols, hp.n_layer, tied);
        let new = ty.bytes_for(t.n_elements()).unwrap_or(t.n_bytes);
        total = total - t.n_bytes + new;
    }
    total
}

/// Where an estimate stands against the memory available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Under 80% of what is available.
    Fits,
    /// Between 80% and 100%: runs, little room for anything else.
    Tight,
    /// 100% or more.
    DoesNotFit,
}

impl Verdict {
    /// `bytes` against `available`.
    pub fn of(bytes: u64, available: u64) -> Verdict {
        if (bytes as u128) * 10 < (available as u128) * 8 {
            Verdict::Fits
        } else if bytes < available {
            Verdict::Tight
        } else {
            Verdict::DoesNotFit
        }
    }

    /// `fits`, `tight`, `does not fit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fits => "fits",
            Verdict::Tight => "tight",
            Verdict::DoesNotFit => "does not fit",
        }
    }
}

/// Memory this process may still use: `MemAvailable` of `/proc/meminfo`, lowered to the
/// cgroup's limit minus its usage when one is set (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`). `None` when `/proc/meminfo` cannot be read or parsed.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut avail = parse_meminfo_available(&meminfo)?;
    let cg = Path::new("/sys/fs/cgroup");
    let read = |p: &str| std::fs::read_to_string(cg.join(p)).ok();
    let limits = [
        (read("memory.max"), read("memory.current")),
        (
            read("memory/memory.limit_in_bytes"),
            read("memory/memory.usage_in_bytes"),
        ),
    ];
    for (limit, usage) in limits {
        if let Some(room) = cgroup_room(limit.as_deref(), usage.as_deref()) {
            avail = avail.min(room);
            break;
        }
    }
    Some(avail)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut parts = line["MemAvailable:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Bytes left under a cgroup limit: `None` when there is no limit (`max`, absent, or v1's
/// huge "unlimited" value) or the files do not parse.
pub fn cgroup_room(limit: Option<&str>, usage: Option<&str>) -> Option<u64> {
    let limit: u64 = limit?.trim().parse().ok()?;
    if limit >= 1 << 60 {
        return None;
    }
    let usage: u64 = usage.and_then(|u| u.trim().parse().ok()).unwrap_or(0);
    Some(limit.saturating_sub(usage))
}

/// Measures read bandwidth in bytes per second: `threads` threads sum their share of a
/// `bytes`-long buffer (written first, so every page is resident) in repeated passes for about
/// `duration`; the best pass counts. About what a bandwidth-bound decode step reads at.
pub fn probe_read_bandwidth(bytes: usize, threads: usize, duration: Duration) -> f64 {
    let threads = threads.max(1);
    let words = (bytes / 8).max(threads * 1024);
    let buf: Vec<u64> = (0..words as u64).collect();
    let chunk = words.div_ceil(threads);
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut passes = 0;
    while passes < 2 || (start.elapsed() < duration && passes < 1000) {
        let t0 = Instant::now();
        let sum: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|c| s.spawn(move || sum_words(c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(sum);
        best = best.min(t0.elapsed().as_secs_f64());
        passes += 1;
    }
    (words * 8) as f64 / best.max(1e-9)
}

/// Wrapping sum over eight independent lanes, so the loop is bound by loads, not by one
/// addition chain.
fn sum_words(c: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut it = c.chunks_exact(8);
    for w in &mut it {
        for (a, &x) in acc.iter_mut().zip(w) {
            *a = a.wrapping_add(x);
        }
    }
    let tail = it.remainder().iter().fold(0u64, |a, &x| a.wrapping_add(x));
    acc.iter().fold(tail, |a, &x| a.wrapping_add(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_cgroup_parsing() {
        let text = "MemTotal:       24684544 kB\nMemFree:  100 kB\nMemAvailable:   24183808 kB\n";
        assert_eq!(parse_meminfo_available(text), Some(24183808 * 1024));
        assert_eq!(parse_meminfo_available("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_meminfo_available("MemAvailable: x kB\n"), None);
        assert_eq!(parse_meminfo_available("MemAvailable: 5 MB\n"), None);
        assert_eq!(cgroup_room(Some("max\n"), Some("10")), None);
        assert_eq!(cgroup_room(None, Some("10")), None);
        assert_eq!(cgroup_room(Some("1000\n"), Some("400\n")), Some(600));
        assert_eq!(cgroup_room(Some("1000"), Some("4000")), Some(0));
        assert_eq!(cgroup_room(Some("9223372036854771712"), None), None);
    }

    #[test]
    fn verdict_thresholds() {
        assert_eq!(Verdict::of(79, 100), Verdict::Fits);
        assert_eq!(Verdict::of(80, 100), Verdict::Tight);
        assert_eq!(Verdict::of(99, 100), Verdict::Tight);
        assert_eq!(Verdict::of(100, 100), Verdict::DoesNotFit);
        assert_eq!(Verdict::of(u64::MAX, u64::MAX), Verdict::DoesNotFit);
        assert_eq!(Verdict::of(1, 0), Verdict::DoesNotFit);
    }

    #[test]
    fn allocator_and_table_sizes() {
        assert_eq!(malloc_chunk(0), 0);
        assert_eq!(malloc_chunk(1), 32);
        assert_eq!(malloc_chunk(24), 32);
        assert_eq!(malloc_chunk(25), 48);
        assert_eq!(malloc_chunk(200_000), 200_704);
        assert_eq!(hash_buckets(3), 4);
        assert_eq!(hash_buckets(7), 8);
        assert_eq!(hash_buckets(49152), 65536);
        assert_eq!(hash_buckets(262144), 524288);
    }

    #[test]
    fn more_bits_layers_match_llama_cpp() {
        // Gemma 3 270M Q4_K_M (18 layers) has Q6_K ffn_down in exactly these layers.
        let got: Vec<usize> = (0..18).filter(|&i| use_more_bits(i, 18)).collect();
        assert_eq!(got, [0, 1, 4, 7, 10, 13, 15, 16, 17]);
    }

    #[test]
    fn bandwidth_probe_measures_something() {
        let bw = probe_read_bandwidth(1 << 20, 2, Duration::from_millis(1));
        assert!(bw.is_finite() && bw > 0.0);
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;

    fn open(name: &str) -> (GgufFile, HParams) {
        let f = GgufFile::open(testdata::model(name)).unwrap();
        let hp = HParams::from_gguf(&f).unwrap();
        (f, hp)
    }

    /// The scheme a file was made with reproduces its size: the per-tensor rules (output and
    /// `_M` upgrades, fallbacks for rows that are not whole K-blocks) are llama.cpp's.
    #[test]
    fn schemes_reproduce_the_test_files() {
        for (name, scheme) in [
            ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
            ("gemma-3-270m-q4_k_m.gguf", "Q4_K_M"),
        ] {
            let (f, hp) = open(name);
            let s = QUANT_SCHEMES.iter().find(|s| s.name == scheme).unwrap();
            assert_eq!(file_bytes_as(&f, &hp, s), f.len(), "{name} as {scheme}");
        }
    }

    #[test]
    fn schemes_shrink_in_order_and_kv_types_differ() {
        let (f, hp) = open("gemma-3-270m-q4_k_m.gguf");
        let sizes: Vec<u64> = QUANT_SCHEMES
            .iter()
            .map(|s| file_bytes_as(&f, &hp, s))
            .collect();
        assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "{sizes:?}");
        let f16 = kv_bytes(&hp, 1024, KvType::F16).unwrap();
        let q8 = kv_bytes(&hp, 1024, KvType::Q8_0).unwrap();
        assert_eq!(f16, 2 * 18 * 1024 * 256 * 2);
        assert_eq!(q8, 2 * 18 * 1024 * 256 / 32 * 34);
        let mut odd = hp.clone();
        odd.head_dim = 48;
        assert!(kv_bytes(&odd, 16, KvType::Q8_0).is_err());
        // Sliding-window layers read at most their window of 512 positions.
        let short = decode_bytes_per_step(&f, &hp, 512, 1, KvType::F16).unwrap();
        let long = decode_bytes_per_step(&f, &hp, 4096, 1, KvType::F16).unwrap();
        assert_eq!(long - short, 3 * 2 * (4096 - 512) * 256 * 2);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let (f, hp) = open("SmolLM2-135M-Instruct.Q4_1.gguf");
        for p in [
            EstimateParams::new(0),
            EstimateParams {
                parallel: 0,
                ..EstimateParams::new(64)
            },
            EstimateParams {
                n_batch: 0,
                ..EstimateParams::new(64)
            },
        ] {
            assert!(estimate(&f, &hp, &p).is_err(), "{p:?}");
        }
        let e = estimate(&f, &hp, &EstimateParams::new(2048)).unwrap();
        assert_eq!(e.kv, 2 * 30 * 2048 * 192 * 2);
        assert_eq!(e.weights, f.len().div_ceil(4096) * 4096);
    }
}
