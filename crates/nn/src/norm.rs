//! Batch normalisation over every position of each channel (NHWC makes a convolution's and a
//! dense layer's case the same: rows x channels).

use crate::layer::{Mode, Param, Shape};
use rayon::prelude::*;

/// Rows per partial sum: fixed, so the sums do not depend on the number of threads.
const ROWS_PER_PART: usize = 512;
/// Floats a parallel task covers at least: a smaller pass (one image's activations) runs on the
/// calling thread, since handing work to a sleeping pool thread costs ~100 us, far more than
/// the pass.
const TASK_MIN: usize = 1 << 16;

/// Parts of `part` floats per parallel task.
fn parts_per_task(part: usize) -> usize {
    TASK_MIN.div_ceil(part)
}

/// Per-channel sums of `f(a, b, p, q)` terms over all rows, as two f64 vectors, where `a` and
/// `b` are a row's values and `p` and `q` per-channel constants; each part of
/// [`ROWS_PER_PART`] rows is summed in f32 into `parts` (reused scratch), the parts in f64, in
/// order. The channel loop is written with iterators only, so it compiles to vector code.
fn channel_sums(
    (a, b): (&[f32], &[f32]),
    (p, q): (&[f32], &[f32]),
    parts: &mut Vec<f32>,
    f: impl Fn(f32, f32, f32, f32) -> (f32, f32) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    let c = p.len();
    let n = a.len().div_ceil(ROWS_PER_PART * c);
    parts.resize(n * 2 * c, 0.0);
    parts
        .par_chunks_mut(2 * c)
        .zip(
            a.par_chunks(ROWS_PER_PART * c)
                .zip(b.par_chunks(ROWS_PER_PART * c)),
        )
        .with_min_len(parts_per_task(ROWS_PER_PART * c))
        .for_each(|(sums, (a, b))| {
            let (s1, s2) = sums.split_at_mut(c);
            s1.fill(0.0);
            s2.fill(0.0);
            for (ra, rb) in a.chunks_exact(c).zip(b.chunks_exact(c)) {
                for ((s1, s2), ((&a, &b), (&p, &q))) in s1
                    .iter_mut()
                    .zip(s2.iter_mut())
                    .zip(ra.iter().zip(rb).zip(p.iter().zip(q)))
                {
                    let (u, v) = f(a, b, p, q);
                    *s1 += u;
                    *s2 += v;
                }
            }
        });
    let (mut t1, mut t2) = (vec![0f64; c], vec![0f64; c]);
    for sums in parts.chunks_exact(2 * c) {
        for ch in 0..c {
            t1[ch] += sums[ch] as f64;
            t2[ch] += sums[c + ch] as f64;
        }
    }
    (t1, t2)
}

#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub(crate) shape: Shape,
    momentum: f32,
    eps: f32,
    pub(crate) gamma: Param,
    pub(crate) beta: Param,
    pub(crate) running_mean: Param,
    pub(crate) running_var: Param,
    /// Batch mean and 1/std of the last training forward pass, for the backward pass.
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// Partial sums, reused every step.
    parts: Vec<f32>,
}

impl BatchNorm {
    pub(crate) fn new(shape: Shape, momentum: f32, eps: f32, name: &str) -> Self {
        let c = shape.c;
        let p = |n: &str, v: f32, trainable| {
            Param::new(format!("{name}.{n}"), vec![c], vec![v; c], trainable, false)
        };
        BatchNorm {
            shape,
            momentum,
            eps,
            gamma: p("gamma", 1.0, true),
            beta: p("beta", 0.0, true),
            running_mean: p("running_mean", 0.0, false),
            running_var: p("running_var", 1.0, false),
            mean: vec![0.0; c],
            inv_std: vec![1.0; c],
            parts: Vec::new(),
        }
    }

