//! A draft model for speculative decoding (llama-server's `-md` / `--model-draft`): a small GGUF with the model's
//! vocabulary guesses the next tokens greedily, and Brain verifies them as it verifies prompt-lookup drafts
//! ([`crate::brain`]: the model keeps a draft only while it picks the same tokens, so answers do not change).
//!
//! Rules:
//! - The draft model has its own context with one sequence per slot of the main context, and remembers which tokens
//!   each holds: a proposal first brings the draft sequence to the main sequence's tokens (the longest shared
//!   beginning is kept, the rest decoded in batches), then decodes its guesses one at a time.
//! - A guess whose probability under the draft model is below [`P_MIN`] ends the draft (llama.cpp's `--draft-p-min`
//!   default): unlikely guesses are rarely kept and cost a batch position each.
//! - The vocabularies must agree (llama.cpp's rule: sizes within 128, the same BOS/EOS, the same text for every
//!   shared id from 5 on); otherwise loading fails with a `ConfigError` naming `draft_model`.
//! - A draft-model failure never fails a request: the sequence's draft cache is dropped and it proposes nothing.

use std::num::NonZeroU32;
use std::path::Path;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use crate::error::CortexError;

/// Guesses less likely than this (under the draft model) end a draft.
pub const P_MIN: f32 = 0.75;
/// Vocabulary sizes may differ by this much (llama.cpp's `SPEC_VOCAB_MAX_SIZE_DIFFERENCE`).
const VOCAB_SIZE_SLACK: i32 = 128;
/// Ids below this are not compared (control tokens that families number differently).
const VOCAB_CHECK_FROM: i32 = 5;

/// The draft model, its context and what each of its sequences holds.
pub struct Drafter {
    // Declared before `model`: it borrows the model and must be dropped first.
    ctx: LlamaContext<'static>,
    model: Box<LlamaModel>,
    batch: LlamaBatch<'static>,
    cached: Vec<Vec<LlamaToken>>,
    n_batch: usize,
    /// Ids the main model has (a draft token past them cannot be verified).
    main_vocab: i32,
}

impl std::fmt::Debug for Drafter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drafter").field("sequences", &self.cached.len()).finish_non_exhaustive()
    }
}

/// How the draft model is loaded: beside the main model, with its layout.
#[derive(Debug)]
pub struct DraftLoad<'a> {
    pub path: &'a Path,
    pub gpu_layers: u32,
    pub parallel: u32,
    pub n_ctx: u32,
    pub threads: i32,
}

