//! The KV-state file format, and every reason a file is refused.
//!
//! Layout (little endian), version 1:
//!
//! ```text
//! magic        8 bytes   b"RGKVSEQ\0"
//! version      u32       FORMAT_VERSION
//! identity     32 bytes  the model and cache settings it was saved with (`identity`)
//! n_tokens     u32       tokens whose keys and values the payload holds, 1..=MAX_TOKENS
//! payload_len  u64       bytes of llama.cpp's per-sequence state
//! tokens       n_tokens × i32
//! payload      payload_len bytes
//! checksum     32 bytes  SHA-256 of everything before it
//! ```
//!
//! Rules: a file is checked in two stages: its head (everything up to the payload, against the file's length) when
//! the store is scanned, and the whole of it (checksum included) before its payload reaches llama.cpp. Every check
//! has its own [`Reject`], so a refused file says why. Nothing here touches the file system but the reads and
//! writes it is handed.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::gguf::GgufInfo;

/// The first bytes of every KV-state file.
pub const MAGIC: [u8; 8] = *b"RGKVSEQ\0";
/// The layout this build writes and reads; a file of any other version is refused.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the token list.
pub const FIXED_HEAD: usize = 8 + 4 + 32 + 4 + 8;
/// Bytes of the trailing checksum.
pub const CHECKSUM_LEN: usize = 32;
/// More tokens than any context window holds (n_ctx is at most 2^20): a header claiming more is corrupt.
pub const MAX_TOKENS: u32 = 1 << 20;

/// What a file must match to be used by this engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub identity: [u8; 32],
    /// Token ids run from 0 to this, exclusive.
    pub n_vocab: i32,
    /// The store's budget: a bigger file is refused without being read.
    pub budget: u64,
}

/// The head of a file that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub tokens: Vec<i32>,
    /// Where the payload lies in the file.
    pub payload: Range<usize>,
}

/// Why a file is refused (then removed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("truncated header ({len} bytes)")]
    TruncatedHeader { len: u64 },
    #[error("not a KV-state file (bad magic)")]
    BadMagic,
    #[error("format version {0}, this build reads version {FORMAT_VERSION}")]
    WrongVersion(u32),
    #[error("saved for another model or other cache settings")]
    WrongModel,
    #[error("implausible token count {0}")]
    BadTokenCount(u32),
    #[error("token id {0} is outside the model's vocabulary")]
    BadToken(i32),
    #[error("truncated: {actual} bytes where the header says {expected}")]
    Truncated { expected: u64, actual: u64 },
    #[error("{actual} bytes where the header says {expected} (trailing bytes)")]
    TrailingBytes { expected: u64, actual: u64 },
    #[error("{size} bytes, more than the store's budget of {budget}")]
    Oversized { size: u64, budget: u64 },
    #[error("checksum mismatch")]
    ChecksumMismatch,
    #[error("unreadable ({0})")]
    Unreadable(String),
    #[error("llama.cpp refused its state")]
    Refused,
}

impl From<io::Error> for Reject {
    fn from(e: io::Error) -> Self {
        Self::Unreadable(e.to_string())
    }
}

/// The size of a file holding `n_tokens` tokens and `payload_len` bytes of state.
pub fn file_len(n_tokens: usize, payload_len: usize) -> u64 {
    (FIXED_HEAD + 4 * n_tokens + payload_len + CHECKSUM_LEN) as u64
}

/// Writes a whole file to `w`.
pub fn write(w: &mut impl Write, identity: &[u8; 32], tokens: &[i32], payload: &[u8]) -> io::Result<()> {
    let n_tokens = u32::try_from(tokens.len()).map_err(io::Error::other)?;
    let mut head = Vec::with_capacity(FIXED_HEAD + 4 * tokens.len());
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    head.extend_from_slice(identity);
    head.extend_from_slice(&n_tokens.to_le_bytes());
    head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    tokens.iter().for_each(|t| head.extend_from_slice(&t.to_le_bytes()));
    let mut hasher = Sha256::new();
    hasher.update(&head);
    hasher.update(payload);
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.write_all(&hasher.finalize())
}

