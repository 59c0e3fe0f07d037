//! A model's memory before it is loaded: the engine's own context and parallel rules, and the bytes they cost.
//!
//! Rules:
//! - One place for the choices `brain` makes when it loads a model: the context per sequence
//!   ([`context_size`]), the sequences run at once ([`auto_parallel`] on a [`KvShape`] priced in the chosen
//!   [`KvCache`] types), the batch and micro-batch ([`batch`], [`ubatch`]), whether it is an embedding model
//!   ([`embedding_only`]), and the option limits ([`Sizing::check`]). The engine calls them with the loaded model's
//!   numbers, [`footprint_of`] with the GGUF header's: both decide the same way.
//! - KV-cache types are llama.cpp's `--cache-type-k/-v` (f16, q8_0, q4_0), priced per ggml block (q8_0: 34 bytes per
//!   32 values, q4_0: 18 per 32). A quantized V cache needs flash attention: `off` with one is refused here, `auto`
//!   lets llama.cpp turn it on (it does for a quantized V cache, and on the CPU backend in any case).
//! - [`footprint`] reads the header only ([`crate::gguf::GgufInfo`]). What llama.cpp allocates, from its sources
//!   (`llama_context` constructor, `output_reserve`, `sched_reserve`, `llama_kv_cache`; llama-cpp-sys-2 0.1.161):
//!   - weights: the tensors' bytes (llama.cpp maps the file);
//!   - KV cache: K and V (f16 unless the options say otherwise) for every cell of every layer; a chat context has
//!     `n_ctx × parallel` cells, an embedding context `n_ctx`, both padded up to a multiple of 256; encoder
//!     architectures (BERT family) have none;
//!   - compute: the scheduler's buffer for the worst micro-batch, plus the output buffer (see `compute_bytes`).
//! - Numbers the header lacks fall back to conservative ones (more memory, never less); all arithmetic saturates,
//!   so a hostile header gives a huge estimate, never a panic.
//! - Not counted: the embedding context a chat model makes on its first embedding request, llama.cpp's vocabulary
//!   tables, and the constraint compiler (made on the first constrained request).
//!
//! Layering: reads `gguf` and `error` only; `brain` and `embedding` read it.

use crate::gguf::{GgufInfo, MetaValue};

mod options;
pub use options::{CacheType, FlashAttention, KvCache, Sizing, check_options};

/// Default context window (per sequence) when neither the caller nor a small model says otherwise.
pub const DEFAULT_CONTEXT: u32 = 4096;
/// Sequences run at once when the caller does not say (fewer when their caches would not fit in memory).
pub const DEFAULT_PARALLEL: u32 = 4;
/// Architectures that only encode (llama.cpp's BERT family): embedding models with no LM head.
pub const ENCODERS: [&str; 8] =
    ["bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "neo-bert", "modern-bert", "eurobert"];
/// Architectures llama.cpp makes no KV cache for (`llama_model::create_memory`), besides [`ENCODERS`].
const NO_KV_CACHE: [&str; 7] = ["gemma-embedding", "dream", "llada", "llada-moe", "rnd1", "clef", "wavtokenizer-dec"];
/// llama.cpp pads a context's cell count to a multiple of this.
const CELL_PAD: u64 = 256;
/// Bytes of an f16 (K and V cache, attention mask) and of an f32 (activations, logits).
const F16: u64 = 2;
const F32: u64 = 4;
/// Activations live beside the logits, in floats per token per `n_embd` (calibrated, see [`compute_bytes`]), plus a
/// few floats per token for the small inputs (positions, ids, norms).
const ACTIVATIONS_PER_EMBD: u64 = 6;
const ACTIVATIONS_SLACK: u64 = 64;
/// A vocabulary size no common model exceeds (Gemma 3's), for a header that names none.
const FALLBACK_VOCAB: u64 = 262_144;
/// A hidden size few models exceed, for a header that names none.
const FALLBACK_EMBD: u64 = 8192;
/// Without the cache's shape, a cell is taken to cost the weights' bytes over this: common models' ratio of weights
/// to KV bytes per token runs from about 4,000 (SmolLM2-135M) to over 30,000 (Llama 3 8B), so this overestimates.
const FALLBACK_WEIGHTS_PER_CELL: u64 = 2048;

/// What the loaded model will take, in bytes, and the context and parallel count it was computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// The tensors' data.
    pub weights: u64,
    /// Keys and values (of the options' types) for every cell of the context.
    pub kv_cache: u64,
    /// llama.cpp's compute buffer and its output (logits, embeddings) buffer.
    pub compute: u64,
    pub total: u64,
    /// Context window per sequence, in tokens.
    pub context_size: u32,
    /// Sequences run at once (1 for an embedding model).
    pub parallel: u32,
}

