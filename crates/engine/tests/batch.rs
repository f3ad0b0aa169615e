//! Multi-sequence batches (`Batcher`) against the same sequences run one at a time: a batch
//! must change only the summation order of the matrix products, never which KV cache or
//! position a row uses.

mod common;

use std::sync::Arc;

use engine::{BatchItem, Batcher, EngineError, LogitsFor, Model, Session};
use kernels::ThreadPool;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(x: &[f32]) -> usize {
    engine::sampling::argmax(x) as usize
}

/// Three sequences at different depths: one prefilling a prompt chunk, two decoding, then all
/// decoding together; every step's logits match the sequential run.
fn batch_matches_sequential(file: &str, tol: f32) {
    let model = Arc::new(Model::load(&common::model_path(file)).unwrap());
    let pool = Arc::new(ThreadPool::new(2));
    let prompts: [Vec<u32>; 3] = [
        (1..40).map(|i| (i * 7) % 400 + 3).collect(),
        (1..9).map(|i| (i * 13) % 400 + 3).collect(),
        (1..23).map(|i| (i * 29) % 400 + 3).collect(),
    ];
    let n_vocab = model.hp.n_vocab;

    // Sequential reference: prompt, then 4 greedy steps each.
    let mut reference: Vec<Vec<Vec<f32>>> = Vec::new();
    let mut continuations: Vec<Vec<u32>> = Vec::new();
    for p in &prompts {
        let mut s = Session::new(model.clone(), pool.clone(), 128);
        let mut steps = vec![s.forward(p, LogitsFor::Last).unwrap().to_vec()];
        let mut toks = Vec::new();
        for _ in 0..4 {
            let t = argmax(steps.last().unwrap()) as u32;
            toks.push(t);
            steps.push(s.forward(&[t], LogitsFor::Last).unwrap().to_vec());
        }
        reference.push(steps);
        continuations.push(toks);
    }

    let mut batcher = Batcher::new(model.clone(), pool.clone());
    let mut sessions: Vec<Session> = (0..3)
        .map(|_| Session::new(model.clone(), pool.clone(), 128))
        .collect();
    // Step 0: all three prompts in one batch (with all-rows logits for the first, to check
    // LogitsFor::From through the batch path).
    {
        let [a, b, c] = &mut sessions[..] else {
            unreachable!()
        };
        let mut items = [
            BatchItem {
                session: a,
                tokens: &prompts[0],
                want: LogitsFor::From(prompts[0].len() - 2),
            },
            BatchItem {
                session: b,
                tokens: &prompts[1],
                want: LogitsFor::Last,
            },
            BatchItem {
                session: c,
                tokens: &prompts[2],
                want: LogitsFor::Last,
            },
        ];
        batcher.forward(&mut items).unwrap();
    }
    assert_eq!(sessions[0].logits().len(), 2 * n_vocab);
    let last0 = &sessions[0].logits()[n_vocab..];
    let diff = max_abs_diff(last0, &reference[0][0]);
    assert!(diff < tol, "{file} seq 0 prompt: max diff {diff}");
    for i in 1..3 {
        let diff = max_abs_diff(sessions[i].logits(), &reference[i][0]);
        assert!(diff < tol, "{file} seq {i} prompt: max diff {diff}");
    }
    // Steps 1..4: all decode together, feeding the reference's tokens (teacher forcing).
    for step in 0..4 {
        let toks: Vec<[u32; 1]> = continuations.iter().map(|c| [c[step]]).collect();
        let mut items: Vec<BatchItem<'_>> = sessions
            .iter_mut()
            .zip(&toks)
            .map(|(s, t)| BatchItem {
                session: s,
                tokens: t,
                want: LogitsFor::Last,
            })
            .collect();
        batcher.forward(&mut items).unwrap();
        for i in 0..3 {
            let got = sessions[i].logits();
            let want = &reference[i][step + 1];
            let diff = max_abs_diff(got, want);
            assert!(diff < tol, "{file} seq {i} step {step}: max diff {diff}");
            assert_eq!(sessions[i].n_past(), prompts[i].len() + step + 1);
        }
    }
}

#[test]
fn batch_matches_sequential_tiny() {
    batch_matches_sequential("tiny.gguf", 1e-4);
}

#[test]
fn batch_matches_sequential_smollm2() {
    // Bit-identical today; the margin leaves kernels free to pick another summation order
    // by row count.
    batch_matches_sequential("SmolLM2-135M-Instruct.Q4_1.gguf", 1e-3);
}

#[test]
fn batch_rejects_bad_items_before_running() {
    let model = Arc::new(Model::load(&common::model_path("tiny.gguf")).unwrap());
    let pool = Arc::new(ThreadPool::new(1));
    let mut batcher = Batcher::new(model.clone(), pool.clone());
    let mut a = Session::new(model.clone(), pool.clone(), 16);
    let mut b = Session::new(model.clone(), pool.clone(), 4);
    let ok = [5u32, 6, 7];
    let too_long = [1u32, 2, 3, 4, 5];
    let mut items = [
        BatchItem {
            session: &mut a,
            tokens: &ok,
            want: LogitsFor::Last,
        },
        BatchItem {
            session: &mut b,
            tokens: &too_long,
            want: LogitsFor::Last,
        },
    ];
    let err = batcher.forward(&mut items).unwrap_err();
    assert_eq!(err.index, 1);
    assert!(matches!(err.error, EngineError::ContextOverflow { .. }));
    assert_eq!(a.n_past(), 0, "a refused batch must change no session");

    let bad_token = [u32::MAX];
    let mut items = [BatchItem {
        session: &mut a,
        tokens: &bad_token,
        want: LogitsFor::Last,
    }];
    let err = batcher.forward(&mut items).unwrap_err();
    assert!(matches!(err.error, EngineError::BadToken { .. }));

    // A session of another model instance cannot join.
    let other = Arc::new(Model::load(&common::model_path("tiny.gguf")).unwrap());
    let mut c = Session::new(other, pool, 16);
    let mut items = [BatchItem {
        session: &mut c,
        tokens: &ok,
        want: LogitsFor::Last,
    }];
    assert!(batcher.forward(&mut items).is_err());
    assert!(batcher.forward(&mut []).is_err());
}
