//! Parameter-free layers: ReLU, max pooling, dropout.

use crate::layer::{Ctx, Mode, Shape};
use digits_rng::Rng;
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct Relu {
    pub(crate) shape: Shape,
}

/// Elements per parallel task of the element-wise layers.
const PART: usize = 1 << 16;

pub(crate) fn relu_forward(x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(PART)
        .zip(x.par_chunks(PART))
        .for_each(|(y, x)| {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = x.max(0.0));
        });
}

pub(crate) fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(PART)
        .zip(dy.par_chunks(PART).zip(y.par_chunks(PART)))
        .for_each(|(dx, (dy, y))| {
            dx.iter_mut()
                .zip(dy.iter().zip(y))
                .for_each(|(dx, (&d, &y))| *dx = if y > 0.0 { d } else { 0.0 });
        });
}

/// Non-overlapping max pooling; remembers which input won so the backward pass is a scatter.
#[derive(Debug, Clone)]
pub struct MaxPool2d {
    input: Shape,
    pub(crate) output: Shape,
    size: usize,
    argmax: Vec<u32>,
}

impl MaxPool2d {
    pub(crate) fn new(input: Shape, size: usize) -> Result<Self, String> {
        if size == 0 || input.h < size || input.w < size {
            return Err(format!(
                "max pool of {size} does not fit a {}x{} input",
                input.h, input.w
            ));
        }
        Ok(MaxPool2d {
            input,
            output: Shape::new(input.h / size, input.w / size, input.c),
            size,
            argmax: Vec::new(),
        })
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// `track`: remember the winners for a backward pass (training only).
    pub(crate) fn forward(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        batch: usize,
        groups: usize,
        track: bool,
    ) {
        let (i, o, s) = (self.input, self.output, self.size);
        let c = i.c;
        self.argmax.resize(batch * o.len(), 0);
        let per = batch.div_ceil(groups.max(1)).max(1);
        let in_len = i.len();
        let work = |(g, (y, arg)): (usize, (&mut [f32], &mut [u32]))| {
            let first = g * per;
            for (local, (y, arg)) in y
                .chunks_exact_mut(o.len())
                .zip(arg.chunks_exact_mut(o.len()))
                .enumerate()
            {
                let n = first + local;
                for oy in 0..o.h {
                    for ox in 0..o.w {
                        let out = (oy * o.w + ox) * c;
                        let (y, arg) = (&mut y[out..out + c], &mut arg[out..out + c]);
                        // Branch-free running maximum so the channel loop vectorises. The
                        // winners start at the first tap, so that inputs no better than -inf
                        // (NaN) still name a pixel of this window.
                        y.fill(f32::NEG_INFINITY);
                        let corner = n * in_len + (oy * s * i.w + ox * s) * c;
                        if track {
                            for (arg, ch) in arg.iter_mut().zip(0u32..) {
                                *arg = corner as u32 + ch;
                            }
                        }
                        for ky in 0..s {
                            for kx in 0..s {
                                let at = n * in_len + ((oy * s + ky) * i.w + ox * s + kx) * c;
                                let taps = &x[at..at + c];
                                if !track {
                                    for (&v, best) in taps.iter().zip(y.iter_mut()) {
                                        *best = if v > *best { v } else { *best };
                                    }
                                    continue;
                                }
                                // Selects written as bit operations: as `if`s they
                                // compiled to a branch per channel (four times slower).
                                let first = at as u32;
                                for ((&v, (best, arg)), ch) in taps
                                    .iter()
                                    .zip(y.iter_mut().zip(arg.iter_mut()))
                                    .zip(0u32..)
                                {
                                    let better = (u32::from(v > *best)).wrapping_neg();
                                    *best = best.max(v);
                                    *arg ^= (*arg ^ (first + ch)) & better;
                                }
                            }
                        }
                    }
                }
            }
        };
        let y = &mut y[..batch * o.len()];
        let tasks = y
            .chunks_mut(per * o.len())
            .zip(self.argmax.chunks_mut(per * o.len()))
            .enumerate();
        // One image is one task: waking a pool thread would cost more than pooling it.
        if groups > 1 && batch > 1 {
            tasks.par_bridge().for_each(work);
        } else {
            tasks.for_each(work);
        }
    }

    /// Scatters each output's gradient onto the input that won, image by image in parallel
    /// (each image's winners lie in its own part of `dx`).
    pub(crate) fn backward(&self, dy: &[f32], dx: &mut [f32], batch: usize) {
        let (in_len, out_len) = (self.input.len(), self.output.len());
        dx[..batch * in_len]
            .par_chunks_mut(in_len)
            .zip(dy.par_chunks(out_len).zip(self.argmax.par_chunks(out_len)))
            .enumerate()
            .for_each(|(n, (dx, (dy, arg)))| {
                dx.fill(0.0);
                let first = n * in_len;
                for (&at, &d) in arg.iter().zip(dy) {
                    dx[at as usize - first] += d;
                }
            });
    }
}

/// What a kept (`mask` 1) or dropped (0) value is multiplied by.
fn scale(mask: u8, keep: f32) -> f32 {
    if mask != 0 {
        keep
    } else {
        0.0
    }
}

/// Inverted dropout. Each image's mask comes from its own stream derived from the step seed,
/// so masks do not depend on how the batch is split between threads.
#[derive(Debug, Clone)]
pub struct Dropout {
    pub(crate) shape: Shape,
    rate: f32,
    /// 1 where the value is kept: a byte rather than its scale, a quarter of the memory
    /// traffic (the reference CNN's first dropout masks 1.2M values a batch).
    mask: Vec<u8>,
}

impl Dropout {
    pub(crate) fn new(shape: Shape, rate: f32) -> Result<Self, String> {
        if !(0.0..1.0).contains(&rate) {
            return Err(format!("dropout rate {rate} must be in [0, 1)"));
        }
        Ok(Dropout {
            shape,
            rate,
            mask: Vec::new(),
        })
    }

