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

/// The vectorised argmax against the one-by-one definition, on long vectors with ties, NaN
/// and infinities at lane and tail positions.
#[test]
fn argmax_matches_sequential_definition() {
    let naive = |v: &[f32]| -> Option<u32> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &x) in v.iter().enumerate() {
            let x = if x.is_nan() { f32::NEG_INFINITY } else { x };
            match best {
                Some((_, b)) if x <= b => {}
                _ => best = Some((i, x)),
            }
        }
        best.map(|(i, _)| i as u32)
    };
    let mut seed = 7u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for len in [1usize, 15, 16, 17, 33, 100, 49152] {
        for case in 0..20 {
            let mut v: Vec<f32> = (0..len).map(|_| (next() % 50) as f32 - 25.0).collect();
            for _ in 0..case % 4 {
                let i = next() as usize % len;
                v[i] = match next() % 3 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    _ => f32::INFINITY,
                };
            }
            if case == 19 {
                v.iter_mut().for_each(|x| *x = f32::NAN);
            }
            assert_eq!(argmax(&v), naive(&v), "len {len} case {case}");
        }
    }
}
