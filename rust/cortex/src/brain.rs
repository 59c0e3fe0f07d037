//! Brain, the real engine: llama.cpp through the `llama-cpp-2` crate.
//!
//! Rules (DESIGN.md §5):
//! - One process-wide `LlamaBackend` in a `OnceLock`, initialised once and never dropped; llama.cpp's own logging
//!   is silenced unless `RUSTY_GENIUS_LLAMA_LOG=1` (it writes to stderr, which the TUI and pipes must keep clean).
//! - A file is checked by [`crate::gguf::check`] before llama.cpp sees it, so a truncated or corrupted model is an
//!   error, never a crash.
//! - The context borrows the model; both live in this struct on the worker thread, the context declared first so it
//!   is dropped first.
//! - The chat template comes from the GGUF and is applied by llama.cpp's built-in matcher (never Jinja in Python);
//!   a model without one, or with one llama.cpp does not know, gets ChatML.
//! - Prefix reuse: the tokens in the KV cache are remembered; the next prompt decodes only what differs from them.
//!   Where the cache refuses a partial removal it is cleared and the prompt decoded in full.
//! - Prompts are decoded in `n_batch` chunks; cancellation is checked between chunks and before every token.
//! - `sample()` already accepts the token in llama.cpp (grammar, penalties): it is never accepted twice.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::OnceLock;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::config::Sampling;
use crate::engine::{ChatMessage, ChatRequest, Engine};
use crate::error::CortexError;
use crate::pipeline::{Flow, Generation, PromptInfo};

/// Default context window when neither the caller nor a small model says otherwise.
const DEFAULT_CONTEXT: u32 = 4096;
/// Tokens the repetition penalties look back over (llama.cpp's default).
const PENALTY_LAST_N: i32 = 64;
/// `n_gpu_layers` meaning "all of them".
const ALL_LAYERS: u32 = 999;

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
}

impl BrainOptions {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self { model_path: model_path.into(), gpu_layers: None, threads: None, context_size: None, batch_size: 512 }
    }

    fn validate(&self) -> Result<(), CortexError> {
        if let Some(t) = self.threads
            && !(1..=1024).contains(&t)
        {
            return Err(CortexError::invalid("threads", t, "must be between 1 and 1024"));
        }
        if let Some(n) = self.context_size
            && !(16..=1 << 20).contains(&n)
        {
            return Err(CortexError::invalid("context_size", n, "must be between 16 and 1048576 tokens"));
        }
        if !(1..=1 << 16).contains(&self.batch_size) {
            return Err(CortexError::invalid("batch_size", self.batch_size, "must be between 1 and 65536"));
        }
        Ok(())
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

/// A loaded model and its context, owned by the worker thread.
pub struct Brain {
    // Declared before `model`: it borrows the model and must be dropped first.
    ctx: LlamaContext<'static>,
    model: Box<LlamaModel>,
    batch: LlamaBatch<'static>,
    template: Option<LlamaChatTemplate>,
    /// The tokens whose keys and values are in the cache (sequence 0), in order.
    cached: Vec<LlamaToken>,
    n_ctx: u32,
    n_batch: u32,
}

impl std::fmt::Debug for Brain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brain").field("n_ctx", &self.n_ctx).field("cached", &self.cached.len()).finish()
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
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend, path, &params)
            .map_err(|e| CortexError::model_load(path, format!("llama.cpp could not load it ({e})")))?;
        let model = Box::new(model);
        let trained = info.context_length.map_or(model.n_ctx_train(), |n| u32::try_from(n).unwrap_or(u32::MAX));
        let n_ctx = options.context_size.unwrap_or_else(|| trained.clamp(16, DEFAULT_CONTEXT));
        let n_batch = options.batch_size.min(n_ctx);
        let threads = i32::try_from(options.threads.unwrap_or_else(physical_cores)).unwrap_or(1);
        let ctx_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        // SAFETY: the model is boxed, so its address is stable for the Box's life; it is never moved out, replaced
        // or mutably borrowed while the context exists; the context is declared before the model in `Brain`, so it
        // is dropped first; neither leaves this struct. The 'static lifetime is therefore never observed past the
        // model's real life.
        let model_ref: &'static LlamaModel = unsafe { &*std::ptr::from_ref::<LlamaModel>(&model) };
        let ctx = model_ref
            .new_context(backend, ctx_params)
            .map_err(|e| CortexError::model_load(path, format!("llama.cpp could not create a context ({e})")))?;
        let template = model.chat_template(None).ok();
        Ok(Self {
            ctx,
            model,
            batch: LlamaBatch::new(n_batch as usize, 1),
            template,
            cached: Vec::new(),
            n_ctx,
            n_batch,
        })
    }

    /// The conversation as the model expects it, ending with an open assistant turn.
    fn render(&self, messages: &[ChatMessage]) -> Result<String, CortexError> {
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

    fn tokenize(&self, prompt: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        // A template that writes the BOS text itself plus `add_special` gives two BOS tokens; keep one.
        if tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
            tokens.remove(0);
        }
        tokens
    }

    /// Decodes `tokens[from..]` after the cached prefix. Returns false when cancelled midway.
    fn evaluate_prompt(&mut self, tokens: &[LlamaToken], out: &Generation<'_>) -> Result<bool, CortexError> {
        let chunk_len = self.n_batch as usize;
        let start = self.cached.len();
        for (chunk_index, chunk) in tokens[start..].chunks(chunk_len).enumerate() {
            if out.cancel_token().is_cancelled() {
                return Ok(false);
            }
            self.batch.clear();
            let first = start + chunk_index * chunk_len;
            for (i, &token) in chunk.iter().enumerate() {
                let pos = first + i;
                self.batch.add(token, pos_i32(pos), &[0], pos + 1 == tokens.len()).map_err(engine_error)?;
            }
            decode(&mut self.ctx, &mut self.batch, &mut self.cached)?;
            self.cached.extend_from_slice(chunk);
        }
        Ok(true)
    }

    /// Keeps the longest cached prefix shared with `tokens` (at least one token is always decoded, for logits).
    fn reuse_prefix(&mut self, tokens: &[LlamaToken]) {
        let shared = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        let keep = shared.min(tokens.len().saturating_sub(1));
        if keep < self.cached.len() {
            let removed =
                u32::try_from(keep).ok().and_then(|p0| self.ctx.clear_kv_cache_seq(Some(0), Some(p0), None).ok());
            if removed == Some(true) {
                self.cached.truncate(keep);
            } else {
                self.ctx.clear_kv_cache();
                self.cached.clear();
            }
        }
    }
}

