//! Brain, the real engine: llama.cpp through the `llama-cpp-2` crate.
//!
//! Rules (DESIGN.md §5):
//! - One process-wide `LlamaBackend` in a `OnceLock`, initialised once and never dropped; llama.cpp's own logging
//!   is silenced unless `RUSTY_GENIUS_LLAMA_LOG=1` (it writes to stderr, which the TUI and pipes must keep clean).
//! - A file is checked by [`crate::gguf::check`] before llama.cpp sees it, so a truncated or corrupted model is an
//!   error, never a crash.
//! - Load options are checked before anything loads ([`BrainOptions::validate`], and the cache types against the
//!   model's head widths once it is read), so what llama.cpp would refuse (a quantized V cache without flash
//!   attention) is a `ConfigError` naming the option. Left at their defaults they leave llama.cpp's own (f16 cache,
//!   flash attention auto, its load mode), and the automatic parallel count prices cells in the chosen types.
//! - The context borrows the model; both live in this struct on the worker thread, the context declared first so it
//!   is dropped first.
//! - The chat template comes from the GGUF and is rendered as Jinja in Rust, sandboxed ([`crate::template`]: tools,
//!   tool calls and results, template kwargs); a template minijinja cannot compile falls back to llama.cpp's
//!   built-in matcher, and a model without one gets ChatML. Never Jinja in Python.
//! - A conversation ending with an assistant message of text is continued ([`crate::template::split_prefill`]): the
//!   messages before it are rendered with the open assistant turn and its text is appended as it is; the think parser
//!   starts where that text leaves it ([`ThinkStart::after`]), so the answer is the continuation alone, as content
//!   or, when the prefill (or the template) left `<think>` open, as the rest of the thought.
//! - Constraints (JSON schemas, forced tool calls; [`crate::constraint`]) are llguidance matchers in a second sampler
//!   chain, used from the first token of the answer: after the think block closes, so a thinking model thinks
//!   freely. A constrained request to a model whose template can think is pre-opened into its thought (unless
//!   thinking is off), so the model cannot start its answer with an unconstrained `<think>`.
//! - A thought past its `thinking_budget` is closed by feeding the close tag's tokens ([`Generation::take_forced`]);
//!   they go through the text path like sampled ones.
//! - Continuous batching: one context with a sequence id per slot (a unified KV cache of `parallel` × the context
//!   window, so every sequence has a whole window). Each step decodes one batch holding the next token of every
//!   generating sequence plus a prompt chunk of sequences still reading their prompt; while others generate, a
//!   prompt goes in `PROMPT_CHUNK_SHARED`-token chunks so their inter-token latency stays bounded. Each sequence has
//!   its own sampler chain; its text path (stop strings, think parser) is its own `Generation`.
//! - Prefix reuse per slot: the tokens in each sequence's cache are remembered; a request goes to the free slot
//!   sharing the longest prefix with it (then the least recently used) and decodes only what differs. Where the
//!   cache refuses a partial removal, that sequence is removed whole and its prompt decoded in full.
//! - Cancellation is checked for every sequence at every step; a decode failure forgets the whole cache and fails
//!   the running sequences (the worker does that).
//! - `sample()` already accepts the token in llama.cpp (grammar, penalties): it is never accepted twice.
//! - Token biases (`logit_bias`) head every chain, the constrained one too, and rule out the argmax fast path; a
//!   biased id outside the vocabulary fails the request at admission, naming the id.
//! - Speculative decoding by prompt lookup (`spec_type = ngram-simple`, [`crate::draft`]), while at most
//!   [`DRAFT_MAX_SEQUENCES`] sequences generate: a sequence's next token goes into the batch with a draft taken from
//!   its own history, every draft position gets logits, and the sequence keeps the draft while the token picked at
//!   each position (by its own sampler chain, as without a draft) equals it; the first difference is the next token
//!   and the rest of the draft leaves the cache. So the output is the same as without drafts (greedy: token for
//!   token), and any sampling, constraint or penalty works unchanged. Models whose cache cannot cut a sequence's
//!   tail (recurrent, hybrid) never draft.
//! - Logprobs (when a request asks and the model is not thinking) are the model's raw distribution at the token's
//!   position, the log-softmax of its logits before biases, penalties, temperature and constraints (as vLLM reports
//!   by default), computed by [`crate::logprob`] in buffers kept across tokens; forced tokens get them too.
//! - Context shift (`context_overflow = shift`, [`crate::shift`]): a generating sequence whose cache is full loses
//!   the older half of what follows its kept tokens (the system prompt, else the BOS) and goes on, its cache's
//!   positions moved down and `cached` spliced to match; it happens in [`Brain::sample`] once the draft is checked
//!   (only kept draft tokens are in the cache then), and drafts stay inside the window. An overlong prompt loses
//!   blocks from its middle at admission. After a shift the cache past the kept tokens no longer equals a fresh
//!   prefill of `cached`, so it is cut back to them when the request ends (never reused or saved). Models whose
//!   cache cannot shift (recurrent, hybrid, sliding window, multi-section RoPE) get `error`'s behaviour, and an
//!   overlong prompt's error says why.
//! - Conversations outlive the engine when it has a KV store ([`crate::seqstate`] says when states are saved and
//!   restored): restored tokens count as cached ones, and `usage.restored_prompt_tokens` says how many.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::OnceLock;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel, RopeType};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;

use std::collections::VecDeque;

use crate::config::{ContextOverflow, InferenceConfig, Sampling};
use crate::constraint::Compiler;
use crate::draft::{self, DraftLength, SpecType};
use crate::drafter::{DraftLoad, Drafter};
use crate::engine::{Engine, EngineInfo, Seq};
use crate::error::CortexError;
use crate::event::TokenLogprob;
use crate::footprint;
use crate::kvstore::KvStore;
use crate::logprob;
use crate::pipeline::{Flow, Generation, PromptInfo};
use crate::request::{ChatMessage, ChatRequest, RawPrompt, Role};
use crate::shift;
use crate::template::{ChatTemplate, TemplateKwargs, split_prefill};
use crate::think::ThinkStart;
use crate::tools::ToolFormat;

/// Prompt tokens one step may add while other sequences are generating.
const PROMPT_CHUNK_SHARED: usize = 64;
/// Tokens the repetition penalties look back over (llama.cpp's default).
const PENALTY_LAST_N: i32 = 64;
/// `n_gpu_layers` meaning "all of them".
const ALL_LAYERS: u32 = 999;
/// Drafts are made while at most this many sequences generate: on a CPU a batch already holding several sequences'
/// tokens gains little from more, and a rejected draft costs them all.
const DRAFT_MAX_SEQUENCES: usize = 2;

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrainOptions {
    pub model_path: PathBuf,
    /// Layers to offload to the GPU; `None`: all when a GPU backend is compiled in, none otherwise.
    pub gpu_layers: Option<u32>,
    /// CPU threads; `None`: the number of physical cores.
    pub threads: Option<u32>,
    /// Context window in tokens; `None`: the smaller of the model's trained context and 4096.
    pub context_size: Option<u32>,
    /// Tokens per decode call while evaluating a prompt.
    pub batch_size: u32,
    /// Tokens llama.cpp computes at once (its micro-batch, `n_ubatch`), at most `batch_size`; `None`: the batch.
    pub ubatch_size: Option<u32>,
    /// Sequences generated at once; `None`: up to 4, as many as their caches fit in memory.
    pub parallel: Option<u32>,
    /// Element type of the K cache (f16, q8_0, q4_0).
    pub cache_type_k: footprint::CacheType,
    /// Element type of the V cache; a quantized one needs flash attention (on or auto).
    pub cache_type_v: footprint::CacheType,
    /// Flash attention: on, off, or auto (llama.cpp's default: on where the backend supports it).
    pub flash_attention: footprint::FlashAttention,
    /// Map the file instead of reading it into memory (llama.cpp's default).
    pub mmap: bool,
    /// Lock the weights in RAM (no swapping, no compression).
    pub mlock: bool,
    /// Where conversations' caches are saved when the engine stops and restored from later ([`crate::kvstore`]);
    /// `None`: nowhere (the default here: callers choose the folder).
    pub kv_store: Option<PathBuf>,
    /// Bytes the KV store may take on disk, all models together; the least recently used states go first.
    pub kv_store_size: u64,
    /// Speculative decoding (none by default).
    pub spec_type: SpecType,
    /// Most draft tokens per step (llama-server's `--draft-max`).
    pub draft_max: u32,
    /// The draft model of `SpecType::Draft` (llama-server's `--model-draft`).
    pub draft_model: Option<PathBuf>,
}

