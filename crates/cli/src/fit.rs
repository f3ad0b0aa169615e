//! `freehold fit`: will this model run on this machine, how fast, and which quantization of it
//! would fit best. Works from the GGUF metadata (the weights are not read), so it is quick for
//! any model size; the arithmetic lives in `engine::memory`.

use std::io::ErrorKind;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::memory::{self, EstimateParams, MemoryEstimate, Verdict, QUANT_SCHEMES};
use engine::{HParams, KvType};
use gguf::GgufFile;
use serde_json::json;

/// Arguments of `freehold fit`.
#[derive(Args)]
pub struct FitArgs {
    /// GGUF model file, or a model name in the store.
    pub model: String,
    /// Context size in tokens per sequence (default: the model's, capped at 4096, as `run`).
    #[arg(short = 'c', long)]
    pub ctx: Option<usize>,
    /// Sequences served at once, each with its own KV cache.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// KV cache type: f16 or q8_0.
    #[arg(long, default_value = "f16")]
    pub kv: String,
    /// Threads for the bandwidth probe (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// Buffer the bandwidth probe reads: well past any cache, small next to a model.
const PROBE_BYTES: usize = 256 << 20;
const PROBE_TIME: Duration = Duration::from_millis(300);

/// One NVIDIA GPU as `nvidia-smi` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpu {
    /// Memory in bytes.
    pub total: u64,
    /// Bytes in use by any process.
    pub used: u64,
}

