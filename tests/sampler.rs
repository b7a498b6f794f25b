//! Sampler properties over random logits (proptest): the pick is always a surviving
//! candidate, top-k = 1 and temperature 0 are greedy, candidates are a normalized,
//! sorted prefix, and a seed fixes the whole stream.

use proptest::prelude::*;
use webvlm::sampler::{argmax, candidates, sample, Rng, Sampler, SamplerConfig};

fn logits() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-20.0f32..20.0, 1..200)
}

fn cfg(t: f32, k: usize, p: f32, seed: u64) -> SamplerConfig {
    SamplerConfig { temperature: t, top_k: k, top_p: p, repetition_penalty: 1.0, seed }
}

proptest! {
    #[test]
    fn greedy_is_argmax(l in logits(), seed in any::<u64>(), t in 0.1f32..3.0) {
        let g = argmax(&l);
        prop_assert!(l.iter().all(|&x| x <= l[g as usize]));
        prop_assert_eq!(sample(&l, &cfg(0.0, 0, 1.0, 0), &[], &mut Rng::new(seed)), g);
        prop_assert_eq!(sample(&l, &cfg(t, 1, 1.0, 0), &[], &mut Rng::new(seed)), g);
    }

    #[test]
    fn picks_survive_the_cuts(l in logits(), k in 0usize..20, p in 0.05f32..1.0, seed in any::<u64>()) {
        let c = cfg(0.8, k, p, seed);
        let cand = candidates(&l, &c);
        prop_assert!(!cand.is_empty());
        if k > 0 { prop_assert!(cand.len() <= k); }
        let total: f32 = cand.iter().map(|e| e.1).sum();
        prop_assert!((total - 1.0).abs() < 1e-3);
        prop_assert!(cand.windows(2).all(|w| w[0].1 >= w[1].1));
        // The nucleus is minimal: without its last member it holds less than p.
        if p < 1.0 && cand.len() > 1 && (k == 0 || cand.len() < k) {
            let mut full = candidates(&l, &cfg(0.8, k, 1.0, 0));
            full.truncate(cand.len() - 1);
            prop_assert!(full.iter().map(|e| e.1).sum::<f32>() < p + 1e-4);
        }
        let mut rng = Rng::new(seed);
        for _ in 0..10 {
            let id = sample(&l, &c, &[], &mut rng);
            prop_assert!(cand.iter().any(|e| e.0 == id));
        }
    }

    #[test]
    fn seed_fixes_the_stream(l in logits(), seed in any::<u64>()) {
        let run = || {
            let mut s = Sampler::new(cfg(1.0, 0, 0.95, seed));
            (0..16).map(|_| s.sample(&l, &[])).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }

    #[test]
    fn uniform_floats_in_range(seed in any::<u64>()) {
        let mut r = Rng::new(seed);
        for _ in 0..100 {
            let u = r.next_f32();
            prop_assert!((0.0..1.0).contains(&u));
        }
    }
}

#[test]
fn penalty_discourages_repeats() {
    // Two near-equal candidates: penalizing the first moves greedy to the second, for
    // positive and for negative logits alike.
    for base in [3.0f32, -3.0] {
        let l = [base, base - 0.1, -50.0];
        let c = SamplerConfig { repetition_penalty: 1.3, ..Default::default() };
        assert_eq!(sample(&l, &SamplerConfig::default(), &[0], &mut Rng::new(0)), 0);
        assert_eq!(sample(&l, &c, &[0], &mut Rng::new(0)), 1, "base {base}");
        assert_eq!(sample(&l, &c, &[1], &mut Rng::new(0)), 0);
    }
}
