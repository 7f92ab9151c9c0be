//! lmlab-kernels: every `unsafe` block and every SIMD intrinsic of lmlab, in one audited crate.
//!
//! What it does:
//! - the quantized matmuls of ggml's Q4_1 and Q8_0 weights against 8-bit activations
//!   ([`quant_matmul`], with [`dot4`] and [`dot4x2`] as the four-row kernels);
//! - attention over a KV cache for decode ([`decode_attention`]) and prefill
//!   ([`causal_attention`]), and the vector exponential they share ([`exp8_on`]);
//! - causal attention for training, forward and backward, without a stored T×T probability
//!   matrix ([`attention_forward`], [`attention_backward`]), and the linear layer's products
//!   ([`linear_forward`], [`linear_backward`]) in f32 or with bf16 inputs (AVX-512 BF16's
//!   `vdpbf16ps` where the CPU has it, [`use_avx512_bf16`]);
//! - one CPU-feature detection ([`isa`], [`Isa`]): AVX2+FMA+F16C, AVX-VNNI, or the portable
//!   scalar code, which `LMLAB_SIMD=off` forces so the whole suite can run without SIMD;
//! - safe wrappers for the system calls the other crates need ([`map_readonly`],
//!   [`cpu_seconds`], [`keep_freed_memory`]), and a byte buffer in transparent huge pages for
//!   a model's weights ([`HugePageBuffer`]).
//!
//! Every kernel has a scalar reference in safe Rust that its SIMD versions are tested against,
//! bit for bit where the operation order is the same and to a stated bound where it is not.
//! All SIMD code sits in `x86_64.rs`, each `unsafe fn` with a `# Safety` section; the public
//! functions check their slices' lengths and the CPU's features before calling into it.
//!
//! What it does not do: tensors, models or threads of its own (rayon's pool is the caller's).
//!
//! ```
//! use lmlab_kernels::{quant_matmul, QuantKind, BLOCK};
//! // One Q8_0 row of 32 weights, all 1 (scale 1.0 as f16 = 0x3C00), times x = 0..32.
//! let mut w = vec![0x00, 0x3C];
//! w.extend([1u8; BLOCK]);
//! let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
//! let mut y = [0.0f32];
//! quant_matmul(QuantKind::Q8_0, &w, (1, 32), &x, 1, &mut y);
//! assert!((y[0] - 496.0).abs() < 2.0); // Σ i, up to the 8-bit rounding of x
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod attention;
mod bf16;
mod cpu;
mod gemm;
mod quant;
mod sys;
mod train_attention;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use attention::{causal_attention, decode_attention, decode_attention_on, exp8_on, CacheElem, CacheView};
pub use cpu::{detected, detected_avx512_bf16, isa, simd_forced_off, use_avx512_bf16, Isa};
pub use gemm::{linear_backward, linear_forward, LinearShape};
pub use quant::{dot4, dot4x2, group_scales, group_scales_on, quant_matmul, quant_matmul_on, quantize_row, ActBlock, QuantKind, BLOCK};
pub use sys::{cpu_seconds, keep_freed_memory, map_readonly, HugePageBuffer};
pub use train_attention::{attention_backward, attention_forward, AttentionGrads, AttentionShape};
