//! Shared helpers for the engine's integration tests: locating fetched models and goldens.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Model, Session};
use kernels::ThreadPool;

/// The path of a fetched test model; fails loudly (never skips) when it is absent.
pub fn model_path(file: &str) -> PathBuf {
    testdata::model(file)
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn golden(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(data(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn load(file: &str, n_ctx: usize) -> (Arc<Model>, Session) {
    let model = Arc::new(Model::load(&model_path(file)).unwrap());
    let pool = Arc::new(ThreadPool::new(2));
    let session = Session::new(model.clone(), pool, n_ctx);
    (model, session)
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx]
}