/// The shape of one KV-cache cell (one token of one sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub n_layer: u64,
    pub n_embd: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    /// Width of one key head (`{arch}.attention.key_length`), when the model says; else `n_embd / n_head`.
    pub key_length: Option<u64>,
    /// Width of one value head (`{arch}.attention.value_length`), when the model says; else `n_embd / n_head`.
    pub value_length: Option<u64>,
}

impl KvShape {
    /// The shape from a GGUF header: `None` without `{arch}.block_count` or `{arch}.embedding_length`. Without head
    /// counts (or with per-layer arrays of them, which are not kept), every head is taken to have its own keys and
    /// values: the largest cache.
    pub fn from_gguf(info: &GgufInfo) -> Option<Self> {
        let n_head = info.arch_uint("attention.head_count").filter(|&n| n > 0);
        Some(Self {
            n_layer: info.arch_uint("block_count")?,
            n_embd: info.arch_uint("embedding_length")?,
            n_head: n_head.unwrap_or(1),
            n_head_kv: n_head.and(info.arch_uint("attention.head_count_kv")).unwrap_or(n_head.unwrap_or(1)),
            key_length: info.arch_uint("attention.key_length"),
            value_length: info.arch_uint("attention.value_length"),
        })
    }

    /// Bytes of f16 keys and values one cell takes over all layers.
    pub fn bytes_per_cell(&self) -> u64 {
        self.bytes_per_cell_of(KvCache::default())
    }

    /// Bytes of keys and values of `cache`'s types one cell takes over all layers (a layer's K row is
    /// `key_length × n_head_kv` values, its V row `value_length × n_head_kv`, in whole blocks).
    pub fn bytes_per_cell_of(&self, cache: KvCache) -> u64 {
        let (k_width, v_width) = self.head_widths();
        let k = cache.type_k.bytes(k_width.saturating_mul(self.n_head_kv));
        let v = cache.type_v.bytes(v_width.saturating_mul(self.n_head_kv));
        self.n_layer.saturating_mul(k.saturating_add(v))
    }

    /// Width of one key head and of one value head: the model's, else `n_embd / n_head`.
    pub fn head_widths(&self) -> (u64, u64) {
        let head = self.n_embd / self.n_head.max(1);
        (self.key_length.unwrap_or(head), self.value_length.unwrap_or(head))
    }
}

/// The context window per sequence: the caller's, else the model's trained context capped at [`DEFAULT_CONTEXT`]
/// (and at least 16 tokens); [`DEFAULT_CONTEXT`] when the trained context is unknown.
pub fn context_size(requested: Option<u32>, trained: Option<u64>) -> u32 {
    requested.unwrap_or_else(|| {
        trained.map_or(DEFAULT_CONTEXT, |n| u32::try_from(n).unwrap_or(u32::MAX)).clamp(16, DEFAULT_CONTEXT)
    })
}

/// How many sequences to run when the caller does not say: up to [`DEFAULT_PARALLEL`], as long as their caches
/// (`bytes_per_cell` per token, a whole `n_ctx` window each) take at most the larger of 1 GiB and the model's own
/// size, and at most a quarter of the `available` memory.
pub fn auto_parallel(bytes_per_cell: u64, n_ctx: u32, model_bytes: u64, available: Option<u64>) -> u32 {
    let mut budget = model_bytes.max(1 << 30);
    if let Some(available) = available {
        budget = budget.min(available / 4);
    }
    let mut n = DEFAULT_PARALLEL;
    while n > 1 && bytes_per_cell.saturating_mul(u64::from(n_ctx)).saturating_mul(u64::from(n)) > budget {
        n -= 1;
    }
    n
}

/// Tokens per decode of a chat context: the caller's batch, at least one per sequence, at most the whole context.
pub fn batch(batch_size: u32, parallel: u32, n_ctx: u32) -> u32 {
    batch_size.max(parallel).min(n_ctx.saturating_mul(parallel))
}

/// Tokens per micro-batch (what llama.cpp computes at once, and sizes its compute buffer for): the caller's, at most
/// the batch `n_batch`; the batch itself when the caller does not say.
pub fn ubatch(ubatch_size: Option<u32>, n_batch: u32) -> u32 {
    ubatch_size.map_or(n_batch, |n| n.min(n_batch)).max(1)
}

/// An embedding model (it answers embedding requests only): its GGUF names a pooling (`pooling_type` other than
/// none, 0, or unspecified: 1 mean, 2 cls, 3 last, 4 rank) or its architecture is an encoder.
pub fn embedding_only(architecture: &str, pooling_type: Option<i64>) -> bool {
    pooling_type.is_some_and(|p| (1..=4).contains(&p)) || ENCODERS.contains(&architecture)
}

