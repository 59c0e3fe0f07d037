//! The load options' side of the footprint: KV-cache types, flash attention and the micro-batch, against what
//! llama.cpp allocated for SmolLM2-135M (the header-parsing side is tested in `gguf/tests.rs`).

use std::collections::BTreeMap;

use super::*;
use crate::error::CortexError;
use crate::gguf::{GgufInfo, MetaValue};

const MIB: u64 = 1 << 20;
const SMOL_WEIGHTS: u64 = 96_570_000;

/// SmolLM2-135M's header: 30 layers, n_embd 576, 9 heads, 3 KV heads of 64, n_ff 1536, vocab 49152.
fn smol() -> GgufInfo {
    let mut metadata = BTreeMap::new();
    metadata.insert("general.architecture".to_owned(), MetaValue::Str("llama".into()));
    for (key, value) in [
        ("block_count", 30),
        ("context_length", 8192),
        ("embedding_length", 576),
        ("feed_forward_length", 1536),
        ("attention.head_count", 9),
        ("attention.head_count_kv", 3),
        ("vocab_size", 49152),
    ] {
        metadata.insert(format!("llama.{key}"), MetaValue::UInt(value));
    }
    GgufInfo {
        version: 3,
        tensor_count: 0,
        metadata_count: 8,
        architecture: Some("llama".into()),
        context_length: Some(8192),
        alignment: 32,
        data_offset: 0,
        file_size: SMOL_WEIGHTS,
        metadata,
        vocab_size: None,
        tensor_bytes: SMOL_WEIGHTS,
    }
}

fn cache(type_k: CacheType, type_v: CacheType, flash_attention: FlashAttention) -> KvCache {
    KvCache { type_k, type_v, flash_attention }
}

fn sizing(context_size: u32, parallel: u32, batch_size: u32, cache: KvCache) -> Sizing {
    Sizing { context_size: Some(context_size), parallel: Some(parallel), batch_size, ubatch_size: None, cache }
}

fn field_of(result: Result<(), CortexError>) -> &'static str {
    match result {
        Err(CortexError::InvalidConfig { field, .. }) => field,
        other => panic!("not an InvalidConfig: {other:?}"),
    }
}

use CacheType::{F16, Q4_0, Q8_0};

/// The engine's check of `cache` against a loaded model's shape.
fn check_heads(cache: KvCache, shape: &KvShape) -> Result<(), CortexError> {
    let (key_width, value_width) = shape.head_widths();
    cache.check_heads(key_width, value_width)
}
use FlashAttention::{Auto, Off, On};

#[test]
fn cache_types_are_priced_in_ggml_blocks() {
    // One SmolLM2 layer's K row: 3 KV heads of 64 values.
    assert_eq!((F16.bytes(192), Q8_0.bytes(192), Q4_0.bytes(192)), (384, 6 * 34, 6 * 18));
    // A part of a block costs the whole block.
    assert_eq!((Q8_0.bytes(33), Q4_0.bytes(1), F16.bytes(0)), (68, 18, 0));
    assert!(Q8_0.is_quantized() && Q4_0.is_quantized() && !F16.is_quantized());
    let shape = KvShape::from_gguf(&smol()).expect("shape");
    let f16 = shape.bytes_per_cell();
    assert_eq!(f16, shape.bytes_per_cell_of(KvCache::default()));
    assert_eq!(f16, 30 * 2 * 384);
    let q8 = shape.bytes_per_cell_of(cache(Q8_0, Q8_0, Auto));
    let q4 = shape.bytes_per_cell_of(cache(Q4_0, Q4_0, Auto));
    // q8_0: 34/64 of f16 (53 %); q4_0: 18/64 (28 %).
    assert_eq!((q8 * 64, q4 * 64), (f16 * 34, f16 * 18));
    let mixed = shape.bytes_per_cell_of(cache(Q8_0, F16, Off));
    assert_eq!(mixed, 30 * (204 + 384));
}

#[test]
fn parse_names_the_field_and_the_accepted_values() {
    assert_eq!(CacheType::parse("cache_type_k", "Q8_0"), Ok(Q8_0));
    assert_eq!(FlashAttention::parse("flash_attention", "OFF"), Ok(Off));
    for kind in [F16, Q8_0, Q4_0] {
        assert_eq!(CacheType::parse("cache_type_v", kind.name()), Ok(kind));
    }
    for setting in [Auto, On, Off] {
        assert_eq!(FlashAttention::parse("flash_attention", setting.name()), Ok(setting));
    }
    let err = CacheType::parse("cache_type_v", "q3").expect_err("q3");
    assert_eq!(err.to_string(), "invalid cache_type_v = \"q3\": must be f16, q8_0 or q4_0");
    let err = FlashAttention::parse("flash_attention", "yes").expect_err("yes");
    assert_eq!(err.to_string(), "invalid flash_attention = \"yes\": must be on, off or auto");
}

