//! Continuous batching for one model: a dedicated OS thread owns every [`Session`] (one per
//! slot) and is the only caller of the engine for that model. Each step it admits waiting
//! requests into free slots (reusing the slot whose cached tokens share the longest prefix with
//! the prompt), drops sequences whose client went away, and runs one forward pass holding one
//! new token of every decoding sequence plus up to a chunk of pending prompt tokens (shared
//! by the prompts waiting, oldest first), so a long prompt never stalls the running streams
//! for more than a chunk and prompts that arrive together are evaluated together.
//!
//! Requests arrive on a std channel; results go back on a tokio channel per request, whose
//! closing (the HTTP side dropped the receiver: the client disconnected) cancels the sequence
//! and frees its slot at the next step.
//!
//! After each forward pass the next tokens of all sequences are drawn in parallel on the
//! model's thread pool, and the step's events leave in one message to a fan-out task on the
//! async runtime, which hands each to its request. Both keep per-sequence work out of the
//! serial part of a step, where the pool's other threads wait: measured with 8 streams, the
//! draws (an argmax over 49,152 logits) took 16 us a sequence and each channel send, which
//! wakes a runtime thread from this one, another 16 us.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::sampling::logprobs;
use engine::{
    BatchItem, Batcher, KvCache, KvType, LogitsFor, Model, Sampler, SamplingParams, Session,
};
use kernels::ThreadPool;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::metrics::{Metrics, ModelStats};
use crate::text::TextStream;

/// Why a sequence ended, in OpenAI's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// End-of-generation token or stop string.
    Stop,
    /// `max_tokens` reached or the context is full.
    Length,
}