    pub(crate) fn forward(&mut self, x: &[f32], y: &mut [f32], batch: usize, ctx: Ctx) {
        if ctx.mode == Mode::Eval || self.rate == 0.0 {
            y.copy_from_slice(x);
            self.mask.clear();
            return;
        }
        let keep = 1.0 / (1.0 - self.rate);
        let len = self.shape.len();
        self.mask.resize(batch * len, 0);
        // 16 random bits per decision, four decisions per generator call.
        let threshold = (self.rate * 65536.0) as u64;
        self.mask
            .par_chunks_exact_mut(len)
            .zip(y.par_chunks_exact_mut(len).zip(x.par_chunks_exact(len)))
            .enumerate()
            .for_each(|(n, (mask, (y, x)))| {
                let mut rng = Rng::derive(ctx.seed, &[ctx.index as u64, n as u64]);
                for quad in mask.chunks_mut(4) {
                    let bits = rng.next_u64();
                    for (j, m) in quad.iter_mut().enumerate() {
                        *m = u8::from((bits >> (16 * j)) & 0xffff >= threshold);
                    }
                }
                y.iter_mut()
                    .zip(x.iter().zip(mask.iter()))
                    .for_each(|(y, (&x, &m))| *y = x * scale(m, keep));
            });
    }

    pub(crate) fn backward(&self, dy: &[f32], dx: &mut [f32]) {
        if self.mask.is_empty() {
            dx.copy_from_slice(dy);
        } else {
            let keep = 1.0 / (1.0 - self.rate);
            dx.par_chunks_mut(PART)
                .zip(dy.par_chunks(PART).zip(self.mask.par_chunks(PART)))
                .for_each(|(dx, (dy, mask))| {
                    dx.iter_mut()
                        .zip(dy.iter().zip(mask))
                        .for_each(|(dx, (&d, &m))| *dx = d * scale(m, keep));
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows of NaN (a diverged network) still send their gradient inside their own image:
    /// the winners start at each window's first pixel instead of whatever the last batch left.
    #[test]
    fn windows_of_nan_send_their_gradient_inside_the_window() {
        let shape = Shape::new(4, 4, 3);
        let mut pool = MaxPool2d::new(shape, 2).unwrap();
        let batch = 2;
        let x: Vec<f32> = (0..batch * shape.len()).map(|i| i as f32).collect();
        let mut y = vec![0.0; batch * pool.output.len()];
        pool.forward(&x, &mut y, batch, 1, true);
        let nan = vec![f32::NAN; x.len()];
        pool.forward(&nan, &mut y, batch, 1, true);
        let dy = vec![1.0; y.len()];
        let mut dx = vec![0.0; x.len()];
        pool.backward(&dy, &mut dx, batch);
        for (i, &d) in dx.iter().enumerate() {
            let (pixel, channel) = (i % shape.len() / shape.c, i % shape.c);
            let (row, col) = (pixel / shape.w, pixel % shape.w);
            let corner = row % 2 == 0 && col % 2 == 0;
            assert_eq!(
                d,
                if corner { 1.0 } else { 0.0 },
                "pixel {pixel} channel {channel}"
            );
        }
    }
}