#[test]
fn a_quantized_v_cache_needs_flash_attention() {
    for v in [Q8_0, Q4_0] {
        let err = cache(F16, v, Off).check().expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("cache_type_v") && text.contains("flash_attention = off"), "{text}");
        assert_eq!(field_of(cache(F16, v, Off).check()), "cache_type_v");
        // `auto` lets llama.cpp turn flash attention on for it.
        assert!(cache(F16, v, Auto).check().is_ok() && cache(v, v, On).check().is_ok());
    }
    // A quantized K alone runs without flash attention.
    assert!(cache(Q8_0, F16, Off).check().is_ok());
    assert!(!cache(Q8_0, F16, Off).flash() && cache(F16, F16, Auto).flash());
}

#[test]
fn sizing_checks_every_option() {
    assert!(Sizing::default().check().is_ok());
    assert_eq!(Sizing::default().batch_size, 512);
    let with = |ubatch_size, batch_size| Sizing { ubatch_size, batch_size, ..Sizing::default() }.check();
    assert!(with(Some(1), 512).is_ok() && with(Some(512), 512).is_ok() && with(Some(65536), 65536).is_ok());
    for (ubatch, batch) in [(Some(0), 512), (Some(65537), 65536), (Some(1024), 512)] {
        assert_eq!(field_of(with(ubatch, batch)), "ubatch_size", "{ubatch:?} {batch}");
    }
    assert!(with(Some(1024), 512).expect_err("over").to_string().contains("at most batch_size"));
    assert_eq!(field_of(with(None, 0)), "batch_size");
    let bad_cache = Sizing { cache: cache(Q4_0, Q4_0, Off), ..Sizing::default() };
    assert_eq!(field_of(bad_cache.check()), "cache_type_v");
}

#[test]
fn quantized_types_need_heads_a_block_wide() {
    let smol = KvShape::from_gguf(&smol()).expect("shape");
    assert!(check_heads(cache(Q4_0, Q4_0, Auto), &smol).is_ok());
    // Phi-2-like heads of 80: f16 only.
    let phi = KvShape { n_layer: 32, n_embd: 2560, n_head: 32, n_head_kv: 32, key_length: None, value_length: None };
    assert!(check_heads(KvCache::default(), &phi).is_ok());
    assert_eq!(field_of(check_heads(cache(Q8_0, F16, Auto), &phi)), "cache_type_k");
    let err = check_heads(cache(F16, Q8_0, Auto), &phi).expect_err("80 wide");
    assert!(err.to_string().contains("value heads are 80 wide"), "{err}");
    // A model's own key and value lengths win over n_embd / n_head.
    let wide = KvShape { key_length: Some(128), value_length: Some(96), ..phi };
    assert!(check_heads(cache(Q8_0, Q8_0, Auto), &wide).is_ok());
    assert_eq!(wide.head_widths(), (128, 96));
}

#[test]
fn the_micro_batch_is_at_most_the_batch() {
    assert_eq!(ubatch(None, 512), 512);
    assert_eq!(ubatch(Some(128), 512), 128);
    assert_eq!(ubatch(Some(1024), 512), 512);
    assert_eq!(ubatch(Some(0), 512), 1);
}

/// KV bytes llama.cpp logged for SmolLM2 with 4096 cells ("KV buffer size", MiB).
const LOGGED_KV: [(CacheType, CacheType, FlashAttention, f64); 4] =
    [(F16, F16, Auto, 90.00), (Q8_0, Q8_0, Auto, 47.81), (Q4_0, Q4_0, Auto, 25.31), (Q8_0, F16, Off, 68.91)];

#[test]
fn kv_cache_matches_what_llama_cpp_allocated() {
    let info = smol();
    let f16 = estimate_of(&info, &sizing(4096, 1, 512, KvCache::default()), None).kv_cache;
    for (k, v, flash, mib) in LOGGED_KV {
        let f = estimate_of(&info, &sizing(4096, 1, 512, cache(k, v, flash)), None);
        let kv = f.kv_cache as f64 / MIB as f64;
        assert!((kv - mib).abs() < 0.01, "{k:?}/{v:?}: {kv} MiB, llama.cpp {mib}");
        assert_eq!(f.total, f.weights + f.kv_cache + f.compute);
    }
    let ratio = |k, v| estimate_of(&info, &sizing(4096, 1, 512, cache(k, v, Auto)), None).kv_cache as f64 / f16 as f64;
    assert!((ratio(Q8_0, Q8_0) - 0.531).abs() < 0.001 && (ratio(Q4_0, Q4_0) - 0.281).abs() < 0.001);
    // Flash attention on, the compute buffer does not depend on the types (llama.cpp logged 106.80 MiB for each).
    let compute: Vec<u64> = [F16, Q8_0, Q4_0]
        .iter()
        .map(|&t| estimate_of(&info, &sizing(4096, 1, 512, cache(t, t, Auto)), None).compute)
        .collect();
    assert!(compute.iter().all(|&c| c == compute[0]));
}