impl Finish {
    /// `finish_reason` as OpenAI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Generation settings of one sequence, already validated by the HTTP side.
#[derive(Clone, Debug)]
pub struct GenParams {
    /// Tokens to generate at most (already clamped to the context).
    pub max_tokens: usize,
    /// Generation ends before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// Temperature, top-p, penalties, seed.
    pub sampling: SamplingParams,
    /// `Some(n)`: report each token's log-probability and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
    /// Evaluate the whole prompt even when a slot holds a shared prefix. A prompt evaluated
    /// in one pass and one continued from a cached prefix get logits that differ in the last
    /// bits (different kernel paths), enough to change a sampled token; a request with a seed
    /// asks for reproducible output, so it gives up the cache.
    pub no_prefix_cache: bool,
}

/// One token's log-probability and its most likely alternatives.
#[derive(Clone, Debug)]
pub struct TokenLogprob {
    /// The token's text (lossy where the token is part of a character).
    pub token: String,
    /// The token's raw bytes.
    pub bytes: Vec<u8>,
    /// Natural-log probability.
    pub logprob: f32,
    /// The most likely tokens at this position: (text, bytes, logprob).
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// What a scheduler sends back for one sequence.
#[derive(Debug)]
pub enum Event {
    /// Text that is final (possibly empty when only logprobs are new).
    Text {
        /// Newly final text.
        text: String,
        /// Log-probabilities of the tokens sampled since the last event, when asked for.
        logprobs: Vec<TokenLogprob>,
    },
    /// The sequence ended.
    Done {
        /// Why.
        finish: Finish,
        /// Prompt length in tokens.
        prompt_tokens: usize,
        /// Prompt tokens served from the prefix cache.
        cached_tokens: usize,
        /// Generated tokens (an end-of-generation token included).
        completion_tokens: usize,
    },
    /// The engine refused the sequence.
    Error(String),
}

/// One sequence to generate.
pub struct Job {
    /// Tag sent back with every event (the choice index of a request with `n` > 1).
    pub index: usize,
    /// Prompt token ids; never empty, never longer than the context (the HTTP side checks).
    pub prompt: Arc<Vec<u32>>,
    /// Generation settings.
    pub params: GenParams,
    /// Where events go; when its receiver is dropped the sequence is cancelled.
    pub tx: UnboundedSender<(usize, Event)>,
    /// Arrival time, for time-to-first-token.
    pub arrived: Instant,
}

/// Scheduler sizing.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// Sequences decoded together (`--parallel`).
    pub slots: usize,
    /// Context of each slot in tokens.
    pub n_ctx: usize,
    /// Prompt tokens evaluated per step while other sequences are decoding.
    pub chunk: usize,
    /// Prompt tokens per step when nothing is decoding (nobody waits on the step).
    pub idle_chunk: usize,
}

struct Seq {
    job: Job,
    /// Prompt tokens already in the KV cache.
    prefilled: usize,
    cached_tokens: usize,
    generated: Vec<u32>,
    sampler: Sampler,
    text: TextStream,
    /// The sampled token still to be fed to the model.
    next: Option<u32>,
    first_token_seen: bool,
    admitted: u64,
}

struct Slot {
    session: Session,
    /// Tokens whose keys and values the session holds, in order.
    cached: Vec<u32>,
    seq: Option<Seq>,
    last_used: u64,
}

/// What one slot contributes to a step.
struct Planned {
    slot: usize,
    tokens: Vec<u32>,
    /// The step ends this slot's prompt, or is a decode token: sample afterwards.
    sample: bool,
}

/// How one planned row fared in a step's forward pass.
enum Outcome {
    Ran,
    /// The engine refused this row (the sequence ends with an error).
    Failed(String),
    /// Another row was refused before anything ran; this one is retried next step.
    NotRun,
}

/// One event for one request.
type Outgoing = (UnboundedSender<(usize, Event)>, (usize, Event));

/// The scheduler of one model; runs on its own thread until every sender is dropped.
pub struct Scheduler {
    model: Arc<Model>,
    pool: Arc<ThreadPool>,
    /// This step's events, sent to the fan-out task together at the end of the step.
    outbox: Vec<Outgoing>,
    fanout: UnboundedSender<Vec<Outgoing>>,
    batcher: Batcher,
    name: String,
    cfg: SchedulerConfig,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    stats: Arc<ModelStats>,
    metrics: Arc<Metrics>,
    clock: u64,
    window_start: Instant,
    window_tokens: u64,
}

/// Bytes of f16 KV cache one slot of `n_ctx` tokens takes for `model`.
pub fn kv_bytes_per_slot(model: &Model, n_ctx: usize) -> usize {
    KvCache::bytes_for(&model.hp, n_ctx, KvType::F16)
        .unwrap_or(2 * model.hp.n_layer * n_ctx * model.hp.kv_dim() * 2)
}

impl Scheduler {
    /// Allocates the slots' sessions (their KV memory is touched when [`Scheduler::run`]
    /// starts) and starts the fan-out task; must be called within a tokio runtime.
    pub fn new(
        model: Arc<Model>,
        name: String,
        pool: Arc<ThreadPool>,
        cfg: SchedulerConfig,
        stats: Arc<ModelStats>,
        metrics: Arc<Metrics>,
    ) -> Scheduler {
        let slots: Vec<Slot> = (0..cfg.slots)
            .map(|_| Slot {
                session: Session::new(model.clone(), pool.clone(), cfg.n_ctx),
                cached: Vec::new(),
                seq: None,
                last_used: 0,
            })
            .collect();
        let kv: usize = slots.iter().map(|s| s.session.kv_bytes()).sum();
        stats.kv_bytes.store(kv, Ordering::Relaxed);
        stats
            .kv_capacity_tokens
            .store(cfg.slots * cfg.n_ctx, Ordering::Relaxed);
        let (fanout, mut batches) = unbounded_channel::<Vec<Outgoing>>();
        tokio::spawn(async move {
            while let Some(batch) = batches.recv().await {
                for (tx, event) in batch {
                    // A closed receiver: the client left; the scheduler notices next step.
                    let _ = tx.send(event);
                }
            }
        });
        Scheduler {
            batcher: Batcher::new(model.clone(), pool.clone()),
            model,
            pool,
            outbox: Vec::new(),
            fanout,
            name,
            cfg,
            slots,
            waiting: VecDeque::new(),
            stats,
            metrics,
            clock: 0,
            window_start: Instant::now(),
            window_tokens: 0,
        }
    }