impl BrainOptions {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            gpu_layers: None,
            threads: None,
            context_size: None,
            batch_size: 512,
            ubatch_size: None,
            parallel: None,
            cache_type_k: footprint::CacheType::F16,
            cache_type_v: footprint::CacheType::F16,
            flash_attention: footprint::FlashAttention::Auto,
            mmap: true,
            mlock: false,
            kv_store: None,
            kv_store_size: 0,
            spec_type: SpecType::None,
            draft_max: 16,
            draft_model: None,
        }
    }

    /// The options the model's memory depends on, as [`footprint::footprint_of`] takes them.
    pub fn sizing(&self) -> footprint::Sizing {
        footprint::Sizing {
            context_size: self.context_size,
            parallel: self.parallel,
            batch_size: self.batch_size,
            ubatch_size: self.ubatch_size,
            cache: self.kv_cache(),
        }
    }

    fn kv_cache(&self) -> footprint::KvCache {
        footprint::KvCache {
            type_k: self.cache_type_k,
            type_v: self.cache_type_v,
            flash_attention: self.flash_attention,
        }
    }

    /// Checks every option (a `CortexError::InvalidConfig` naming the field at fault).
    pub fn validate(&self) -> Result<(), CortexError> {
        if let Some(t) = self.threads
            && !(1..=1024).contains(&t)
        {
            return Err(CortexError::invalid("threads", t, "must be between 1 and 1024"));
        }
        if self.draft_max > draft::DRAFT_MAX_LIMIT {
            return Err(CortexError::invalid("draft_max", self.draft_max, "must be between 0 and 128"));
        }
        match (self.spec_type, &self.draft_model) {
            (SpecType::Draft, None) => {
                return Err(CortexError::invalid(
                    "draft_model",
                    "none",
                    "a GGUF path is needed with spec_type = draft",
                ));
            }
            (SpecType::None | SpecType::NgramSimple, Some(path)) => {
                return Err(CortexError::invalid(
                    "draft_model",
                    path.display(),
                    "is used with spec_type = draft (one speculative method at a time)",
                ));
            }
            _ => {}
        }
        self.sizing().check()
    }
}

fn backend() -> Result<&'static LlamaBackend, CortexError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("RUSTY_GENIUS_LLAMA_LOG").is_none_or(|v| v != "1") {
                backend.void_logs();
            }
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| CortexError::Engine(format!("llama.cpp backend failed to start: {e}")))
}

/// Physical cores (llama.cpp runs best with one thread per core); logical CPUs where that cannot be read.
fn physical_cores() -> u32 {
    let logical = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else { return logical };
    let mut cores = std::collections::HashSet::new();
    let mut physical = "";
    for line in cpuinfo.lines() {
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "physical id" => physical = value.trim(),
                "core id" => {
                    cores.insert((physical, value.trim()));
                }
                _ => {}
            }
        }
    }
    match u32::try_from(cores.len()) {
        Ok(n) if n > 0 => n.min(logical),
        _ => logical,
    }
}

/// The loaded model's cache shape, as [`footprint::KvShape::from_gguf`] reads it from the header.
fn kv_shape(model: &LlamaModel) -> footprint::KvShape {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    let length = |what: &str| {
        model.meta_val_str(&format!("{arch}.attention.{what}_length")).ok().and_then(|v| v.trim().parse::<u64>().ok())
    };
    footprint::KvShape {
        n_layer: u64::from(model.n_layer()),
        n_embd: u64::try_from(model.n_embd()).unwrap_or(0),
        n_head: u64::from(model.n_head()),
        n_head_kv: u64::from(model.n_head_kv()),
        key_length: length("key"),
        value_length: length("value"),
    }
}

/// Whether the model's cache can take a context shift: llama.cpp's `llama_memory_can_shift` is not reachable through
/// llama-cpp-2, so its rules are read from the model ([`shift::cache_can_shift`]).
fn cache_can_shift(model: &LlamaModel) -> bool {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    let window = model.meta_val_str(&format!("{arch}.attention.sliding_window")).ok();
    shift::cache_can_shift(&shift::CacheTraits {
        recurrent: model.is_recurrent() || model.is_hybrid(),
        plain_rope: matches!(model.rope_type(), Some(RopeType::Norm | RopeType::NeoX)),
        sliding_window: window.is_some_and(|w| w.trim().parse::<u64>().map_or(true, |n| n > 0)),
        arch: &arch,
    })
}

/// How many sequences to run when the caller does not say ([`footprint::auto_parallel`] on the model's numbers,
/// with its cells priced in the cache's types).
fn auto_parallel(shape: &footprint::KvShape, cache: footprint::KvCache, model: &LlamaModel, n_ctx: u32) -> u32 {
    footprint::auto_parallel(shape.bytes_per_cell_of(cache), n_ctx, model.size(), footprint::available_memory())
}

/// llama.cpp's flash-attention setting (`enum llama_flash_attn_type`, a C int; llama-cpp-2 takes it raw and does not
/// re-export the bindings' constants).
fn flash_attention_type(setting: footprint::FlashAttention) -> std::os::raw::c_int {
    match setting {
        footprint::FlashAttention::Auto => -1, // LLAMA_FLASH_ATTN_TYPE_AUTO
        footprint::FlashAttention::Off => 0,   // LLAMA_FLASH_ATTN_TYPE_DISABLED
        footprint::FlashAttention::On => 1,    // LLAMA_FLASH_ATTN_TYPE_ENABLED
    }
}

/// llama.cpp's type for a cache type.
fn kv_cache_type(kind: footprint::CacheType) -> KvCacheType {
    match kind {
        footprint::CacheType::F16 => KvCacheType::F16,
        footprint::CacheType::Q8_0 => KvCacheType::Q8_0,
        footprint::CacheType::Q4_0 => KvCacheType::Q4_0,
    }
}