/// NVIDIA GPUs through `nvidia-smi`; none when the binary is absent. A present binary that
/// fails or prints something unexpected is an error naming it (a broken driver should not
/// read as "no GPU").
fn detect_gpus() -> Result<Vec<Gpu>> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.total,memory.used",
            "--format=csv,noheader,nounits",
        ])
        .output();
    let out = match out {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context("running nvidia-smi"),
        Ok(o) => o,
    };
    if !out.status.success() {
        bail!(
            "nvidia-smi exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `memory.total, memory.used` lines in MiB, one per GPU.
pub fn parse_nvidia_smi(text: &str) -> Result<Vec<Gpu>> {
    let mut gpus = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let mib = |s: &str| -> Option<u64> { s.parse::<u64>().ok()?.checked_mul(1 << 20) };
        match fields[..] {
            [t, u] => match (mib(t), mib(u)) {
                (Some(total), Some(used)) => gpus.push(Gpu { total, used }),
                _ => bail!(
                    "nvidia-smi output line {}: expected two MiB counts, found {line:?}",
                    i + 1
                ),
            },
            _ => bail!(
                "nvidia-smi output line {}: expected \"total, used\", found {line:?}",
                i + 1
            ),
        }
    }
    Ok(gpus)
}

/// A quantization's size and verdict, for the table and the JSON.
struct QuantRow {
    name: &'static str,
    file: u64,
    total: u64,
    verdict: Verdict,
}

/// `freehold fit`: prints the estimate, the verdict, the speed estimate and the quantization
/// table (text or `--json`).
pub fn fit(a: FitArgs) -> Result<()> {
    let kv_type: KvType = a.kv.parse()?;
    if a.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if a.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let path = store::resolve_model_arg(&a.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let hp = HParams::from_gguf(&file).with_context(|| format!("reading {}", path.display()))?;
    let n_ctx = match a.ctx {
        Some(0) => bail!("--ctx must be at least 1"),
        Some(c) => c,
        None => hp.n_ctx_train.min(4096),
    };
    let params = EstimateParams {
        n_ctx,
        parallel: a.parallel,
        kv_type,
        n_batch: engine::DEFAULT_BATCH,
    };
    let est = memory::estimate(&file, &hp, &params)?;
    let available = memory::available_memory()
        .context("reading MemAvailable from /proc/meminfo (needed to judge the fit)")?;
    let verdict = Verdict::of(est.total(), available);
    let gpus = detect_gpus()?;
    // What would live in GPU memory if the model ran there: everything but the process.
    let device_bytes = est.weights + est.kv + est.scratch;

    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let bandwidth = memory::probe_read_bandwidth(PROBE_BYTES, threads, PROBE_TIME);
    let step = memory::decode_bytes_per_step(&file, &hp, n_ctx, a.parallel, kv_type)?;
    let seq_tps = bandwidth / step as f64;

    let params_count: u64 = file.tensors().iter().map(|t| t.n_elements()).sum();
    let others = est.total() - est.weights;
    let rows: Vec<QuantRow> = QUANT_SCHEMES
        .iter()
        .map(|s| {
            let file_bytes = memory::file_bytes_as(&file, &hp, s);
            let total = file_bytes.div_ceil(4096) * 4096 + others;
            QuantRow {
                name: s.name,
                file: file_bytes,
                total,
                verdict: Verdict::of(total, available),
            }
        })
        .collect();
    let best = rows.iter().find(|r| r.verdict == Verdict::Fits);
    let file_type = dominant_type(&file);

    if a.json {
        let out = json!({
            "model": path.display().to_string(),
            "arch": hp.arch.name(),
            "parameters": params_count,
            "file_bytes": file.len(),
            "file_type": file_type,
            "n_ctx": n_ctx,
            "parallel": a.parallel,
            "kv_type": kv_type.name(),
            "memory": memory_json(&est),
            "available_bytes": available,
            "verdict": verdict.as_str(),
            "gpus": gpus.iter().map(|g| {
                let free = g.total.saturating_sub(g.used);
                json!({
                    "total_bytes": g.total,
                    "used_bytes": g.used,
                    "free_bytes": free,
                    "verdict": Verdict::of(device_bytes, free).as_str(),
                })
            }).collect::<Vec<_>>(),
            "bandwidth_bytes_per_second": bandwidth,
            "probe_threads": threads,
            "decode_bytes_per_step": step,
            "decode_tokens_per_second": seq_tps,
            "quantizations": rows.iter().map(|r| json!({
                "name": r.name,
                "file_bytes": r.file,
                "total_bytes": r.total,
                "verdict": r.verdict.as_str(),
            })).collect::<Vec<_>>(),
            "best_fit": best.map(|r| r.name),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    println!(
        "model: {} ({}, {} layers, {:.1}M parameters, mostly {}, file {:.1} MiB)",
        path.display(),
        hp.arch.name(),
        hp.n_layer,
        params_count as f64 / 1e6,
        file_type,
        file.len() as f64 / MIB
    );
    println!(
        "context: {n_ctx} tokens x {} sequence{}, KV cache {}{}",
        a.parallel,
        if a.parallel == 1 { "" } else { "s" },
        kv_type.name(),
        if n_ctx > hp.n_ctx_train {
            format!(" (beyond the {} the model was trained for)", hp.n_ctx_train)
        } else {
            String::new()
        }
    );
    println!("memory at full context:");
    for (label, v) in [
        ("weights (mapped)", est.weights),
        ("KV cache", est.kv),
        ("scratch", est.scratch),
        ("tokenizer", est.tokenizer),
        ("process baseline", est.baseline),
        ("total", est.total()),
    ] {
        println!("  {label:<18}{:>10.1} MiB", v as f64 / MIB);
    }
    println!(
        "RAM available: {:.2} GiB -> {} ({:.0}% of it)",
        available as f64 / GIB,
        verdict.as_str(),
        est.total() as f64 * 100.0 / available.max(1) as f64
    );
    if gpus.is_empty() {
        println!("GPU: none detected (no nvidia-smi)");
    }
    for (i, g) in gpus.iter().enumerate() {
        let free = g.total.saturating_sub(g.used);
        println!(
            "GPU {i}: {:.2} GiB free of {:.2} GiB -> weights, KV and scratch ({:.1} MiB) {} (the engine computes on the CPU today)",
            free as f64 / GIB,
            g.total as f64 / GIB,
            device_bytes as f64 / MIB,
            Verdict::of(device_bytes, free).as_str()
        );
    }
    print!(
        "decode: about {seq_tps:.0} tokens/s at full context (read bandwidth {:.1} GB/s on {threads} thread{}, {:.1} MiB read per step",
        bandwidth / 1e9,
        if threads == 1 { "" } else { "s" },
        step as f64 / MIB
    );
    if a.parallel > 1 {
        print!(
            "; {:.0} tokens/s across {} sequences",
            seq_tps * a.parallel as f64,
            a.parallel
        );
    }
    println!("; an upper bound set by memory bandwidth)");
    println!("quantizations (estimated from the tensor shapes, llama.cpp's per-tensor rules):");
    for r in &rows {
        println!(
            "  {:<8}{:>10.1} MiB file  {:>10.1} MiB total  {}",
            r.name,
            r.file as f64 / MIB,
            r.total as f64 / MIB,
            r.verdict.as_str()
        );
    }
    match best {
        Some(r) => println!(
            "best quantization that fits: {} (a recommendation: freehold cannot re-quantize yet)",
            r.name
        ),
        None => println!("no quantization fits in the memory available"),
    }
    Ok(())
}

fn memory_json(e: &MemoryEstimate) -> serde_json::Value {
    json!({
        "weights": e.weights,
        "kv": e.kv,
        "scratch": e.scratch,
        "tokenizer": e.tokenizer,
        "baseline": e.baseline,
        "total": e.total(),
    })
}

/// The type holding most of the weight bytes (what a file is "quantized as").
fn dominant_type(file: &GgufFile) -> &'static str {
    let mut by_type: Vec<(quant::GgmlType, u64)> = Vec::new();
    for t in file.tensors() {
        match by_type.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some((_, n)) => *n += t.n_bytes,
            None => by_type.push((t.ty, t.n_bytes)),
        }
    }
    by_type
        .iter()
        .max_by_key(|(_, n)| *n)
        .map_or("no tensors", |(ty, _)| ty.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines() {
        let g = parse_nvidia_smi("81559, 1024\n40960, 0\n").unwrap();
        assert_eq!(
            g,
            [
                Gpu {
                    total: 81559 << 20,
                    used: 1024 << 20
                },
                Gpu {
                    total: 40960 << 20,
                    used: 0
                }
            ]
        );
        assert!(parse_nvidia_smi("").unwrap().is_empty());
        let e = parse_nvidia_smi("81559, 1024\n[N/A], 3\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(parse_nvidia_smi("81559\n").is_err());
        assert!(parse_nvidia_smi("1, 2, 3\n").is_err());
        assert!(parse_nvidia_smi("99999999999999999999, 1\n").is_err());
    }
}