/// Compute plus output buffers llama.cpp logged for SmolLM2 with flash attention off: (cells, micro-batch, MiB).
const LOGGED_NO_FLASH: [(u32, u32, f64); 9] = [
    (1024, 128, 26.38),
    (1024, 512, 105.52),
    (1024, 1024, 211.03),
    (4096, 128, 27.60),
    (4096, 512, 110.39),
    (4096, 2048, 441.56),
    (16384, 128, 81.88),
    (16384, 512, 327.52),
    (16384, 2048, 1310.06),
];

#[test]
fn compute_without_flash_attention_matches_what_llama_cpp_allocated() {
    let info = smol();
    for (cells, ubatch, mib) in LOGGED_NO_FLASH {
        let f = estimate_of(&info, &sizing(cells, 1, ubatch, cache(F16, F16, Off)), None);
        let logged = mib + 0.19; // the output buffer of one sequence
        let compute = f.compute as f64 / MIB as f64;
        // Never under llama.cpp's figure, at most 2 % over.
        assert!(
            compute >= logged - 0.01 && compute <= logged * 1.02,
            "{cells}/{ubatch}: {compute}, llama.cpp {logged}"
        );
        // More than with flash attention, which needs no scores.
        let flash = estimate_of(&info, &sizing(cells, 1, ubatch, KvCache::default()), None);
        assert!(f.compute > flash.compute);
    }
}

#[test]
fn the_micro_batch_sizes_the_compute_buffer() {
    // 4 sequences of 4096, a batch of 2048 in micro-batches of 256: llama.cpp logged 58.82 + 0.75 MiB.
    let info = smol();
    let s = Sizing { ubatch_size: Some(256), ..sizing(4096, 4, 2048, KvCache::default()) };
    let compute = estimate_of(&info, &s, None).compute as f64 / MIB as f64;
    assert!((59.57..=59.57 * 1.02).contains(&compute), "{compute}");
    // Without a micro-batch, the batch is one.
    let whole = estimate_of(&info, &sizing(4096, 4, 2048, KvCache::default()), None);
    assert!(whole.compute as f64 / MIB as f64 > 4.0 * compute);
}

#[test]
fn auto_parallel_fits_more_sequences_with_a_quantized_cache() {
    let info = smol();
    let parallel = |kind, available| {
        let s = Sizing { cache: cache(kind, kind, Auto), ..Sizing::default() };
        estimate_of(&info, &s, Some(available)).parallel
    };
    // A quarter of 1 GiB: 256 MiB for caches of 4096 cells (f16 90 MiB each, q8_0 47.8, q4_0 25.3).
    assert_eq!((parallel(F16, 1 << 30), parallel(Q8_0, 1 << 30), parallel(Q4_0, 1 << 30)), (2, 4, 4));
    // A quarter of 512 MiB: 128 MiB.
    assert_eq!((parallel(F16, 512 * MIB), parallel(Q8_0, 512 * MIB), parallel(Q4_0, 512 * MIB)), (1, 2, 4));
    // The engine's own rule on the loaded shape gives the same.
    let shape = KvShape::from_gguf(&info).expect("shape");
    let engine = auto_parallel(shape.bytes_per_cell_of(cache(Q8_0, Q8_0, Auto)), 4096, SMOL_WEIGHTS, Some(1 << 30));
    assert_eq!(engine, 4);
}

#[test]
fn a_header_without_a_shape_scales_its_fallback_by_the_types() {
    let mut bare = smol();
    bare.metadata.retain(|k, _| k == "general.architecture");
    let f16 = estimate_of(&bare, &sizing(1024, 1, 512, KvCache::default()), None).kv_cache;
    let q8 = estimate_of(&bare, &sizing(1024, 1, 512, cache(Q8_0, Q8_0, Auto)), None).kv_cache;
    assert_eq!(f16, 1024 * (SMOL_WEIGHTS / 2048));
    assert_eq!(q8, 1024 * ((SMOL_WEIGHTS / 2048) * 136 / 256));
}

#[test]
fn the_old_entry_points_are_the_defaults() {
    let info = smol();
    assert_eq!(
        estimate(&info, Some(1024), Some(2), 256, Some(1 << 30)),
        estimate_of(&info, &sizing(1024, 2, 256, KvCache::default()), Some(1 << 30))
    );
}