/// Where a sequence is.
enum Phase {
    Idle,
    /// Reading its prompt: `tokens[cached.len()..]` are still to decode.
    Prompt {
        tokens: Vec<LlamaToken>,
        cached_at_start: usize,
        /// Of `cached_at_start`, the tokens restored from the KV store.
        restored_at_start: usize,
        think: ThinkStart,
    },
    /// Generating: the logits for its next token are at `logits_at` in the last batch; `pending` is a token sampled
    /// but not decoded yet (its reader was behind).
    Decode {
        logits_at: Option<i32>,
        pending: Option<LlamaToken>,
        /// Tokens to feed instead of sampling (a thought closed over its budget), first first.
        forced: VecDeque<LlamaToken>,
        /// Draft tokens fed after `pending` (in the batch being decoded, then in the cache until they are checked).
        draft: Vec<LlamaToken>,
    },
}

/// One sequence id of the context.
struct Slot {
    /// The tokens whose keys and values are in the cache for this sequence, in order.
    cached: Vec<LlamaToken>,
    phase: Phase,
    picker: Option<Picker>,
    /// Most tokens this request may fill (prompt and answer).
    limit: usize,
    last_used: u64,
    /// How long its next draft may be (0: it does not draft).
    draft_len: DraftLength,
    /// Tokens kept for good when the cache shifts (`None`: the request does not shift; it ends at `limit`).
    keep: Option<usize>,
    /// A shift happened since the request began: the cache past `keep` is not a fresh prefill of `cached`.
    shifted: bool,
}

/// What one batch entry was for.
enum Entry {
    /// A generating sequence's next token and `drafted` draft tokens after it.
    Token {
        seq: usize,
        drafted: usize,
    },
    Chunk {
        seq: usize,
        len: usize,
    },
}

/// A loaded model and its context, owned by the worker thread.
pub struct Brain {
    // Declared before `model`: they borrow the model and must be dropped first.
    ctx: LlamaContext<'static>,
    /// Made on the first embedding request of a chat model (an embedding model's `ctx` is its embedding context).
    embed_ctx: Option<LlamaContext<'static>>,
    /// Pooling of the model's embeddings (its own; mean for a chat model, whose GGUF names none).
    pooling: LlamaPoolingType,
    /// An embedding model (BERT-like, or a GGUF that names a pooling): it answers embedding requests only.
    embedding_only: bool,
    model: Box<LlamaModel>,
    batch: LlamaBatch<'static>,
    /// llama.cpp's built-in matcher for the GGUF's template: the fallback when minijinja cannot compile it.
    template: Option<LlamaChatTemplate>,
    /// The GGUF's template as Jinja, when minijinja compiles it.
    jinja: Option<ChatTemplate>,
    tool_format: ToolFormat,
    /// Compiles constraints for this vocabulary; built on the first constrained request (it walks the vocabulary).
    compiler: Option<Compiler>,
    slots: Vec<Slot>,
    /// The likeliest tokens at a position, reused for every token's logprobs.
    top: Vec<(usize, f32)>,
    /// The context window of each sequence.
    n_ctx: u32,
    threads: i32,
    n_batch: u32,
    clock: u64,
    /// Where conversations are saved when the engine stops (None: they are not).
    store: Option<KvStore>,
    /// Most draft tokens per step (0: no speculative decoding).
    draft_max: usize,
    /// The cache can take a context shift ([`shift::cache_can_shift`]).
    can_shift: bool,
    /// The draft model, with `SpecType::Draft` (else drafts come from prompt lookup).
    drafter: Option<Drafter>,
}

impl std::fmt::Debug for Brain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached: Vec<usize> = self.slots.iter().map(|s| s.cached.len()).collect();
        f.debug_struct("Brain").field("n_ctx", &self.n_ctx).field("cached", &cached).finish()
    }
}

