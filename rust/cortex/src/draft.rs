//! Prompt-lookup drafting (llama.cpp's `ngram-simple` speculative decoding): no second model. The last few tokens
//! of a sequence are looked up earlier in the same sequence (its prompt and what it has generated); the tokens that
//! followed the most recent earlier occurrence are the draft. The engine feeds the draft after the next token in
//! the same batch and keeps the longest run of it the model would have picked anyway ([`crate::brain`]), so the
//! output is exactly what decoding one token at a time gives; only the speed changes.
//!
//! Rules:
//! - A draft is made only from a match of at least [`NGRAM_MIN`] tokens (longer matches first, up to
//!   [`NGRAM_MAX`]): a single repeated token predicts too little to pay for the batch.
//! - On a CPU a batch of `n` tokens costs well over one token's time, so a sequence whose drafts keep failing
//!   drafts less: [`DraftLength`] halves the length after a draft of which nothing was kept and doubles it back
//!   after one kept whole.
//! - Generic over the token type, so the lookup is tested on plain integers.

/// Speculative decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecType {
    None,
    /// Prompt lookup: drafts from the sequence's own history ([`crate::draft`]), no second model.
    NgramSimple,
    /// A draft model (`BrainOptions::draft_model`) guesses greedily.
    Draft,
}

impl SpecType {
    /// Parses llama-server's names; `field` names the option in the error.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, crate::error::CortexError> {
        match value {
            "none" => Ok(Self::None),
            "ngram-simple" => Ok(Self::NgramSimple),
            "draft" => Ok(Self::Draft),
            other => Err(crate::error::CortexError::InvalidConfig {
                field,
                value: other.to_owned(),
                expected: "none, ngram-simple (prompt lookup) or draft (a draft model)",
            }),
        }
    }
}

/// Most draft tokens per step an option may ask for.
pub const DRAFT_MAX_LIMIT: u32 = 128;

/// Longest suffix looked up.
pub const NGRAM_MAX: usize = 3;
/// Shortest suffix looked up.
pub const NGRAM_MIN: usize = 2;

/// The draft for a sequence `history` followed by `next`: the tokens after the most recent earlier occurrence of
/// its last `n` tokens (`n` from [`NGRAM_MAX`] down to [`NGRAM_MIN`]), at most `max` of them; empty without a match.
pub fn lookup<T: Copy + PartialEq>(history: &[T], next: T, max: usize) -> Vec<T> {
    let len = history.len() + 1;
    let at = |i: usize| if i < history.len() { history[i] } else { next };
    if max == 0 {
        return Vec::new();
    }
    for n in (NGRAM_MIN..=NGRAM_MAX).rev() {
        if len <= n {
            continue;
        }
        let key = len - n;
        // The most recent earlier start `j` (j < key) with seq[j..j+n] == seq[key..len].
        let found = (0..key).rev().find(|&j| (0..n).all(|k| at(j + k) == at(key + k)));
        if let Some(j) = found {
            let from = j + n;
            return (from..len.min(from + max)).map(at).collect();
        }
    }
    Vec::new()
}

/// How long a sequence's next draft may be, adapted to how its drafts fare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DraftLength {
    now: usize,
    max: usize,
}

impl DraftLength {
    pub fn new(max: usize) -> Self {
        Self { now: max, max }
    }

    /// The longest draft to make now (0: drafting is off).
    pub fn get(self) -> usize {
        self.now
    }

    /// Records a verified draft of `drafted` tokens of which `kept` were kept.
    pub fn record(&mut self, drafted: usize, kept: usize) {
        if drafted == 0 || self.max == 0 {
            return;
        }
        if kept == 0 {
            self.now = (self.now / 2).max(1);
        } else if kept == drafted {
            self.now = (self.now * 2).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_the_most_recent_match_of_the_longest_suffix() {
        // The last three tokens, "1 2 3", occurred at the start: the draft is what followed them there.
        let history = [1, 2, 3, 4, 9, 1, 2];
        assert_eq!(lookup(&history, 3, 8), vec![4, 9, 1, 2, 3]);
        assert_eq!(lookup(&history, 3, 2), vec![4, 9]);
    }

    #[test]
    fn prefers_the_most_recent_occurrence() {
        let history = [5, 6, 1, 5, 6, 2, 0, 5];
        assert_eq!(lookup(&history, 6, 1), vec![2]);
    }

    #[test]
    fn longer_matches_win_over_more_recent_shorter_ones() {
        // "7 5 6" occurs at the start (continues with 1); "5 6" alone occurs later (continues with 2).
        let history = [7, 5, 6, 1, 0, 5, 6, 2, 0, 7, 5];
        assert_eq!(lookup(&history, 6, 1), vec![1]);
    }

    #[test]
    fn no_draft_without_a_match_of_two_tokens() {
        assert!(lookup(&[1, 2, 3], 4, 8).is_empty());
        assert!(lookup(&[4, 1, 2], 4, 8).is_empty(), "a single repeated token is not enough");
        assert!(lookup::<i32>(&[], 4, 8).is_empty());
        assert!(lookup(&[1, 2, 1], 2, 0).is_empty(), "max 0 drafts nothing");
    }

    #[test]
    fn a_draft_may_run_up_to_the_end_of_the_sequence() {
        // Repetition: "1 2 1 2 1" + 2: "2 1 2" last occurred at 1, and what follows it reaches the end.
        assert_eq!(lookup(&[1, 2, 1, 2, 1], 2, 10), vec![1, 2]);
    }

    #[test]
    fn the_length_halves_on_misses_and_grows_back_on_full_hits() {
        let mut length = DraftLength::new(8);
        length.record(8, 0);
        assert_eq!(length.get(), 4);
        length.record(4, 0);
        length.record(2, 0);
        length.record(1, 0);
        assert_eq!(length.get(), 1, "never below one while drafting is on");
        length.record(1, 1);
        assert_eq!(length.get(), 2);
        length.record(2, 1);
        assert_eq!(length.get(), 2, "a partial hit keeps the length");
        for _ in 0..5 {
            length.record(length.get(), length.get());
        }
        assert_eq!(length.get(), 8, "never above the maximum");
        let mut off = DraftLength::new(0);
        off.record(0, 0);
        assert_eq!(off.get(), 0);
    }
}
