//! `freehold bench`: prompt-processing and generation speed measured the way llama-bench does,
//! so the two can be compared test for test (`bench/vs-llamacpp` runs both).
//!
//! - `ppN`: N random token ids evaluated in one batch, logits for the last only, starting from
//!   an empty cache, or from `depth` tokens already in the cache.
//! - `tgN`: N tokens decoded one forward at a time (fixed random ids, as llama-bench feeds),
//!   starting from `depth`.
//!
//! Each test runs once untimed (warm-up), then `reps` timed repetitions; tokens/s is reported
//! as mean ± sample standard deviation over the repetitions, and the `--json` output uses
//! llama-bench's field names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::{KvType, LogitsFor, Model, Session};
use kernels::ThreadPool;
use serde_json::{json, Value};

/// Depth tokens are put into the cache in batches of this many (llama-bench uses n_batch).
const DEPTH_BATCH: usize = 512;

#[derive(Args)]
pub struct BenchArgs {
    /// GGUF model file or store name.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<String>,
    /// Prompt sizes to test, comma-separated (0 = no prompt test).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_name = "LIST",
        default_value = "512"
    )]
    pub n_prompt: String,
    /// Generation lengths to test, comma-separated (0 = no generation test).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_name = "LIST",
        default_value = "128"
    )]
    pub n_gen: String,
    /// Tokens already in the KV cache when a test starts, comma-separated.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_name = "LIST",
        default_value = "0"
    )]
    pub n_depth: String,
    /// Timed repetitions of each test.
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value = "5"
    )]
    pub reps: String,
    /// KV cache storage: f16 or q8_0 (llama-bench's `-ctk`/`-ctv`, both set alike).
    #[arg(long = "kv", value_name = "TYPE", default_value = "f16", value_parser = crate::run::parse_kv)]
    pub kv: KvType,
    /// Skip the untimed warm-up run of each test.
    #[arg(long)]
    pub no_warmup: bool,
    /// Print a JSON array, one object per test, with llama-bench's field names.
    #[arg(long)]
    pub json: bool,
}

/// Parses a positive (or, with `allow_zero`, non-negative) integer option value.
fn parse_count(flag: &str, s: &str, allow_zero: bool) -> Result<usize> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} expects a whole number, got '{s}'"))?;
    if n == 0 && !allow_zero {
        bail!("{flag} must be at least 1");
    }
    Ok(n)
}

/// Parses a comma-separated list of non-negative integers, keeping order, dropping repeats.
fn parse_list(flag: &str, s: &str) -> Result<Vec<usize>> {
    if s.trim().is_empty() {
        bail!("{flag} expects a comma-separated list of whole numbers, got ''");
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let n: usize = part.trim().parse().map_err(|_| {
            anyhow::anyhow!("{flag} expects a comma-separated list of whole numbers, got '{s}'")
        })?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// One test: `n_prompt` tokens in a batch or `n_gen` tokens one at a time, after `n_depth`.
#[derive(Clone, Copy)]
struct Test {
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
}

impl Test {
    fn name(&self) -> String {
        let base = if self.n_prompt > 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        };
        if self.n_depth > 0 {
            format!("{base} @ d{}", self.n_depth)
        } else {
            base
        }
    }

    fn n_tokens(&self) -> usize {
        self.n_prompt + self.n_gen
    }
}

/// A small deterministic generator for token ids (splitmix64); the ids only need to be
/// arbitrary and the same from run to run.
struct Ids(u64);

impl Ids {
    fn next(&mut self, n_vocab: usize) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % n_vocab as u64) as u32
    }

    fn take(&mut self, n: usize, n_vocab: usize) -> Vec<u32> {
        (0..n).map(|_| self.next(n_vocab)).collect()
    }
}

/// Peak resident set size of this process (VmHWM), in bytes; 0 where /proc is unavailable.
fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The CPU's model name, as llama-bench's `cpu_info` shows it.
fn cpu_info() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|v| v.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// llama.cpp's name for a `general.file_type` value (llama_ftype), as llama-bench shows it.
fn ftype_name(ftype: u32) -> String {
    let name = match ftype {
        0 => "all F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        32 => "BF16",
        _ => return format!("file type {ftype}"),
    };
    name.to_string()
}

