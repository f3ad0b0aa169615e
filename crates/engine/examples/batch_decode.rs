//! Development measurement: aggregate decode tokens/s of `Batcher` at several batch sizes,
//! engine only (no HTTP, no sampling beyond argmax). Usage:
//! `cargo run --release -p engine --example batch_decode -- MODEL.gguf [threads] [steps]
//! [batch sizes, e.g. 1,8]`.

use std::sync::Arc;
use std::time::Instant;

use engine::{BatchItem, Batcher, LogitsFor, Model, Session};
use kernels::ThreadPool;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: batch_decode MODEL.gguf [threads] [steps]");
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let model = Arc::new(Model::load(std::path::Path::new(path)).expect("model loads"));
    let pool = Arc::new(ThreadPool::new(threads));
    let mut batcher = Batcher::new(model.clone(), pool.clone());
    let sizes: Vec<usize> = args.get(4).map_or(vec![1, 2, 4, 8, 16], |s| {
        s.split(',').filter_map(|v| v.parse().ok()).collect()
    });
    for n_seq in sizes {
        let mut sessions: Vec<Session> = (0..n_seq)
            .map(|_| Session::new(model.clone(), pool.clone(), 512))
            .collect();
        let prompt: Vec<u32> = (0..16).map(|i| 100 + i).collect();
        for s in sessions.iter_mut() {
            s.forward(&prompt, LogitsFor::Last).unwrap();
        }
        let mut next: Vec<[u32; 1]> = sessions
            .iter()
            .map(|s| [engine::sampling::argmax(s.logits())])
            .collect();
        let t0 = Instant::now();
        for _ in 0..steps {
            let mut items: Vec<BatchItem<'_>> = sessions
                .iter_mut()
                .zip(&next)
                .map(|(s, t)| BatchItem {
                    session: s,
                    tokens: t,
                    want: LogitsFor::Last,
                })
                .collect();
            batcher.forward(&mut items).unwrap();
            drop(items);
            for (s, t) in sessions.iter().zip(next.iter_mut()) {
                t[0] = engine::sampling::argmax(s.logits());
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "{n_seq:2} sequences: {:7.1} tokens/s aggregate ({:.2} ms per step)",
            (n_seq * steps) as f64 / dt,
            dt * 1000.0 / steps as f64
        );
    }
}
