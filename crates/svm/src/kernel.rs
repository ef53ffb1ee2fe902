//! The RBF kernel `exp(-gamma * |a - b|^2)`, one row at a time (the solver) or a whole block
//! through GEMM (prediction).

use digits_linalg::{matmul, View};

/// Dot product with 16 independent accumulators, so the compiler keeps it in SIMD registers.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a16
        .remainder()
        .iter()
        .zip(b16.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a16.zip(b16) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Squared norm of each `dim`-long row.
pub(crate) fn squared_norms(x: &[f32], dim: usize) -> Vec<f32> {
    x.chunks_exact(dim).map(|r| dot(r, r)).collect()
}

fn rbf(gamma: f32, sq_a: f32, sq_b: f32, dot: f32) -> f32 {
    (-gamma * (sq_a + sq_b - 2.0 * dot).max(0.0)).exp()
}

/// `out[t] = K(x_i, x_t)` for every row `t` of `x`.
pub(crate) fn row(x: &[f32], sq: &[f32], dim: usize, gamma: f32, i: usize, out: &mut [f32]) {
    let xi = &x[i * dim..(i + 1) * dim];
    for ((o, xt), &sq_t) in out.iter_mut().zip(x.chunks_exact(dim)).zip(sq) {
        *o = rbf(gamma, sq[i], sq_t, dot(xi, xt));
    }
}

/// `out[r * nb + c] = K(a_r, b_c)` for `a` (`na x dim`) and `b` (`nb x dim`); the cross terms
/// come from one GEMM.
pub(crate) fn block(
    a: &[f32],
    sq_a: &[f32],
    b: &[f32],
    sq_b: &[f32],
    dim: usize,
    gamma: f32,
    out: &mut [f32],
) {
    let (na, nb) = (sq_a.len(), sq_b.len());
    matmul(
        na,
        nb,
        dim,
        out,
        View::rows(a, dim),
        View::transposed(b, dim),
        false,
    );
    for (out_row, &sa) in out.chunks_exact_mut(nb).zip(sq_a) {
        for (o, &sb) in out_row.iter_mut().zip(sq_b) {
            *o = rbf(gamma, sa, sb, *o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_and_block_agree_with_the_definition() {
        let dim = 19;
        let x: Vec<f32> = (0..7 * dim)
            .map(|i| ((i * 37 % 11) as f32) / 11.0)
            .collect();
        let sq = squared_norms(&x, dim);
        let gamma = 0.3;
        let naive = |i: usize, t: usize| {
            let d2: f32 = (0..dim)
                .map(|k| (x[i * dim + k] - x[t * dim + k]).powi(2))
                .sum();
            (-gamma * d2).exp()
        };
        let mut r = vec![0.0; 7];
        row(&x, &sq, dim, gamma, 3, &mut r);
        let mut b = vec![0.0; 49];
        block(&x, &sq, &x, &sq, dim, gamma, &mut b);
        for t in 0..7 {
            assert!((r[t] - naive(3, t)).abs() < 1e-5);
            for i in 0..7 {
                assert!((b[i * 7 + t] - naive(i, t)).abs() < 1e-5);
            }
        }
        assert!((r[3] - 1.0).abs() < 1e-6);
    }
}
