//! One sample through a dense layer with AVX-512, skipping zero inputs.
//!
//! Why: a single image's dense layer is a vector-matrix product whose cost is reading the
//! weights (1.6 MB on the default CNN, more than a core's L2), and `gemm`'s general kernels
//! read all of them. After ReLU and max pooling many inputs are exactly zero; their weight rows
//! need not be read at all. Batches keep using `gemm`.

/// Output columns per pass: eight 16-lane registers.
const COLUMNS: usize = 128;

/// `y[..n] = x * w` for one sample (`w` is `[x.len() x n]`, row-major) when this CPU has
/// AVX-512 and `n` is a multiple of 16; returns false, touching nothing, otherwise.
pub(crate) fn product(x: &[f32], w: &[f32], n: usize, y: &mut [f32]) -> bool {
    if !n.is_multiple_of(16) || !crate::fastconv::avx512() {
        return false;
    }
    assert!(w.len() >= x.len() * n && y.len() >= n);
    let rows = nonzero(x, 1);
    for start in (0..n).step_by(COLUMNS) {
        let width = COLUMNS.min(n - start);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `avx512` checked the CPU; rows index `x`, and the assert above keeps every
        // row's `start..start + width` inside `w` and `y`.
        unsafe {
            columns(
                x,
                &rows,
                &w[start..],
                n,
                width / 16,
                &mut y[start..start + width],
            )
        };
    }
    true
}

/// [`product`] with bfloat16 weight pairs (`w` from `fastconv::bf16_pairs`, `[x.len() / 2 x
/// n]`) and `x` rounded to bfloat16: half the bytes to read, where reading is the cost. Needs
/// AVX-512 BF16 and an even `x.len()`; returns false, touching nothing, otherwise.
pub(crate) fn product_bf16(x: &[f32], w: &[u32], n: usize, y: &mut [f32]) -> bool {
    let fits = n.is_multiple_of(16) && x.len().is_multiple_of(2);
    if !fits || !crate::fastconv::avx512_bf16() {
        return false;
    }
    assert!(w.len() >= x.len() / 2 * n && y.len() >= n);
    let rows = nonzero(x, 2);
    for start in (0..n).step_by(COLUMNS) {
        let width = COLUMNS.min(n - start);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `avx512_bf16` checked the CPU; rows index pairs of `x`, and the assert above
        // keeps every row's `start..start + width` inside `w` and `y`.
        unsafe {
            columns_bf16(
                x,
                &rows,
                &w[start..],
                n,
                width / 16,
                &mut y[start..start + width],
            )
        };
    }
    true
}

/// Indices of the runs of `width` inputs with any non-zero value, compacted without a branch
/// (about half of the inputs are zero, at random).
fn nonzero(x: &[f32], width: usize) -> Vec<u32> {
    let mut rows = vec![0u32; x.len() / width];
    let mut count = 0;
    for (k, run) in x.chunks_exact(width).enumerate() {
        rows[count] = k as u32;
        count += usize::from(run.iter().any(|&v| v != 0.0));
    }
    rows.truncate(count);
    rows
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn columns_bf16(x: &[f32], rows: &[u32], w: &[u32], n: usize, regs: usize, y: &mut [f32]) {
    use crate::fastconv::bf16_bits;
    use std::arch::x86_64::*;
    use std::mem::transmute;
    // SAFETY (whole body): see `product_bf16`; the transmutes reinterpret 512 bits as 32
    // bfloat16 values.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); COLUMNS / 16];
        for &k in rows {
            let k = k as usize;
            // Only the non-zero pairs are rounded, as they are used.
            let pair =
                bf16_bits(*x.get_unchecked(2 * k)) | bf16_bits(*x.get_unchecked(2 * k + 1)) << 16;
            let v: __m512bh = transmute(_mm512_set1_epi32(pair as i32));
            let row = w.as_ptr().add(k * n);
            for (r, acc) in acc.iter_mut().enumerate().take(regs) {
                let pair: __m512bh = transmute(_mm512_loadu_si512(row.add(r * 16).cast()));
                *acc = _mm512_dpbf16_ps(*acc, v, pair);
            }
        }
        for (r, acc) in acc.iter().enumerate().take(regs) {
            _mm512_storeu_ps(y.as_mut_ptr().add(r * 16), *acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn columns(x: &[f32], rows: &[u32], w: &[f32], n: usize, regs: usize, y: &mut [f32]) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): see `product`.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); COLUMNS / 16];
        for &k in rows {
            let k = k as usize;
            let v = _mm512_set1_ps(*x.get_unchecked(k));
            let row = w.as_ptr().add(k * n);
            for (r, acc) in acc.iter_mut().enumerate().take(regs) {
                *acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(row.add(r * 16)), *acc);
            }
        }
        for (r, acc) in acc.iter().enumerate().take(regs) {
            _mm512_storeu_ps(y.as_mut_ptr().add(r * 16), *acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use digits_rng::Rng;

    #[test]
    fn matches_the_plain_product_with_zero_inputs_skipped() {
        let mut rng = Rng::new(3);
        for (k, n) in [(3136, 128), (50, 16), (7, 272)] {
            let x: Vec<f32> = (0..k)
                .map(|i| if i % 3 == 0 { 0.0 } else { rng.normal() })
                .collect();
            let w: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
            let mut y = vec![f32::NAN; n];
            if !product(&x, &w, n, &mut y) {
                eprintln!("no AVX-512 on this CPU: the dense fast path is not used here");
                return;
            }
            for (j, got) in y.iter().enumerate() {
                let want: f32 = (0..k).map(|i| x[i] * w[i * n + j]).sum();
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
            }
        }
        let mut y = vec![0.0; 10];
        assert!(
            !product(&[1.0; 4], &[1.0; 40], 10, &mut y),
            "10 columns are not for AVX-512"
        );
    }
}
