//! Embeddings on llama.cpp: which models are embedding models, how they pool, and one pooled vector per input.
//!
//! Rules:
//! - An embedding context is separate from the chat context: `embeddings` on, the model's pooling, a window of one
//!   sequence's context shared by up to [`SEQS`] inputs per decode, and a micro-batch as large as the batch (pooling
//!   over a non-causal model needs a whole input in one micro-batch). A chat model gets one on its first embedding
//!   request, so chat sequences keep their caches; it is cleared before every batch, so nothing leaks between inputs.
//! - A model is an embedding model when its GGUF names a pooling (`{arch}.pooling_type` other than none: BERT-likes,
//!   Qwen3-Embedding) or its architecture is an encoder; a chat model's embeddings are mean-pooled (its GGUF names no
//!   pooling, and llama.cpp's "none" gives one vector per token, which no embeddings API returns).
//! - Inputs arrive checked (non-empty, within the window, ids in the vocabulary): the caller's errors name the input.
//!   They are packed into decodes of at most a window's tokens and [`SEQS`] inputs.
//!
//! Layering: reads `footprint` (which models are embedding models); used by `brain` only.

use std::num::NonZeroU32;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::engine::normalize;
use crate::error::CortexError;

/// Inputs embedded by one decode.
pub const SEQS: u32 = 16;

/// The pooling of `model`'s embeddings and whether it is an embedding model.
pub fn pooling_of(model: &LlamaModel) -> (LlamaPoolingType, bool) {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    let pooling_type = model.meta_val_str(&format!("{arch}.pooling_type")).ok().and_then(|v| v.trim().parse().ok());
    // The decision is footprint's, so that a memory estimate from the header treats the model as the engine does.
    let embedding_only = crate::footprint::embedding_only(&arch, pooling_type);
    let pooling = pooling_type
        .and_then(|p| i32::try_from(p).ok())
        .map(LlamaPoolingType::from)
        .filter(|p| !matches!(p, LlamaPoolingType::None | LlamaPoolingType::Unspecified))
        .unwrap_or(LlamaPoolingType::Mean);
    (pooling, embedding_only)
}

/// Its name in the API (`EngineInfo::pooling`).
pub fn pooling_name(pooling: LlamaPoolingType) -> &'static str {
    match pooling {
        LlamaPoolingType::Cls => "cls",
        LlamaPoolingType::Last => "last",
        LlamaPoolingType::Rank => "rank",
        _ => "mean",
    }
}

/// The parameters of an embedding context with a window of `n_ctx` tokens.
pub fn context_params(n_ctx: u32, threads: i32, pooling: LlamaPoolingType) -> LlamaContextParams {
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_seq_max(SEQS)
        .with_kv_unified(true)
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_embeddings(true)
        .with_pooling_type(pooling)
}

/// One pooled vector per input, in order; `n_ctx` is the context's window.
pub fn embed(
    ctx: &mut LlamaContext<'_>,
    n_ctx: u32,
    inputs: &[Vec<i32>],
    normalized: bool,
) -> Result<Vec<Vec<f32>>, CortexError> {
    let window = n_ctx as usize;
    let mut batch = LlamaBatch::new(window, 1);
    let mut vectors = Vec::with_capacity(inputs.len());
    let mut start = 0;
    while start < inputs.len() {
        // As many inputs as fit the window, at least one (each fits alone: the caller checked).
        let mut end = start;
        let mut tokens = 0;
        while end < inputs.len()
            && end - start < SEQS as usize
            && (end == start || tokens + inputs[end].len() <= window)
        {
            tokens += inputs[end].len();
            end += 1;
        }
        ctx.clear_kv_cache();
        batch.clear();
        for (seq, ids) in inputs[start..end].iter().enumerate() {
            let seq = i32::try_from(seq).unwrap_or(0);
            for (pos, &id) in ids.iter().enumerate() {
                let pos = i32::try_from(pos).unwrap_or(i32::MAX);
                batch.add(LlamaToken(id), pos, &[seq], true).map_err(|e| CortexError::Engine(e.to_string()))?;
            }
        }
        ctx.decode(&mut batch).map_err(|e| CortexError::Engine(format!("llama.cpp could not embed: {e}")))?;
        for seq in 0..end - start {
            let seq = i32::try_from(seq).unwrap_or(0);
            let pooled = ctx
                .embeddings_seq_ith(seq)
                .map_err(|e| CortexError::Engine(format!("llama.cpp gave no embedding for sequence {seq}: {e}")))?;
            let mut vector = pooled.to_vec();
            if normalized {
                normalize(&mut vector);
            }
            vectors.push(vector);
        }
        start = end;
    }
    ctx.clear_kv_cache();
    Ok(vectors)
}