impl Drafter {
    /// Loads the draft model for `main`; a vocabulary that differs is a `ConfigError` naming `draft_model`.
    pub fn load(backend: &LlamaBackend, main: &LlamaModel, load: &DraftLoad<'_>) -> Result<Self, CortexError> {
        crate::gguf::check(load.path)?;
        let params = LlamaModelParams::default().with_n_gpu_layers(load.gpu_layers);
        let model = LlamaModel::load_from_file(backend, load.path, &params).map_err(|e| {
            CortexError::model_load(load.path, format!("llama.cpp could not load the draft model ({e})"))
        })?;
        let model = Box::new(model);
        check_vocab(main, &model).map_err(|why| CortexError::InvalidConfig {
            field: "draft_model",
            value: format!("{} ({why})", load.path.display()),
            expected: "a GGUF with the model's vocabulary (a smaller model of the same family)",
        })?;
        let n_batch = 512u32.min(load.n_ctx);
        let ctx_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(load.n_ctx.saturating_mul(load.parallel)))
            .with_n_seq_max(load.parallel)
            .with_kv_unified(true)
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(load.threads)
            .with_n_threads_batch(load.threads);
        // SAFETY: as in Brain::load: the model is boxed (a stable address), never moved out or mutably borrowed while
        // the context exists, and the context is declared before it in `Drafter`, so it is dropped first.
        let model_ref: &'static LlamaModel = unsafe { &*std::ptr::from_ref::<LlamaModel>(&model) };
        let ctx = model_ref.new_context(backend, ctx_params).map_err(|e| {
            CortexError::model_load(load.path, format!("llama.cpp could not create the draft model's context ({e})"))
        })?;
        Ok(Self {
            ctx,
            model,
            batch: LlamaBatch::new(n_batch as usize, 1),
            cached: vec![Vec::new(); load.parallel as usize],
            n_batch: n_batch as usize,
            main_vocab: main.n_vocab(),
        })
    }

    /// Up to `max` guesses of what follows `history` then `next` in `slot`'s sequence (fewer where the draft model
    /// is unsure, none where it fails).
    pub fn propose(&mut self, slot: usize, history: &[LlamaToken], next: LlamaToken, max: usize) -> Vec<LlamaToken> {
        if max == 0 {
            return Vec::new();
        }
        match self.try_propose(slot, history, next, max) {
            Ok(draft) => draft,
            Err(()) => {
                // Whatever the failed decode left in this sequence is not trusted.
                let _ = self.ctx.clear_kv_cache_seq(u32::try_from(slot).ok(), None, None);
                self.cached[slot].clear();
                Vec::new()
            }
        }
    }

    fn try_propose(
        &mut self,
        slot: usize,
        history: &[LlamaToken],
        next: LlamaToken,
        max: usize,
    ) -> Result<Vec<LlamaToken>, ()> {
        let seq = i32::try_from(slot).map_err(|_| ())?;
        let total = history.len() + 1;
        let at = |i: usize| if i < history.len() { history[i] } else { next };
        // Keep the shared beginning (at least the last token is decoded again, for its logits).
        let cached = &mut self.cached[slot];
        let shared = cached.iter().enumerate().take_while(|&(i, &t)| i < total && t == at(i)).count().min(total - 1);
        if shared < cached.len() {
            let p0 = u32::try_from(shared).map_err(|_| ())?;
            if self.ctx.clear_kv_cache_seq(u32::try_from(slot).ok(), Some(p0), None).ok() != Some(true) {
                return Err(());
            }
            cached.truncate(shared);
        }
        let mut start = shared;
        let mut logits_at = 0;
        while start < total {
            let end = total.min(start + self.n_batch);
            self.batch.clear();
            for pos in start..end {
                let p = i32::try_from(pos).map_err(|_| ())?;
                self.batch.add(at(pos), p, &[seq], pos + 1 == total).map_err(|_| ())?;
            }
            self.ctx.decode(&mut self.batch).map_err(|_| ())?;
            self.cached[slot].extend((start..end).map(at));
            logits_at = i32::try_from(end - start - 1).map_err(|_| ())?;
            start = end;
        }
        let mut draft = Vec::with_capacity(max);
        loop {
            let (token, p) = likeliest(self.ctx.get_logits_ith(logits_at));
            if p < P_MIN || token.0 >= self.main_vocab || self.model.vocab().is_eog(token) {
                break;
            }
            draft.push(token);
            if draft.len() == max {
                break;
            }
            let pos = i32::try_from(self.cached[slot].len()).map_err(|_| ())?;
            self.batch.clear();
            self.batch.add(token, pos, &[seq], true).map_err(|_| ())?;
            self.ctx.decode(&mut self.batch).map_err(|_| ())?;
            self.cached[slot].push(token);
            logits_at = 0;
        }
        Ok(draft)
    }
}

/// The likeliest token and its probability (the softmax of the logits at it).
fn likeliest(logits: &[f32]) -> (LlamaToken, f32) {
    let (best, max) =
        logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |acc, (i, &l)| if l > acc.1 { (i, l) } else { acc });
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (LlamaToken(i32::try_from(best).unwrap_or(0)), if sum > 0.0 { 1.0 / sum } else { 0.0 })
}

/// Why `draft`'s vocabulary cannot stand for `main`'s, if it cannot.
fn check_vocab(main: &LlamaModel, draft: &LlamaModel) -> Result<(), String> {
    let (n_main, n_draft) = (main.n_vocab(), draft.n_vocab());
    if (n_main - n_draft).abs() > VOCAB_SIZE_SLACK {
        return Err(format!("{n_draft} tokens against the model's {n_main}"));
    }
    let (a, b) = (main.vocab(), draft.vocab());
    if a.bos() != b.bos() || a.eos() != b.eos() {
        return Err("other BOS/EOS tokens".into());
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for id in VOCAB_CHECK_FROM..n_main.min(n_draft) {
        x.clear();
        y.clear();
        a.token_to_piece_into(LlamaToken(id), &mut x, true, None);
        b.token_to_piece_into(LlamaToken(id), &mut y, true, None);
        if x != y {
            return Err(format!(
                "token {id} is {:?} there, {:?} here",
                String::from_utf8_lossy(&y),
                String::from_utf8_lossy(&x)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::likeliest;

    #[test]
    fn the_likeliest_token_and_its_probability() {
        let (token, p) = likeliest(&[0.0, 2.0_f32.ln() + 1.0, 1.0]);
        assert_eq!(token.0, 1);
        // e^(ln2+1) / (1 + 2e + e) = 2e / (1 + 3e)
        let e = std::f32::consts::E;
        assert!((p - 2.0 * e / (1.0 + 3.0 * e)).abs() < 1e-6, "{p}");
        let (_, uniform) = likeliest(&[0.5; 4]);
        assert!((uniform - 0.25).abs() < 1e-6);
    }
}