impl Brain {
    /// Checks and loads a GGUF model and creates its context.
    pub fn load(options: &BrainOptions) -> Result<Self, CortexError> {
        options.validate()?;
        let path = options.model_path.as_path();
        let info = crate::gguf::check(path)?;
        let backend = backend()?;
        let gpu_layers = options.gpu_layers.unwrap_or(if backend.supports_gpu_offload() { ALL_LAYERS } else { 0 });
        let mut params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        // Untouched by default: llama.cpp's own load mode (auto) maps the file.
        if !options.mmap || options.mlock {
            params = params.with_use_mmap(options.mmap).with_use_mlock(options.mlock);
        }
        let model = LlamaModel::load_from_file(backend, path, &params)
            .map_err(|e| CortexError::model_load(path, format!("llama.cpp could not load it ({e})")))?;
        let model = Box::new(model);
        // The same rules as `footprint::footprint`, which estimates this load from the header.
        let trained = info.context_length.unwrap_or_else(|| u64::from(model.n_ctx_train()));
        let n_ctx = footprint::context_size(options.context_size, Some(trained));
        let (pooling, embedding_only) = crate::embedding::pooling_of(&model);
        let cache = options.kv_cache();
        let shape = kv_shape(&model);
        let (key_width, value_width) = shape.head_widths();
        cache.check_heads(key_width, value_width)?;
        let parallel = if embedding_only {
            1
        } else {
            options.parallel.unwrap_or_else(|| auto_parallel(&shape, cache, &model, n_ctx))
        };
        let n_batch = footprint::batch(options.batch_size, parallel, n_ctx);
        let threads = i32::try_from(options.threads.unwrap_or_else(physical_cores)).unwrap_or(1);
        let chat_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx.saturating_mul(parallel)))
            .with_n_seq_max(parallel)
            .with_kv_unified(true)
            .with_n_batch(n_batch)
            .with_n_ubatch(footprint::ubatch(options.ubatch_size, n_batch))
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx_params =
            if embedding_only { crate::embedding::context_params(n_ctx, threads, pooling) } else { chat_params };
        // The cache's types and flash attention hold for either context (an encoder has no cache to type).
        let ctx_params = ctx_params
            .with_type_k(kv_cache_type(cache.type_k))
            .with_type_v(kv_cache_type(cache.type_v))
            .with_flash_attention_policy(flash_attention_type(cache.flash_attention));
        // SAFETY: the model is boxed, so its address is stable for the Box's life; it is never moved out, replaced
        // or mutably borrowed while the context exists; the context is declared before the model in `Brain`, so it
        // is dropped first; neither leaves this struct. The 'static lifetime is therefore never observed past the
        // model's real life.
        let model_ref: &'static LlamaModel = unsafe { &*std::ptr::from_ref::<LlamaModel>(&model) };
        let ctx = model_ref
            .new_context(backend, ctx_params)
            .map_err(|e| CortexError::model_load(path, format!("llama.cpp could not create a context ({e})")))?;
        let template = model.chat_template(None).ok();
        let source = template.as_ref().and_then(|t| t.to_str().ok()).unwrap_or_default().to_owned();
        let vocab = model.vocab();
        let special = |t: LlamaToken| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
        let jinja = if source.is_empty() {
            None
        } else {
            ChatTemplate::new(&source, &special(vocab.bos()), &special(vocab.eos())).ok()
        };
        let tool_format = ToolFormat::detect(&source);
        // A draft's rejected tail is cut from the cache; a recurrent state cannot be cut back.
        let draft_max = match options.spec_type {
            SpecType::NgramSimple | SpecType::Draft
                if !embedding_only && !model.is_recurrent() && !model.is_hybrid() =>
            {
                options.draft_max as usize
            }
            _ => 0,
        };
        let drafter = match (&options.draft_model, draft_max) {
            (Some(draft_path), 1..) => Some(Drafter::load(
                backend,
                &model,
                &DraftLoad { path: draft_path, gpu_layers, parallel, n_ctx, threads },
            )?),
            _ => None,
        };
        let can_shift = !embedding_only && cache_can_shift(&model);
        let slots = (0..parallel)
            .map(|_| Slot {
                cached: Vec::new(),
                phase: Phase::Idle,
                picker: None,
                limit: 0,
                last_used: 0,
                draft_len: DraftLength::new(draft_max),
                keep: None,
                shifted: false,
            })
            .collect();
        let store = match &options.kv_store {
            Some(root) if !embedding_only && options.kv_store_size > 0 => {
                crate::seqstate::open(root, options.kv_store_size, path, &info, cache, model.n_vocab())
            }
            _ => None,
        };
        Ok(Self {
            ctx,
            embed_ctx: None,
            pooling,
            embedding_only,
            threads,
            model,
            batch: LlamaBatch::new(n_batch as usize, 1),
            template,
            jinja,
            tool_format,
            compiler: None,
            slots,
            top: Vec::new(),
            n_ctx,
            n_batch,
            clock: 0,
            store,
            draft_max,
            drafter,
            can_shift,
        })
    }

    /// The conversation as the model expects it, ending with an open assistant turn, then the assistant prefill when
    /// the messages end with one ([`split_prefill`]: the model continues that text).
    fn render_chat(&self, messages: &[ChatMessage], config: &InferenceConfig) -> Result<String, CortexError> {
        let (mut prompt, prefill) = self.render_parts(messages, config)?;
        prompt.push_str(prefill.unwrap_or_default());
        Ok(prompt)
    }

    /// The prompt in two parts: the messages before an assistant prefill, ending with the open assistant turn, and
    /// the prefill to append to it (`None`: no prefill).
    fn render_parts<'m>(
        &self,
        messages: &'m [ChatMessage],
        config: &InferenceConfig,
    ) -> Result<(String, Option<&'m str>), CortexError> {
        let (messages, prefill) = split_prefill(messages);
        Ok((self.render_open(messages, config)?, prefill))
    }

    /// `messages` ending with an open assistant turn: the GGUF's Jinja template (with the offered tools and the
    /// reasoning kwargs), else llama.cpp's matcher, else ChatML.
    fn render_open(&self, messages: &[ChatMessage], config: &InferenceConfig) -> Result<String, CortexError> {
        if let Some(jinja) = &self.jinja {
            let kwargs = TemplateKwargs {
                enable_thinking: config.reasoning.enabled,
                reasoning_effort: config.reasoning.effort.clone(),
            };
            return jinja.render(messages, config.output.offered_tools(), true, &kwargs);
        }
        let tools = config.output.offered_tools();
        if !tools.is_empty() {
            // llama.cpp's matcher cannot show tools: they go in the system message, as for a template without them.
            return self.render_builtin(&crate::template::with_tool_instructions(messages, tools));
        }
        self.render_builtin(messages)
    }

    fn render_builtin(&self, messages: &[ChatMessage]) -> Result<String, CortexError> {
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_owned(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CortexError::InvalidRequest("a message contains a NUL character".into()))?;
        if let Some(template) = &self.template
            && let Ok(prompt) = self.model.apply_chat_template(template, &chat, true)
        {
            return Ok(prompt);
        }
        let chatml = LlamaChatTemplate::new("chatml").map_err(|e| CortexError::Engine(e.to_string()))?;
        self.model
            .apply_chat_template(&chatml, &chat, true)
            .map_err(|e| CortexError::Engine(format!("could not apply the ChatML template: {e}")))
    }

    /// The constrained sampler for `config`, if its answer is constrained.
    fn constraint(&mut self, config: &InferenceConfig) -> Result<Option<LlamaSampler>, CortexError> {
        let Some((grammar, source)) = crate::constraint::grammar(&config.output, self.tool_format)? else {
            return Ok(None);
        };
        if self.compiler.is_none() {
            self.compiler = Some(Compiler::new(LlamaSampler::llguidance_tok_env(&self.model))?);
        }
        let compiler = self.compiler.as_ref().ok_or_else(|| CortexError::Engine("no constraint compiler".into()))?;
        let matcher = compiler.matcher(grammar, source)?;
        Ok(Some(LlamaSampler::from(matcher)))
    }

    fn tokenize_prompt(&self, prompt: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        // A template that writes the BOS text itself plus `add_special` gives two BOS tokens; keep one.
        if tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
            tokens.remove(0);
        }
        tokens
    }

    /// The tokens of a chat request's prompt, and where it leaves the think parser. A constrained request to a model
    /// whose template can think is pre-opened into its thought (see the module rules), unless it has an assistant
    /// prefill: the prefill is the start of the answer the model continues, so `<think>` is not put before it (the
    /// constraint applies to the continuation, from its first token when the prefill leaves no thought open). The
    /// think state is the template's (`<think>` at the end of the open turn) carried through the prefill's text
    /// ([`ThinkStart::after`]).
    fn chat_tokens(
        &self,
        messages: &[ChatMessage],
        config: &InferenceConfig,
        constrained: bool,
    ) -> Result<(Vec<LlamaToken>, ThinkStart), CortexError> {
        let (mut prompt, prefill) = self.render_parts(messages, config)?;
        let prefill = prefill.filter(|text| !text.is_empty());
        let thinking_template = self.jinja.as_ref().is_some_and(ChatTemplate::supports_thinking);
        if prefill.is_none()
            && constrained
            && thinking_template
            && config.reasoning.enabled != Some(false)
            && !prompt.trim_end().ends_with("<think>")
        {
            prompt.push_str("<think>\n");
        }
        let mut think = ThinkStart::pre_opened(prompt.trim_end().ends_with("<think>"));
        if let Some(text) = prefill {
            think = think.after(text);
            prompt.push_str(text);
        }
        Ok((self.tokenize_prompt(&prompt), think))
    }

    /// [`Self::chat_tokens`], leaving out the oldest turns while the prompt does not fit `limit` when the request's
    /// `context_overflow` says so (their count goes to `out`'s usage). What still does not fit is the caller's error.
    fn fitting_chat_tokens(
        &self,
        messages: &[ChatMessage],
        config: &InferenceConfig,
        constrained: bool,
        limit: usize,
        out: &mut Generation,
    ) -> Result<(Vec<LlamaToken>, ThinkStart), CortexError> {
        let (mut tokens, mut think) = self.chat_tokens(messages, config, constrained)?;
        if tokens.len() < limit || config.behavior.context_overflow != ContextOverflow::DropOldestTurns {
            return Ok((tokens, think));
        }
        let mut kept = messages.to_vec();
        let mut dropped = 0;
        while tokens.len() >= limit {
            let Some((fewer, n)) = crate::template::without_oldest_turn(&kept) else { break };
            kept = fewer;
            dropped += n;
            (tokens, think) = self.chat_tokens(&kept, config, constrained)?;
        }
        out.dropped_messages(dropped);
        Ok((tokens, think))
    }

    /// The tokens a shift keeps of `tokens` (before [`shift::keep`] caps them): those of the conversation's leading
    /// system messages as the template renders them (where that rendering and the whole prompt's tokens agree), else
    /// the BOS token, if the prompt starts with one. A raw prompt (`messages` empty) keeps its BOS.
    fn wanted_keep(&self, messages: &[ChatMessage], config: &InferenceConfig, tokens: &[LlamaToken]) -> usize {
        let bos = usize::from(tokens.first() == Some(&self.model.vocab().bos()));
        let system = messages.iter().take_while(|m| m.role == Role::System).count();
        if system == 0 {
            return bos;
        }
        // Some templates refuse a conversation without a user message: then only the BOS is kept.
        match self.chat_tokens(&messages[..system], config, false) {
            Ok((head, _)) => shared_prefix(&head, tokens).max(bos),
            Err(_) => bos,
        }
    }

    /// Fits an overlong prompt for a shifting request: blocks from after the kept tokens go ([`shift::prompt_cut`]),
    /// counted in `out`'s usage. Returns the tokens kept for good, `None` when the request does not shift. A request
    /// that asks to shift a model that cannot gets `error`'s behaviour: its overlong prompt fails, saying why.
    fn fit_shifting(
        &self,
        request: &ChatRequest,
        tokens: &mut Vec<LlamaToken>,
        limit: usize,
        out: &mut Generation,
    ) -> Result<Option<usize>, CortexError> {
        let config = &request.config;
        if config.behavior.context_overflow != ContextOverflow::Shift {
            return Ok(None);
        }
        if !self.can_shift {
            if tokens.len() >= limit {
                return Err(CortexError::ContextOverflow {
                    prompt_tokens: tokens.len(),
                    context_size: limit,
                    note: " (context_overflow = shift is not available: this model's cache cannot be shifted, as \
                           with recurrent, hybrid, sliding-window or multi-section RoPE models)",
                });
            }
            return Ok(None);
        }
        let messages = if request.prompt.is_some() { &[][..] } else { &request.messages[..] };
        let keep = shift::keep(self.wanted_keep(messages, config, tokens), limit);
        let Some(cut) = shift::prompt_cut(tokens.len(), keep, limit) else { return Ok(None) };
        if cut > 0 {
            tokens.drain(keep..keep + cut);
            out.shifted(cut);
        }
        if config.behavior.max_tokens.is_none() {
            out.cap_tokens(shift::token_cap(limit));
        }
        Ok(Some(keep))
    }

    /// The tokens of a raw prompt: its text as it is, or with a suffix, the model's fill-in-the-middle form
    /// (`[BOS] <fim_pre> text <fim_suf> suffix <fim_mid>`, as llama-server's infill builds it).
    fn raw_tokens(&self, raw: &RawPrompt) -> Result<Vec<LlamaToken>, CortexError> {
        let Some(suffix) = &raw.suffix else { return Ok(self.tokenize_prompt(&raw.text)) };
        let vocab = self.model.vocab();
        let (pre, suf, mid) = (vocab.fim_pre(), vocab.fim_suf(), vocab.fim_mid());
        if pre.0 < 0 || suf.0 < 0 || mid.0 < 0 {
            return Err(crate::engine::no_fill_in_middle());
        }
        let mut tokens = Vec::new();
        if vocab.should_add_bos() {
            tokens.push(vocab.bos());
        }
        tokens.push(pre);
        tokens.extend(vocab.tokenize(raw.text.as_bytes(), false, false));
        tokens.push(suf);
        tokens.extend(vocab.tokenize(suffix.as_bytes(), false, false));
        tokens.push(mid);
        Ok(tokens)
    }

    fn has_fim(&self) -> bool {
        let vocab = self.model.vocab();
        vocab.fim_pre().0 >= 0 && vocab.fim_suf().0 >= 0 && vocab.fim_mid().0 >= 0
    }

    /// The context embeddings are made in: the model's own for an embedding model, else one made for them.
    fn embedding_context(&mut self) -> Result<&mut LlamaContext<'static>, CortexError> {
        if self.embedding_only {
            return Ok(&mut self.ctx);
        }
        if self.embed_ctx.is_none() {
            let params = crate::embedding::context_params(self.n_ctx, self.threads, self.pooling);
            // SAFETY: as in `load`: the boxed model outlives both contexts, which are declared before it.
            let model_ref: &'static LlamaModel = unsafe { &*std::ptr::from_ref::<LlamaModel>(&self.model) };
            let ctx = model_ref
                .new_context(backend()?, params)
                .map_err(|e| CortexError::Engine(format!("llama.cpp could not create an embedding context ({e})")))?;
            self.embed_ctx = Some(ctx);
        }
        self.embed_ctx.as_mut().ok_or_else(|| CortexError::Engine("no embedding context".into()))
    }

    /// Where a request goes when the KV store holds more of its beginning than the `best` free slot: that state,
    /// restored into the least recently used free slot ([`crate::seqstate`]). Returns the slot and whether its cache
    /// now comes from the store; `best`, untouched, when nothing was restored.
    fn restore(&mut self, free: &[usize], best: usize, tokens: &[LlamaToken]) -> (usize, bool) {
        let Some(store) = self.store.as_mut() else { return (best, false) };
        let have = shared_prefix(&self.slots[best].cached, tokens);
        let slot = free.iter().copied().min_by_key(|&s| (self.slots[s].last_used, s)).unwrap_or(best);
        let window = self.n_ctx as usize;
        match crate::seqstate::restore(&mut self.ctx, store, seq_id(slot), tokens, have, window) {
            Some(cached) => {
                let restored = !cached.is_empty();
                self.slots[slot].cached = cached;
                (slot, restored)
            }
            None => (best, false),
        }
    }

    /// Keeps the longest prefix of `slot`'s cache shared with `tokens` (at least one token is always decoded, for
    /// logits). Where the cache refuses to cut a sequence in the middle, the sequence is removed whole.
    fn reuse_prefix(&mut self, slot: usize, tokens: &[LlamaToken]) -> Result<(), CortexError> {
        let cached = &mut self.slots[slot].cached;
        let keep = shared_prefix(cached, tokens).min(tokens.len().saturating_sub(1));
        cut_tail(&mut self.ctx, slot, cached, keep)
    }

    /// After a failed decode the cache may hold part of the batch: forget everything rather than trust it.
    fn forget_all(&mut self) {
        self.ctx.clear_kv_cache();
        for slot in &mut self.slots {
            slot.cached.clear();
            slot.phase = Phase::Idle;
        }
    }

    /// Phase A of a step: every generating sequence with fresh logits picks its next token and hands it on; one
    /// that was fed a draft keeps the part of it the model picks too ([`Self::verify`]), and may draft again.
    fn sample(&mut self, seqs: &mut [Seq]) {
        let generating = seqs
            .iter()
            .filter(|s| s.done.is_none() && matches!(self.slots[s.slot].phase, Phase::Decode { .. }))
            .count();
        let drafting = generating <= DRAFT_MAX_SEQUENCES;
        let mut piece = Vec::with_capacity(32);
        for seq in seqs.iter_mut().filter(|s| s.done.is_none()) {
            if seq.out.cancel_token().is_cancelled() {
                seq.done = Some(Ok(())); // The Generation reports it as cancelled.
                continue;
            }
            let slot = &mut self.slots[seq.slot];
            let Phase::Decode { logits_at, draft, .. } = &mut slot.phase else { continue };
            let Some(at) = logits_at.take() else { continue };
            let drafted = std::mem::take(draft);
            let (next, kept) = self.verify(seq, at, &drafted, &mut piece);
            let slot = &mut self.slots[seq.slot];
            // The draft's tail the model did not pick leaves the cache (it is the last thing in it); where the cache
            // refuses the cut, the sequence lost its cache and cannot go on.
            let keep = slot.cached.len() - (drafted.len() - kept);
            let cut = cut_tail(&mut self.ctx, seq.slot, &mut slot.cached, keep);
            if (cut.is_err() || slot.cached.len() != keep) && seq.done.is_none() {
                seq.done = Some(Err(CortexError::Engine(format!(
                    "llama.cpp could not cut a draft from sequence {}",
                    seq.slot
                ))));
                continue;
            }
            if !drafted.is_empty() {
                slot.draft_len.record(drafted.len(), kept);
                seq.out.drafted(drafted.len(), kept);
            }
            let (Some(token), None) = (next, &seq.done) else { continue };
            // A full cache shifts here, where no unchecked draft is left in it.
            if slot.cached.len() >= slot.limit {
                let shifted = slot.keep.and_then(|keep| shift::plan(slot.cached.len(), keep));
                let Some(plan) = shifted else {
                    let _ = seq.out.context_full();
                    seq.done = Some(Ok(()));
                    continue;
                };
                if let Err(e) = shift_cache(&mut self.ctx, seq.slot, plan, slot.cached.len()) {
                    seq.done = Some(Err(e));
                    continue;
                }
                slot.cached.drain(plan.keep..plan.keep + plan.discard);
                slot.shifted = true;
                seq.out.shifted(plan.discard);
            }
            let Phase::Decode { pending, forced, draft, .. } = &mut slot.phase else { continue };
            *pending = Some(token);
            // Room for the token and a draft after it, inside the request's limit and the batch.
            let room = slot.limit.saturating_sub(slot.cached.len() + 2).min(self.n_batch as usize / 4);
            let length = slot.draft_len.get().min(room);
            if drafting && forced.is_empty() && length > 0 {
                *draft = match self.drafter.as_mut() {
                    Some(drafter) => drafter.propose(seq.slot, &slot.cached, token, length),
                    None => draft::lookup(&slot.cached, token, length),
                };
            }
        }
    }

    /// Picks `seq`'s tokens from the logits at `at`, `at + 1`, ... while each equals the next of `drafted` (which
    /// follow the last token fed, in the cache): every picked token goes on to the reader. Returns the token to feed
    /// next (the first that differs from the draft, or the one after the whole draft), `None` when the sequence
    /// ended, and how many draft tokens were kept.
    fn verify(
        &mut self,
        seq: &mut Seq,
        at: i32,
        drafted: &[LlamaToken],
        piece: &mut Vec<u8>,
    ) -> (Option<LlamaToken>, usize) {
        let Self { ctx, model, slots, top, .. } = self;
        let vocab = model.vocab();
        let slot = &mut slots[seq.slot];
        let Phase::Decode { forced, .. } = &mut slot.phase else { return (None, 0) };
        let mut kept = 0;
        loop {
            // The cache holds the draft; only what is kept of it counts. A shifting sequence picks on: `sample` makes
            // room for the token before it is fed.
            if slot.keep.is_none() && slot.cached.len() - (drafted.len() - kept) >= slot.limit {
                let _ = seq.out.context_full();
                seq.done = Some(Ok(()));
                return (None, kept);
            }
            let Some(picker) = slot.picker.as_mut() else { return (None, kept) };
            if let Some(text) = seq.out.take_forced() {
                forced.extend(vocab.tokenize(text.as_bytes(), false, true));
            }
            let index = at + pos_i32(kept);
            let token = match forced.pop_front() {
                Some(token) => {
                    picker.accept(token);
                    token
                }
                None => picker.pick(ctx, index, seq.out.in_thought()),
            };
            if vocab.is_eog(token) {
                seq.done = Some(Ok(()));
                return (None, kept);
            }
            piece.clear();
            vocab.token_to_piece_into(token, piece, false, None);
            let flow = match seq.out.logprobs_wanted() {
                Some(k) => {
                    let logprob = token_logprob(ctx.get_logits_ith(index), token, piece, k, top, |t, buf| {
                        vocab.token_to_piece_into(t, buf, false, None);
                    });
                    seq.out.token_with_logprob(piece, logprob)
                }
                None => seq.out.token(piece),
            };
            if flow == Flow::Stop {
                seq.done = Some(Ok(()));
                return (None, kept);
            }
            if drafted.get(kept) == Some(&token) {
                kept += 1;
            } else {
                return (Some(token), kept);
            }
        }
    }

    /// Phase B: the next token of every generating sequence whose reader keeps up, then prompt chunks, oldest
    /// request first, in the room left.
    fn fill_batch(&mut self, seqs: &[Seq]) -> Result<Vec<Entry>, CortexError> {
        self.batch.clear();
        let mut entries = Vec::with_capacity(seqs.len());
        let mut decoding = 0;
        for (i, seq) in seqs.iter().enumerate().filter(|(_, s)| s.active()) {
            let slot = &self.slots[seq.slot];
            if let Phase::Decode { pending: Some(token), draft, .. } = &slot.phase {
                let pos = slot.cached.len();
                self.batch.add(*token, pos_i32(pos), &[seq_id(seq.slot)], true).map_err(engine_error)?;
                for (k, &t) in draft.iter().enumerate() {
                    self.batch.add(t, pos_i32(pos + 1 + k), &[seq_id(seq.slot)], true).map_err(engine_error)?;
                }
                entries.push(Entry::Token { seq: i, drafted: draft.len() });
                decoding += 1 + draft.len();
            }
        }
        let mut room = (self.n_batch as usize).saturating_sub(decoding);
        if decoding > 0 {
            room = room.min(PROMPT_CHUNK_SHARED);
        }
        for (i, seq) in seqs.iter().enumerate().filter(|(_, s)| s.done.is_none()) {
            if room == 0 {
                break;
            }
            let slot = &self.slots[seq.slot];
            let Phase::Prompt { tokens, .. } = &slot.phase else { continue };
            let start = slot.cached.len();
            let len = room.min(tokens.len() - start);
            for (pos, &token) in tokens.iter().enumerate().skip(start).take(len) {
                let last = pos + 1 == tokens.len();
                self.batch.add(token, pos_i32(pos), &[seq_id(seq.slot)], last).map_err(engine_error)?;
            }
            entries.push(Entry::Chunk { seq: i, len });
            room -= len;
        }
        Ok(entries)
    }

    /// Phase D: records what the decoded batch put in each sequence's cache and where its logits are.
    fn decoded(&mut self, seqs: &mut [Seq], entries: Vec<Entry>) {
        let tool_format = self.tool_format;
        let mut index = 0i32;
        for entry in entries {
            match entry {
                Entry::Token { seq, drafted } => {
                    let slot = &mut self.slots[seqs[seq].slot];
                    if let Phase::Decode { logits_at, pending, draft, .. } = &mut slot.phase
                        && let Some(token) = pending.take()
                    {
                        slot.cached.push(token);
                        // In the cache from here on; `sample` checks them against the logits that follow.
                        slot.cached.extend_from_slice(draft);
                        *logits_at = Some(index);
                    }
                    index += 1 + pos_i32(drafted);
                }
                Entry::Chunk { seq, len } => {
                    let slot = &mut self.slots[seqs[seq].slot];
                    index += pos_i32(len);
                    let Phase::Prompt { tokens, cached_at_start, restored_at_start, think } = &slot.phase else {
                        continue;
                    };
                    let start = slot.cached.len();
                    slot.cached.extend_from_slice(&tokens[start..start + len]);
                    if slot.cached.len() == tokens.len() {
                        seqs[seq].out.prompt_processed(PromptInfo {
                            prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                            cached_tokens: u32::try_from(*cached_at_start).unwrap_or(u32::MAX),
                            restored_tokens: u32::try_from(*restored_at_start).unwrap_or(u32::MAX),
                            think: *think,
                            tool_format: Some(tool_format),
                        });
                        slot.phase = Phase::Decode {
                            logits_at: Some(index - 1),
                            pending: None,
                            forced: VecDeque::new(),
                            draft: Vec::new(),
                        };
                    }
                }
            }
        }
    }
}

