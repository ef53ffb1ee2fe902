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

/// Fills `mask` with dropout decisions (1: keep) from the counter stream `key`: 16 random bits
/// per decision, kept when at least `threshold`, four decisions per value.
fn draw_mask(key: u64, threshold: u32, mask: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::fastconv::avx512()
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { draw_mask_avx512(key, threshold, mask) };
    }
    draw_mask_portable(key, threshold, mask);
}

/// [`draw_mask`] compiled for AVX-512, whose 64-bit multiplies vectorise the stream: the same
/// integer arithmetic, so the same masks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512bw")]
fn draw_mask_avx512(key: u64, threshold: u32, mask: &mut [u8]) {
    draw_mask_portable(key, threshold, mask);
}

#[inline(always)]
fn draw_mask_portable(key: u64, threshold: u32, mask: &mut [u8]) {
    const VALUES: usize = 64;
    let mut bits = [0u16; 4 * VALUES];
    for (block, mask) in mask.chunks_mut(bits.len()).enumerate() {
        let first = (block * VALUES) as u64;
        for (i, quad) in bits.chunks_exact_mut(4).enumerate() {
            let value = digits_rng::counter(key, first + i as u64);
            for (j, b) in quad.iter_mut().enumerate() {
                *b = (value >> (16 * j)) as u16;
            }
        }
        for (m, &b) in mask.iter_mut().zip(&bits) {
            *m = u8::from(u32::from(b) >= threshold);
        }
    }
}

/// Multiplies `values` by their dropout scales.
pub(crate) fn apply_mask(values: &mut [f32], mask: &[u8], keep: f32) {
    values
        .iter_mut()
        .zip(mask)
        .for_each(|(v, &m)| *v *= scale(m, keep));
}

/// One training step's dropout decisions: each image's come from its own stream derived from
/// the step seed and the layer, so they do not depend on which thread draws them, nor on
/// whether the layer runs alone or inside the convolution before it.
#[derive(Clone, Copy)]
pub(crate) struct Draw {
    seed: u64,
    layer: usize,
    threshold: u32,
    /// The scale of a kept value.
    pub(crate) keep: f32,
}

impl Draw {
    /// Draws image `n`'s `mask`.
    pub(crate) fn mask(&self, n: usize, mask: &mut [u8]) {
        let key = Rng::derive(self.seed, &[self.layer as u64, n as u64]).next_u64();
        draw_mask(key, self.threshold, mask);
    }
}

/// Inverted dropout.
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

    fn keep(&self) -> f32 {
        1.0 / (1.0 - self.rate)
    }

    /// This step's draws and the mask they fill for `batch` images, or `None` where nothing is
    /// dropped (evaluation, or a rate of 0).
    pub(crate) fn start(&mut self, batch: usize, ctx: Ctx) -> Option<(Draw, &mut [u8])> {
        if ctx.mode == Mode::Eval || self.rate == 0.0 {
            self.mask.clear();
            return None;
        }
        let draw = Draw {
            seed: ctx.seed,
            layer: ctx.index,
            threshold: (self.rate * 65536.0) as u32,
            keep: self.keep(),
        };
        self.mask.resize(batch * self.shape.len(), 0);
        Some((draw, &mut self.mask))
    }

    /// The last training step's mask and the scale of a kept value, if it dropped anything.
    pub(crate) fn drawn(&self) -> Option<(&[u8], f32)> {
        (!self.mask.is_empty()).then(|| (&self.mask[..], self.keep()))
    }

    pub(crate) fn forward(&mut self, x: &[f32], y: &mut [f32], batch: usize, ctx: Ctx) {
        let len = self.shape.len();
        let Some((draw, mask)) = self.start(batch, ctx) else {
            y.copy_from_slice(x);
            return;
        };
        mask.par_chunks_exact_mut(len)
            .zip(y.par_chunks_exact_mut(len).zip(x.par_chunks_exact(len)))
            .enumerate()
            .for_each(|(n, (mask, (y, x)))| {
                draw.mask(n, mask);
                y.iter_mut()
                    .zip(x.iter().zip(mask.iter()))
                    .for_each(|(y, (&x, &m))| *y = x * scale(m, draw.keep));
            });
    }

    pub(crate) fn backward(&self, dy: &[f32], dx: &mut [f32]) {
        let Some((mask, keep)) = self.drawn() else {
            dx.copy_from_slice(dy);
            return;
        };
        dx.par_chunks_mut(PART)
            .zip(dy.par_chunks(PART).zip(mask.par_chunks(PART)))
            .for_each(|(dx, (dy, mask))| {
                dx.iter_mut()
                    .zip(dy.iter().zip(mask))
                    .for_each(|(dx, (&d, &m))| *dx = d * scale(m, keep));
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path draws the same masks, a share `1 - rate` of ones, different per image.
    #[test]
    fn dropout_masks_keep_their_share_on_every_path() {
        let ctx = Ctx {
            mode: Mode::Train,
            seed: 9,
            index: 2,
            groups: 1,
        };
        let mut dropout = Dropout::new(Shape::new(10, 10, 10), 0.25).unwrap();
        let (draw, mask) = dropout.start(2, ctx).unwrap();
        draw.mask(0, &mut mask[..1000]);
        draw.mask(1, &mut mask[1000..]);
        let mask = mask.to_vec();
        let kept = mask[..1000].iter().map(|&m| usize::from(m)).sum::<usize>();
        assert!((700..800).contains(&kept), "{kept} of 1000 kept");
        assert_ne!(mask[..1000], mask[1000..]);
        let key = Rng::derive(9, &[2, 1]).next_u64();
        let mut portable = vec![0u8; 1000];
        draw_mask_portable(key, draw.threshold, &mut portable);
        assert_eq!(portable, mask[1000..]);
        let (mut x, mut dy) = (vec![1.0; 1000], vec![2.0; 1000]);
        apply_mask(&mut x, &mask[..1000], draw.keep);
        dropout.backward(&x, &mut dy);
        for ((&x, &d), &m) in x.iter().zip(&dy).zip(&mask[..1000]) {
            let keep = if m == 1 { 4.0 / 3.0 } else { 0.0 };
            assert_eq!((x, d), (keep, keep * keep));
        }
    }

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
