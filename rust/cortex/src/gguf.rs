//! GGUF pre-flight: prove a model file is a whole, well-formed GGUF before llama.cpp opens it.
//!
//! Why: llama.cpp's GGUF parser has had out-of-bounds reads on malformed files, and what it does catch it reports
//! only as a log line and a null model. A missing, foreign, truncated or corrupted file must instead become one
//! `CortexError::ModelLoad` whose reason says what is wrong and what to do, and never crash the process.
//!
//! Rules:
//! - Only the header and the tensor infos are read, through a `BufReader`. Tensor data is never read and array values
//!   are skipped, not stored (only the length of `tokenizer.ggml.tokens` is kept), so a 100 GB model costs the same
//!   few MiB of I/O as a small one.
//! - Scalar metadata is kept ([`GgufInfo::metadata`]) within fixed budgets: a string value of at most 64 KiB, 1 MiB
//!   of string values in all, and 1 MiB of keys in all (`MAX_KEPT_STRING`, `MAX_KEPT_STRING_TOTAL`, each entry
//!   counted `ENTRY_OVERHEAD` bytes more). What is over a budget is skipped, not an error; a string value that is
//!   not UTF-8 is skipped too (it could not be shown faithfully).
//! - Every count, length, dimension and offset in the file is untrusted: it is compared with the bytes the file really
//!   has before it is used, combined only with checked arithmetic, and never sizes an allocation.
//! - Accept what the llama.cpp we build accepts and reject what it rejects (`gguf_init_from_file_impl` in
//!   ggml/src/gguf.cpp, plus its model loader's "tensor data inside the file" check), in plain words with a remedy.
//!   Stricter only where harmless: a tensor needs 1 to 4 dimensions (llama.cpp also takes 0), a key must be UTF-8
//!   and at most 64 KiB.
//! - The ggml type table is llama.cpp's (see `ggml_type` below); re-check it whenever llama-cpp-2 is bumped.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::error::CortexError;

/// A scalar metadata value. Signed GGUF integer types become `Int`, unsigned ones `UInt`, f32 and f64 `Float`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl MetaValue {
    /// The value as a non-negative integer: `None` for a negative one or another type.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::UInt(v) => Some(v),
            Self::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// What the header says, for callers that want it (logging, context defaults, listings, memory estimates).
#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    /// GGUF format version: 2 or 3.
    pub version: u32,
    pub tensor_count: u64,
    pub metadata_count: u64,
    /// `general.architecture`, e.g. "llama".
    pub architecture: Option<String>,
    /// `{architecture}.context_length`, stored as any integer type; `None` when absent or negative.
    pub context_length: Option<u64>,
    /// `general.alignment`, default 32.
    pub alignment: u64,
    /// Start of tensor data: the end of the tensor infos rounded up to `alignment` (not rounded in a file without
    /// tensors, as in llama.cpp).
    pub data_offset: u64,
    pub file_size: u64,
    /// The scalar metadata values kept (see the module rules): every integer, float and bool, and strings within the
    /// budgets. Arrays are not kept.
    pub metadata: BTreeMap<String, MetaValue>,
    /// Elements of the `tokenizer.ggml.tokens` array, when there is one.
    pub vocab_size: Option<u64>,
    /// Bytes of tensor data, all tensors together (without the padding between them).
    pub tensor_bytes: u64,
}

impl GgufInfo {
    /// A non-negative integer value of `key`.
    pub fn uint(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(MetaValue::as_u64)
    }

    /// A non-negative integer value of `{architecture}.{suffix}` (e.g. `block_count`).
    pub fn arch_uint(&self, suffix: &str) -> Option<u64> {
        self.uint(&format!("{}.{suffix}", self.architecture.as_deref()?))
    }