/// The logprob of `token` (whose text is `piece`) and of the `k` likeliest tokens in `logits`; `top` is a buffer
/// kept across calls, `piece_of` appends a token's text to a buffer.
fn token_logprob(
    logits: &[f32],
    token: LlamaToken,
    piece: &[u8],
    k: u32,
    top: &mut Vec<(usize, f32)>,
    piece_of: impl Fn(LlamaToken, &mut Vec<u8>),
) -> TokenLogprob {
    let lse = logprob::log_sum_exp(logits);
    let chosen = usize::try_from(token.0).ok().and_then(|i| logits.get(i)).copied().unwrap_or(f32::NEG_INFINITY);
    logprob::top_k(logits, k as usize, top);
    let alternatives = top
        .iter()
        .map(|&(id, logit)| {
            let mut bytes = Vec::with_capacity(16);
            piece_of(LlamaToken(i32::try_from(id).unwrap_or(0)), &mut bytes);
            (String::from_utf8_lossy(&bytes).into_owned(), bytes, logprob::logprob(logit, lse))
        })
        .collect();
    TokenLogprob {
        token: String::from_utf8_lossy(piece).into_owned(),
        bytes: piece.to_vec(),
        logprob: logprob::logprob(chosen, lse),
        top: alternatives,
    }
}

