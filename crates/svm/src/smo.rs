//! A binary C-SVC solved by sequential minimal optimisation, as in LIBSVM: second-order
//! working-set selection (Fan, Chen and Lin, 2005) and an LRU cache of kernel rows. Shrinking is
//! left out: on the one-vs-one MNIST sub-problems (about 12,000 points each) the gradient update
//! is a small part of an iteration next to the kernel rows, which the cache already saves.

use crate::kernel;
use std::rc::Rc;

/// Smallest curvature used in a step, for the degenerate case of two identical points.
const TAU: f64 = 1e-12;

/// The trained binary machine: `f(x) = sum(coef_i * K(x_i, x)) - rho`, positive for `y = +1`.
pub(crate) struct Binary {
    /// `(index into the problem's points, alpha_i * y_i)` for every support vector.
    pub support: Vec<(usize, f32)>,
    pub rho: f64,
    pub iterations: usize,
}

/// Kernel rows on demand, the least recently used dropped first when the budget is spent.
struct RowCache<'a> {
    x: &'a [f32],
    sq: Vec<f32>,
    dim: usize,
    gamma: f32,
    rows: Vec<Option<Rc<[f32]>>>,
    last_used: Vec<u64>,
    cached: Vec<usize>,
    capacity: usize,
    clock: u64,
}

impl<'a> RowCache<'a> {
    fn new(x: &'a [f32], dim: usize, gamma: f32, cache_bytes: usize) -> Self {
        let n = x.len() / dim;
        RowCache {
            x,
            sq: kernel::squared_norms(x, dim),
            dim,
            gamma,
            rows: vec![None; n],
            last_used: vec![0; n],
            cached: Vec::new(),
            capacity: (cache_bytes / (4 * n.max(1))).max(2),
            clock: 0,
        }
    }

    fn row(&mut self, i: usize) -> Rc<[f32]> {
        self.clock += 1;
        self.last_used[i] = self.clock;
        if let Some(r) = &self.rows[i] {
            return r.clone();
        }
        if self.cached.len() >= self.capacity {
            let (at, _) = self
                .cached
                .iter()
                .enumerate()
                .min_by_key(|(_, &c)| self.last_used[c])
                .expect("the cache is full, so not empty");
            let evicted = self.cached.swap_remove(at);
            self.rows[evicted] = None;
        }
        let mut r = vec![0f32; self.sq.len()];
        kernel::row(self.x, &self.sq, self.dim, self.gamma, i, &mut r);
        let r: Rc<[f32]> = r.into();
        self.rows[i] = Some(r.clone());
        self.cached.push(i);
        r
    }
}

/// Solves `min 1/2 a'Qa - e'a` subject to `0 <= a_i <= c`, `y'a = 0`, with
/// `Q_ij = y_i y_j K(x_i, x_j)`, to the KKT tolerance `eps` (LIBSVM's stopping rule).
pub(crate) fn solve(
    x: &[f32],
    dim: usize,
    y: &[i8],
    c: f64,
    gamma: f32,
    eps: f64,
    cache_bytes: usize,
) -> Binary {
    let n = y.len();
    let mut cache = RowCache::new(x, dim, gamma, cache_bytes);
    let mut alpha = vec![0f64; n];
    // Gradient of the objective: Q a - e.
    let mut g = vec![-1f64; n];
    let max_iterations = (100 * n).max(10_000_000);
    let mut iterations = 0;
    while iterations < max_iterations {
        // i: the most violating index going up.
        let mut g_max = f64::NEG_INFINITY;
        let mut i = usize::MAX;
        for t in 0..n {
            let v = if y[t] > 0 {
                (alpha[t] < c).then(|| -g[t])
            } else {
                (alpha[t] > 0.0).then_some(g[t])
            };
            if let Some(v) = v.filter(|&v| v >= g_max) {
                g_max = v;
                i = t;
            }
        }
        if i == usize::MAX {
            break;
        }
        let ki = cache.row(i);
        // j: the index going down that decreases the objective most (second-order rule).
        let mut g_max2 = f64::NEG_INFINITY;
        let mut best = f64::INFINITY;
        let mut j = usize::MAX;
        for t in 0..n {
            let v = if y[t] > 0 {
                (alpha[t] > 0.0).then_some(g[t])
            } else {
                (alpha[t] < c).then(|| -g[t])
            };
            let Some(v) = v else { continue };
            g_max2 = g_max2.max(v);
            let grad_diff = g_max + v;
            if grad_diff > 0.0 {
                let quad = (2.0 - 2.0 * ki[t] as f64).max(TAU);
                let gain = -grad_diff * grad_diff / quad;
                if gain <= best {
                    best = gain;
                    j = t;
                }
            }
        }
        if g_max + g_max2 < eps || j == usize::MAX {
            break;
        }
        iterations += 1;
        let kj = cache.row(j);
        let quad = (2.0 - 2.0 * ki[j] as f64).max(TAU);
        let (old_i, old_j) = (alpha[i], alpha[j]);
        if y[i] != y[j] {
            let delta = (-g[i] - g[j]) / quad;
            let diff = alpha[i] - alpha[j];
            alpha[i] += delta;
            alpha[j] += delta;
            if diff > 0.0 {
                if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = diff;
                }
                if alpha[i] > c {
                    alpha[i] = c;
                    alpha[j] = c - diff;
                }
            } else {
                if alpha[i] < 0.0 {
                    alpha[i] = 0.0;
                    alpha[j] = -diff;
                }
                if alpha[j] > c {
                    alpha[j] = c;
                    alpha[i] = c + diff;
                }
            }
        } else {
            let delta = (g[i] - g[j]) / quad;
            let sum = alpha[i] + alpha[j];
            alpha[i] -= delta;
            alpha[j] += delta;
            if sum > c {
                if alpha[i] > c {
                    alpha[i] = c;
                    alpha[j] = sum - c;
                }
                if alpha[j] > c {
                    alpha[j] = c;
                    alpha[i] = sum - c;
                }
            } else {
                if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = sum;
                }
                if alpha[i] < 0.0 {
                    alpha[i] = 0.0;
                    alpha[j] = sum;
                }
            }
        }
        let di = y[i] as f64 * (alpha[i] - old_i);
        let dj = y[j] as f64 * (alpha[j] - old_j);
        for (t, gt) in g.iter_mut().enumerate() {
            *gt += y[t] as f64 * (di * ki[t] as f64 + dj * kj[t] as f64);
        }
    }
    Binary {
        support: (0..n)
            .filter(|&t| alpha[t] > 0.0)
            .map(|t| (t, (alpha[t] * y[t] as f64) as f32))
            .collect(),
        rho: offset(&alpha, &g, y, c),
        iterations,
    }
}