/// Reads and checks the head of a file of `file_len` bytes (the checksum is not read: see [`verify`]).
pub fn read_head(r: &mut impl Read, file_len: u64, expect: &Expect) -> Result<Head, Reject> {
    if file_len > expect.budget {
        return Err(Reject::Oversized { size: file_len, budget: expect.budget });
    }
    let mut fixed = [0u8; FIXED_HEAD];
    if file_len < FIXED_HEAD as u64 {
        return Err(Reject::TruncatedHeader { len: file_len });
    }
    r.read_exact(&mut fixed)?;
    let (n_tokens, payload_len) = check_fixed(&fixed, expect)?;
    // The length is checked before the tokens are read, so a corrupt count never sizes an allocation.
    let expected = FIXED_HEAD as u64 + 4 * u64::from(n_tokens) + payload_len + CHECKSUM_LEN as u64;
    if file_len < expected {
        return Err(Reject::Truncated { expected, actual: file_len });
    }
    if file_len > expected {
        return Err(Reject::TrailingBytes { expected, actual: file_len });
    }
    let mut raw = vec![0u8; 4 * n_tokens as usize];
    r.read_exact(&mut raw)?;
    let tokens: Vec<i32> = raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default())).collect();
    if let Some(&bad) = tokens.iter().find(|&&t| !(0..expect.n_vocab).contains(&t)) {
        return Err(Reject::BadToken(bad));
    }
    let start = FIXED_HEAD + raw.len();
    let payload_len = usize::try_from(payload_len).map_err(|_| Reject::Oversized { size: file_len, budget: 0 })?;
    Ok(Head { tokens, payload: start..start + payload_len })
}

/// Magic, version, identity and token count of the fixed part; returns the token count and payload length.
fn check_fixed(fixed: &[u8; FIXED_HEAD], expect: &Expect) -> Result<(u32, u64), Reject> {
    if fixed[..8] != MAGIC {
        return Err(Reject::BadMagic);
    }
    let u32_at = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().unwrap_or_default());
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(Reject::WrongVersion(version));
    }
    if fixed[12..44] != expect.identity {
        return Err(Reject::WrongModel);
    }
    let n_tokens = u32_at(44);
    if n_tokens == 0 || n_tokens > MAX_TOKENS {
        return Err(Reject::BadTokenCount(n_tokens));
    }
    Ok((n_tokens, u64::from_le_bytes(fixed[48..56].try_into().unwrap_or_default())))
}

/// Checks a whole file's bytes, checksum included.
pub fn verify(bytes: &[u8], expect: &Expect) -> Result<Head, Reject> {
    let head = read_head(&mut &bytes[..], bytes.len() as u64, expect)?;
    let body = bytes.len() - CHECKSUM_LEN;
    if Sha256::digest(&bytes[..body])[..] != bytes[body..] {
        return Err(Reject::ChecksumMismatch);
    }
    Ok(head)
}

/// The name of the file holding `tokens` (from a hash, never from request text).
pub fn file_name(identity: &[u8; 32], tokens: &[i32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(identity);
    tokens.iter().for_each(|t| hasher.update(t.to_le_bytes()));
    format!("{}.kv", hex(&hasher.finalize()[..16]))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of the tensor data hashed into a model's identity, at each of three places (start, middle, end).
const SAMPLE: u64 = 1 << 20;
/// Most bytes of the GGUF header hashed (its metadata: architecture, tokenizer, names).
const MAX_HEADER: u64 = 64 << 20;

/// What a saved state is valid for: the model file (its size, its header, and samples of its weights; hashing all
/// of a many-gigabyte file at every load would cost seconds) and `settings` (cache types, flash attention, the
/// llama.cpp state layout), as one hash.
pub fn identity(path: &Path, info: &GgufInfo, settings: &str) -> io::Result<[u8; 32]> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    hasher.update(b"rusty-genius kv identity 1\0");
    hasher.update(info.file_size.to_le_bytes());
    hasher.update(settings.as_bytes());
    let mut buf = Vec::new();
    (&mut file).take(info.data_offset.min(MAX_HEADER)).read_to_end(&mut buf)?;
    hasher.update(&buf);
    let data = info.file_size.saturating_sub(info.data_offset);
    for at in [0, data / 2, data.saturating_sub(SAMPLE)] {
        buf.clear();
        file.seek(SeekFrom::Start(info.data_offset + at))?;
        (&mut file).take(SAMPLE).read_to_end(&mut buf)?;
        hasher.update(&buf);
    }
    Ok(hasher.finalize().into())
}