/// Applies `plan` to sequence `slot`'s cache holding `len` tokens: the discarded positions leave it and those after
/// them move down (llama.cpp re-rotates their keys on the next decode).
fn shift_cache(ctx: &mut LlamaContext<'_>, slot: usize, plan: shift::Shift, len: usize) -> Result<(), CortexError> {
    let failed = || CortexError::Engine(format!("llama.cpp could not shift sequence {slot}"));
    let pos = |p: usize| u32::try_from(p).map_err(|_| failed());
    let (start, end) = (pos(plan.keep)?, pos(plan.keep + plan.discard)?);
    let seq = u32::try_from(slot).map_err(|_| failed())?;
    if ctx.clear_kv_cache_seq(Some(seq), Some(start), Some(end)).ok() != Some(true) {
        return Err(failed());
    }
    let delta = -i32::try_from(plan.discard).map_err(|_| failed())?;
    ctx.kv_cache_seq_add(seq_id(slot), Some(end), Some(pos(len)?), delta).map_err(|_| failed())
}

/// Cuts sequence `slot`'s cache back to its first `keep` tokens (`cached` lists them). Where the cache refuses to cut
/// a sequence in the middle, the sequence is removed whole (`cached` emptied); an error when even that fails.
fn cut_tail(
    ctx: &mut LlamaContext<'_>,
    slot: usize,
    cached: &mut Vec<LlamaToken>,
    keep: usize,
) -> Result<(), CortexError> {
    if keep >= cached.len() {
        return Ok(());
    }
    let seq = u32::try_from(slot).ok();
    let cut = u32::try_from(keep).ok().and_then(|p0| ctx.clear_kv_cache_seq(seq, Some(p0), None).ok());
    if cut == Some(true) {
        cached.truncate(keep);
        return Ok(());
    }
    cached.clear();
    if ctx.clear_kv_cache_seq(seq, None, None).ok() != Some(true) {
        return Err(CortexError::Engine(format!("llama.cpp could not clear sequence {slot}")));
    }
    Ok(())
}