/// The threshold: the mean of `y_i G_i` over free vectors, or the middle of its feasible range.
fn offset(alpha: &[f64], g: &[f64], y: &[i8], c: f64) -> f64 {
    let (mut upper, mut lower) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut free, mut sum) = (0usize, 0f64);
    for ((&a, &gt), &yt) in alpha.iter().zip(g).zip(y) {
        let yg = yt as f64 * gt;
        match (a >= c, a <= 0.0) {
            (false, false) => {
                free += 1;
                sum += yg;
            }
            // A bound variable caps the threshold from above when it could only move up.
            (at_upper, _) if at_upper == (yt < 0) => upper = upper.min(yg),
            _ => lower = lower.max(yg),
        }
    }
    if free > 0 {
        sum / free as f64
    } else {
        (upper + lower) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(x: &[f32], dim: usize, b: &Binary, gamma: f32, p: &[f32]) -> f64 {
        let sq_p = kernel::dot(p, p);
        b.support
            .iter()
            .map(|&(i, coef)| {
                let xi = &x[i * dim..(i + 1) * dim];
                let k = (-gamma * (kernel::dot(xi, xi) + sq_p - 2.0 * kernel::dot(xi, p))).exp();
                coef as f64 * k as f64
            })
            .sum::<f64>()
            - b.rho
    }

    #[test]
    fn separates_two_rings_that_no_line_can() {
        // Inner ring +1, outer ring -1: only a non-linear kernel separates them.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for k in 0..80 {
            let a = k as f32 * 0.61;
            let r = if k % 2 == 0 { 1.0 } else { 3.0 };
            x.extend([r * a.cos(), r * a.sin()]);
            y.push(if k % 2 == 0 { 1 } else { -1 });
        }
        let b = solve(&x, 2, &y, 10.0, 0.5, 1e-3, 1 << 20);
        for (k, &yk) in y.iter().enumerate() {
            let f = decision(&x, 2, &b, 0.5, &x[2 * k..2 * k + 2]);
            assert_eq!(f > 0.0, yk > 0, "point {k}: f = {f}");
        }
        assert!(decision(&x, 2, &b, 0.5, &[0.0, 1.2]) > 0.0);
        assert!(decision(&x, 2, &b, 0.5, &[-3.2, 0.3]) < 0.0);
        // Dual feasibility: sum of alpha_i y_i is zero, every alpha within [0, C].
        let s: f32 = b.support.iter().map(|s| s.1).sum();
        assert!(s.abs() < 1e-3, "{s}");
        assert!(b.support.iter().all(|s| s.1.abs() <= 10.0 + 1e-4));
        assert!(
            b.support.len() < 80,
            "not every point should be a support vector"
        );
    }

    #[test]
    fn kkt_conditions_hold_at_the_solution_even_with_a_tiny_cache() {
        // Overlapping classes, so some alphas sit at C; a two-row cache forces recomputation.
        let mut rng = digits_rng::Rng::new(9);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for k in 0..120 {
            let label: i8 = if k % 2 == 0 { 1 } else { -1 };
            x.extend([rng.normal() + label as f32 * 0.8, rng.normal()]);
            y.push(label);
        }
        let c = 1.0;
        let b = solve(&x, 2, &y, c, 1.0, 1e-4, 0);
        let mut coef = vec![0f64; 120];
        for &(i, a) in &b.support {
            coef[i] = a as f64;
        }
        let mut at_bound = 0;
        for k in 0..120 {
            let m = y[k] as f64 * decision(&x, 2, &b, 1.0, &x[2 * k..2 * k + 2]);
            let a = coef[k].abs();
            if a <= 1e-9 {
                assert!(m >= 1.0 - 1e-2, "alpha 0 needs margin >= 1, got {m}");
            } else if a >= c - 1e-6 {
                at_bound += 1;
                assert!(m <= 1.0 + 1e-2, "alpha C needs margin <= 1, got {m}");
            } else {
                assert!((m - 1.0).abs() < 1e-2, "free alpha needs margin 1, got {m}");
            }
        }
        assert!(at_bound > 0);
    }
}
