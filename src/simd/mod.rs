//! The CPU's vector units, in one place: which instruction sets this machine has (detected once
//! per process), the register-state hygiene that mixing them needs, and the lane primitives the
//! kernels are written in (see [`lanes`]).
//!
//! Layer 1 (foundation). Owns: CPU feature detection and the small vector types shared by
//! kernels. Imports nothing of the crate; every kernel module (model, uq) may import it. Kernels keep their own
//! `#[target_feature]` functions beside the stage they compute (as LAMMPS's `sna.h` keeps each
//! stage named); they ask this module which one to call.

pub mod lanes;
pub mod reduce;

pub use reduce::{dist2, dot};

use std::sync::OnceLock;

/// Vector instruction sets of this CPU that the kernels use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// 256-bit AVX registers (needed for `vzeroupper`).
    pub avx: bool,
    /// AVX2 integer and gather instructions.
    pub avx2: bool,
    /// Fused multiply-add.
    pub fma: bool,
    /// AVX-512 Foundation (512-bit registers).
    pub avx512f: bool,
}

impl Features {
    fn detect() -> Features {
        #[cfg(target_arch = "x86_64")]
        {
            Features {
                avx: std::arch::is_x86_feature_detected!("avx"),
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                fma: std::arch::is_x86_feature_detected!("fma"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Features::default()
        }
    }

    /// AVX2 (without asking for FMA).
    #[inline]
    pub fn avx2(self) -> bool {
        self.avx2
    }

    /// AVX2 and FMA: the 256-bit kernels.
    #[inline]
    pub fn avx2_fma(self) -> bool {
        self.avx2 && self.fma
    }

    /// AVX-512F, AVX2 and FMA: the 512-bit kernels.
    #[inline]
    pub fn avx512(self) -> bool {
        self.avx512f && self.avx2 && self.fma
    }

    /// The widest kernel family this CPU runs, for reports ("avx512", "avx2+fma", "portable").
    pub fn widest(self) -> &'static str {
        if self.avx512() {
            "avx512"
        } else if self.avx2_fma() {
            "avx2+fma"
        } else {
            "portable"
        }
    }
}

/// This CPU's features, detected on first use.
#[inline]
pub fn features() -> Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    *FEATURES.get_or_init(Features::detect)
}

/// faer's GEMM kernels use 256/512-bit registers and can return with their upper halves dirty.
/// Until a `vzeroupper`, every legacy-SSE instruction in the rest of the program (this crate is
/// built for baseline x86-64) then pays a false dependency: measured, energy and forces ran 1.7x
/// slower after the first GEMM, for good. Clearing the state here costs nothing.
#[inline]
pub fn clear_upper_simd_state() {
    #[cfg(target_arch = "x86_64")]
    {
        if features().avx {
            // SAFETY: `vzeroupper` only zeroes the upper halves of the vector registers, which
            // hold no live values here (the GEMM has returned); the CPU supports AVX.
            // Declared as clobbering the C ABI's caller-saved registers (all vector registers),
            // so the compiler keeps nothing live in them across it, whatever the target features.
            unsafe {
                std::arch::asm!(
                    "vzeroupper",
                    clobber_abi("C"),
                    options(nomem, nostack, preserves_flags)
                )
            };
        }
    }
}