    /// A string value of `key`.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key)? {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Checks that `path` is a GGUF file llama.cpp can load without reading out of bounds, and returns its header.
pub fn check(path: &Path) -> Result<GgufInfo, CortexError> {
    check_file(path).map_err(|reason| CortexError::model_load(path, reason))
}

const MAGIC: &[u8; 4] = b"GGUF";
/// llama.cpp's `GGUF_DEFAULT_ALIGNMENT`.
const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// llama.cpp's `GGML_MAX_NAME`: a tensor name must be shorter, so that it fits with its NUL.
const MAX_NAME: u64 = 64;
/// llama.cpp's `GGUF_MAX_STRING_LENGTH` and `GGUF_MAX_ARRAY_ELEMENTS`.
const MAX_STRING_LEN: u64 = 1 << 30;
const MAX_ARRAY_LEN: u64 = 1 << 30;
/// Keys and the architecture are kept in memory. Real ones are a few dozen bytes, so a longer one is corruption, and
/// the cap keeps a corrupted length from sizing a big allocation. Also the longest string value kept in
/// [`GgufInfo::metadata`] (a longer one is skipped: chat templates are a few KiB to a few dozen).
const MAX_KEPT_STRING: u64 = 64 * 1024;
/// Bytes of string values kept in all, and separately bytes of keys kept in all: past either, entries are skipped.
const MAX_KEPT_STRING_TOTAL: u64 = 1 << 20;
/// What a kept entry costs the key budget besides its key's bytes (the map's own memory): bounds the entries a
/// hostile file of many tiny keys can make kept (to about 16 thousand; real files have a few dozen).
const ENTRY_OVERHEAD: u64 = 64;
/// The array whose length is the vocabulary size.
const TOKENS_KEY: &str = "tokenizer.ggml.tokens";
/// Magic, version, tensor count, metadata count.
const HEADER_LEN: u64 = 4 + 4 + 8 + 8;
/// Smallest metadata entry: key length, a 1-byte key (empty keys are rejected), value type, a u8 value.
const MIN_KV_LEN: u64 = 8 + 1 + 4 + 1;
/// Smallest tensor info: name length, an empty name, n_dims, one dimension, type, offset.
const MIN_TENSOR_INFO_LEN: u64 = 8 + 4 + 8 + 4 + 8;

const TYPE_U32: u32 = 4;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

/// `(name, elements per block, bytes per block)` of a ggml type id that llama.cpp reads.
///
/// From `type_traits` in ggml/src/ggml.c and `enum ggml_type` in ggml/include/ggml.h of the vendored llama.cpp
/// (llama-cpp-sys-2 0.1.161); the byte sizes are `sizeof` of its `block_*` structs in ggml-common.h.
fn ggml_type(id: u32) -> Option<(&'static str, u64, u64)> {
    Some(match id {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        40 => ("NVFP4", 64, 36),
        41 => ("Q1_0", 128, 18),
        42 => ("Q2_0", 64, 18),
        _ => return None,
    })
}

/// Ids ggml had once and removed (block size 0 in `type_traits`): files using them are old, not corrupted.
fn removed_ggml_type(id: u32) -> Option<&'static str> {
    Some(match id {
        4 => "Q4_2",
        5 => "Q4_3",
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        36 => "IQ4_NL_4_4",
        37 => "IQ4_NL_4_8",
        38 => "IQ4_NL_8_8",
        _ => return None,
    })
}

/// Size in bytes of a fixed-size metadata value type.
fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn value_type_name(ty: u32) -> &'static str {
    match ty {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

fn check_file(path: &Path) -> Result<GgufInfo, String> {
    let meta = std::fs::metadata(path).map_err(|e| open_error(&e))?;
    if meta.is_dir() {
        return Err("it is a directory, not a GGUF file; pass the path of the .gguf file itself".into());
    }
    if !meta.is_file() {
        return Err("not a regular file; pass the path of a .gguf model file".into());
    }
    let file = File::open(path).map_err(|e| open_error(&e))?;
    // The length of the opened file, not of the path, in case the path is replaced meanwhile.
    let len = file.metadata().map_err(|e| format!("cannot read it: {e}"))?.len();
    parse(&mut Reader { inner: BufReader::new(file), pos: 0, len, place: "the header".into(), section: "header" })
}

fn open_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "file not found; check the path, or download the model first".into(),
        io::ErrorKind::PermissionDenied => "permission denied; make the file readable by this user".into(),
        _ => format!("cannot open it: {e}"),
    }
}

/// Reads the file front to back, knowing its position and length, so that every read is checked against the bytes
/// left before it happens: a corrupted length is reported, never followed.
struct Reader {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
    /// What is being read, for messages: "the header", "metadata key 'x'", "tensor info 'x'".
    place: String,
    /// The section a corrupted value lies in: "header", "metadata" or "tensor info".
    section: &'static str,
}

impl Reader {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn truncated(&self) -> String {
        format!("truncated: the file ends at byte {} in the middle of {}; download it again", self.len, self.place)
    }

