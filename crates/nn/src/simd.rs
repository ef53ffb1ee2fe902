//! Vectors of f32 behind one interface, so that each fast convolution kernel (`fastconv`) is
//! written once and compiled twice: for AVX-512 and for AVX2 with FMA. Why both: most laptops
//! and desktops have no AVX-512 (Intel's client CPUs since 2021, AMD's before Zen 4), and
//! there every convolution fell back to im2col and `gemm`, four times Winograd's multiplies.
//!
//! Every method is `unsafe` and `#[inline(always)]`: call them only from functions compiled
//! with the vector's CPU features (`#[target_feature]`), into which they inline. Outside
//! x86-64 there is no vector and [`Isa::detect`] finds none.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The instruction sets the fast convolutions are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F: 16 lanes, 32 registers.
    Avx512,
    /// AVX2 and FMA: 8 lanes, 16 registers.
    Avx2,
}

impl Isa {
    /// The widest set this CPU runs, if any (`std` caches the CPU's answer).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn detect() -> Option<Isa> {
        if std::arch::is_x86_feature_detected!("avx512f") {
            Some(Isa::Avx512)
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            Some(Isa::Avx2)
        } else {
            None
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) fn detect() -> Option<Isa> {
        None
    }
}

/// Calls the generic, `#[inline(always)]` kernel `$body::<V>(args)` compiled for this CPU's
/// [`Isa`]: it inlines into one function per instruction set, each with its CPU features on.
/// Only where [`Isa::detect`] found one, inside an `unsafe` block.
#[cfg(target_arch = "x86_64")]
macro_rules! on_this_cpu {
    ($body:ident($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512($($arg: $ty),*) {
            unsafe { $body::<std::arch::x86_64::__m512>($($arg),*) }
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($arg: $ty),*) {
            unsafe { $body::<std::arch::x86_64::__m256>($($arg),*) }
        }
        match $crate::simd::Isa::detect() {
            Some($crate::simd::Isa::Avx512) => avx512($($arg),*),
            Some($crate::simd::Isa::Avx2) => avx2($($arg),*),
            None => unreachable!("vector kernels run only with AVX-512 or AVX2"),
        }
    }};
}
#[cfg(target_arch = "x86_64")]
pub(crate) use on_this_cpu;

/// A vector of f32 lanes.
#[cfg(target_arch = "x86_64")]
pub(crate) trait Vector: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(p: *mut f32, v: Self);
    /// The first `count` (at most [`Self::LANES`]) floats at `p`, zeros after them; nothing
    /// past them is read, and with a count of 0 nothing at all.
    unsafe fn load_first(p: *const f32, count: usize) -> Self;
    /// Writes the first `count` lanes of `v` to `p` and nothing past them.
    unsafe fn store_first(p: *mut f32, count: usize, v: Self);
    /// `v` as bfloat16 pairs at `p` (half the lanes' width): only where AVX-512 BF16 runs.
    unsafe fn store_bf16(p: *mut u32, v: Self);
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn sub(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    /// `a * b + c`, rounded once.
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    unsafe fn max(a: Self, b: Self) -> Self;
    /// One bit per lane (lane 0 lowest): set where `a > b` (false for NaN).
    unsafe fn greater(a: Self, b: Self) -> u32;
    /// Byte `i` at `dst` becomes 2 times bit `i` of `high` plus bit `i` of `low`, for every lane.
    unsafe fn store_bit_pairs(dst: *mut u8, high: u32, low: u32);
}

/// Lanes of a 16-lane register that exist when only `count` values remain.
#[cfg(target_arch = "x86_64")]
fn mask16(count: usize) -> u16 {
    if count >= 16 {
        u16::MAX
    } else {
        (1u16 << count) - 1
    }
}

#[cfg(target_arch = "x86_64")]
impl Vector for __m512 {
    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, count: usize) -> Self {
        unsafe { _mm512_maskz_loadu_ps(mask16(count), p) }
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, count: usize, v: Self) {
        unsafe { _mm512_mask_storeu_ps(p, mask16(count), v) }
    }
    #[inline(always)]
    unsafe fn store_bf16(p: *mut u32, v: Self) {
        unsafe {
            let pairs = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(p.cast(), pairs)
        }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn greater(a: Self, b: Self) -> u32 {
        unsafe { u32::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b)) }
    }
    #[inline(always)]
    unsafe fn store_bit_pairs(dst: *mut u8, high: u32, low: u32) {
        unsafe {
            let pairs = _mm512_or_si512(
                _mm512_maskz_set1_epi32(high as u16, 2),
                _mm512_maskz_set1_epi32(low as u16, 1),
            );
            _mm_storeu_si128(dst.cast(), _mm512_cvtepi32_epi8(pairs))
        }
    }
}

/// AVX2's masked loads and stores take a vector: all ones in the first `count` lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mask8(count: usize) -> __m256i {
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(count.min(8) as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

#[cfg(target_arch = "x86_64")]
impl Vector for __m256 {
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, count: usize) -> Self {
        unsafe {
            match count {
                0 => _mm256_setzero_ps(),
                8.. => _mm256_loadu_ps(p),
                _ => _mm256_maskload_ps(p, mask8(count)),
            }
        }
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, count: usize, v: Self) {
        unsafe {
            if count >= 8 {
                _mm256_storeu_ps(p, v)
            } else {
                _mm256_maskstore_ps(p, mask8(count), v)
            }
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(_: *mut u32, _: Self) {
        unreachable!("bfloat16 products run only where AVX-512 BF16 does")
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn greater(a: Self, b: Self) -> u32 {
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(a, b)) as u32 }
    }
    #[inline(always)]
    unsafe fn store_bit_pairs(dst: *mut u8, high: u32, low: u32) {
        for lane in 0..8 {
            let pair = 2 * ((high >> lane) & 1) + ((low >> lane) & 1);
            unsafe { *dst.add(lane) = pair as u8 };
        }
    }
}