    /// Serves jobs until the channel closes and every admitted sequence has finished.
    pub fn run(mut self, rx: Receiver<Job>) {
        // Fault the KV memory and logits rows in now (requests wait in the channel meanwhile):
        // a page fault inside a decode step stalls every sequence of the step.
        for slot in &mut self.slots {
            slot.session.prefault();
        }
        let mut open = true;
        loop {
            if self.idle() {
                if !open {
                    break;
                }
                self.publish();
                // Nothing to do: block, waking now and then to zero the throughput gauge.
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(j) => self.waiting.push_back(j),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while open {
                match rx.try_recv() {
                    Ok(j) => self.waiting.push_back(j),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            self.step();
            self.publish();
        }
        tracing::info!(model = %self.name, "scheduler stopped");
    }

    fn idle(&self) -> bool {
        self.waiting.is_empty() && self.slots.iter().all(|s| s.seq.is_none())
    }

    fn publish(&mut self) {
        let running = self.slots.iter().filter(|s| s.seq.is_some()).count();
        self.stats.running.store(running, Ordering::Relaxed);
        self.stats
            .queue_depth
            .store(self.waiting.len(), Ordering::Relaxed);
        let used: usize = self.slots.iter().map(|s| s.session.n_past()).sum();
        self.stats.kv_used_tokens.store(used, Ordering::Relaxed);
        let dt = self.window_start.elapsed().as_secs_f64();
        if dt >= 1.0 {
            let tps = self.window_tokens as f64 / dt;
            self.stats
                .tokens_per_second_bits
                .store(tps.to_bits(), Ordering::Relaxed);
            self.window_start = Instant::now();
            self.window_tokens = 0;
        }
    }

    /// Frees the slots of sequences whose client is gone and drops abandoned waiting jobs.
    fn cancel_disconnected(&mut self) {
        for slot in &mut self.slots {
            if slot.seq.as_ref().is_some_and(|s| s.job.tx.is_closed()) {
                let seq = slot.seq.take().expect("checked above");
                tracing::info!(model = %self.name, generated = seq.generated.len(), "client disconnected: sequence cancelled, slot freed");
                // The prompt part of the cache stays valid for a later request; whatever was
                // mid-prefill is consistent too, because `cached` follows the session.
            }
        }
        self.waiting.retain(|j| !j.tx.is_closed());
    }

    fn admit(&mut self) {
        while !self.waiting.is_empty() {
            let free: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.slots[i].seq.is_none())
                .collect();
            if free.is_empty() {
                return;
            }
            let job = self.waiting.pop_front().expect("not empty");
            // Longest shared prefix wins (a system prompt evaluated before); otherwise the
            // least recently used slot, so other cached prefixes live longer.
            let best = free
                .iter()
                .copied()
                .max_by_key(|&i| {
                    let s = &self.slots[i];
                    let common = s
                        .cached
                        .iter()
                        .zip(job.prompt.iter())
                        .take_while(|(a, b)| a == b)
                        .count();
                    (common, std::cmp::Reverse(s.last_used))
                })
                .expect("free is not empty");
            self.clock += 1;
            let slot = &mut self.slots[best];
            let common = slot
                .cached
                .iter()
                .zip(job.prompt.iter())
                .take_while(|(a, b)| a == b)
                .count();
            // At least one prompt token must be evaluated to get logits for the first sample.
            let reuse = if job.params.no_prefix_cache {
                0
            } else {
                common.min(job.prompt.len().saturating_sub(1))
            };
            slot.session.truncate(reuse);
            slot.cached.truncate(reuse);
            slot.last_used = self.clock;
            self.stats
                .cached_prompt_tokens
                .fetch_add(reuse as u64, Ordering::Relaxed);
            let sampler = Sampler::new(job.params.sampling.clone());
            let text = TextStream::new(job.params.stop.clone());
            slot.seq = Some(Seq {
                job,
                prefilled: reuse,
                cached_tokens: reuse,
                generated: Vec::new(),
                sampler,
                text,
                next: None,
                first_token_seen: false,
                admitted: self.clock,
            });
        }
    }

    fn plan(&self) -> Vec<Planned> {
        let mut plan = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(seq) = &slot.seq {
                if let Some(t) = seq.next {
                    plan.push(Planned {
                        slot: i,
                        tokens: vec![t],
                        sample: true,
                    });
                }
            }
        }
        // A budget of prompt tokens per step, spent on the pending prompts oldest admission
        // first: prompts that arrive together are evaluated in one pass (weights read once
        // for all of them), and a long one still only takes a chunk per step.
        let mut budget = if plan.is_empty() {
            self.cfg.idle_chunk
        } else {
            self.cfg.chunk
        }
        .max(1);
        let mut pending: Vec<(usize, &Seq)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.seq.as_ref().map(|q| (i, q)))
            .filter(|(_, q)| q.next.is_none() && q.prefilled < q.job.prompt.len())
            .collect();
        pending.sort_by_key(|(_, q)| q.admitted);
        for (i, q) in pending {
            if budget == 0 {
                break;
            }
            let end = (q.prefilled + budget).min(q.job.prompt.len());
            budget -= end - q.prefilled;
            plan.push(Planned {
                slot: i,
                tokens: q.job.prompt[q.prefilled..end].to_vec(),
                sample: end == q.job.prompt.len(),
            });
        }
        plan
    }

