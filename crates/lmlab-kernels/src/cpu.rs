//! The one place that asks the CPU what it can do.
//!
//! Every kernel dispatches on [`isa`]: the widest instruction set that is both present and
//! allowed. `LMLAB_SIMD=off` (or `scalar`) forces the portable scalar code everywhere, so the
//! whole test suite can be run without SIMD and any SIMD result can be checked against it.

use std::sync::OnceLock;

/// The instruction sets lmlab's kernels are written for, from narrowest to widest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, any CPU: the reference every SIMD kernel is tested against.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (Haswell and later).
    Avx2,
    /// AVX2 plus AVX-VNNI (`vpdpbusd` on 256-bit vectors; Alder Lake, Sapphire Rapids).
    AvxVnni,
}

impl Isa {
    /// Every instruction set, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::AvxVnni];

    /// Whether this CPU can run kernels written for `self` (whatever `LMLAB_SIMD` says).
    pub fn supported(self) -> bool {
        self <= detected()
    }

    /// The name used in messages and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx-vnni",
        }
    }
}

/// The widest instruction set this CPU supports, ignoring `LMLAB_SIMD`.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
            if avx2 && is_x86_feature_detected!("avxvnni") {
                return Isa::AvxVnni;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}

/// Whether `LMLAB_SIMD` asks for the scalar kernels (`off`, `scalar`, `0` or `false`).
pub fn simd_forced_off() -> bool {
    std::env::var("LMLAB_SIMD").is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "scalar" | "0" | "false"))
}

/// The instruction set the kernels use: [`detected`], or [`Isa::Scalar`] under `LMLAB_SIMD=off`.
/// Read once per process.
pub fn isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| if simd_forced_off() { Isa::Scalar } else { detected() })
}

/// Whether this CPU has AVX-512 BF16 (`vdpbf16ps`: pairs of bf16 products summed into f32
/// lanes), ignoring `LMLAB_SIMD`.
pub fn detected_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the bf16 matmul uses AVX-512 BF16: [`detected_avx512_bf16`], unless `LMLAB_SIMD=off`.
pub fn use_avx512_bf16() -> bool {
    static CHOSEN: OnceLock<bool> = OnceLock::new();
    *CHOSEN.get_or_init(|| !simd_forced_off() && detected_avx512_bf16())
}
