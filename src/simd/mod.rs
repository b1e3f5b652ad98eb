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

/// The environment variable that narrows the kernels below what the CPU has, so that one host
/// can time (`make bench`) and test every path: `avx2` (no 512-bit kernels) or `portable` (no
/// SIMD kernels). Unset, empty or `native`: everything the CPU has.
pub const SIMD_ENV: &str = "ACEUQ_SIMD";

impl Features {
    fn detect() -> Features {
        let cpu = Self::detect_cpu();
        match std::env::var(SIMD_ENV) {
            Ok(v) => match Self::capped(cpu, &v) {
                Some(f) => f,
                None => {
                    eprintln!(
                        "aceuq: ignoring {SIMD_ENV}={v:?} (expected native, avx2 or portable); \
                         using {}",
                        cpu.widest()
                    );
                    cpu
                }
            },
            Err(_) => cpu,
        }
    }

    /// `cpu` narrowed to the kernel family named by `cap` (never widened beyond the CPU); `None`
    /// for an unknown name.
    pub fn capped(cpu: Features, cap: &str) -> Option<Features> {
        match cap.trim().to_ascii_lowercase().as_str() {
            "" | "native" | "avx512" => Some(cpu),
            "avx2" | "avx2+fma" => Some(Features {
                avx512f: false,
                ..cpu
            }),
            // The AVX flag stays: it only decides whether `vzeroupper` is issued after faer's
            // GEMM, which picks its own kernels.
            "portable" | "none" | "scalar" => Some(Features {
                avx: cpu.avx,
                ..Features::default()
            }),
            _ => None,
        }
    }

    fn detect_cpu() -> Features {
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

/// The kernel family this process runs (after [`SIMD_ENV`]), as a NUL-terminated string for
/// the C ABI and logs: "avx512", "avx2+fma" or "portable".
pub fn kernels_cstr() -> &'static str {
    match features().widest() {
        "avx512" => "avx512\0",
        "avx2+fma" => "avx2+fma\0",
        _ => "portable\0",
    }
}

/// What the CPU has, whatever [`SIMD_ENV`] says (for reports).
pub fn cpu_features() -> Features {
    static CPU: OnceLock<Features> = OnceLock::new();
    *CPU.get_or_init(Features::detect_cpu)
}

/// This CPU's features (narrowed by [`SIMD_ENV`]), detected on first use.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capping_only_narrows() {
        let all = Features {
            avx: true,
            avx2: true,
            fma: true,
            avx512f: true,
        };
        assert_eq!(Features::capped(all, "native").unwrap().widest(), "avx512");
        assert_eq!(Features::capped(all, "AVX2").unwrap().widest(), "avx2+fma");
        let p = Features::capped(all, "portable").unwrap();
        assert_eq!(p.widest(), "portable");
        assert!(p.avx, "vzeroupper after faer's GEMM still needed");
        let avx2_host = Features {
            avx512f: false,
            ..all
        };
        // Asking for more than the CPU has gives what it has.
        assert_eq!(Features::capped(avx2_host, "avx512").unwrap(), avx2_host);
        assert!(Features::capped(all, "sse9").is_none());
    }
}
