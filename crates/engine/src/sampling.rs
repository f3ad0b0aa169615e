//! Token sampling: repetition penalty, top-k, top-p, min-p, temperature, seeded draw.
//! The chain order follows llama.cpp's default (penalties, top-k, top-p, min-p, temperature).

/// Sampling settings. `temperature <= 0` means greedy (argmax).
#[derive(Clone, Debug)]
pub struct SamplingParams {
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// OpenAI-style additive penalties (0 disables).
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, and stable across releases, so a seed
/// reproduces the same text forever (a crate's RNG may change its stream between versions).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Picks tokens from logits; keeps its RNG so a seeded run is reproducible end to end.
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = Rng::new(params.seed);
        Sampler {
            params,
            rng,
            candidates: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses the next token. `history` is every token so far (prompt and generated).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        let penalize =
            p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        if p.temperature <= 0.0 && !penalize {
            return argmax(logits);
        }
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if penalize {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            let mut counts: std::collections::HashMap<u32, u32> = Default::default();
            for &t in recent {
                *counts.entry(t).or_default() += 1;
            }
            for (&tok, &count) in &counts {
                if let Some(slot) = c.get_mut(tok as usize) {
                    let l = &mut slot.1;
                    if p.repeat_penalty != 1.0 {
                        *l = if *l > 0.0 {
                            *l / p.repeat_penalty
                        } else {
                            *l * p.repeat_penalty
                        };
                    }
                    *l -= count as f32 * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        if p.temperature <= 0.0 {
            return c
                .iter()
                .fold((0u32, f32::NEG_INFINITY), |best, &(i, l)| {
                    if l > best.1 {
                        (i, l)
                    } else {
                        best
                    }
                })
                .0;
        }
        // Sort descending (ties: lower id first) and cut to top-k.
        let k = if p.top_k == 0 {
            c.len()
        } else {
            p.top_k.min(c.len())
        };
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if k < c.len() {
            c.select_nth_unstable_by(k - 1, by_logit);
            c.truncate(k);
        }
        c.sort_unstable_by(by_logit);
        // Softmax at temperature 1 for top-p / min-p, as llama.cpp does before temperature.
        let max = c[0].1;
        let mut probs: Vec<f64> = c.iter().map(|&(_, l)| ((l - max) as f64).exp()).collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= sum);
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, q) in probs.iter().enumerate() {
                acc += q;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p as f64;
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        c.truncate(keep);
        let t = p.temperature as f64;
        let mut weights: Vec<f64> = c
            .iter()
            .map(|&(_, l)| ((l - max) as f64 / t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (i, w) in weights.iter_mut().enumerate() {
            if r < *w {
                return c[i].0;
            }
            r -= *w;
        }
        c[c.len() - 1].0
    }
}

/// Index of the largest logit (lowest index on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    kernels::argmax(logits).unwrap_or(0)
}

pub use kernels::top_k;

/// log(sum(exp(logits))) in f64.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let s: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + s.ln()
}

/// Log-probabilities under the softmax of the raw `logits` (before any penalty or
/// temperature, as OpenAI's `logprobs` report them): the `chosen` token's, and the `n` most
/// likely tokens with theirs, most likely first (ties: lower id first).
pub fn logprobs(logits: &[f32], chosen: u32, n: usize) -> (f32, Vec<(u32, f32)>) {
    let lse = log_sum_exp(logits);
    let lp = |l: f32| (l as f64 - lse) as f32;
    let chosen_lp = logits
        .get(chosen as usize)
        .map(|&l| lp(l))
        .unwrap_or(f32::NEG_INFINITY);
    let top = if n == 0 {
        Vec::new()
    } else {
        top_k(logits, n)
            .into_iter()
            .map(|(id, l)| (id, lp(l)))
            .collect()
    };
    (chosen_lp, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, 2.0], &[]), 1);
    }

    #[test]
    fn seed_reproduces_and_differs() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams {
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed,
                ..Default::default()
            });
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 5.0,
            top_k: 1,
            seed: 3,
            ..Default::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.0, 1.0, 0.5, 0.99], &[]), 1);
        }
    }

    #[test]
    fn repeat_penalty_moves_argmax() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&[1.0, 1.5], &[1]), 0);
    }

    #[test]
    fn min_p_cuts_tail() {
        // With min_p 0.5 only tokens with prob >= half the top survive: token 0 only.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            seed: 1,
            ..Default::default()
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&[5.0, 0.0, 0.0], &[]), 0);
        }
    }

    #[test]
    fn top_k_helper_orders_ties_by_id() {
        assert_eq!(
            top_k(&[1.0, 2.0, 2.0, 0.5], 3),
            vec![(1, 2.0), (2, 2.0), (0, 1.0)]
        );
    }

    #[test]
    fn logprobs_are_log_softmax() {
        let (c, top) = logprobs(&[0.0, 2.0_f32.ln(), 0.0], 1, 2);
        assert!((c - 0.5f32.ln()).abs() < 1e-6);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].0, 1);
        assert_eq!(top[1].0, 0);
        assert!((top[1].1 - 0.25f32.ln()).abs() < 1e-6);
        assert!(logprobs(&[1.0], 5, 0).0.is_infinite());
    }
}