    /// Runs every planned row in one batched forward pass: each weight matrix is read once
    /// for all sequences of the step.
    fn forward(&mut self, plan: &[Planned]) -> Vec<Outcome> {
        let mut by_slot: Vec<Option<usize>> = vec![None; self.slots.len()];
        for (k, p) in plan.iter().enumerate() {
            by_slot[p.slot] = Some(k);
        }
        let mut order = Vec::with_capacity(plan.len());
        let mut items: Vec<BatchItem<'_>> = Vec::with_capacity(plan.len());
        for (slot, k) in self.slots.iter_mut().zip(&by_slot) {
            if let Some(k) = *k {
                order.push(k);
                items.push(BatchItem {
                    session: &mut slot.session,
                    tokens: &plan[k].tokens,
                    want: LogitsFor::Last,
                });
            }
        }
        match self.batcher.forward(&mut items) {
            Ok(()) => plan.iter().map(|_| Outcome::Ran).collect(),
            Err(e) => {
                tracing::warn!(model = %self.name, error = %e, "batch refused");
                let bad = order.get(e.index).copied().unwrap_or(0);
                (0..plan.len())
                    .map(|k| {
                        if k == bad {
                            Outcome::Failed(e.error.to_string())
                        } else {
                            Outcome::NotRun
                        }
                    })
                    .collect()
            }
        }
    }

    fn step(&mut self) {
        self.cancel_disconnected();
        self.admit();
        let plan = self.plan();
        if plan.is_empty() {
            return;
        }
        let outcomes = self.forward(&plan);
        let mut to_sample = Vec::with_capacity(plan.len());
        for (p, outcome) in plan.iter().zip(outcomes) {
            let slot = &mut self.slots[p.slot];
            match outcome {
                Outcome::Ran => {}
                Outcome::NotRun => continue,
                Outcome::Failed(e) => {
                    if let Some(seq) = slot.seq.take() {
                        self.outbox
                            .push((seq.job.tx, (seq.job.index, Event::Error(e))));
                    }
                    slot.session.truncate(0);
                    slot.cached.clear();
                    continue;
                }
            }
            slot.cached.extend_from_slice(&p.tokens);
            let Some(seq) = slot.seq.as_mut() else {
                continue;
            };
            if seq.next.is_some() {
                seq.next = None;
            } else {
                seq.prefilled += p.tokens.len();
            }
            if p.sample {
                to_sample.push(p.slot);
            }
        }
        to_sample.sort_unstable();
        let ids = self.draw(&to_sample);
        for (&i, id) in to_sample.iter().zip(ids) {
            self.window_tokens += 1;
            let slot = &mut self.slots[i];
            emit_token(
                &self.model,
                &self.name,
                &self.metrics,
                slot,
                self.cfg.n_ctx,
                id,
                &mut self.outbox,
            );
        }
        if !self.outbox.is_empty() {
            // Fails only when the runtime is shutting down; the requests are gone then.
            let _ = self.fanout.send(std::mem::take(&mut self.outbox));
        }
    }

