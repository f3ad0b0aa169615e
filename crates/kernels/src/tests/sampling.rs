use crate::{argmax, top_k};

#[test]
fn argmax_ties_nan_empty() {
    assert_eq!(argmax(&[]), None);
    assert_eq!(argmax(&[1.0, 3.0, 2.0, 3.0]), Some(1));
    assert_eq!(argmax(&[f32::NAN, -1.0, f32::NAN]), Some(1));
    assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), Some(0));
    assert_eq!(argmax(&[-5.0, f32::INFINITY, 1.0]), Some(1));
}

#[test]
fn top_k_order_and_ties() {
    let l = [0.5, 2.0, -1.0, 2.0, 0.5, 3.0, f32::NAN];
    assert_eq!(top_k(&l, 3), vec![(5, 3.0), (1, 2.0), (3, 2.0)]);
    assert_eq!(top_k(&l, 5)[3..], [(0, 0.5), (4, 0.5)]);
    assert_eq!(top_k(&l, 0), vec![]);
    let all = top_k(&l, 100);
    assert_eq!(all.len(), 7);
    assert_eq!(all[5], (2, -1.0));
    assert_eq!(all[6].0, 6);
    // Agrees with a full sort on random data with many ties.
    let mut r = super::rng(7);
    let v: Vec<f32> = (0..5000)
        .map(|_| (rand::Rng::gen_range(&mut r, 0..50)) as f32)
        .collect();
    let mut full: Vec<(u32, f32)> = v.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
    full.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    assert_eq!(top_k(&v, 40), full[..40].to_vec());
    assert_eq!(argmax(&v), Some(full[0].0));
}