    pub(crate) fn forward(&mut self, x: &[f32], y: &mut [f32], batch: usize, mode: Mode) {
        let c = self.shape.c;
        let rows = batch * self.shape.h * self.shape.w;
        if mode == Mode::Train {
            let x = &x[..rows * c];
            let (sum, sq) = channel_sums(
                (x, x),
                (&self.mean, &self.inv_std),
                &mut self.parts,
                |v, _, _, _| (v, v * v),
            );
            let m = rows as f64;
            for ch in 0..c {
                let mean = sum[ch] / m;
                let var = (sq[ch] / m - mean * mean).max(0.0);
                self.mean[ch] = mean as f32;
                self.inv_std[ch] = 1.0 / (var as f32 + self.eps).sqrt();
                let unbiased = if rows > 1 { var * m / (m - 1.0) } else { var };
                let mo = self.momentum;
                self.running_mean.value[ch] =
                    (1.0 - mo) * self.running_mean.value[ch] + mo * mean as f32;
                self.running_var.value[ch] =
                    (1.0 - mo) * self.running_var.value[ch] + mo * unbiased as f32;
            }
        } else {
            for ch in 0..c {
                self.mean[ch] = self.running_mean.value[ch];
                self.inv_std[ch] = 1.0 / (self.running_var.value[ch] + self.eps).sqrt();
            }
        }
        let (scale, shift) = self.affine(&self.mean, &self.inv_std);
        y[..rows * c]
            .par_chunks_mut(ROWS_PER_PART * c)
            .zip(x.par_chunks(ROWS_PER_PART * c))
            .with_min_len(parts_per_task(ROWS_PER_PART * c))
            .for_each(|(y, x)| {
                for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                    for ((y, x), (s, t)) in yr.iter_mut().zip(xr).zip(scale.iter().zip(&shift)) {
                        *y = x * s + t;
                    }
                }
            });
    }

    /// `(scale, shift)` with `y = x * scale + shift`: scale = gamma / std, shift = beta - mean *
    /// scale.
    fn affine(&self, mean: &[f32], inv_std: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = (self.gamma.value.iter().zip(inv_std))
            .map(|(g, s)| g * s)
            .collect();
        let shift = (self.beta.value.iter().zip(mean).zip(&scale))
            .map(|((b, m), s)| b - m * s)
            .collect();
        (scale, shift)
    }

    /// What evaluation mode does, as `(scale, shift)` per channel: for folding into the layer
    /// before.
    pub(crate) fn eval_affine(&self) -> (Vec<f32>, Vec<f32>) {
        let inv_std: Vec<f32> = (self.running_var.value.iter())
            .map(|v| 1.0 / (v + self.eps).sqrt())
            .collect();
        self.affine(&self.running_mean.value, &inv_std)
    }

    pub(crate) fn backward(&mut self, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, batch: usize) {
        let c = self.shape.c;
        let rows = batch * self.shape.h * self.shape.w;
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        let (sum_dy, sum_dy_xhat) = channel_sums(
            (&dy[..rows * c], &x[..rows * c]),
            (mean, inv_std),
            &mut self.parts,
            |d, x, mean, inv_std| (d, d * (x - mean) * inv_std),
        );
        let sum_dy: Vec<f32> = sum_dy.into_iter().map(|v| v as f32).collect();
        let sum_dy_xhat: Vec<f32> = sum_dy_xhat.into_iter().map(|v| v as f32).collect();
        self.beta.grad.copy_from_slice(&sum_dy);
        self.gamma.grad.copy_from_slice(&sum_dy_xhat);
        if let Some(dx) = dx {
            // dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))
            // dx = k * (dy - a - (x - mean) * b), constants per channel.
            let m = rows as f32;
            let k: Vec<f32> = (0..c)
                .map(|ch| self.gamma.value[ch] * inv_std[ch])
                .collect();
            let a: Vec<f32> = sum_dy.iter().map(|s| s / m).collect();
            let b: Vec<f32> = (0..c).map(|ch| sum_dy_xhat[ch] / m * inv_std[ch]).collect();
            let part = ROWS_PER_PART * c;
            dx[..rows * c]
                .par_chunks_mut(part)
                .zip(dy.par_chunks(part).zip(x.par_chunks(part)))
                .with_min_len(parts_per_task(part))
                .for_each(|(dx, (dy, x))| {
                    for ((dxr, dr), xr) in dx
                        .chunks_exact_mut(c)
                        .zip(dy.chunks_exact(c))
                        .zip(x.chunks_exact(c))
                    {
                        for ((dx, (&d, &x)), ((&k, &a), (&b, &mean))) in dxr
                            .iter_mut()
                            .zip(dr.iter().zip(xr))
                            .zip(k.iter().zip(a.iter()).zip(b.iter().zip(mean.iter())))
                        {
                            *dx = k * (d - a - (x - mean) * b);
                        }
                    }
                });
        }
    }
}
