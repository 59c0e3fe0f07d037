//! Brain's side of the KV store ([`crate::kvstore`]): a sequence's cache as bytes and back, through llama.cpp's
//! per-sequence state API, and the rules for when.
//!
//! Rules:
//! - Saved when the engine stops in order ([`crate::engine::Engine::persist`]: an idle unload, a close, a
//!   shutdown): every slot holding at least [`MIN_SAVE_TOKENS`] tokens, least recently used first, so that under a
//!   tight budget the most recent conversations are the ones kept.
//! - Restored at admission when the store holds a conversation sharing at least [`MIN_SAVE_TOKENS`] more of the
//!   prompt's beginning than the chosen free slot: it is loaded into the least recently used free slot (replacing
//!   that slot's cache), and the prompt is then read as after an in-memory prefix match (only what differs).
//! - A state llama.cpp refuses is removed from the store; llama.cpp has then cleared the sequence, so the slot is
//!   empty and the prompt is read in full. Nothing here fails a request.
//! - The state bytes reach llama.cpp only after the file's checksum passed: they were written by [`save`] for a
//!   model of the same identity. The store's folder is trusted as the user's config folder is (the registry beside
//!   it names the model files that are loaded).

use std::path::Path;

use llama_cpp_2::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;

use crate::footprint::KvCache;
use crate::gguf::GgufInfo;
use crate::kvstore::{KvStore, format};

/// Conversations shorter than this are not saved (a template's system prompt and a greeting: reading them again
/// costs less than a file), and a restore must gain at least this many tokens over what is in memory.
pub const MIN_SAVE_TOKENS: usize = 16;

/// llama.cpp's per-sequence state layout in the pinned llama-cpp-2 (bump with the pin): part of every file's
/// identity, so another version's states are never offered to this one.
const STATE_LAYOUT: &str = "llama-cpp-2 =0.1.160, llama_state_seq_get_data_ext flags 0";

/// The store under `root` for the model at `path` with these cache settings; None (logged) where it cannot open.
pub fn open(root: &Path, budget: u64, path: &Path, info: &GgufInfo, cache: KvCache, n_vocab: i32) -> Option<KvStore> {
    let settings = format!("{STATE_LAYOUT}; k={:?} v={:?} fa={:?}", cache.type_k, cache.type_v, cache.flash_attention);
    let opened =
        format::identity(path, info, &settings).and_then(|identity| KvStore::open(root, budget, identity, n_vocab));
    match opened {
        Ok(store) => Some(store),
        Err(e) => {
            log::warn!("KV store at {} is off for this model: {e}", root.display());
            None
        }
    }
}

/// Saves the cache of sequence `seq`, which holds `tokens`. Failures are logged: the conversation is only not kept.
pub fn save(ctx: &LlamaContext<'_>, store: &mut KvStore, seq: i32, tokens: &[LlamaToken]) {
    let flags = LlamaStateSeqFlags::empty();
    let size = ctx.state_seq_get_size_ext(seq, flags);
    if size == 0 {
        return;
    }
    let mut bytes = vec![0u8; size];
    // SAFETY: `bytes` holds `size` bytes, what llama.cpp just said the state of `seq` takes with these flags; the
    // context is borrowed immutably on this thread, so nothing changes the sequence between the two calls.
    let written = unsafe { ctx.state_seq_get_data_ext(bytes.as_mut_ptr(), seq, flags) };
    if written != size {
        log::warn!("KV store: llama.cpp wrote {written} bytes of a {size}-byte state; not saved");
        return;
    }
    let ids: Vec<i32> = tokens.iter().map(|t| t.0).collect();
    if let Err(e) = store.save(&ids, &bytes) {
        log::warn!("KV store: could not save a conversation of {} tokens in {}: {e}", ids.len(), store.dir().display());
    }
}

/// Loads into sequence `seq` the stored conversation sharing the longest beginning with `prompt`, if it shares at
/// least [`MIN_SAVE_TOKENS`] more than the `have` tokens the slot holds and fits the `window`. Returns the tokens
/// the sequence now holds (empty when llama.cpp refused the state and cleared it), or None when nothing was loaded
/// and the sequence is as it was.
pub fn restore(
    ctx: &mut LlamaContext<'_>,
    store: &mut KvStore,
    seq: i32,
    prompt: &[LlamaToken],
    have: usize,
    window: usize,
) -> Option<Vec<LlamaToken>> {
    let ids: Vec<i32> = prompt.iter().map(|t| t.0).collect();
    let (index, shared) = store.best(&ids, window)?;
    // At least the prompt's last token is always decoded (for its logits), so it never counts as a gain.
    if shared.min(prompt.len().saturating_sub(1)) < have + MIN_SAVE_TOKENS {
        return None;
    }
    let restored = store.load(index)?;
    // SAFETY: the bytes passed the file's checksum, so they are what `save` got from llama.cpp for a model of the
    // same identity and cache settings; llama.cpp's reader checks every read against the buffer's length and the
    // state's shapes against the context, and returns 0 on a mismatch (handled below).
    let accepted = unsafe { ctx.state_seq_set_data_ext(restored.payload(), seq, LlamaStateSeqFlags::empty()) };
    if !accepted {
        store.forget(restored.index);
        // llama.cpp removes the sequence when a restore fails; make sure of it.
        let _ = ctx.clear_kv_cache_seq(u32::try_from(seq).ok(), None, None);
        return Some(Vec::new());
    }
    Some(restored.tokens.into_iter().map(LlamaToken).collect())
}
