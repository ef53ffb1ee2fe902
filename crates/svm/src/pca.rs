//! Principal component analysis: the top `k` eigenvectors of the covariance by subspace
//! iteration (a few GEMMs on the `d x d` covariance) and Rayleigh-Ritz with Jacobi rotations on
//! the small projected matrix. Projecting 784 pixels onto ~50 components keeps the distances the
//! RBF kernel sees while making each kernel evaluation ~15x cheaper.

use digits_linalg::{matmul, View};
use digits_rng::Rng;

/// Extra directions iterated beyond `k`, so the wanted ones converge fast.
const OVERSAMPLE: usize = 12;
const ITERATIONS: usize = 24;
/// Rows per GEMM when accumulating the covariance, to bound the centred copy.
const CHUNK: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    dim: usize,
    mean: Vec<f32>,
    /// `k x dim`, orthonormal rows, by decreasing variance.
    components: Vec<f32>,
    /// The variance along each component.
    variances: Vec<f32>,
}

impl Pca {
    /// Fits `k` components to the rows of `x` (`n x dim`).
    pub fn fit(x: &[f32], dim: usize, k: usize, seed: u64) -> Pca {
        let n = x.len() / dim;
        assert!(
            n > 0 && k > 0 && k <= dim,
            "PCA needs rows and 0 < k <= dim"
        );
        let mut mean = vec![0f64; dim];
        for r in x.chunks_exact(dim) {
            mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
        let mut cov = vec![0f32; dim * dim];
        let mut centred = Vec::with_capacity(CHUNK * dim);
        for (c, chunk) in x.chunks(CHUNK * dim).enumerate() {
            centred.clear();
            centred.extend(
                chunk
                    .chunks_exact(dim)
                    .flat_map(|r| r.iter().zip(&mean).map(|(v, m)| v - m)),
            );
            let rows = centred.len() / dim;
            matmul(
                dim,
                dim,
                rows,
                &mut cov,
                View::transposed(&centred, dim),
                View::rows(&centred, dim),
                c > 0,
            );
        }
        cov.iter_mut().for_each(|v| *v /= n as f32);

        let m = (k + OVERSAMPLE).min(dim);
        let mut rng = Rng::new(seed);
        let mut basis: Vec<f32> = (0..m * dim).map(|_| rng.normal()).collect();
        orthonormalise(&mut basis, dim, &mut rng);
        let mut product = vec![0f32; m * dim];
        for iteration in 0..=ITERATIONS {
            // The covariance is symmetric, so rows times it is the transpose of it times columns.
            matmul(
                m,
                dim,
                dim,
                &mut product,
                View::rows(&basis, dim),
                View::rows(&cov, dim),
                false,
            );
            if iteration == ITERATIONS {
                break;
            }
            std::mem::swap(&mut basis, &mut product);
            orthonormalise(&mut basis, dim, &mut rng);
        }
        let mut projected = vec![0f32; m * m];
        matmul(
            m,
            m,
            dim,
            &mut projected,
            View::rows(&product, dim),
            View::transposed(&basis, dim),
            false,
        );
        let (values, vectors) = symmetric_eigen(&projected, m);
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let mut components = vec![0f32; k * dim];
        for (out, &e) in components.chunks_exact_mut(dim).zip(&order) {
            for s in 0..m {
                let w = vectors[s * m + e] as f32;
                out.iter_mut()
                    .zip(&basis[s * dim..(s + 1) * dim])
                    .for_each(|(o, b)| *o += w * b);
            }
        }
        let variances = order[..k].iter().map(|&e| values[e] as f32).collect();
        Pca {
            dim,
            mean,
            components,
            variances,
        }
    }

    /// Rebuilds a stored projection, checking the shapes agree.
    pub fn from_parts(
        dim: usize,
        mean: Vec<f32>,
        components: Vec<f32>,
        variances: Vec<f32>,
    ) -> Option<Pca> {
        let k = variances.len();
        (dim > 0 && k > 0 && mean.len() == dim && components.len() == k * dim).then_some(Pca {
            dim,
            mean,
            components,
            variances,
        })
    }

    pub fn input_dim(&self) -> usize {
        self.dim
    }

    pub fn output_dim(&self) -> usize {
        self.variances.len()
    }

    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    pub fn components(&self) -> &[f32] {
        &self.components
    }

    pub fn variances(&self) -> &[f32] {
        &self.variances
    }

    /// Coordinates of each row of `x` (`n x dim`) along the components (`n x k`).
    pub fn transform(&self, x: &[f32]) -> Vec<f32> {
        let (n, k) = (x.len() / self.dim, self.output_dim());
        let mut out = vec![0f32; n * k];
        matmul(
            n,
            k,
            self.dim,
            &mut out,
            View::rows(x, self.dim),
            View::transposed(&self.components, self.dim),
            false,
        );
        let shift: Vec<f32> = self
            .components
            .chunks_exact(self.dim)
            .map(|c| crate::kernel::dot(c, &self.mean))
            .collect();
        for r in out.chunks_exact_mut(k) {
            r.iter_mut().zip(&shift).for_each(|(v, s)| *v -= s);
        }
        out
    }
}

/// Modified Gram-Schmidt on the rows, twice over for accuracy in f32. A row that the others
/// already span (the data has fewer directions than rows) is replaced by a random one.
fn orthonormalise(rows: &mut [f32], dim: usize, rng: &mut Rng) {
    let m = rows.len() / dim;
    for i in 0..m {
        let (done, rest) = rows.split_at_mut(i * dim);
        let row = &mut rest[..dim];
        loop {
            let before = crate::kernel::dot(row, row).sqrt();
            for _ in 0..2 {
                for prev in done.chunks_exact(dim) {
                    let p = crate::kernel::dot(prev, row);
                    row.iter_mut().zip(prev).for_each(|(r, q)| *r -= p * q);
                }
            }
            let norm = crate::kernel::dot(row, row).sqrt();
            if norm > 1e-3 * before && norm > 0.0 {
                row.iter_mut().for_each(|r| *r /= norm);
                break;
            }
            row.iter_mut().for_each(|r| *r = rng.normal());
        }
    }
}

/// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of a small symmetric
/// matrix, by cyclic Jacobi rotations.
fn symmetric_eigen(a: &[f32], m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    // Symmetrise away the GEMM's rounding.
    for i in 0..m {
        for j in 0..i {
            let s = 0.5 * (a[i * m + j] + a[j * m + i]);
            a[i * m + j] = s;
            a[j * m + i] = s;
        }
    }
    let mut v = vec![0f64; m * m];
    (0..m).for_each(|i| v[i * m + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..m)
            .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * m + j].powi(2))
            .sum();
        let scale: f64 = (0..m).map(|i| a[i * m + i].powi(2)).sum();
        if off <= 1e-22 * scale.max(1e-300) {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..m {
                    let (akp, akq) = (a[k * m + p], a[k * m + q]);
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for k in 0..m {
                    let (apk, aqk) = (a[p * m + k], a[q * m + k]);
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
                for k in 0..m {
                    let (vkp, vkq) = (v[k * m + p], v[k * m + q]);
                    v[k * m + p] = c * vkp - s * vkq;
                    v[k * m + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..m).map(|i| a[i * m + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises_a_known_matrix() {
        // Eigenvalues of [[2,1],[1,2]] are 3 and 1.
        let (mut values, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        values.sort_by(f64::total_cmp);
        assert!(
            (values[0] - 1.0).abs() < 1e-9 && (values[1] - 3.0).abs() < 1e-9,
            "{values:?}"
        );
    }

    #[test]
    fn finds_the_directions_of_largest_variance() {
        // Points spread 5:2:0.5 along three orthogonal, non-axis directions in 6-D, plus a mean.
        let dim = 6;
        let s = 1.0 / 2f32.sqrt();
        let dirs = [
            [s, s, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, s, -s, 0.0, 0.0],
            [s, -s, 0.0, 0.0, 0.0, 0.0],
        ];
        let spread = [5.0, 2.0, 0.5];
        let mut rng = Rng::new(4);
        let mut x = Vec::new();
        for _ in 0..4000 {
            let mut p = [1.0, -2.0, 0.5, 0.0, 3.0, 1.0];
            for (d, sd) in dirs.iter().zip(spread) {
                let z = rng.normal() * sd;
                p.iter_mut().zip(d).for_each(|(v, dv)| *v += z * dv);
            }
            x.extend(p);
        }
        let pca = Pca::fit(&x, dim, 2, 1);
        for (c, d) in pca.components().chunks_exact(dim).zip(&dirs) {
            let cos = crate::kernel::dot(c, d).abs();
            assert!(cos > 0.999, "component {c:?} is not along {d:?}");
        }
        let v = pca.variances();
        assert!(
            (v[0] / 25.0 - 1.0).abs() < 0.1 && (v[1] / 4.0 - 1.0).abs() < 0.1,
            "{v:?}"
        );
        // Projections are centred and carry the expected variance.
        let t = pca.transform(&x);
        let mean0: f32 = t.chunks_exact(2).map(|r| r[0]).sum::<f32>() / 4000.0;
        assert!(mean0.abs() < 0.05, "{mean0}");
    }
}
