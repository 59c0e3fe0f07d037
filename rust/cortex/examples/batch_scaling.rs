//! llama.cpp's own batched-decode scaling, without the engine around it: the ceiling continuous batching can reach
//! on this machine. Decodes 100 steps of N sequences (one token each, after a 32-token prompt each) and prints the
//! step time and aggregate tokens/s for N = 1, 2, 4, 8.
//!
//!     cargo run --release -p rusty-genius-cortex --example batch_scaling -- MODEL.gguf [THREADS]

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

const PROMPT: usize = 32;
const STEPS: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: batch_scaling MODEL.gguf [THREADS]")?;
    let threads: i32 = args.next().map_or(Ok(2), |t| t.parse())?;
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default())?;
    let mut single = 0.0;
    for n in [1usize, 2, 4, 8] {
        // As Brain does: a unified cache holding a 4096-token window per sequence, flash attention left on auto.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(4096 * u32::try_from(n)?))
            .with_n_seq_max(u32::try_from(n)?)
            .with_kv_unified(true)
            .with_n_batch(512)
            .with_n_ubatch(512)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let mut ctx = model.new_context(&backend, params)?;
        let mut batch = LlamaBatch::new(512, 1);
        for seq in 0..n {
            for pos in 0..PROMPT {
                batch.add(
                    LlamaToken(100 + i32::try_from(pos)?),
                    i32::try_from(pos)?,
                    &[i32::try_from(seq)?],
                    pos + 1 == PROMPT,
                )?;
            }
        }
        ctx.decode(&mut batch)?;
        let started = Instant::now();
        for step in 0..STEPS {
            batch.clear();
            for seq in 0..n {
                let pos = i32::try_from(PROMPT + step)?;
                batch.add(LlamaToken(200 + i32::try_from(seq)?), pos, &[i32::try_from(seq)?], true)?;
            }
            ctx.decode(&mut batch)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // token counts are small
        let rate = (n * STEPS) as f64 / seconds;
        if n == 1 {
            single = rate;
        }
        #[allow(clippy::cast_precision_loss)]
        let step_ms = seconds * 1000.0 / STEPS as f64;
        println!("sequences={n} step={step_ms:.2}ms aggregate={rate:.1} tok/s ratio_vs_1={:.2}", rate / single);
    }
    Ok(())
}
