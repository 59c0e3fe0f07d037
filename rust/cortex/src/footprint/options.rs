//! The load options a model's memory depends on, and their limits: the context, the sequences, the batch and
//! micro-batch, and how the KV cache is stored ([`KvCache`]: the K and V types, flash attention).
//!
//! Rules: names are llama.cpp's (`f16`, `q8_0`, `q4_0`; `on`, `off`, `auto`), parsed case-insensitively; every error
//! is a `CortexError::InvalidConfig` naming the option. Reads `error` only.

use crate::error::CortexError;

/// Bytes of an f16.
const F16: u64 = 2;

/// The limits of the load options the footprint depends on (the engine checks the same).
pub fn check_options(context_size: Option<u32>, batch_size: u32, parallel: Option<u32>) -> Result<(), CortexError> {
    if let Some(n) = context_size
        && !(16..=1 << 20).contains(&n)
    {
        return Err(CortexError::invalid("context_size", n, "must be between 16 and 1048576 tokens"));
    }
    if !(1..=1 << 16).contains(&batch_size) {
        return Err(CortexError::invalid("batch_size", batch_size, "must be between 1 and 65536"));
    }
    if let Some(n) = parallel
        && !(1..=256).contains(&n)
    {
        return Err(CortexError::invalid("parallel", n, "must be between 1 and 256"));
    }
    Ok(())
}

/// The element type of the K or V cache (llama.cpp's `--cache-type-k` / `--cache-type-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheType {
    /// 16-bit floats: llama.cpp's default, exact.
    #[default]
    F16,
    /// 8-bit blocks of 32 values with an f16 scale: 34 bytes per 32 values (53 % of f16), close to f16's output.
    Q8_0,
    /// 4-bit blocks of 32 values with an f16 scale: 18 bytes per 32 values (28 % of f16), lossier.
    Q4_0,
}

impl CacheType {
    /// The type named `text` (`f16`, `q8_0`, `q4_0`, any case); `field` names the option in the error.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, CortexError> {
        match text.to_ascii_lowercase().as_str() {
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            _ => Err(CortexError::invalid(field, format!("{text:?}"), "must be f16, q8_0 or q4_0")),
        }
    }

    /// Its name, as [`parse`](Self::parse) reads it and llama.cpp writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }

    /// A block quantization (ggml's `ggml_is_quantized`).
    pub fn is_quantized(self) -> bool {
        self != Self::F16
    }

    /// Values per block and bytes per block (ggml's `blck_size` and `type_size`).
    pub fn block(self) -> (u64, u64) {
        match self {
            Self::F16 => (1, F16),
            Self::Q8_0 => (32, 34),
            Self::Q4_0 => (32, 18),
        }
    }

    /// Bytes of a row of `values` values of this type (whole blocks, as ggml's `ggml_row_size`).
    pub fn bytes(self, values: u64) -> u64 {
        let (per_block, block_bytes) = self.block();
        values.div_ceil(per_block).saturating_mul(block_bytes)
    }
}

/// Flash attention (llama.cpp's `--flash-attn`): `Auto` lets llama.cpp decide (on where the backend supports it,
/// which the CPU backend does, and always with a quantized V cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashAttention {
    #[default]
    Auto,
    On,
    Off,
}

impl FlashAttention {
    /// The setting named `text` (`auto`, `on`, `off`, any case); `field` names the option in the error.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, CortexError> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err(CortexError::invalid(field, format!("{text:?}"), "must be on, off or auto")),
        }
    }

    /// Its name, as [`parse`](Self::parse) reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// How the KV cache is stored and read: the K and V types and flash attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvCache {
    pub type_k: CacheType,
    pub type_v: CacheType,
    pub flash_attention: FlashAttention,
}

impl KvCache {
    /// Refuses what llama.cpp cannot run: a quantized V cache without flash attention.
    pub fn check(&self) -> Result<(), CortexError> {
        if self.type_v.is_quantized() && self.flash_attention == FlashAttention::Off {
            return Err(CortexError::invalid(
                "cache_type_v",
                self.type_v.name(),
                "a quantized V cache needs flash attention, and flash_attention = off: set flash_attention to on \
                 or auto, or cache_type_v to f16",
            ));
        }
        Ok(())
    }

    /// Whether attention runs as flash attention (`auto` is on: the CPU backend supports it, and llama.cpp turns it
    /// on for a quantized V cache).
    pub fn flash(&self) -> bool {
        self.flash_attention != FlashAttention::Off
    }
    /// Refuses types whose blocks do not divide the model's heads (llama.cpp would fail to make the context): a
    /// quantized K needs key heads a multiple of 32 wide, a quantized V value heads ([`super::KvShape::head_widths`]).
    pub fn check_heads(&self, key_width: u64, value_width: u64) -> Result<(), CortexError> {
        for (field, kind, width, what) in
            [("cache_type_k", self.type_k, key_width, "key"), ("cache_type_v", self.type_v, value_width, "value")]
        {
            let (per_block, _) = kind.block();
            if width % per_block != 0 {
                return Err(CortexError::invalid(
                    field,
                    format!("{} (this model's {what} heads are {width} wide)", kind.name()),
                    "a quantized cache needs heads a multiple of 32 wide: use f16 for this model",
                ));
            }
        }
        Ok(())
    }
}

/// The load options a model's memory depends on, besides the model itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Context window per sequence; `None`: [`super::context_size`]'s default.
    pub context_size: Option<u32>,
    /// Sequences run at once; `None`: [`super::auto_parallel`].
    pub parallel: Option<u32>,
    /// Tokens per decode call.
    pub batch_size: u32,
    /// Tokens per micro-batch (llama.cpp's `n_ubatch`); `None`: the batch.
    pub ubatch_size: Option<u32>,
    pub cache: KvCache,
}

impl Default for Sizing {
    fn default() -> Self {
        Self { context_size: None, parallel: None, batch_size: 512, ubatch_size: None, cache: KvCache::default() }
    }
}

impl Sizing {
    /// The limits of every option (the engine checks the same), naming the field at fault.
    pub fn check(&self) -> Result<(), CortexError> {
        check_options(self.context_size, self.batch_size, self.parallel)?;
        if let Some(n) = self.ubatch_size {
            if !(1..=1 << 16).contains(&n) {
                return Err(CortexError::invalid("ubatch_size", n, "must be between 1 and 65536"));
            }
            if n > self.batch_size {
                return Err(CortexError::invalid(
                    "ubatch_size",
                    format!("{n} (batch_size = {})", self.batch_size),
                    "must be at most batch_size: a micro-batch is a part of a batch",
                ));
            }
        }
        self.cache.check()
    }
}