fn shared_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn seq_id(slot: usize) -> i32 {
    // Slots are fewer than 256 (checked in BrainOptions::validate).
    i32::try_from(slot).unwrap_or(i32::MAX)
}

fn pos_i32(pos: usize) -> i32 {
    // Positions are bounded by n_ctx (a u32 checked to be at most 2^20).
    i32::try_from(pos).unwrap_or(i32::MAX)
}

fn engine_error(e: impl std::fmt::Display) -> CortexError {
    CortexError::Engine(e.to_string())
}

/// How the next token is picked.
enum Picker {
    /// Plain greedy (temperature 0, no grammar, no penalties, no constraint): an argmax over the logits. llama.cpp's
    /// greedy sampler first copies all `n_vocab` logits into a candidate array every token; the argmax reads them in
    /// place.
    Argmax,
    /// `free` picks while the model thinks (and always, without a constraint); `constrained` (the llguidance matcher
    /// ahead of the same sampling) picks the answer.
    Chain { free: LlamaSampler, constrained: Option<LlamaSampler> },
}

impl Picker {
    fn new(sampling: &Sampling, model: &LlamaModel, constraint: Option<LlamaSampler>) -> Result<Self, CortexError> {
        let plain_greedy = sampling.temperature <= 0.0
            && sampling.grammar.is_none()
            && constraint.is_none()
            && sampling.logit_bias.is_empty()
            && sampling.repeat_penalty == 1.0
            && sampling.frequency_penalty == 0.0
            && sampling.presence_penalty == 0.0;
        if plain_greedy {
            return Ok(Self::Argmax);
        }
        let constrained = constraint.map(|matcher| sampler(sampling, model, Some(matcher))).transpose()?;
        Ok(Self::Chain { free: sampler(sampling, model, None)?, constrained })
    }

    /// The next token from the logits at batch index `at` (for a chain, also accepted into its state). `thinking`:
    /// the model is inside a thought, so the answer's constraint does not apply yet.
    fn pick(&mut self, ctx: &LlamaContext<'_>, at: i32, thinking: bool) -> LlamaToken {
        match self {
            // Ties go to the lowest id, as in llama.cpp's greedy sampler.
            Self::Argmax => {
                let logits = ctx.get_logits_ith(at);
                let best = logits.iter().enumerate().fold(0, |best, (i, &l)| if l > logits[best] { i } else { best });
                LlamaToken(i32::try_from(best).unwrap_or(0))
            }
            Self::Chain { constrained: Some(chain), .. } if !thinking => chain.sample(ctx, at),
            Self::Chain { free, .. } => free.sample(ctx, at),
        }
    }

    /// Records a token fed without sampling (penalties see it; a constraint is not active inside a thought).
    fn accept(&mut self, token: LlamaToken) {
        if let Self::Chain { free, .. } = self {
            free.accept(token);
        }
    }
}