    /// The next token of the sequences in `slots` (ascending slot indices), drawn in
    /// parallel on the pool.
    fn draw(&mut self, slots: &[usize]) -> Vec<u32> {
        type Draw<'a> = std::sync::Mutex<(&'a mut Sampler, &'a [f32], &'a [u32], u32)>;
        let mut draws: Vec<Draw<'_>> = Vec::with_capacity(slots.len());
        let mut wanted = slots.iter().peekable();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if wanted.next_if_eq(&&i).is_none() {
                continue;
            }
            let seq = slot.seq.as_mut().expect("a sampled slot has a sequence");
            // OpenAI's penalties look at the generated tokens only.
            draws.push(std::sync::Mutex::new((
                &mut seq.sampler,
                slot.session.logits(),
                &seq.generated,
                0,
            )));
        }
        let draw_one = |d: &Draw<'_>| {
            let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
            let (sampler, logits, history, id) = &mut *d;
            *id = sampler.sample(logits, history);
        };
        // One draw runs inline (a single chunk is not dispatched).
        self.pool.for_each_chunk(draws.len(), 1, |range| {
            draws[range].iter().for_each(draw_one);
        });
        draws
            .into_iter()
            .map(|d| d.into_inner().unwrap_or_else(|e| e.into_inner()).3)
            .collect()
    }
}

/// Takes the drawn token `id` of the slot's sequence: queues the text it completes (and its
/// log-probabilities, when asked for) in `outbox`, and ends the sequence when a stop
/// condition holds.
fn emit_token(
    model: &Model,
    name: &str,
    metrics: &Metrics,
    slot: &mut Slot,
    n_ctx: usize,
    id: u32,
    outbox: &mut Vec<Outgoing>,
) {
    let tok = &model.tokenizer;
    let Some(seq) = slot.seq.as_mut() else {
        return;
    };
    let logits = slot.session.logits();
    let mut lps = Vec::new();
    if let Some(n) = seq.job.params.logprobs {
        let (lp, top) = logprobs(logits, id, n);
        let piece = |t: u32| {
            let b = tok.token_to_piece(t, false);
            (String::from_utf8_lossy(&b).into_owned(), b)
        };
        let (token, bytes) = piece(id);
        lps.push(TokenLogprob {
            token,
            bytes,
            logprob: lp,
            top: top
                .into_iter()
                .map(|(t, l)| {
                    let (s, b) = piece(t);
                    (s, b, l)
                })
                .collect(),
        });
    }
    seq.generated.push(id);
    if !seq.first_token_seen {
        seq.first_token_seen = true;
        metrics.time_to_first_token(name, seq.job.arrived.elapsed().as_secs_f64());
    }
    let mut finish = None;
    let mut text;
    if tok.is_eog(id) {
        finish = Some(Finish::Stop);
        text = seq.text.finish();
    } else {
        let pushed = seq.text.push(&tok.token_to_piece(id, false));
        text = pushed.text;
        if pushed.stopped {
            finish = Some(Finish::Stop);
        } else if seq.generated.len() >= seq.job.params.max_tokens || slot.session.n_past() >= n_ctx
        {
            finish = Some(Finish::Length);
            text.push_str(&seq.text.finish());
        }
    }
    if !text.is_empty() || !lps.is_empty() {
        outbox.push((
            seq.job.tx.clone(),
            (
                seq.job.index,
                Event::Text {
                    text,
                    logprobs: lps,
                },
            ),
        ));
    }
    match finish {
        None => seq.next = Some(id),
        Some(f) => {
            let seq = slot.seq.take().expect("present");
            metrics.tokens(name, seq.job.prompt.len(), seq.generated.len());
            outbox.push((
                seq.job.tx,
                (
                    seq.job.index,
                    Event::Done {
                        finish: f,
                        prompt_tokens: seq.job.prompt.len(),
                        cached_tokens: seq.cached_tokens,
                        completion_tokens: seq.generated.len(),
                    },
                ),
            ));
        }
    }
}