/// [`embedding_only`] of a GGUF, from its header: its architecture and `{arch}.pooling_type`.
pub fn gguf_embedding_only(info: &GgufInfo) -> bool {
    let arch = info.architecture.as_deref().unwrap_or_default();
    let pooling = info.metadata.get(&format!("{arch}.pooling_type")).and_then(|v| match *v {
        MetaValue::Int(p) => Some(p),
        MetaValue::UInt(p) => i64::try_from(p).ok(),
        _ => None,
    });
    embedding_only(arch, pooling)
}

/// Bytes of memory available to this process, from /proc/meminfo where there is one.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb.saturating_mul(1024))
}

/// What a model will take loaded with these options, as `Brain` would load it now (its automatic
/// parallel count reads the memory available now); the cache f16, the micro-batch the batch.
pub fn footprint(info: &GgufInfo, context_size: Option<u32>, parallel: Option<u32>, batch_size: u32) -> Footprint {
    footprint_of(info, &Sizing { context_size, parallel, batch_size, ..Sizing::default() })
}

/// What a model will take loaded with `sizing`, as `Brain` would load it now.
pub fn footprint_of(info: &GgufInfo, sizing: &Sizing) -> Footprint {
    estimate_of(info, sizing, available_memory())
}

/// [`footprint`] with the available memory given.
pub fn estimate(
    info: &GgufInfo,
    context_size: Option<u32>,
    parallel: Option<u32>,
    batch_size: u32,
    available: Option<u64>,
) -> Footprint {
    estimate_of(info, &Sizing { context_size, parallel, batch_size, ..Sizing::default() }, available)
}

/// [`footprint_of`] with the available memory given.
pub fn estimate_of(info: &GgufInfo, sizing: &Sizing, available: Option<u64>) -> Footprint {
    let arch = info.architecture.as_deref().unwrap_or_default();
    let n_ctx = context_size(sizing.context_size, info.context_length).max(1);
    let cache = sizing.cache;
    let per_cell = KvShape::from_gguf(info).map_or_else(
        || {
            // Priced from the weights as f16, then scaled to the types (a head of 64 values stands for any).
            let f16 = info.tensor_bytes / FALLBACK_WEIGHTS_PER_CELL;
            let scaled = cache.type_k.bytes(64).saturating_add(cache.type_v.bytes(64));
            f16.saturating_mul(scaled) / (2 * CacheType::F16.bytes(64))
        },
        |shape| shape.bytes_per_cell_of(cache),
    );
    let weights = info.tensor_bytes;
    let embedding = gguf_embedding_only(info);
    let parallel = if embedding {
        1
    } else {
        sizing.parallel.unwrap_or_else(|| auto_parallel(per_cell, n_ctx, weights, available)).max(1)
    };
    // An embedding context: one window of cells, a micro-batch of a whole window, every token an output.
    let (cells, ubatch) = if embedding {
        (u64::from(n_ctx), u64::from(n_ctx))
    } else {
        let n_batch = batch(sizing.batch_size, parallel, n_ctx);
        (u64::from(n_ctx).saturating_mul(u64::from(parallel)), u64::from(self::ubatch(sizing.ubatch_size, n_batch)))
    };
    let cells = cells.div_ceil(CELL_PAD).saturating_mul(CELL_PAD);
    let no_cache = ENCODERS.contains(&arch) || NO_KV_CACHE.contains(&arch);
    let kv_cache = if no_cache { 0 } else { cells.saturating_mul(per_cell) };
    let dims = Dims::from_gguf(info);
    let outputs = if embedding { u64::from(n_ctx) } else { u64::from(parallel) };
    let shape = Work { ubatch, cells, outputs, embedding, encoder: ENCODERS.contains(&arch), flash: cache.flash() };
    let compute = compute_bytes(&dims, &shape);
    Footprint {
        weights,
        kv_cache,
        compute,
        total: weights.saturating_add(kv_cache).saturating_add(compute),
        context_size: n_ctx,
        parallel,
    }
}

/// The widths the compute estimate needs, from the header or conservative fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    n_vocab: u64,
    n_embd: u64,
    /// The FFN's width per token: the dense one, or a MoE's expert width times the experts used, the larger.
    n_ff: u64,
    /// Attention heads (each has a row of scores per cell without flash attention).
    n_head: u64,
}

/// What one reserved micro-batch computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Work {
    /// Tokens per micro-batch.
    ubatch: u64,
    /// KV cells every token attends over (the whole cache, in the worst case the scheduler reserves for).
    cells: u64,
    /// Rows of logits (and embeddings) read back.
    outputs: u64,
    embedding: bool,
    encoder: bool,
    flash: bool,
}