/// The sampler chain of `sampling`: the token biases first (so every later stage sees them), then the answer's
/// `constraint` when there is one, the grammar, the penalties, and the choice itself.
fn sampler(
    sampling: &Sampling,
    model: &LlamaModel,
    constraint: Option<LlamaSampler>,
) -> Result<LlamaSampler, CortexError> {
    let mut chain = Vec::new();
    if !sampling.logit_bias.is_empty() {
        let biases: Vec<LlamaLogitBias> =
            sampling.logit_bias.iter().map(|&(token, bias)| LlamaLogitBias::new(LlamaToken(token), bias)).collect();
        chain.push(LlamaSampler::logit_bias(model.n_vocab(), &biases));
    }
    chain.extend(constraint);
    if let Some(grammar) = &sampling.grammar {
        let g = LlamaSampler::grammar(model, grammar, "root").map_err(|e| CortexError::InvalidConfig {
            field: "grammar",
            value: format!("({e})"),
            expected: "must be a valid GBNF grammar with a `root` rule",
        })?;
        chain.push(g);
    }
    if sampling.repeat_penalty != 1.0 || sampling.frequency_penalty != 0.0 || sampling.presence_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            PENALTY_LAST_N,
            sampling.repeat_penalty,
            sampling.frequency_penalty,
            sampling.presence_penalty,
        ));
    }
    if sampling.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if sampling.top_k > 0 {
            chain.push(LlamaSampler::top_k(i32::try_from(sampling.top_k).unwrap_or(i32::MAX)));
        }
        if sampling.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(sampling.top_p, 1));
        }
        if sampling.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(sampling.min_p, 1));
        }
        chain.push(LlamaSampler::temp(sampling.temperature));
        // llama.cpp draws a random seed for LLAMA_DEFAULT_SEED (u32::MAX).
        chain.push(LlamaSampler::dist(sampling.seed.unwrap_or(u32::MAX)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

impl Engine for Brain {
    fn name(&self) -> &str {
        "brain"
    }

    fn parallel(&self) -> usize {
        self.slots.len()
    }

    fn admit(&mut self, request: &ChatRequest, free: &[usize], out: &mut Generation) -> Result<usize, CortexError> {
        let config = &request.config;
        if self.embedding_only {
            return Err(CortexError::InvalidRequest(
                "this is an embedding model: it makes embeddings (/v1/embeddings, Genius.embed), not chat or \
                 completions; load a chat model for those"
                    .into(),
            ));
        }
        config.sampling.check_vocab(self.model.n_vocab())?;
        let constraint = self.constraint(config)?;
        let limit = config.behavior.context_size.map_or(self.n_ctx, |n| n.min(self.n_ctx)) as usize;
        let (mut tokens, think) = match &request.prompt {
            Some(raw) => (self.raw_tokens(raw)?, ThinkStart::default()),
            None => self.fitting_chat_tokens(&request.messages, config, constraint.is_some(), limit, out)?,
        };
        if tokens.is_empty() {
            // A decode of no tokens fails in llama.cpp, and a failed decode costs every running sequence its cache.
            return Err(CortexError::InvalidRequest("the prompt is empty: send some text to continue".into()));
        }
        let keep = self.fit_shifting(request, &mut tokens, limit, out)?;
        if tokens.len() >= limit {
            return Err(CortexError::ContextOverflow { prompt_tokens: tokens.len(), context_size: limit, note: "" });
        }
        let picker = Picker::new(&config.sampling, &self.model, constraint)?;
        // The free slot holding the longest beginning of this conversation; then the least recently used.
        let slot = free
            .iter()
            .copied()
            .max_by_key(|&s| {
                let slot = &self.slots[s];
                (shared_prefix(&slot.cached, &tokens), std::cmp::Reverse(slot.last_used), std::cmp::Reverse(s))
            })
            .ok_or_else(|| CortexError::Engine("no free slot".into()))?;
        let (slot, restored) = self.restore(free, slot, &tokens);
        self.reuse_prefix(slot, &tokens)?;
        self.clock += 1;
        let entry = &mut self.slots[slot];
        entry.last_used = self.clock;
        entry.limit = limit;
        entry.draft_len = DraftLength::new(self.draft_max);
        entry.keep = keep;
        entry.shifted = false;
        entry.picker = Some(picker);
        let cached = entry.cached.len();
        let restored = if restored { cached } else { 0 };
        out.admitted(tokens.len(), cached, restored);
        entry.phase = Phase::Prompt { cached_at_start: cached, restored_at_start: restored, think, tokens };
        Ok(slot)
    }

    fn step(&mut self, seqs: &mut [Seq]) -> Result<(), CortexError> {
        self.sample(seqs);
        let entries = self.fill_batch(seqs)?;
        if entries.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            self.forget_all();
            return Err(CortexError::Engine(format!("llama.cpp decode failed: {e}")));
        }
        self.decoded(seqs, entries);
        Ok(())
    }

    fn release(&mut self, slot: usize) {
        let index = slot;
        let slot = &mut self.slots[slot];
        slot.phase = Phase::Idle;
        slot.picker = None;
        // A shifted cache past the kept tokens was computed beside tokens it no longer holds: a later request must
        // not reuse it as if it were a fresh prefill, nor the KV store save it.
        if std::mem::take(&mut slot.shifted) {
            // Where even clearing the whole sequence fails, the next decode's failure forgets the cache.
            let _ = cut_tail(&mut self.ctx, index, &mut slot.cached, slot.keep.unwrap_or(0));
        }
        slot.keep = None;
    }

    fn persist(&mut self) {
        let Some(store) = self.store.as_mut() else { return };
        let mut keep: Vec<usize> =
            (0..self.slots.len()).filter(|&s| self.slots[s].cached.len() >= crate::seqstate::MIN_SAVE_TOKENS).collect();
        keep.sort_by_key(|&s| self.slots[s].last_used);
        for s in keep {
            crate::seqstate::save(&self.ctx, store, seq_id(s), &self.slots[s].cached);
        }
    }

    fn info(&self) -> EngineInfo {
        EngineInfo {
            context_size: self.n_ctx,
            vocab_size: u32::try_from(self.model.n_vocab()).unwrap_or(0),
            embedding_size: u32::try_from(self.model.n_embd_out()).unwrap_or(0),
            pooling: crate::embedding::pooling_name(self.pooling),
            embedding_only: self.embedding_only,
            fill_in_middle: self.has_fim(),
        }
    }

    fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>, CortexError> {
        Ok(self.model.vocab().tokenize(text.as_bytes(), add_special, parse_special).into_iter().map(|t| t.0).collect())
    }

    fn pieces(&self, ids: &[i32]) -> Result<Vec<Vec<u8>>, CortexError> {
        let vocab = self.model.vocab();
        let n_vocab = self.model.n_vocab();
        ids.iter()
            .map(|&id| {
                if !(0..n_vocab).contains(&id) {
                    return Err(CortexError::InvalidRequest(format!(
                        "token id {id} is not in this model's vocabulary (0..{n_vocab})"
                    )));
                }
                Ok(vocab.token_to_piece(LlamaToken(id), true, None))
            })
            .collect()
    }

    fn render(&self, messages: &[ChatMessage], config: &InferenceConfig) -> Result<String, CortexError> {
        self.render_chat(messages, config)
    }

    fn prompt_tokens(&self, messages: &[ChatMessage], config: &InferenceConfig) -> Result<usize, CortexError> {
        Ok(self.chat_tokens(messages, config, crate::constraint::constrains(&config.output))?.0.len())
    }

    fn embed(&mut self, inputs: &[Vec<i32>], normalize: bool) -> Result<Vec<Vec<f32>>, CortexError> {
        let n_ctx = self.n_ctx;
        let ctx = self.embedding_context()?;
        crate::embedding::embed(ctx, n_ctx, inputs, normalize)
    }
}

/// Loads a model on the calling thread: use it as a [`crate::worker::Worker`] factory.
pub fn load_engine(options: &BrainOptions) -> Result<Box<dyn Engine>, CortexError> {
    Ok(Box::new(Brain::load(options)?))
}
