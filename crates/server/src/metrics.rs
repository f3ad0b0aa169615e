//! Prometheus text exposition (format 0.0.4), written by hand: a few counters, gauges and
//! histograms do not justify a metrics stack, and `promtool check metrics` holds the output to
//! the format in the tests.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Latency buckets in seconds, shared by the request and time-to-first-token histograms.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (c, b) in self.counts.iter_mut().zip(BUCKETS) {
            if v <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Reads one per-model value for the exposition.
type Getter = fn(&ModelStats) -> f64;

/// Per-model live state, written by the model's scheduler thread and read by `/metrics`.
#[derive(Default, Debug)]
pub struct ModelStats {
    /// Requests waiting for a slot.
    pub queue_depth: AtomicUsize,
    /// Sequences holding a slot (prefilling or decoding).
    pub running: AtomicUsize,
    /// KV positions filled across all slots (including cached prefixes of idle slots).
    pub kv_used_tokens: AtomicUsize,
    /// Slots x context.
    pub kv_capacity_tokens: AtomicUsize,
    /// Bytes of KV cache allocated for all slots.
    pub kv_bytes: AtomicUsize,
    /// Decode throughput over the last measuring window, f64 bits.
    pub tokens_per_second_bits: AtomicU64,
    /// Prompt tokens served from the prefix cache instead of being evaluated.
    pub cached_prompt_tokens: AtomicU64,
}

impl ModelStats {
    /// Latest decode throughput (tokens/s, all sequences together).
    pub fn tokens_per_second(&self) -> f64 {
        f64::from_bits(self.tokens_per_second_bits.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    ttft: BTreeMap<String, Histogram>,
    prompt_tokens: BTreeMap<String, u64>,
    generated_tokens: BTreeMap<String, u64>,
}

/// Server-wide counters and histograms.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Escapes a label value as the exposition format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave these counters inconsistent enough to
        // matter; keep serving metrics.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a finished request and its latency.
    pub fn request(&self, endpoint: &str, status: u16, seconds: f64) {
        let mut m = self.lock();
        *m.requests
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        m.latency
            .entry(endpoint.to_string())
            .or_default()
            .observe(seconds);
    }

    /// Time from a generation request's arrival to its first generated token.
    pub fn time_to_first_token(&self, model: &str, seconds: f64) {
        self.lock()
            .ttft
            .entry(model.to_string())
            .or_default()
            .observe(seconds);
    }

    /// Adds a finished sequence's token counts.
    pub fn tokens(&self, model: &str, prompt: usize, generated: usize) {
        let mut m = self.lock();
        *m.prompt_tokens.entry(model.to_string()).or_default() += prompt as u64;
        *m.generated_tokens.entry(model.to_string()).or_default() += generated as u64;
    }

    /// The exposition text; `models` are the loaded models and their live state.
    pub fn render(&self, models: &[(String, u64, std::sync::Arc<ModelStats>)]) -> String {
        let m = self.lock();
        let mut o = String::new();
        o.push_str("# HELP freehold_http_requests_total HTTP requests answered, by endpoint and status code.\n# TYPE freehold_http_requests_total counter\n");
        for ((ep, st), n) in &m.requests {
            let _ = writeln!(
                o,
                "freehold_http_requests_total{{endpoint=\"{}\",status=\"{st}\"}} {n}",
                esc(ep)
            );
        }
        o.push_str("# HELP freehold_request_duration_seconds Time from request to the end of the response.\n# TYPE freehold_request_duration_seconds histogram\n");
        for (ep, h) in &m.latency {
            h.write(
                &mut o,
                "freehold_request_duration_seconds",
                &format!("endpoint=\"{}\"", esc(ep)),
            );
        }
        o.push_str("# HELP freehold_time_to_first_token_seconds Time from request to the first generated token.\n# TYPE freehold_time_to_first_token_seconds histogram\n");
        for (model, h) in &m.ttft {
            h.write(
                &mut o,
                "freehold_time_to_first_token_seconds",
                &format!("model=\"{}\"", esc(model)),
            );
        }
        o.push_str("# HELP freehold_prompt_tokens_total Prompt tokens of finished sequences.\n# TYPE freehold_prompt_tokens_total counter\n");
        for (model, n) in &m.prompt_tokens {
            let _ = writeln!(
                o,
                "freehold_prompt_tokens_total{{model=\"{}\"}} {n}",
                esc(model)
            );
        }
        o.push_str("# HELP freehold_generated_tokens_total Tokens generated by finished sequences.\n# TYPE freehold_generated_tokens_total counter\n");
        for (model, n) in &m.generated_tokens {
            let _ = writeln!(
                o,
                "freehold_generated_tokens_total{{model=\"{}\"}} {n}",
                esc(model)
            );
        }
        drop(m);
        let gauges: [(&str, &str, Getter); 7] = [
            ("freehold_decode_tokens_per_second", "Generated tokens per second over the last second, all sequences of the model together.", |s| s.tokens_per_second()),
            ("freehold_queue_depth", "Requests waiting for a sequence slot.", |s| s.queue_depth.load(Ordering::Relaxed) as f64),
            ("freehold_running_sequences", "Sequences holding a slot (prefilling or decoding).", |s| s.running.load(Ordering::Relaxed) as f64),
            ("freehold_kv_used_tokens", "KV cache positions in use, cached prefixes of idle slots included.", |s| s.kv_used_tokens.load(Ordering::Relaxed) as f64),
            ("freehold_kv_capacity_tokens", "KV cache positions allocated (slots x context).", |s| s.kv_capacity_tokens.load(Ordering::Relaxed) as f64),
            ("freehold_kv_bytes", "Bytes of KV cache allocated.", |s| s.kv_bytes.load(Ordering::Relaxed) as f64),
            ("freehold_prefix_cache_tokens_total", "Prompt tokens reused from the prefix cache instead of evaluated.", |s| s.cached_prompt_tokens.load(Ordering::Relaxed) as f64),
        ];
        for (name, help, get) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (model, _, s) in models {
                let _ = writeln!(o, "{name}{{model=\"{}\"}} {}", esc(model), get(s));
            }
        }
        o.push_str("# HELP freehold_models_loaded Models loaded now.\n# TYPE freehold_models_loaded gauge\n");
        let _ = writeln!(o, "freehold_models_loaded {}", models.len());
        o.push_str("# HELP freehold_model_memory_bytes Weights plus KV cache of each loaded model.\n# TYPE freehold_model_memory_bytes gauge\n");
        for (model, bytes, _) in models {
            let _ = writeln!(
                o,
                "freehold_model_memory_bytes{{model=\"{}\"}} {bytes}",
                esc(model)
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.request("/v1/x", 200, 0.02);
        m.request("/v1/x", 200, 7.0);
        m.request("/v1/x", 400, 0.001);
        let t = m.render(&[]);
        assert!(t.contains("freehold_http_requests_total{endpoint=\"/v1/x\",status=\"200\"} 2"));
        assert!(t.contains(
            "freehold_request_duration_seconds_bucket{endpoint=\"/v1/x\",le=\"0.025\"} 2"
        ));
        assert!(t.contains(
            "freehold_request_duration_seconds_bucket{endpoint=\"/v1/x\",le=\"+Inf\"} 3"
        ));
        assert!(t.contains("freehold_request_duration_seconds_count{endpoint=\"/v1/x\"} 3"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
