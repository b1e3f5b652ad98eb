//! Lane groups: a kernel written once over [`Group`] compiles to plain arrays (any CPU, bitwise
//! the scalar arithmetic) and to 256-bit AVX2 registers with fused multiply-adds.

/// Lanes per group (four f64 lanes of a 256-bit register).
pub(crate) const LANES: usize = 4;

/// One group of [`LANES`] lanes as a value: the lane kernel is written once over this and
/// compiled twice, with plain arrays (any CPU) and with 256-bit AVX2 registers and fused
/// multiply-adds (explicit intrinsics: written over arrays, the force contraction stayed scalar).
pub(crate) trait Group: Copy {
    fn zero() -> Self;
    fn splat(v: f64) -> Self;
    /// # Safety
    /// `p` must point to `LANES` readable values.
    unsafe fn load(p: *const f64) -> Self;
    /// # Safety
    /// `p` must point to `LANES` writable values.
    unsafe fn store(self, p: *mut f64);
    /// `a * b + c` lane-wise (fused or not, per implementation).
    fn madd(a: Self, b: Self, c: Self) -> Self;
    /// `a + b` lane-wise.
    fn add(a: Self, b: Self) -> Self;
    fn to_array(self) -> [f64; LANES];
}

/// Portable lanes: separate multiply and add (bitwise the scalar arithmetic).
#[derive(Clone, Copy)]
pub(crate) struct Plain([f64; LANES]);

impl Group for Plain {
    #[inline(always)]
    fn zero() -> Self {
        Plain([0.0; LANES])
    }
    #[inline(always)]
    fn splat(v: f64) -> Self {
        Plain([v; LANES])
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        // SAFETY: per the trait contract.
        Plain(unsafe { std::ptr::read_unaligned(p as *const [f64; LANES]) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        // SAFETY: per the trait contract.
        unsafe { std::ptr::write_unaligned(p as *mut [f64; LANES], self.0) }
    }
    #[inline(always)]
    fn madd(a: Self, b: Self, c: Self) -> Self {
        Plain(std::array::from_fn(|k| a.0[k] * b.0[k] + c.0[k]))
    }
    #[inline(always)]
    fn add(a: Self, b: Self) -> Self {
        Plain(std::array::from_fn(|k| a.0[k] + b.0[k]))
    }
    #[inline(always)]
    fn to_array(self) -> [f64; LANES] {
        self.0
    }
}

/// AVX2 lanes with fused multiply-adds. Only used inside functions compiled with the `avx2`
/// and `fma` target features (after run-time detection), into which these are inlined.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx(std::arch::x86_64::__m256d);

#[cfg(target_arch = "x86_64")]
impl Group for Avx {
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: only reached from AVX2+FMA code (see the type's documentation).
        Avx(unsafe { std::arch::x86_64::_mm256_setzero_pd() })
    }
    #[inline(always)]
    fn splat(v: f64) -> Self {
        // SAFETY: as in `zero`.
        Avx(unsafe { std::arch::x86_64::_mm256_set1_pd(v) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        // SAFETY: per the trait contract; AVX2 as in `zero`.
        Avx(unsafe { std::arch::x86_64::_mm256_loadu_pd(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        // SAFETY: per the trait contract; AVX2 as in `zero`.
        unsafe { std::arch::x86_64::_mm256_storeu_pd(p, self.0) }
    }
    #[inline(always)]
    fn madd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: FMA as in `zero`.
        Avx(unsafe { std::arch::x86_64::_mm256_fmadd_pd(a.0, b.0, c.0) })
    }
    #[inline(always)]
    fn add(a: Self, b: Self) -> Self {
        // SAFETY: AVX as in `zero`.
        Avx(unsafe { std::arch::x86_64::_mm256_add_pd(a.0, b.0) })
    }
    #[inline(always)]
    fn to_array(self) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        // SAFETY: `out` holds LANES values; AVX2 as in `zero`.
        unsafe { std::arch::x86_64::_mm256_storeu_pd(out.as_mut_ptr(), self.0) };
        out
    }
}

/// `dst[c] += w * src[c]` over one group of lanes in memory.
///
/// # Safety
/// `dst` must point to `LANES` writable values.
#[inline(always)]
pub(crate) unsafe fn axpy_mem<V: Group>(dst: *mut f64, src: V, w: f64) {
    // SAFETY: per the function contract.
    unsafe { V::madd(V::splat(w), src, V::load(dst)).store(dst) }
}