impl Dims {
    fn from_gguf(info: &GgufInfo) -> Self {
        let n_embd = info.arch_uint("embedding_length").unwrap_or(FALLBACK_EMBD);
        let dense = info.arch_uint("feed_forward_length");
        let experts = info
            .arch_uint("expert_feed_forward_length")
            .zip(info.arch_uint("expert_used_count"))
            .map(|(width, used)| width.saturating_mul(used));
        Self {
            n_vocab: info.vocab_size.or_else(|| info.arch_uint("vocab_size")).unwrap_or(FALLBACK_VOCAB),
            n_embd,
            n_ff: dense.max(experts).unwrap_or_else(|| n_embd.saturating_mul(4)),
            n_head: info.arch_uint("attention.head_count").unwrap_or(n_embd / 32).max(1),
        }
    }
}

/// llama.cpp's CPU compute buffer plus its output buffer, in bytes:
///
/// ```text
/// compute = 4·ubatch·max(n_head_vocab + 6·n_embd + 64, 3·n_ff + 2·n_embd)  activations and logits, f32
///         + 2·cells·ubatch                                                 the attention mask, f16 (flash attention)
/// output  = 4·outputs·(n_vocab + n_embd if embedding)                      logits (and embeddings) read back, f32
///
/// without flash attention:
/// compute = max(that first line, 4·ubatch·(n_head·cells + 7·n_embd + 64))  or each head's f32 scores, the larger
///         + 4·ubatch·(cells + n_embd)                                      the f32 mask
/// ```
///
/// `n_head_vocab` is the vocabulary, or 0 for an encoder (no LM head). The scheduler reserves the worst micro-batch
/// with every token an output, so the logits of `ubatch` tokens dominate; the activations live beside them. A chat
/// context outputs at most one token per sequence per decode (`outputs` = parallel); an embedding context outputs
/// every token of a batch, up to a window (`outputs` = n_ctx), and llama.cpp grows its output buffer to that.
///
/// Calibrated on this llama.cpp (CPU, flash attention on, as `auto` picks) against its "compute buffer size" and
/// "output buffer size" log lines: SmolLM2-135M (n_embd 576, n_ff 1536, vocab 49152) at 1024–16384 cells and
/// micro-batches of 128–4096, chat and mean-pooled embedding contexts: 0–2 % above llama.cpp's figures; zero-weight
/// llama models of n_embd 1024, 2048 and 3072 (n_ff 3072–8192): 2–5 % above (their activations measured 5·n_embd
/// floats per token, SmolLM2's 6·n_embd; n_ff did not show while the logits are the larger). The FFN term and
/// encoders are not calibrated (no such model here). Flash attention off, SmolLM2 at 1024–16384 cells and
/// micro-batches of 128–2048: 0–1.5 % above. The cache's types do not change the compute buffer (llama.cpp logged
/// the same figure for f16, q8_0 and q4_0 caches).
fn compute_bytes(dims: &Dims, work: &Work) -> u64 {
    let Work { ubatch, cells, outputs, embedding, encoder, flash } = *work;
    let head = if encoder { 0 } else { dims.n_vocab };
    let beside_logits =
        head.saturating_add(dims.n_embd.saturating_mul(ACTIVATIONS_PER_EMBD)).saturating_add(ACTIVATIONS_SLACK);
    let ffn = dims.n_ff.saturating_mul(3).saturating_add(dims.n_embd.saturating_mul(2));
    let activations = F32.saturating_mul(ubatch).saturating_mul(beside_logits.max(ffn));
    // Without flash attention, each head's f32 scores over every cell live while a layer attends; the logits come
    // later, in memory the allocator reuses, so the larger of the two stages counts, and the mask is f32.
    let (stage, mask) = if flash {
        (activations, F16.saturating_mul(cells).saturating_mul(ubatch))
    } else {
        let side = dims.n_embd.saturating_mul(ACTIVATIONS_PER_EMBD + 1).saturating_add(ACTIVATIONS_SLACK);
        let scores = F32.saturating_mul(ubatch).saturating_mul(dims.n_head.saturating_mul(cells).saturating_add(side));
        (activations.max(scores), F32.saturating_mul(ubatch).saturating_mul(cells.saturating_add(dims.n_embd)))
    };
    let read_back = dims.n_vocab.saturating_add(if embedding { dims.n_embd } else { 0 });
    let output = F32.saturating_mul(outputs).saturating_mul(read_back);
    stage.saturating_add(mask).saturating_add(output)
}

#[cfg(test)]
mod tests;
