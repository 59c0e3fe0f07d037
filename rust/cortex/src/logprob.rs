//! Log-probabilities from raw logits: the log-softmax at one position and its `k` likeliest tokens.
//!
//! Rules: O(n_vocab) per token and allocation-free once warm: one pass for the maximum, one for the log-sum-exp
//! (accumulated in f64), one for the top `k` kept in a caller-owned buffer of at most `k` entries (a bounded sorted
//! insertion; `k` ≤ 20, and most logits fail the first comparison). Ties go to the lower id, as the argmax picker's
//! do, so under greedy decoding the chosen token heads the list. NaN logits are skipped. Pure arithmetic: this module
//! references nothing else in the crate.

/// The log-probability reported for a token the model gives no chance (OpenAI's value); also what NaN becomes.
pub const FLOOR: f32 = -9999.0;

/// The log-softmax normaliser of `logits`: `max + ln Σ exp(l - max)`. Minus infinity for an empty slice.
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    #[allow(clippy::cast_possible_truncation)] // ln of a sum of at least 1 and at most n_vocab: well inside f32
    let ln = sum.ln() as f32;
    max + ln
}

/// A logit's log-probability given the normaliser `lse` ([`log_sum_exp`]), floored at [`FLOOR`].
pub fn logprob(logit: f32, lse: f32) -> f32 {
    // f32::max ignores a NaN operand, so NaN (and -inf) become the floor.
    (logit - lse).max(FLOOR)
}

/// The `k` largest logits as `(id, logit)`, largest first, ties to the lower id; `out` is cleared and reused.
pub fn top_k(logits: &[f32], k: usize, out: &mut Vec<(usize, f32)>) {
    out.clear();
    if k == 0 {
        return;
    }
    out.reserve(k);
    for (id, &logit) in logits.iter().enumerate() {
        if logit.is_nan() {
            continue;
        }
        if out.len() == k {
            // Equal to the smallest kept: the kept one has the lower id and stays.
            if out.last().is_some_and(|&(_, smallest)| logit <= smallest) {
                continue;
            }
            out.pop();
        }
        // After every kept logit that is at least as large: ties stay in id order.
        let at = out.partition_point(|&(_, kept)| kept >= logit);
        out.insert(at, (id, logit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [f32; 6] = [1.0, 3.0, -2.0, 3.0, 0.5, 2.0];

    #[test]
    fn log_softmax_sums_to_one_in_probability_space() {
        let lse = log_sum_exp(&LOGITS);
        let total: f32 = LOGITS.iter().map(|&l| logprob(l, lse).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(LOGITS.iter().all(|&l| logprob(l, lse) <= 0.0));
        // Shifting every logit leaves the distribution unchanged (the max is subtracted first: no overflow).
        let shifted: Vec<f32> = LOGITS.iter().map(|l| l + 1000.0).collect();
        let lse2 = log_sum_exp(&shifted);
        for (a, b) in LOGITS.iter().zip(&shifted) {
            assert!((logprob(*a, lse) - logprob(*b, lse2)).abs() < 1e-4);
        }
    }

    #[test]
    fn a_certain_token_has_logprob_zero_and_the_others_the_floor() {
        let logits = [0.0, f32::NEG_INFINITY, f32::NEG_INFINITY];
        let lse = log_sum_exp(&logits);
        assert_eq!(logprob(0.0, lse), 0.0);
        assert_eq!(logprob(f32::NEG_INFINITY, lse), FLOOR);
        assert_eq!(logprob(f32::NAN, lse), FLOOR);
        assert_eq!(log_sum_exp(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn top_k_is_ordered_largest_first_with_ties_to_the_lower_id() {
        let mut out = Vec::new();
        top_k(&LOGITS, 3, &mut out);
        assert_eq!(out, vec![(1, 3.0), (3, 3.0), (5, 2.0)]);
        top_k(&LOGITS, 1, &mut out);
        assert_eq!(out, vec![(1, 3.0)], "the argmax, lowest id among ties");
        top_k(&LOGITS, 10, &mut out);
        let ids: Vec<usize> = out.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, vec![1, 3, 5, 0, 4, 2], "k past the vocabulary lists every token");
        top_k(&LOGITS, 0, &mut out);
        assert!(out.is_empty(), "k = 0 lists nothing");
    }

    #[test]
    fn top_k_matches_a_full_sort_and_skips_nan() {
        // A deterministic scramble with repeats, ascending runs (the insertion's worst case) and a NaN.
        let mut logits: Vec<f32> = (0..500u32).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
        logits.extend((0..50).map(|i| i as f32 / 7.0));
        logits[42] = f32::NAN;
        let mut sorted: Vec<(usize, f32)> = logits.iter().copied().enumerate().filter(|(_, l)| !l.is_nan()).collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut out = Vec::new();
        for k in [1, 5, 20] {
            top_k(&logits, k, &mut out);
            assert_eq!(out, sorted[..k], "k = {k}");
            let capacity = out.capacity();
            top_k(&logits, k, &mut out);
            assert_eq!(out.capacity(), capacity, "the buffer is reused");
        }
    }
}
