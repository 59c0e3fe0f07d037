//! Context shift (`ContextOverflow::Shift`): the arithmetic, kept apart from the engine so it is tested without one.
//!
//! Rules (llama-server's context shift, `n_keep` / `n_discard`):
//! - A sequence keeps its first `keep` tokens for good: the system prompt's (the leading system messages as the
//!   template renders them), else just the BOS token (llama-server's default `n_keep = 0` plus BOS). At most half
//!   the window is kept, so every shift frees a useful part of it.
//! - When a generating sequence's cache is full, half of the tokens after the kept ones (the oldest half) leave the
//!   cache and the rest move down by as many positions ([`plan`]); generation goes on.
//! - A prompt longer than the window loses whole blocks of half the unkept window from its middle: the kept
//!   beginning and the end stay ([`prompt_cut`]), as llama-server truncated prompts with context shift on.
//! - A shifting request without `max_tokens` generates at most one window of tokens ([`token_cap`]): a stream that
//!   shifts can otherwise run forever.
//! - Only some caches can shift (llama.cpp's `llama_memory_can_shift`, which llama-cpp-2 does not expose):
//!   [`cache_can_shift`] states its rules from what the model says about itself, erring towards "no", because a
//!   shift on a cache that cannot take one aborts the process.

/// One context shift: `discard` tokens at positions `keep..keep + discard` leave the cache, and those after them
/// move down by `discard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub keep: usize,
    pub discard: usize,
}

/// The tokens kept for good in a window of `limit`: `wanted` (the system prompt's, or the BOS), at most half.
pub fn keep(wanted: usize, limit: usize) -> usize {
    wanted.min(limit / 2)
}

/// The shift of a cache holding `cached` tokens, `keep` of them kept: half of the others (llama-server's
/// `n_discard = n_left / 2`), at least one. `None` when nothing can go (every token is kept).
pub fn plan(cached: usize, keep: usize) -> Option<Shift> {
    let left = cached.checked_sub(keep)?;
    let discard = (left / 2).max(1);
    (discard <= left && left > 0).then_some(Shift { keep, discard })
}

/// How many tokens to take out of a prompt of `len` tokens, right after its first `keep`, so that it fits a window of
/// `limit` with room to generate: whole blocks of half the unkept window. 0 when it fits (`len < limit`); `None`
/// when it cannot be made to fit (no room outside the kept tokens).
pub fn prompt_cut(len: usize, keep: usize, limit: usize) -> Option<usize> {
    if len < limit {
        return Some(0);
    }
    let block = limit.checked_sub(keep)? / 2;
    if block == 0 {
        return None;
    }
    // What is left is `keep` + between one and two blocks: under the limit, and at least a block of the prompt's end.
    let blocks = (len - keep - block) / block;
    Some(blocks * block)
}

/// Most tokens a shifting request without `max_tokens` generates: one window's worth.
pub fn token_cap(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX).max(1)
}

/// What llama.cpp's `llama_memory_can_shift` depends on, as the model reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTraits<'a> {
    /// Recurrent or hybrid (Mamba, RWKV, Jamba, ...): a state, not positions, cannot be shifted.
    pub recurrent: bool,
    /// RoPE of one position per token (normal or NeoX); multi-section RoPE (M-RoPE) cannot be shifted, and a model
    /// without RoPE is not shifted either (nothing here says its cache can be).
    pub plain_rope: bool,
    /// The GGUF names a sliding window: its window cache is smaller than the context, and llama.cpp cannot shift that.
    pub sliding_window: bool,
    /// `general.architecture`.
    pub arch: &'a str,
}

/// Architectures whose cache refuses a shift in llama.cpp whatever else holds (per-layer RoPE dims, compressed rows).
const NO_SHIFT_ARCHS: [&str; 2] = ["step35", "deepseek4"];

/// Whether a shift is safe on this model's cache.
pub fn cache_can_shift(traits: &CacheTraits<'_>) -> bool {
    !traits.recurrent && traits.plain_rope && !traits.sliding_window && !NO_SHIFT_ARCHS.contains(&traits.arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_is_at_most_half_the_window() {
        assert_eq!(keep(10, 256), 10);
        assert_eq!(keep(1, 256), 1);
        assert_eq!(keep(300, 256), 128);
        assert_eq!(keep(0, 1), 0);
    }

    #[test]
    fn a_shift_discards_half_of_what_is_not_kept() {
        assert_eq!(plan(256, 1), Some(Shift { keep: 1, discard: 127 }));
        assert_eq!(plan(256, 20), Some(Shift { keep: 20, discard: 118 }));
        assert_eq!(plan(256, 0), Some(Shift { keep: 0, discard: 128 }));
        // One unkept token still goes (a shift always makes room); none: no shift.
        assert_eq!(plan(3, 2), Some(Shift { keep: 2, discard: 1 }));
        assert_eq!(plan(2, 2), None);
        assert_eq!(plan(1, 2), None);
    }

    #[test]
    fn after_a_shift_the_window_has_room_and_the_kept_tokens_stay() {
        for limit in [4usize, 5, 16, 255, 256, 4096] {
            for wanted in [0, 1, 3, limit / 2, limit] {
                let k = keep(wanted, limit);
                let shift = plan(limit, k).expect("a full window can shift");
                assert_eq!(shift.keep, k);
                let after = limit - shift.discard;
                assert!(after < limit && after >= k, "limit {limit} keep {k}: {after}");
            }
        }
    }

    #[test]
    fn an_overlong_prompt_loses_whole_blocks_from_its_middle() {
        // 300 tokens, a window of 256 keeping 1: blocks of 127; one goes, 173 stay.
        assert_eq!(prompt_cut(300, 1, 256), Some(127));
        // Exactly the window: one block goes (a prompt must leave room for a token).
        assert_eq!(prompt_cut(256, 1, 256), Some(127));
        assert_eq!(prompt_cut(255, 1, 256), Some(0));
        assert_eq!(prompt_cut(2000, 10, 256), Some(15 * 123));
        // Nothing outside the kept tokens: it cannot fit.
        assert_eq!(prompt_cut(300, 256, 256), None);
        assert_eq!(prompt_cut(300, 255, 256), None);
    }

    #[test]
    fn a_cut_prompt_fits_and_keeps_at_least_a_block_of_its_end() {
        for limit in [4usize, 7, 64, 256] {
            for k in [0, 1, limit / 2] {
                for len in limit..limit * 5 {
                    let cut = prompt_cut(len, k, limit).expect("fits");
                    let left = len - cut;
                    assert!(left < limit, "len {len} keep {k} limit {limit}: {left}");
                    assert!(left - k >= (limit - k) / 2, "len {len} keep {k} limit {limit}: {left}");
                    assert_eq!(cut % ((limit - k) / 2), 0, "whole blocks");
                }
            }
        }
    }

    #[test]
    fn the_token_cap_is_one_window() {
        assert_eq!(token_cap(256), 256);
        assert_eq!(token_cap(0), 1);
    }

    #[test]
    fn only_plain_attention_caches_shift() {
        let plain = CacheTraits { recurrent: false, plain_rope: true, sliding_window: false, arch: "llama" };
        assert!(cache_can_shift(&plain));
        assert!(!cache_can_shift(&CacheTraits { recurrent: true, ..plain }));
        assert!(!cache_can_shift(&CacheTraits { plain_rope: false, ..plain }));
        assert!(!cache_can_shift(&CacheTraits { sliding_window: true, ..plain }));
        assert!(!cache_can_shift(&CacheTraits { arch: "deepseek4", ..plain }));
    }
}