    fn io_error(&self, e: &io::Error) -> String {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            // The file shrank after its length was taken: it is still being written, or was cut meanwhile.
            self.truncated()
        } else {
            format!("cannot read it at byte {}: {e}", self.pos)
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        let n = buf.len() as u64;
        if n > self.remaining() {
            return Err(self.truncated());
        }
        self.inner.read_exact(buf).map_err(|e| self.io_error(&e))?;
        self.pos += n;
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut buf = [0; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.take().map(u64::from_le_bytes)
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        if n > self.remaining() {
            return Err(self.truncated());
        }
        // n fits in the file, and file lengths fit in i64 (the OS's off_t).
        let delta = i64::try_from(n).map_err(|_| self.truncated())?;
        self.inner.seek_relative(delta).map_err(|e| self.io_error(&e))?;
        self.pos += n;
        Ok(())
    }

    /// Reads a string's length and checks it against the rest of the file and llama.cpp's limit.
    fn string_len(&mut self) -> Result<u64, String> {
        let at = self.pos;
        let n = self.u64()?;
        let section = self.section;
        if n > self.remaining() {
            // A length over llama.cpp's limit cannot be a cut-off real string; a smaller one may be either.
            let what = if n > MAX_STRING_LEN { "corrupted" } else { "truncated or corrupted" };
            return Err(format!(
                "{what} {section}: string length {n} at byte {at} runs past the end of the file ({} bytes); download \
                 it again",
                self.len
            ));
        }
        if n > MAX_STRING_LEN {
            return Err(format!(
                "corrupted {section}: string length {n} at byte {at} is over llama.cpp's limit of {MAX_STRING_LEN} \
                 bytes; download it again"
            ));
        }
        Ok(n)
    }

    fn skip_string(&mut self) -> Result<(), String> {
        let n = self.string_len()?;
        self.skip(n)
    }

    /// Reads a string value when it is at most [`MAX_KEPT_STRING`] bytes and fits `budget` (which it then takes from),
    /// else skips it; `None` when skipped or not UTF-8.
    fn string_within(&mut self, budget: &mut u64) -> Result<Option<String>, String> {
        let n = self.string_len()?;
        if n > MAX_KEPT_STRING || n > *budget {
            self.skip(n)?;
            return Ok(None);
        }
        // n <= MAX_KEPT_STRING (64 KiB), so the conversion is exact.
        let mut buf = vec![0; n as usize];
        self.fill(&mut buf)?;
        *budget -= n;
        Ok(String::from_utf8(buf).ok())
    }

    /// Reads a string that is kept (a key, a name); `max` bounds the allocation.
    fn kept_string(&mut self, max: u64, what: &str) -> Result<Vec<u8>, String> {
        let at = self.pos;
        let n = self.string_len()?;
        if n > max {
            return Err(format!(
                "corrupted {}: {what} at byte {at} is {n} bytes long, more than the {max} allowed; download it again",
                self.section
            ));
        }
        // n <= max (at most 64 KiB), so the conversion is exact.
        let mut buf = vec![0; n as usize];
        self.fill(&mut buf)?;
        Ok(buf)
    }
}

fn parse(r: &mut Reader) -> Result<GgufInfo, String> {
    if r.len == 0 {
        return Err("the file is empty (0 bytes); download it again".into());
    }
    check_magic(r)?;
    let version = r.u32()?;
    check_version(version)?;
    let tensor_count = r.u64()?;
    let metadata_count = r.u64()?;
    check_counts(tensor_count, metadata_count, r.len)?;
    let meta = read_metadata(r, metadata_count)?;
    let tensors = read_tensor_infos(r, tensor_count, meta.alignment)?;

    let data_offset = if tensors.is_empty() {
        r.pos
    } else {
        r.pos.checked_next_multiple_of(meta.alignment).ok_or_else(|| r.truncated())?
    };
    for t in &tensors {
        // u128: a sum of three u64 cannot overflow it, so a corrupted offset is simply reported as out of the file.
        let end = u128::from(data_offset) + u128::from(t.offset) + u128::from(t.nbytes);
        if end > u128::from(r.len) {
            return Err(format!(
                "truncated: the header says tensor '{}' ends at byte {end} but the file has {} bytes; download it again",
                t.name, r.len
            ));
        }
    }
    // Each tensor lies inside the file (checked above), so the sum is at most the file's length; saturating anyway.
    let tensor_bytes = tensors.iter().fold(0u64, |sum, t| sum.saturating_add(t.nbytes));
    let context_length = meta
        .architecture
        .as_ref()
        .and_then(|arch| meta.values.get(&format!("{arch}.context_length")))
        .and_then(MetaValue::as_u64);
    Ok(GgufInfo {
        version,
        tensor_count,
        metadata_count,
        architecture: meta.architecture,
        context_length,
        alignment: meta.alignment,
        data_offset,
        file_size: r.len,
        metadata: meta.values,
        vocab_size: meta.vocab_size,
        tensor_bytes,
    })
}

fn check_magic(r: &mut Reader) -> Result<(), String> {
    let n = r.len.min(4) as usize;
    let mut buf = [0; 4];
    r.fill(&mut buf[..n])?;
    let head = &buf[..n];
    if head == &MAGIC[..n] {
        return if n < 4 { Err(r.truncated()) } else { Ok(()) };
    }
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let hint = match head {
        b"vers" => "it looks like a Git LFS pointer: fetch the real file (git lfs pull) or download it again",
        b"<!DO" | b"<!do" | b"<htm" | b"<HTM" => "it looks like a web page: the download failed; download it again",
        // Little-endian u32 magics of the formats before GGUF (ggml, ggmf, ggjt, ggla).
        b"lmgg" | b"fmgg" | b"tjgg" | b"algg" => {
            "it is an old GGML/GGJT model, which llama.cpp no longer reads; download the GGUF version"
        }
        _ => "pass a .gguf model file",
    };
    Err(format!("not a GGUF file (it starts with {}, expected 'GGUF'); {hint}", hex.join(" ")))
}

fn check_version(version: u32) -> Result<(), String> {
    match version {
        2 | 3 => Ok(()),
        0 => Err("corrupted header: GGUF version 0; download it again".into()),
        // A big-endian file stores version 3 as 00 00 00 03, which reads as 0x03000000 here.
        v if v & 0xFFFF == 0 => Err(format!(
            "a big-endian GGUF file (version field {v:#010x}); llama.cpp reads little-endian files, download that \
             version of the model"
        )),
        1 => Err("unsupported GGUF version 1 (llama.cpp reads versions 2 and 3); download a newer conversion of the \
                  model"
            .into()),
        v => Err(format!(
            "unsupported GGUF version {v} (llama.cpp reads versions 2 and 3); this file needs a newer rusty-genius"
        )),
    }
}

/// Every entry takes some bytes, so the file's length bounds both counts; checking it first keeps a corrupted count
/// from driving billions of reads.
fn check_counts(tensors: u64, kvs: u64, len: u64) -> Result<(), String> {
    let room = len.saturating_sub(HEADER_LEN);
    let need = tensors
        .checked_mul(MIN_TENSOR_INFO_LEN)
        .and_then(|t| kvs.checked_mul(MIN_KV_LEN).and_then(|k| t.checked_add(k)));
    match need {
        Some(need) if need <= room => Ok(()),
        _ => Err(format!(
            "the header claims {tensors} tensors and {kvs} metadata entries, more than a file of {len} bytes can \
             hold: the file is truncated or corrupted; download it again"
        )),
    }
}

struct Metadata {
    architecture: Option<String>,
    alignment: u64,
    values: BTreeMap<String, MetaValue>,
    vocab_size: Option<u64>,
}

fn read_metadata(r: &mut Reader, count: u64) -> Result<Metadata, String> {
    r.section = "metadata";
    let mut meta =
        Metadata { architecture: None, alignment: DEFAULT_ALIGNMENT, values: BTreeMap::new(), vocab_size: None };
    let mut seen = HashSet::new();
    let mut string_budget = MAX_KEPT_STRING_TOTAL;
    let mut key_budget = MAX_KEPT_STRING_TOTAL;
    for i in 0..count {
        r.place = format!("metadata entry {i}");
        let at = r.pos;
        let key = r.kept_string(MAX_KEPT_STRING, "a key")?;
        let key = String::from_utf8(key)
            .map_err(|_| format!("corrupted metadata: the key at byte {at} is not UTF-8 text; download it again"))?;
        if key.is_empty() {
            return Err(format!("corrupted metadata: empty key at byte {at}; download it again"));
        }
        if !seen.insert(key.clone()) {
            return Err(format!("corrupted metadata: key '{key}' appears twice; download it again"));
        }
        r.place = format!("metadata key '{key}'");
        let ty = r.u32()?;
        let value = match (key.as_str(), ty) {
            ("general.architecture", TYPE_STRING) => {
                let arch = r.kept_string(MAX_KEPT_STRING, "general.architecture")?;
                let arch = String::from_utf8(arch).map_err(|_| {
                    "corrupted metadata: general.architecture is not UTF-8 text; download it again".to_string()
                })?;
                string_budget = string_budget.saturating_sub(arch.len() as u64);
                meta.architecture = Some(arch.clone());
                Some(MetaValue::Str(arch))
            }
            ("general.alignment", TYPE_U32) => {
                let alignment = r.u32()?;
                if !alignment.is_power_of_two() {
                    return Err(format!(
                        "corrupted metadata: general.alignment is {alignment}, not a power of two; download it again"
                    ));
                }
                meta.alignment = u64::from(alignment);
                Some(MetaValue::UInt(meta.alignment))
            }
            ("general.architecture", _) | ("general.alignment", _) => {
                let expected = if key == "general.alignment" { "u32" } else { "string" };
                return Err(format!(
                    "corrupted metadata: {key} has type {} ({ty}), llama.cpp needs a {expected}; download it again",
                    value_type_name(ty)
                ));
            }
            (TOKENS_KEY, TYPE_ARRAY) => {
                meta.vocab_size = Some(skip_value(r, &key, ty)?);
                None
            }
            _ => read_value(r, &key, ty, &mut string_budget)?,
        };
        let cost = key.len() as u64 + ENTRY_OVERHEAD;
        if let Some(value) = value
            && cost <= key_budget
        {
            key_budget -= cost;
            meta.values.insert(key, value);
        }
    }
    Ok(meta)
}

/// Reads a scalar value (a string within `string_budget`); skips an array or a string over the budget (`None`).
fn read_value(r: &mut Reader, key: &str, ty: u32, string_budget: &mut u64) -> Result<Option<MetaValue>, String> {
    Ok(Some(match ty {
        0 => MetaValue::UInt(u64::from(u8::from_le_bytes(r.take()?))),
        1 => MetaValue::Int(i64::from(i8::from_le_bytes(r.take()?))),
        2 => MetaValue::UInt(u64::from(u16::from_le_bytes(r.take()?))),
        3 => MetaValue::Int(i64::from(i16::from_le_bytes(r.take()?))),
        4 => MetaValue::UInt(u64::from(r.u32()?)),
        5 => MetaValue::Int(i64::from(i32::from_le_bytes(r.take()?))),
        // Through its shortest decimal form, so that 1e-5 stored as f32 reads back as 1e-5, not 9.99999974e-6.
        6 => {
            let v = f32::from_le_bytes(r.take()?);
            MetaValue::Float(v.to_string().parse().unwrap_or(f64::from(v)))
        }
        // llama.cpp reads a bool as a byte; anything but 0 is true.
        7 => MetaValue::Bool(u8::from_le_bytes(r.take()?) != 0),
        10 => MetaValue::UInt(r.u64()?),
        11 => MetaValue::Int(i64::from_le_bytes(r.take()?)),
        12 => MetaValue::Float(f64::from_le_bytes(r.take()?)),
        TYPE_STRING => match r.string_within(string_budget)? {
            Some(s) => MetaValue::Str(s),
            None => return Ok(None),
        },
        _ => {
            skip_value(r, key, ty)?;
            return Ok(None);
        }
    }))
}

fn unknown_value_type(key: &str, ty: u32) -> String {
    format!("corrupted metadata: key '{key}' has value type {ty}, which GGUF does not define; download it again")
}

/// Skips a value; returns its element count for an array, 1 for a scalar.
fn skip_value(r: &mut Reader, key: &str, ty: u32) -> Result<u64, String> {
    match ty {
        TYPE_STRING => r.skip_string().map(|()| 1),
        TYPE_ARRAY => {
            let at = r.pos;
            let elem = r.u32()?;
            let count = r.u64()?;
            if elem == TYPE_ARRAY {
                // The GGUF spec allows nested arrays, but llama.cpp's reader rejects them ("invalid GGUF type 9").
                return Err(format!(
                    "metadata key '{key}' is an array of arrays, which llama.cpp cannot read; use a file converted by \
                     llama.cpp's own tools"
                ));
            }
            let elem_size = match elem {
                TYPE_STRING => 8, // at least its length
                _ => scalar_size(elem).ok_or_else(|| unknown_value_type(key, elem))?,
            };
            if count > MAX_ARRAY_LEN {
                return Err(format!(
                    "corrupted metadata: array '{key}' at byte {at} claims {count} elements, over llama.cpp's limit \
                     of {MAX_ARRAY_LEN}; download it again"
                ));
            }
            // Checked before any element is read, so a corrupted count fails at once instead of after a long loop.
            let bytes = count.checked_mul(elem_size).filter(|&n| n <= r.remaining()).ok_or_else(|| {
                format!(
                    "truncated or corrupted metadata: array '{key}' at byte {at} claims {count} elements, more than \
                     the rest of the file can hold; download it again"
                )
            })?;
            if elem == TYPE_STRING {
                for _ in 0..count {
                    r.skip_string()?;
                }
            } else {
                r.skip(bytes)?;
            }
            Ok(count)
        }
        _ => r.skip(scalar_size(ty).ok_or_else(|| unknown_value_type(key, ty))?).map(|()| 1),
    }
}

struct TensorInfo {
    name: String,
    offset: u64,
    nbytes: u64,
}

fn read_tensor_infos(r: &mut Reader, count: u64, alignment: u64) -> Result<Vec<TensorInfo>, String> {
    r.section = "tensor info";
    // Grows with the infos really read (each takes 32+ bytes of file), never sized by the untrusted count.
    let mut tensors = Vec::new();
    let mut seen = HashSet::new();
    // llama.cpp needs the tensors packed in order: each starts where the previous one ends, padded to `alignment`.
    let mut next_offset = 0u64;
    for i in 0..count {
        r.place = format!("tensor info {i}");
        let raw = r.kept_string(MAX_NAME - 1, "a tensor name")?;
        // Names are only shown and compared as bytes: a stray non-UTF-8 byte is replaced for display, not fatal.
        let name = String::from_utf8_lossy(&raw).into_owned();
        if !seen.insert(raw) {
            return Err(format!("corrupted tensor info: tensor '{name}' appears twice; download it again"));
        }
        r.place = format!("tensor info '{name}'");
        let n_dims = r.u32()?;
        if !(1..=MAX_DIMS).contains(&n_dims) {
            return Err(format!(
                "corrupted tensor info: tensor '{name}' has {n_dims} dimensions (expected 1 to {MAX_DIMS}); download \
                 it again"
            ));
        }
        let mut ne = [1u64; MAX_DIMS as usize];
        for d in ne.iter_mut().take(n_dims as usize) {
            *d = r.u64()?;
        }
        // llama.cpp keeps dimensions and the element count in int64_t.
        let elements = ne.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        if elements.is_none_or(|n| n > i64::MAX as u64) || ne.iter().any(|&d| d > i64::MAX as u64) {
            return Err(format!(
                "corrupted tensor info: tensor '{name}' has shape {:?}, too many elements; download it again",
                &ne[..n_dims as usize]
            ));
        }
        let ty = r.u32()?;
        let (type_name, block, block_bytes) = ggml_type(ty).ok_or_else(|| match removed_ggml_type(ty) {
            Some(old) => format!(
                "tensor '{name}' has type {old} ({ty}), which llama.cpp no longer reads; download the model in \
                 another quantization (e.g. Q4_0 or Q4_K_M)"
            ),
            None => format!(
                "unknown tensor type {ty} in tensor '{name}': this file needs a newer rusty-genius (or it is \
                 corrupted)"
            ),
        })?;
        if !ne[0].is_multiple_of(block) {
            return Err(format!(
                "corrupted tensor info: tensor '{name}' of type {type_name} has {} elements per row, not a multiple \
                 of its block size {block}; download it again",
                ne[0]
            ));
        }
        let nbytes = (ne[0] / block)
            .checked_mul(block_bytes)
            .and_then(|n| n.checked_mul(ne[1]))
            .and_then(|n| n.checked_mul(ne[2]))
            .and_then(|n| n.checked_mul(ne[3]));
        let offset = r.u64()?;
        let size_error = || format!("corrupted tensor info: tensor '{name}' is too large; download it again");
        let nbytes = nbytes.ok_or_else(size_error)?;
        if !offset.is_multiple_of(alignment) {
            return Err(format!(
                "corrupted tensor info: tensor '{name}' has data offset {offset}, not a multiple of the alignment \
                 {alignment}; download it again"
            ));
        }
        if offset != next_offset {
            return Err(format!(
                "corrupted tensor info: tensor '{name}' has data offset {offset}, but the tensors before it end at \
                 {next_offset} (llama.cpp needs them packed in order); download it again"
            ));
        }
        next_offset = nbytes
            .checked_next_multiple_of(alignment)
            .and_then(|padded| offset.checked_add(padded))
            .ok_or_else(size_error)?;
        tensors.push(TensorInfo { name, offset, nbytes });
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests;