/// Decodes the batch. On failure the cache may hold part of it: forget it all rather than trust it.
fn decode(
    ctx: &mut LlamaContext<'static>,
    batch: &mut LlamaBatch<'static>,
    cached: &mut Vec<LlamaToken>,
) -> Result<(), CortexError> {
    ctx.decode(batch).map_err(|e| {
        ctx.clear_kv_cache();
        cached.clear();
        CortexError::Engine(format!("llama.cpp decode failed: {e}"))
    })
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
    /// Plain greedy (temperature 0, no grammar, no penalties): an argmax over the logits. llama.cpp's greedy sampler
    /// first copies all `n_vocab` logits into a candidate array every token; the argmax reads them in place.
    Argmax,
    Chain(LlamaSampler),
}

impl Picker {
    fn new(sampling: &Sampling, model: &LlamaModel) -> Result<Self, CortexError> {
        let plain_greedy = sampling.temperature <= 0.0
            && sampling.grammar.is_none()
            && sampling.repeat_penalty == 1.0
            && sampling.frequency_penalty == 0.0
            && sampling.presence_penalty == 0.0;
        if plain_greedy { Ok(Self::Argmax) } else { sampler(sampling, model).map(Self::Chain) }
    }

    /// The next token from the logits at batch index `at` (for a chain, also accepted into its state).
    fn pick(&mut self, ctx: &LlamaContext<'_>, at: i32) -> LlamaToken {
        match self {
            // Ties go to the lowest id, as in llama.cpp's greedy sampler.
            Self::Argmax => {
                let logits = ctx.get_logits_ith(at);
                let best = logits.iter().enumerate().fold(0, |best, (i, &l)| if l > logits[best] { i } else { best });
                LlamaToken(i32::try_from(best).unwrap_or(0))
            }
            Self::Chain(sampler) => sampler.sample(ctx, at),
        }
    }
}

fn sampler(sampling: &Sampling, model: &LlamaModel) -> Result<LlamaSampler, CortexError> {
    let mut chain = Vec::new();
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

    fn generate(&mut self, request: &ChatRequest, out: &mut Generation<'_>) -> Result<(), CortexError> {
        let prompt = self.render(&request.messages)?;
        let tokens = self.tokenize(&prompt);
        let limit = request.config.behavior.context_size.map_or(self.n_ctx, |n| n.min(self.n_ctx)) as usize;
        if tokens.len() >= limit {
            return Err(CortexError::ContextOverflow { prompt_tokens: tokens.len(), context_size: limit });
        }
        let mut picker = Picker::new(&request.config.sampling, &self.model)?;
        self.reuse_prefix(&tokens);
        let cached_tokens = self.cached.len();
        if !self.evaluate_prompt(&tokens, out)? {
            return Ok(()); // Cancelled during the prompt: the Generation reports it.
        }
        out.prompt_processed(PromptInfo {
            prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
            cached_tokens: u32::try_from(cached_tokens).unwrap_or(u32::MAX),
            think_pre_opened: prompt.trim_end().ends_with("<think>"),
        });

        let vocab = self.model.vocab();
        let mut piece = Vec::with_capacity(32);
        // The logits of the last prompt token sit at the last index of the prompt's final batch.
        let mut logits_at = self.batch.n_tokens() - 1;
        loop {
            if self.cached.len() >= limit {
                let _ = out.context_full();
                return Ok(());
            }
            let token = picker.pick(&self.ctx, logits_at);
            if vocab.is_eog(token) {
                return Ok(());
            }
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            if out.token(&piece) == Flow::Stop {
                return Ok(());
            }
            self.batch.clear();
            self.batch.add(token, pos_i32(self.cached.len()), &[0], true).map_err(engine_error)?;
            decode(&mut self.ctx, &mut self.batch, &mut self.cached)?;
            self.cached.push(token);
            logits_at = 0;
        }
    }
}

/// Loads a model on the calling thread: use it as a [`crate::Worker`] factory.
pub fn load_engine(options: &BrainOptions) -> Result<Box<dyn Engine>, CortexError> {
    Ok(Box::new(Brain::load(options)?))
}