/// "1.23 B" / "134.52 M" like llama-bench's params column.
fn fmt_params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2} B", n as f64 / 1e9)
    } else {
        format!("{:.2} M", n as f64 / 1e6)
    }
}

fn fmt_mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Mean and sample standard deviation (n-1), as llama-bench computes them.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// RFC 3339 UTC time of now, like llama-bench's `test_time`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Fills the cache with `depth` tokens (untimed), in batches.
fn fill_depth(s: &mut Session, ids: &[u32]) -> Result<()> {
    s.truncate(0);
    for chunk in ids.chunks(DEPTH_BATCH) {
        s.forward(chunk, LogitsFor::Last)
            .context("filling the cache to depth")?;
    }
    Ok(())
}

/// Runs one repetition of `t` from `depth` and returns its wall time in nanoseconds.
fn run_once(s: &mut Session, t: &Test, prompt: &[u32], gen: &[u32]) -> Result<u64> {
    s.truncate(t.n_depth);
    let start = Instant::now();
    if t.n_prompt > 0 {
        s.forward(prompt, LogitsFor::Last)
            .with_context(|| t.name())?;
    }
    for &id in gen {
        s.forward(&[id], LogitsFor::Last)
            .with_context(|| t.name())?;
    }
    Ok(start.elapsed().as_nanos() as u64)
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let n_threads = match &a.threads {
        Some(t) => parse_count("--threads", t, false)?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let prompts = parse_list("--n-prompt", &a.n_prompt)?;
    let gens = parse_list("--n-gen", &a.n_gen)?;
    let depths = parse_list("--n-depth", &a.n_depth)?;
    let reps = parse_count("--repetitions", &a.reps, false)?;

    // llama-bench's order: every depth for each prompt size, then for each generation length;
    // run grouped by depth so each depth is filled once.
    let mut tests = Vec::new();
    for &d in &depths {
        for &p in prompts.iter().filter(|&&p| p > 0) {
            tests.push(Test {
                n_prompt: p,
                n_gen: 0,
                n_depth: d,
            });
        }
        for &g in gens.iter().filter(|&&g| g > 0) {
            tests.push(Test {
                n_prompt: 0,
                n_gen: g,
                n_depth: d,
            });
        }
    }
    if tests.is_empty() {
        bail!("nothing to measure: every --n-prompt and --n-gen is 0");
    }
    let n_ctx = tests
        .iter()
        .map(|t| t.n_depth + t.n_tokens())
        .max()
        .unwrap_or(1);

    let model = Arc::new({
        let path = crate::run::resolve(&a.model)?;
        Model::load(&path).with_context(|| format!("loading {}", path.display()))?
    });
    let pool = Arc::new(ThreadPool::new(n_threads));
    // The pool may cap the count; report what actually runs.
    let n_threads = pool.n_threads();
    let mut session = Session::with_kv_type(model.clone(), pool, n_ctx, a.kv)
        .with_context(|| format!("creating a {} KV cache of {n_ctx} positions", a.kv))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let n_vocab = model.hp.n_vocab;
    let model_size = model.weight_bytes();
    let n_params: u64 = model.file.tensors().iter().map(|t| t.n_elements()).sum();
    let ftype = model
        .file
        .get_u32("general.file_type")
        .map_or_else(|| "?".to_string(), ftype_name);
    let size_label = model
        .file
        .get_str("general.size_label")
        .map_or_else(|| fmt_params(n_params).replace(' ', ""), str::to_string);
    let model_type = format!("{} {size_label} {ftype}", model.hp.arch.name());
    let kv_bytes = session.kv_bytes() as u64;
    let cpu = cpu_info();
    let filename = a.model.display().to_string();

    // llama-bench shows the cache type columns only when they are not the default.
    let kv_cols = a.kv != KvType::F16;
    if !a.json {
        if kv_cols {
            println!(
                "| model | size | params | backend | threads | type_k | type_v | test | t/s |"
            );
            println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
        } else {
            println!("| model | size | params | backend | threads | test | t/s |");
            println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
        }
    }

    let mut ids = Ids(0x5eed_f00d);
    let mut results = Vec::new();
    let mut filled_depth = None;
    for t in &tests {
        if t.n_depth > 0 && filled_depth != Some(t.n_depth) {
            let d = ids.take(t.n_depth, n_vocab);
            fill_depth(&mut session, &d)?;
            filled_depth = Some(t.n_depth);
        }
        let prompt = ids.take(t.n_prompt, n_vocab);
        let gen = ids.take(t.n_gen, n_vocab);
        let test_time = utc_now();
        if !a.no_warmup {
            run_once(&mut session, t, &prompt, &gen)?;
        }
        let mut samples_ns = Vec::with_capacity(reps);
        for _ in 0..reps {
            samples_ns.push(run_once(&mut session, t, &prompt, &gen)?);
        }
        let samples_ts: Vec<f64> = samples_ns
            .iter()
            .map(|&ns| 1e9 * t.n_tokens() as f64 / ns.max(1) as f64)
            .collect();
        let ns_f: Vec<f64> = samples_ns.iter().map(|&x| x as f64).collect();
        let (avg_ns, sd_ns) = mean_sd(&ns_f);
        let (avg_ts, sd_ts) = mean_sd(&samples_ts);
        if !a.json {
            let kv = if kv_cols {
                format!(" {0} | {0} |", a.kv)
            } else {
                String::new()
            };
            println!(
                "| {model_type} | {} | {} | CPU | {n_threads} |{kv} {} | {avg_ts:.2} ± {sd_ts:.2} |",
                fmt_mib(model_size),
                fmt_params(n_params),
                t.name()
            );
        }
        results.push(json!({
            "build_commit": format!("freehold-{}", env!("CARGO_PKG_VERSION")),
            "build_number": 0,
            "cpu_info": cpu,
            "gpu_info": "",
            "backends": "CPU",
            "model_filename": filename,
            "model_type": model_type,
            "model_size": model_size,
            "model_n_params": n_params,
            "n_batch": t.n_prompt.max(1),
            "n_ubatch": t.n_prompt.max(1),
            "n_threads": n_threads,
            "type_k": a.kv.name(),
            "type_v": a.kv.name(),
            "n_gpu_layers": 0,
            "n_prompt": t.n_prompt,
            "n_gen": t.n_gen,
            "n_depth": t.n_depth,
            "test_time": test_time,
            "avg_ns": avg_ns.round() as u64,
            "stddev_ns": sd_ns.round() as u64,
            "avg_ts": avg_ts,
            "stddev_ts": sd_ts,
            "samples_ns": samples_ns,
            "samples_ts": samples_ts,
            "load_ms": load_ms,
            "peak_rss_bytes": 0,
            "kv_bytes": kv_bytes,
        }));
    }

    let peak = peak_rss_bytes();
    let repack_note = match model.repack {
        Some(r) => format!(
            " | repacked {} in {:.1} ms (load time included)",
            fmt_mib(r.bytes as u64),
            r.millis
        ),
        None => String::new(),
    };
    if a.json {
        // Peak RSS is the whole run's; every object carries the same figure.
        for r in &mut results {
            r["peak_rss_bytes"] = Value::from(peak);
        }
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!();
        println!(
            "load: {load_ms:.1} ms (start to model loaded and cache ready) | peak RSS: {} | KV cache: {} (n_ctx {n_ctx}, {}){}",
            fmt_mib(peak),
            fmt_mib(kv_bytes),
            a.kv,
            repack_note
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_counts() {
        assert_eq!(parse_list("-p", "128, 512,128").unwrap(), vec![128, 512]);
        assert!(parse_list("-p", "abc").is_err());
        assert!(parse_list("-p", "").is_err());
        assert!(parse_count("-t", "0", false).is_err());
        assert_eq!(parse_count("-d", "0", true).unwrap(), 0);
    }

    #[test]
    fn stats_match_llama_bench() {
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((sd - 1.0).abs() < 1e-12);
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn test_names() {
        let t = Test {
            n_prompt: 512,
            n_gen: 0,
            n_depth: 2048,
        };
        assert_eq!(t.name(), "pp512 @ d2048");
        let t = Test {
            n_prompt: 0,
            n_gen: 128,
            n_depth: 0,
        };
        assert_eq!(t.name(), "tg128");
    }

    #[test]
    fn utc_date() {
        let s = utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
}
