//! Convolution and dense layers. Both are a matrix product of "rows" (im2col patches for a
//! convolution, the flattened samples for a dense layer) with a `[inputs x units]` weight
//! matrix, so they share [`LinearCore`] for the product, the fused bias + ReLU and the gradients.

use crate::fastconv::{self, Epilogue, Method, Prepared, Weights};
use crate::gemv;
use crate::infer::Precision;
use crate::layer::{Param, Shape};
use crate::parallel::{self, run_tasks, split_runs};
use crate::pool::{apply_mask, Draw};
use digits_linalg::{column_blocks, matmul, ColumnBlock, View};
use digits_rng::Rng;
use rayon::prelude::*;

/// Floats of im2col scratch per sub-chunk: small enough to stay in a core's 1 MB L2 cache
/// (the reference CNN's second layer unfolds 663 KB per image; six images at a time, 4 MB,
/// trained 10-15% slower on one thread and worse on two), large enough for the GEMM to run
/// at full speed.
const CHUNK_FLOATS: usize = 1 << 18;

/// Weights `[k x n]`, optional bias `[n]`, optional fused ReLU.
#[derive(Debug, Clone)]
pub(crate) struct LinearCore {
    k: usize,
    n: usize,
    relu: bool,
    w: Param,
    b: Option<Param>,
}

impl LinearCore {
    fn new(k: usize, n: usize, bias: bool, relu: bool, name: &str, rng: &mut Rng) -> Self {
        // He initialisation: keeps activation variance constant through ReLU layers.
        let std = (2.0 / k as f32).sqrt();
        let w = (0..k * n).map(|_| rng.normal() * std).collect();
        LinearCore {
            k,
            n,
            relu,
            w: Param::new(format!("{name}.weight"), vec![k, n], w, true, true),
            b: bias.then(|| Param::new(format!("{name}.bias"), vec![n], vec![0.0; n], true, false)),
        }
    }

    pub(crate) fn params(&self) -> Vec<&Param> {
        std::iter::once(&self.w).chain(self.b.as_ref()).collect()
    }

    pub(crate) fn params_mut(&mut self) -> Vec<&mut Param> {
        std::iter::once(&mut self.w)
            .chain(self.b.as_mut())
            .collect()
    }

    /// Makes the layer compute `act((x * w + b) * scale + shift)`: what a batch norm with
    /// these per-unit `scale` and `shift` does to its output, folded into the weights and bias.
    pub(crate) fn fold_affine(&mut self, scale: &[f32], shift: &[f32]) {
        assert!(scale.len() == self.n && shift.len() == self.n);
        for row in self.w.value.chunks_exact_mut(self.n) {
            row.iter_mut().zip(scale).for_each(|(w, s)| *w *= s);
        }
        let n = self.n;
        let b = self.b.get_or_insert_with(|| {
            Param::new(
                String::from("folded.bias"),
                vec![n],
                vec![0.0; n],
                false,
                false,
            )
        });
        for ((b, s), t) in b.value.iter_mut().zip(scale).zip(shift) {
            *b = *b * s + t;
        }
    }

    /// The weights and the bias (zeros where there is none), copied.
    pub(crate) fn folded_weights(&self) -> (Vec<f32>, Vec<f32>) {
        let bias = self
            .b
            .as_ref()
            .map_or(vec![0.0; self.n], |b| b.value.clone());
        (self.w.value.clone(), bias)
    }

    /// Length of a per-group gradient buffer (weights then bias).
    fn grad_len(&self) -> usize {
        self.k * self.n + self.n
    }

    /// `y[m x n] = act(rows[m x k] * w + b)`.
    fn forward_rows(&self, rows: &[f32], m: usize, y: &mut [f32]) {
        let y = &mut y[..m * self.n];
        if m != 1 || !gemv::product(&rows[..self.k], &self.w.value, self.n, y) {
            matmul(
                m,
                self.n,
                self.k,
                y,
                View::rows(rows, self.k),
                View::rows(&self.w.value, self.n),
                false,
            );
        }
        self.finish_rows(y);
    }

    /// Adds the bias to each output row and applies the ReLU.
    fn finish_rows(&self, y: &mut [f32]) {
        let bias = self.b.as_ref().map(|b| b.value.as_slice());
        for row in y.chunks_exact_mut(self.n) {
            if let Some(b) = bias {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
            if self.relu {
                row.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }

    /// Accumulates this sub-chunk's weight and bias gradients into `grad` and writes the row
    /// gradients into `drows` when asked.
    fn backward_rows(
        &self,
        rows: &[f32],
        m: usize,
        y: &[f32],
        dy: &mut [f32],
        grad: &mut [f32],
        drows: Option<&mut [f32]>,
    ) {
        let (n, k) = (self.n, self.k);
        let dy = &mut dy[..m * n];
        let (gw, gb) = grad.split_at_mut(k * n);
        self.mask_rows(y, dy, gb);
        matmul(
            k,
            n,
            m,
            gw,
            View::transposed(rows, k),
            View::rows(dy, n),
            true,
        );
        if let Some(drows) = drows {
            matmul(
                m,
                k,
                n,
                drows,
                View::rows(dy, n),
                View::transposed(&self.w.value, n),
                false,
            );
        }
    }

    /// Masks the output gradients `dy` by the fused ReLU and adds them to the bias gradient.
    fn mask_rows(&self, y: &[f32], dy: &mut [f32], gb: &mut [f32]) {
        let (n, bias) = (self.n, self.b.is_some());
        if self.relu || bias {
            for (drow, yrow) in dy.chunks_exact_mut(n).zip(y.chunks_exact(n)) {
                if self.relu {
                    drow.iter_mut()
                        .zip(yrow)
                        .for_each(|(d, &y)| *d = if y > 0.0 { *d } else { 0.0 });
                }
                if bias {
                    gb.iter_mut().zip(drow.iter()).for_each(|(g, d)| *g += d);
                }
            }
        }
    }

    /// Sums the per-run gradients in `slots` (one [`Self::grad_len`] each), in run order, into
    /// the parameters' gradients, in parallel chunks.
    fn reduce(&mut self, slots: &[f32]) {
        let (kn, grad_len) = (self.k * self.n, self.grad_len());
        let sum = |out: &mut [f32], offset: usize| {
            out.par_chunks_mut(REDUCE_CHUNK)
                .enumerate()
                .for_each(|(i, out)| {
                    let (at, len) = (offset + i * REDUCE_CHUNK, out.len());
                    out.fill(0.0);
                    for slot in slots.chunks_exact(grad_len) {
                        out.iter_mut()
                            .zip(&slot[at..at + len])
                            .for_each(|(a, b)| *a += b);
                    }
                });
        };
        sum(&mut self.w.grad, 0);
        if let Some(b) = &mut self.b {
            sum(&mut b.grad, kn);
        }
    }
}

/// Gradient values summed per parallel task.
const REDUCE_CHUNK: usize = 1 << 15;

/// Inputs of a dense layer per block of its backward pass.
const INPUT_BLOCK: usize = 512;

/// One thread's working memory, sized on first use and reused afterwards.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scratch {
    col: Vec<f32>,
    dcol: Vec<f32>,
    fast: fastconv::Scratch,
}

fn ensure(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// How a layer turns its input samples into the rows of the product, and back.
pub trait Unfold: Sync {
    fn in_len(&self) -> usize;
    fn out_len(&self) -> usize;
    fn rows_per_sample(&self) -> usize;
    /// Samples per sub-chunk of a group.
    fn chunk_samples(&self) -> usize;
    /// Writes the rows of `n` samples into `col`; returns false when the input already is the
    /// rows (a dense layer), in which case `col` is untouched.
    fn unfold(&self, x: &[f32], n: usize, col: &mut [f32]) -> bool;
    /// Adds row gradients back onto the input gradient (only called when `unfold` copies).
    fn fold(&self, dcol: &[f32], n: usize, dx: &mut [f32]);
    /// Floats of `col` needed per sub-chunk (0 when `unfold` never copies).
    fn col_len(&self) -> usize;
}

/// The product of each run's rows with the weights.
fn linear_forward(
    g: &impl Unfold,
    core: &LinearCore,
    scratch: &mut Vec<Scratch>,
    x: &[f32],
    y: &mut [f32],
    runs: &[(usize, usize)],
) {
    let (in_len, out_len, chunk, rps) = (
        g.in_len(),
        g.out_len(),
        g.chunk_samples(),
        g.rows_per_sample(),
    );
    let ys = split_runs(y, runs, out_len);
    let tasks: Vec<_> = runs.iter().zip(ys).collect();
    run_tasks(tasks, scratch, |(&(start, count), y), s| {
        ensure(&mut s.col, g.col_len());
        for i in (0..count).step_by(chunk) {
            let n = chunk.min(count - i);
            let xs = &x[(start + i) * in_len..(start + i + n) * in_len];
            let rows = if g.unfold(xs, n, &mut s.col) {
                &s.col[..]
            } else {
                xs
            };
            core.forward_rows(rows, n * rps, &mut y[i * out_len..]);
        }
    });
}

/// A convolution that computes a layer's input gradient from its (masked) output gradient,
/// in place of the row gradients and their scatter-add.
#[derive(Clone, Copy)]
struct InputGradient<'a> {
    back: ConvGeometry,
    method: Method,
    weights: Weights<'a>,
}

impl<'a> InputGradient<'a> {
    /// The [`fastconv::input_gradient`] pass of the layer `g` with `core`'s weights, if any.
    fn of(g: &ConvGeometry, prepared: &'a mut Prepared, core: &LinearCore) -> Option<Self> {
        let (back, method) = fastconv::input_gradient(g)?;
        let weights = prepared.input_gradient_weights(g, (back, method), &core.w.value);
        Some(InputGradient {
            back,
            method,
            weights,
        })
    }

    /// `dx` for the images whose masked output gradients are `dy`.
    fn run(&self, dy: &[f32], scratch: &mut fastconv::Scratch, dx: &mut [f32]) {
        let no_epilogue = Epilogue {
            bias: None,
            relu: false,
            pool: false,
        };
        let (back, method, weights) = (&self.back, self.method, self.weights);
        fastconv::forward(back, method, weights, no_epilogue, dy, scratch, dx);
    }
}

/// `count` zeroed slots of `len` floats in `slots`.
fn zeroed_slots(
    slots: &mut Vec<f32>,
    count: usize,
    len: usize,
) -> std::slice::ChunksExactMut<'_, f32> {
    slots.clear();
    slots.resize(count * len, 0.0);
    slots.chunks_exact_mut(len)
}

/// One run's part of a backward pass: its first sample and count, its output gradients, its
/// input gradients (when wanted) and its slot for the gradients of the parameters.
type BackwardTask<'a> = (
    (usize, usize),
    &'a mut [f32],
    Option<&'a mut [f32]>,
    &'a mut [f32],
);

/// Splits a backward pass into `runs` of samples, each with a slot of `slot_len` floats in
/// `slots` (zeroed).
fn backward_tasks<'a>(
    (in_len, out_len): (usize, usize),
    (slots, slot_len): (&'a mut Vec<f32>, usize),
    dy: &'a mut [f32],
    dx: Option<&'a mut [f32]>,
    runs: &[(usize, usize)],
) -> Vec<BackwardTask<'a>> {
    let batch: usize = runs.iter().map(|r| r.1).sum();
    let dys = split_runs(&mut dy[..batch * out_len], runs, out_len);
    let dxs: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => split_runs(dx, runs, in_len).into_iter().map(Some).collect(),
        None => runs.iter().map(|_| None).collect(),
    };
    runs.iter()
        .zip(dys)
        .zip(dxs)
        .zip(zeroed_slots(slots, runs.len(), slot_len))
        .map(|(((&range, dy), dx), slot)| (range, dy, dx, slot))
        .collect()
}

/// A convolution's backward pass through im2col: the weight gradient from the unfolded rows,
/// the input gradient from `fast_dx` where given, else from the row gradients folded back.
#[allow(clippy::too_many_arguments)]
fn im2col_backward(
    g: &ConvGeometry,
    (core, scratch, slots): (&mut LinearCore, &mut Vec<Scratch>, &mut Vec<f32>),
    fast_dx: Option<InputGradient>,
    x: &[f32],
    y: &[f32],
    dy: &mut [f32],
    dx: Option<&mut [f32]>,
    batch: usize,
) {
    let (in_len, out_len, chunk, rps) = (
        g.in_len(),
        g.out_len(),
        g.chunk_samples(),
        g.rows_per_sample(),
    );
    let core_ref = &*core;
    let runs = parallel::runs(batch);
    let tasks = backward_tasks((in_len, out_len), (slots, core.grad_len()), dy, dx, &runs);
    run_tasks(tasks, scratch, |((start, count), dy, mut dx, grad), s| {
        let Scratch { col, dcol, fast } = s;
        ensure(col, g.col_len());
        for i in (0..count).step_by(chunk) {
            let n = chunk.min(count - i);
            g.unfold(&x[(start + i) * in_len..(start + i + n) * in_len], n, col);
            let (m, ys) = (n * rps, &y[(start + i) * out_len..]);
            let dys = &mut dy[i * out_len..(i + n) * out_len];
            let dx = dx
                .as_deref_mut()
                .map(|dx| &mut dx[i * in_len..(i + n) * in_len]);
            match (dx, fast_dx) {
                (Some(dx), Some(f)) => {
                    core_ref.backward_rows(col, m, ys, dys, grad, None);
                    f.run(dys, fast, dx);
                }
                (Some(dx), None) => {
                    ensure(dcol, g.col_len());
                    core_ref.backward_rows(col, m, ys, dys, grad, Some(dcol));
                    g.fold(dcol, n, dx);
                }
                (None, _) => core_ref.backward_rows(col, m, ys, dys, grad, None),
            }
        }
    });
    core.reduce(slots);
}

/// A convolution's backward pass without im2col, image by image: the weight gradient through
/// Winograd ([`fastconv::weight_gradient`]) or tap by tap
/// ([`fastconv::direct_weight_gradient`]), the input gradient from `fast_dx` (required when
/// `dx` or `previous` is wanted). With `previous`, each image's input gradient goes to that
/// layer's own backward pass instead of `dx`.
#[allow(clippy::too_many_arguments)]
fn fast_backward(
    g: &ConvGeometry,
    winograd: bool,
    (core, scratch, slots): (&mut LinearCore, &mut Vec<Scratch>, &mut Vec<f32>),
    fast_dx: Option<InputGradient>,
    (x, y, unpool): (&[f32], &[f32], Option<Unpool>),
    dy: &mut [f32],
    (dx, previous): (Option<&mut [f32]>, Option<Previous>),
    batch: usize,
) {
    assert!(dx.is_none() || fast_dx.is_some());
    assert!(previous.is_none() || (dx.is_none() && fast_dx.is_some()));
    let (in_len, full_len) = (g.in_len(), g.out_len());
    // With a folded pool, `y` and `dy` are the pooled outputs and their gradients.
    let out_len = full_len / if unpool.is_some() { 4 } else { 1 };
    let (grad_len, kn) = (core.grad_len(), core.k * core.n);
    let core_ref = &*core;
    let runs = parallel::runs(batch);
    let tasks = backward_tasks((in_len, out_len), (slots, grad_len), dy, dx, &runs);
    let (prev_core, mut prev_slots, prev) = match previous {
        Some(Previous { g, core, slots, x }) => (Some(core), Some(slots), Some((g, x))),
        None => (None, None, None),
    };
    let before: Vec<Option<&mut [f32]>> = match (&prev_core, prev_slots.as_deref_mut()) {
        (Some(core), Some(slots)) => zeroed_slots(slots, runs.len(), core.grad_len())
            .map(Some)
            .collect(),
        _ => runs.iter().map(|_| None).collect(),
    };
    let tasks: Vec<_> = tasks.into_iter().zip(before).collect();
    let prev = prev.zip(prev_core.as_deref());
    run_tasks(
        tasks,
        scratch,
        |(((start, count), dy, mut dx, grad), mut before), s| {
            let Scratch {
                col,
                dcol: full,
                fast,
            } = s;
            let (gw, gb) = grad.split_at_mut(kn);
            if winograd {
                fastconv::start_weight_gradient(g, fast);
            }
            for (i, dy) in dy.chunks_exact_mut(out_len).take(count).enumerate() {
                let n = start + i;
                let y = &y[n * out_len..(n + 1) * out_len];
                let dy: &[f32] = match unpool {
                    Some(Unpool { winners, dropout }) => {
                        let at = n * out_len..(n + 1) * out_len;
                        if let Some((mask, keep)) = dropout {
                            apply_mask(dy, &mask[at.clone()], keep);
                        }
                        ensure(full, full_len);
                        fastconv::unpool(g.output, y, dy, &winners[at], full, gb);
                        &full[..full_len]
                    }
                    None => {
                        core_ref.mask_rows(y, dy, gb);
                        dy
                    }
                };
                let image = &x[n * in_len..(n + 1) * in_len];
                if winograd {
                    fastconv::weight_gradient(g, image, dy, fast);
                } else {
                    fastconv::direct_weight_gradient(g, image, dy, gw);
                }
                if let (Some(dx), Some(f)) = (dx.as_deref_mut(), fast_dx) {
                    f.run(dy, fast, &mut dx[i * in_len..(i + 1) * in_len]);
                }
                if let (Some(grad), Some(((pg, px), pcore)), Some(f)) =
                    (before.as_deref_mut(), prev, fast_dx)
                {
                    // This image's input gradient, the previous layer's output gradient, and
                    // that layer's weight gradient from it while it is in cache.
                    ensure(col, in_len);
                    let dx = &mut col[..in_len];
                    f.run(dy, fast, dx);
                    let (pgw, pgb) = grad.split_at_mut(pcore.k * pcore.n);
                    pcore.mask_rows(image, dx, pgb);
                    let input = &px[n * pg.in_len()..(n + 1) * pg.in_len()];
                    fastconv::direct_weight_gradient(&pg, input, dx, pgw);
                }
            }
            if winograd {
                fastconv::finish_weight_gradient(g, fast, gw);
            }
        },
    );
    core.reduce(slots);
    if let (Some(core), Some(slots)) = (prev_core, prev_slots) {
        core.reduce(slots);
    }
}

/// What a convolution's backward pass takes from the layers folded into its forward pass:
/// with a 2x2 max pool ([`Conv2d::forward_pooled`]), the mask and the scale of a kept value of
/// the dropout after the pool where that is folded in too. The outputs it is given are then
/// the dropout's, zero only where the pool's are or the mask dropped them, so they still tell
/// where the ReLU passed gradients.
#[derive(Clone, Copy)]
pub(crate) struct Pooled<'a> {
    pub(crate) dropout: Option<(&'a [u8], f32)>,
}

/// The pooled backward pass's per-image inputs: where each pooled output came from, and the
/// folded dropout's mask and scale.
#[derive(Clone, Copy)]
struct Unpool<'a> {
    winners: &'a [u8],
    dropout: Option<(&'a [u8], f32)>,
}

/// The layer before a convolution, when it is a convolution on the direct method whose input
/// gradient nobody needs (a first layer): its backward pass runs image by image inside the
/// next layer's, on each image's output gradient while it is still in cache, so that the
/// output gradients between the two (11 MB a batch on the reference CNN, written, then read
/// twice) are never stored.
pub(crate) struct Previous<'a> {
    g: ConvGeometry,
    core: &'a mut LinearCore,
    slots: &'a mut Vec<f32>,
    /// Its input.
    x: &'a [f32],
}

impl<'a> Previous<'a> {
    /// `layer`, whose input was `x`, if its backward pass can run inside the next layer's.
    pub(crate) fn of(layer: &'a mut Conv2d, x: &'a [f32]) -> Option<Self> {
        let direct = fastconv::method(&layer.rows) == Some(Method::Direct);
        direct.then_some(Previous {
            g: layer.rows,
            core: &mut layer.core,
            slots: &mut layer.slots,
            x,
        })
    }
}

/// Geometry of a square-kernel convolution over NHWC images.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeometry {
    pub(crate) input: Shape,
    pub(crate) output: Shape,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) padding: usize,
}

impl ConvGeometry {
    fn patch_len(&self) -> usize {
        self.kernel * self.kernel * self.input.c
    }

    fn positions(&self) -> usize {
        self.output.h * self.output.w
    }

    /// Calls `f(src, dst, len)` for every run of kernel taps along x whose input pixels lie
    /// inside the image: `len` consecutive channel vectors starting at input vector `src` go to
    /// patch vectors starting at `dst`. Runs are contiguous on both sides whatever the stride.
    fn for_each_run(&self, images: usize, mut f: impl FnMut(usize, usize, usize)) {
        let (s, k, p) = (self.stride, self.kernel, self.padding);
        let (ih, iw) = (self.input.h, self.input.w);
        for n in 0..images {
            for oy in 0..self.output.h {
                for ox in 0..self.output.w {
                    let row = (n * self.output.h + oy) * self.output.w + ox;
                    let kx0 = p.saturating_sub(ox * s);
                    let kx1 = k.min((iw + p).saturating_sub(ox * s));
                    if kx0 >= kx1 {
                        continue;
                    }
                    for ky in 0..k {
                        let iy = oy * s + ky;
                        if iy < p || iy - p >= ih {
                            continue;
                        }
                        let src = (n * ih + iy - p) * iw + ox * s + kx0 - p;
                        f(src, row * k * k + ky * k + kx0, kx1 - kx0);
                    }
                }
            }
        }
    }
}

impl Unfold for ConvGeometry {
    fn in_len(&self) -> usize {
        self.input.len()
    }

    fn out_len(&self) -> usize {
        self.output.len()
    }

    fn rows_per_sample(&self) -> usize {
        self.positions()
    }

    fn chunk_samples(&self) -> usize {
        (CHUNK_FLOATS / (self.positions() * self.patch_len())).max(1)
    }

    fn col_len(&self) -> usize {
        self.chunk_samples() * self.positions() * self.patch_len()
    }

    fn unfold(&self, x: &[f32], n: usize, col: &mut [f32]) -> bool {
        let c = self.input.c;
        let col = &mut col[..n * self.positions() * self.patch_len()];
        if self.padding > 0 {
            col.fill(0.0);
        }
        self.for_each_run(n, |src, dst, len| {
            // A plain loop: most runs are a few floats, where a memcpy call costs more than it moves.
            for (d, s) in col[dst * c..(dst + len) * c]
                .iter_mut()
                .zip(&x[src * c..(src + len) * c])
            {
                *d = *s;
            }
        });
        true
    }

    fn fold(&self, dcol: &[f32], n: usize, dx: &mut [f32]) {
        let c = self.input.c;
        let dx = &mut dx[..n * self.input.len()];
        dx.fill(0.0);
        self.for_each_run(n, |src, dst, len| {
            dx[src * c..(src + len) * c]
                .iter_mut()
                .zip(&dcol[dst * c..(dst + len) * c])
                .for_each(|(a, b)| *a += b);
        });
    }
}

/// A layer that is a product of rows with weights: a convolution (`U` = [`ConvGeometry`]) or a
/// dense layer (`U` = [`DenseRows`]).
#[derive(Debug, Clone)]
pub struct Linear<U> {
    rows: U,
    pub(crate) core: LinearCore,
    /// Working memory, one per thread.
    scratch: Vec<Scratch>,
    /// Gradients of the parameters, one slot per run of images of the last backward pass.
    slots: Vec<f32>,
    /// A convolution's weights as its fast forward method reads them (unused by dense layers).
    prepared: Prepared,
    /// Where each pooled output of [`Linear::forward_pooled`] came from (convolutions only).
    winners: Vec<u8>,
}

pub type Conv2d = Linear<ConvGeometry>;
pub type Dense = Linear<DenseRows>;

impl<U: Unfold> Linear<U> {
    /// The weights for writing; whatever was derived from them is rebuilt on next use.
    pub(crate) fn params_mut(&mut self) -> Vec<&mut Param> {
        self.prepared = Prepared::default();
        self.core.params_mut()
    }

    /// Folds a following per-unit affine map (an evaluation-mode batch norm) into the weights.
    pub(crate) fn fold_affine(&mut self, scale: &[f32], shift: &[f32]) {
        self.prepared = Prepared::default();
        self.core.fold_affine(scale, shift);
    }

    pub(crate) fn relu(&self) -> bool {
        self.core.relu
    }

    /// Fuses a following ReLU into the output pass.
    pub(crate) fn set_relu(&mut self) {
        self.core.relu = true;
    }
}

impl Linear<ConvGeometry> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        input: Shape,
        filters: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        relu: bool,
        name: &str,
        rng: &mut Rng,
    ) -> Result<Self, String> {
        if filters == 0 || kernel == 0 || stride == 0 {
            return Err(format!(
                "{name}: filters, kernel and stride must be positive"
            ));
        }
        let (ph, pw) = (input.h + 2 * padding, input.w + 2 * padding);
        if ph < kernel || pw < kernel {
            return Err(format!(
                "{name}: a {kernel}x{kernel} kernel does not fit a {}x{} input with padding {padding}",
                input.h, input.w
            ));
        }
        let output = Shape::new(
            (ph - kernel) / stride + 1,
            (pw - kernel) / stride + 1,
            filters,
        );
        Ok(Linear {
            rows: ConvGeometry {
                input,
                output,
                kernel,
                stride,
                padding,
            },
            core: LinearCore::new(kernel * kernel * input.c, filters, bias, relu, name, rng),
            scratch: Vec::new(),
            slots: Vec::new(),
            prepared: Prepared::default(),
            winners: Vec::new(),
        })
    }

    pub(crate) fn geometry(&self) -> ConvGeometry {
        self.rows
    }

    pub(crate) fn output(&self) -> Shape {
        self.rows.output
    }

    /// The input gradient comes from the [`fastconv::input_gradient`] convolution where this
    /// CPU and shape have one, from the row gradients of im2col + GEMM otherwise. With
    /// `pooled` (after [`Self::forward_pooled`]), `y` and `dy` are the outputs and gradients
    /// of the pool, or of the dropout after it. Returns whether it ran the `previous` layer's
    /// backward pass too, in place of writing `dx`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &mut self,
        pooled: Option<Pooled>,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        batch: usize,
        previous: Option<Previous>,
    ) -> bool {
        let g = self.rows;
        let core = &mut self.core;
        let fast_dx = dx
            .is_some()
            .then(|| InputGradient::of(&g, &mut self.prepared, core))
            .flatten();
        let memory = (core, &mut self.scratch, &mut self.slots);
        let winograd = fastconv::winograd_weight_gradient(&g);
        let direct = fastconv::method(&g) == Some(Method::Direct);
        let previous = previous.filter(|_| fast_dx.is_some() && (pooled.is_some() || winograd));
        let fused = previous.is_some();
        let dx = if fused { (None, previous) } else { (dx, None) };
        if let Some(Pooled { dropout }) = pooled {
            let unpool = Unpool {
                winners: &self.winners,
                dropout,
            };
            let inputs = (x, y, Some(unpool));
            fast_backward(&g, true, memory, fast_dx, inputs, dy, dx, batch);
        } else if (winograd || direct) && (dx.0.is_none() || fast_dx.is_some()) {
            let inputs = (x, y, None);
            fast_backward(&g, winograd, memory, fast_dx, inputs, dy, dx, batch);
        } else {
            im2col_backward(&g, memory, fast_dx, x, y, dy, dx.0, batch);
        }
        fused
    }

    /// Whether a following 2x2 max pool can fold into this layer in training too
    /// ([`Self::forward_pooled`] and a pooled [`Self::backward`]): Winograd layers with a fused
    /// ReLU whose backward pass runs through Winograd, input gradient included.
    pub(crate) fn can_train_pooled(&self) -> bool {
        let g = &self.rows;
        self.core.relu
            && fastconv::method(g) == Some(Method::Winograd)
            && fastconv::can_pool(g, Method::Winograd)
            && fastconv::winograd_weight_gradient(g)
            && fastconv::input_gradient(g).is_some()
    }

    /// This layer and a following 2x2 max pool in one pass (only where
    /// [`Self::can_train_pooled`]): `y` receives the pooled outputs, through the `dropout`
    /// after the pool where given (its draws and the mask they fill), image by image while
    /// each image's outputs are in cache.
    pub(crate) fn forward_pooled(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        batch: usize,
        dropout: Option<(Draw, &mut [u8])>,
    ) {
        let g = self.rows;
        let core = &self.core;
        let Weights::F32(w) = self.prepared.weights(&g, Method::Winograd, &core.w.value) else {
            unreachable!("Winograd's f32 weights are f32")
        };
        let out = Epilogue {
            bias: core.b.as_ref().map(|b| b.value.as_slice()),
            relu: true,
            pool: true,
        };
        let (in_len, out_len) = (g.in_len(), g.out_len() / 4);
        self.winners.resize(batch * out_len, 0);
        let runs = parallel::runs(batch);
        let ys = split_runs(&mut y[..batch * out_len], &runs, out_len);
        let winners = split_runs(&mut self.winners[..], &runs, out_len);
        let (draw, masks): (_, Vec<Option<&mut [u8]>>) = match dropout {
            Some((draw, mask)) => {
                let masks = split_runs(mask, &runs, out_len);
                (Some(draw), masks.into_iter().map(Some).collect())
            }
            None => (None, runs.iter().map(|_| None).collect()),
        };
        let tasks: Vec<_> = runs
            .iter()
            .zip(ys.into_iter().zip(winners).zip(masks))
            .collect();
        run_tasks(
            tasks,
            &mut self.scratch,
            |(&(start, count), ((y, winners), mut mask)), s| {
                let images = y
                    .chunks_exact_mut(out_len)
                    .zip(winners.chunks_exact_mut(out_len))
                    .take(count);
                for (i, (y, winners)) in images.enumerate() {
                    let n = start + i;
                    let x = &x[n * in_len..(n + 1) * in_len];
                    fastconv::forward_pooled(&g, w, out, x, &mut s.fast, y, winners);
                    if let (Some(draw), Some(mask)) = (&draw, mask.as_deref_mut()) {
                        let mask = &mut mask[i * out_len..(i + 1) * out_len];
                        draw.mask(n, mask);
                        apply_mask(y, mask, draw.keep);
                    }
                }
            },
        );
    }

    /// Runs the fast method where this CPU and shape have one, im2col + GEMM otherwise.
    pub(crate) fn forward(&mut self, x: &[f32], y: &mut [f32], batch: usize) {
        self.infer(x, y, batch, Precision::F32, false);
    }

    /// Whether [`Self::infer`] can fold a following 2x2 max pool into this layer at `precision`.
    pub(crate) fn can_pool(&self, precision: Precision) -> bool {
        fastconv::inference_method(&self.rows, precision)
            .is_some_and(|method| fastconv::can_pool(&self.rows, method))
    }

    /// The forward pass in evaluation: with Winograd's products at `precision` where this CPU
    /// has it, and, when `pool` (only where [`Self::can_pool`]), a 2x2 max pool folded in.
    pub(crate) fn infer(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        batch: usize,
        precision: Precision,
        pool: bool,
    ) {
        let g = self.rows;
        let Some(method) = fastconv::inference_method(&g, precision) else {
            assert!(!pool, "no pool fits the im2col path");
            let (core, scratch) = (&self.core, &mut self.scratch);
            return linear_forward(&g, core, scratch, x, y, &parallel::runs(batch));
        };
        let core = &self.core;
        let w = self.prepared.weights(&g, method, &core.w.value);
        let out = Epilogue {
            bias: core.b.as_ref().map(|b| b.value.as_slice()),
            relu: core.relu,
            pool,
        };
        let runs = parallel::runs(batch);
        let out_len = g.out_len() / if pool { 4 } else { 1 };
        let ys = split_runs(y, &runs, out_len);
        let tasks: Vec<_> = runs.iter().zip(ys).collect();
        let in_len = g.in_len();
        run_tasks(tasks, &mut self.scratch, |(&(start, count), y), s| {
            let x = &x[start * in_len..(start + count) * in_len];
            fastconv::forward(&g, method, w, out, x, &mut s.fast, y);
        });
    }
}

/// A dense layer's rows are its flattened input samples.
#[derive(Debug, Clone, Copy)]
pub struct DenseRows {
    inputs: usize,
    units: usize,
}

impl Unfold for DenseRows {
    fn in_len(&self) -> usize {
        self.inputs
    }

    fn out_len(&self) -> usize {
        self.units
    }

    fn rows_per_sample(&self) -> usize {
        1
    }

    fn chunk_samples(&self) -> usize {
        usize::MAX
    }

    fn col_len(&self) -> usize {
        0
    }

    fn unfold(&self, _x: &[f32], _n: usize, _col: &mut [f32]) -> bool {
        false
    }

    fn fold(&self, _dcol: &[f32], _n: usize, _dx: &mut [f32]) {
        unreachable!("dense rows are the input itself")
    }
}

/// A block of a dense layer's backward pass: columns of the input gradient, or rows of the
/// weight gradient (the `i`th block).
enum DenseTask<'a> {
    Inputs(ColumnBlock<'a>),
    Weights((usize, &'a mut [f32])),
}

impl Linear<DenseRows> {
    pub(crate) fn new(
        inputs: usize,
        units: usize,
        relu: bool,
        name: &str,
        rng: &mut Rng,
    ) -> Result<Self, String> {
        if inputs == 0 || units == 0 {
            return Err(format!("{name}: a dense layer needs inputs and units"));
        }
        Ok(Linear {
            rows: DenseRows { inputs, units },
            core: LinearCore::new(inputs, units, true, relu, name, rng),
            scratch: Vec::new(),
            slots: Vec::new(),
            prepared: Prepared::default(),
            winners: Vec::new(),
        })
    }

    pub(crate) fn units(&self) -> usize {
        self.rows.units
    }

    pub(crate) fn forward(&mut self, x: &[f32], y: &mut [f32], batch: usize) {
        let (rows, core, scratch) = (&self.rows, &self.core, &mut self.scratch);
        linear_forward(rows, core, scratch, x, y, &parallel::runs(batch));
    }

    /// The work is split by inputs, never by images: the input gradient by blocks of its
    /// columns, the weight gradient by blocks of rows, each summed over the whole batch. Split
    /// by images, every thread packed all the weights for the input gradient and summed a
    /// full-size partial weight gradient (1.2M values on the reference CNN).
    pub(crate) fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        batch: usize,
    ) {
        let core = &mut self.core;
        let (k, n) = (core.k, core.n);
        let dy = &mut dy[..batch * n];
        // The bias gradient, the whole batch's, in the one slot.
        let gb = zeroed_slots(&mut self.slots, 1, n)
            .next()
            .unwrap_or_default();
        core.mask_rows(&y[..batch * n], dy, gb);
        if let Some(b) = &mut core.b {
            b.grad.copy_from_slice(&self.slots);
        }
        let dy = &*dy;
        // Both products' blocks in one queue: one wait for the slower thread, not two.
        let weights = core.w.grad.chunks_mut(INPUT_BLOCK * n).enumerate();
        let mut tasks: Vec<_> = weights.map(DenseTask::Weights).collect();
        if let Some(dx) = dx {
            let w = View::transposed(&core.w.value, n);
            let blocks = column_blocks(batch, k, n, dx, View::rows(dy, n), w, INPUT_BLOCK);
            tasks.extend(blocks.into_iter().map(DenseTask::Inputs));
        }
        run_tasks(tasks, &mut self.scratch, |task, _| match task {
            DenseTask::Inputs(block) => block.run(),
            DenseTask::Weights((i, gw)) => {
                let first = i * INPUT_BLOCK;
                let x = View::transposed(&x[first..batch * k], k);
                matmul(gw.len() / n, n, batch, gw, x, View::rows(dy, n), false);
            }
        });
    }

    /// The forward pass in evaluation: one sample at bfloat16 reads its weights as bfloat16
    /// where this CPU has it.
    pub(crate) fn infer(&mut self, x: &[f32], y: &mut [f32], batch: usize, precision: Precision) {
        let (k, n) = (self.rows.inputs, self.rows.units);
        if batch == 1 && precision.resolve(batch) == Precision::Bf16 {
            let w = self.prepared.pairs(&self.core.w.value, n);
            if gemv::product_bf16(&x[..k], w, n, &mut y[..n]) {
                return self.core.finish_rows(&mut y[..n]);
            }
        }
        self.forward(x, y, batch)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::layer::{LayerSpec, Shape};
    use crate::network::Network;
    use digits_rng::Rng;

    /// Direct convolution, one multiply-add at a time: what the im2col + GEMM path must equal.
    /// Weights are `[ky][kx][c_in][filter]`, activations NHWC.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reference_conv(
        x: &[f32],
        input: Shape,
        w: &[f32],
        b: &[f32],
        filters: usize,
        k: usize,
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> Vec<f32> {
        let oh = (input.h + 2 * pad - k) / stride + 1;
        let ow = (input.w + 2 * pad - k) / stride + 1;
        let mut y = vec![0f32; oh * ow * filters];
        for oy in 0..oh {
            for ox in 0..ow {
                for f in 0..filters {
                    let mut acc = b.get(f).copied().unwrap_or(0.0);
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            let ix = (ox * stride + kx) as isize - pad as isize;
                            if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize
                            {
                                continue;
                            }
                            for c in 0..input.c {
                                let xv = x[(iy as usize * input.w + ix as usize) * input.c + c];
                                acc += xv * w[((ky * k + kx) * input.c + c) * filters + f];
                            }
                        }
                    }
                    y[(oy * ow + ox) * filters + f] = if relu { acc.max(0.0) } else { acc };
                }
            }
        }
        y
    }

    #[test]
    fn convolution_matches_the_direct_reference() {
        let mut rng = Rng::new(5);
        for (input, filters, k, stride, pad, relu) in [
            (Shape::new(28, 28, 1), 8, 3, 1, 1, false),
            (Shape::new(9, 7, 3), 5, 3, 2, 1, true),
            (Shape::new(6, 6, 4), 6, 5, 1, 0, true),
            // Shapes the direct kernel (AVX-512 or AVX2) takes where the CPU has it.
            (Shape::new(28, 28, 1), 32, 3, 1, 1, true),
            (Shape::new(14, 14, 32), 64, 3, 1, 1, false),
            (Shape::new(10, 9, 3), 32, 3, 1, 0, true),
        ] {
            let spec = LayerSpec::Conv2d {
                filters,
                kernel: k,
                stride,
                padding: pad,
                bias: true,
                relu,
            };
            let mut net = Network::new(input, &[spec], 3).unwrap();
            for p in net.params_mut() {
                p.value.iter_mut().for_each(|v| *v = rng.normal());
            }
            let params: Vec<Vec<f32>> = net.params().map(|p| p.value.clone()).collect();
            let batch = 3;
            let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.normal()).collect();
            let got = net.predict_at(&x, batch, crate::Precision::F32).to_vec();
            let per = got.len() / batch;
            for n in 0..batch {
                let want = reference_conv(
                    &x[n * input.len()..(n + 1) * input.len()],
                    input,
                    &params[0],
                    &params[1],
                    filters,
                    k,
                    stride,
                    pad,
                    relu,
                );
                assert_eq!(want.len(), per);
                // What each output sums, in magnitude: Winograd's f32 rounding grows with it
                // (the tolerance of `fastconv`'s own tests).
                let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<f32>>();
                let image = &x[n * input.len()..(n + 1) * input.len()];
                let (w, b) = (abs(&params[0]), abs(&params[1]));
                let size =
                    reference_conv(&abs(image), input, &w, &b, filters, k, stride, pad, false);
                for ((g, w), size) in got[n * per..(n + 1) * per].iter().zip(&want).zip(&size) {
                    let tolerance = 1e-4 * (1.0 + w.abs()) + size / 65536.0;
                    assert!((g - w).abs() <= tolerance, "{g} vs {w}");
                }
            }
        }
    }

    /// A convolution's gradients by definition, for one image and its output gradient `dy`
    /// (already masked by the fused ReLU): the input gradient, the weight gradient, and what
    /// each value of the input gradient sums in magnitude (for rounding tolerances).
    #[allow(clippy::too_many_arguments)]
    fn reference_gradients(
        x: &[f32],
        input: Shape,
        w: &[f32],
        dy: &[f32],
        filters: usize,
        k: usize,
        pad: usize,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (oh, ow) = (input.h + 2 * pad + 1 - k, input.w + 2 * pad + 1 - k);
        let (mut dx, mut size) = (vec![0f32; input.len()], vec![0f32; input.len()]);
        let mut dw = vec![0f32; w.len()];
        for (oy, ox, ky, kx) in output_taps(oh, ow, k) {
            let (iy, ix) = (
                (oy + ky) as isize - pad as isize,
                (ox + kx) as isize - pad as isize,
            );
            if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize {
                continue;
            }
            let at = (iy as usize * input.w + ix as usize) * input.c;
            for c in 0..input.c {
                for f in 0..filters {
                    let (d, wv) = (
                        dy[(oy * ow + ox) * filters + f],
                        w[((ky * k + kx) * input.c + c) * filters + f],
                    );
                    dx[at + c] += d * wv;
                    size[at + c] += (d * wv).abs();
                    dw[((ky * k + kx) * input.c + c) * filters + f] += d * x[at + c];
                }
            }
        }
        (dx, dw, size)
    }

    /// Every (output row, output column, kernel row, kernel column).
    fn output_taps(
        oh: usize,
        ow: usize,
        k: usize,
    ) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        (0..oh).flat_map(move |oy| {
            (0..ow).flat_map(move |ox| (0..k * k).map(move |t| (oy, ox, t / k, t % k)))
        })
    }

    /// The backward pass (the fast input-gradient convolution where the CPU and shape have
    /// one, im2col otherwise) against the definition.
    #[test]
    fn convolution_gradients_match_the_definition() {
        let mut rng = Rng::new(8);
        for (input, filters, k, pad, input_grad) in [
            // cnn-ref's second layer and the default cnn's: Winograd.
            (Shape::new(26, 26, 32), 64, 3, 0, true),
            (Shape::new(14, 14, 32), 64, 3, 1, true),
            (Shape::new(7, 9, 64), 32, 3, 2, true),
            // A 5x5 kernel: the direct method; too few channels: im2col.
            (Shape::new(9, 8, 32), 32, 5, 2, true),
            (Shape::new(6, 5, 3), 8, 3, 1, true),
            // First layers (no input gradient): the direct weight gradient, then im2col's.
            (Shape::new(28, 28, 1), 32, 3, 0, false),
            (Shape::new(11, 10, 3), 32, 3, 1, false),
            (Shape::new(11, 10, 3), 32, 3, 1, true),
        ] {
            let spec = LayerSpec::Conv2d {
                filters,
                kernel: k,
                stride: 1,
                padding: pad,
                bias: true,
                relu: true,
            };
            let mut net = Network::new(input, &[spec], 3).unwrap();
            net.want_input_grad = input_grad;
            for p in net.params_mut() {
                p.value.iter_mut().for_each(|v| *v = rng.normal());
            }
            let w = net.params().next().unwrap().value.clone();
            let batch = 2;
            let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.normal()).collect();
            net.input_mut(batch).copy_from_slice(&x);
            let y = net.forward(crate::Mode::Train, 1).to_vec();
            let r: Vec<f32> = (0..y.len()).map(|_| rng.normal()).collect();
            net.backward(&r);
            let masked: Vec<f32> = r
                .iter()
                .zip(&y)
                .map(|(&r, &y)| if y > 0.0 { r } else { 0.0 })
                .collect();
            let (per_in, per_out) = (input.len(), y.len() / batch);
            let mut want_dw = vec![0f32; w.len()];
            for n in 0..batch {
                let (dx, dw, size) = reference_gradients(
                    &x[n * per_in..(n + 1) * per_in],
                    input,
                    &w,
                    &masked[n * per_out..(n + 1) * per_out],
                    filters,
                    k,
                    pad,
                );
                want_dw.iter_mut().zip(&dw).for_each(|(a, b)| *a += b);
                if !input_grad {
                    continue;
                }
                let got = &net.input_grad()[n * per_in..(n + 1) * per_in];
                for ((g, w), size) in got.iter().zip(&dx).zip(&size) {
                    let tolerance = 1e-4 * (1.0 + w.abs()) + size / 65536.0;
                    assert!((g - w).abs() <= tolerance, "{input:?} k {k}: dx {g} vs {w}");
                }
            }
            let got_dw = &net.params().next().unwrap().grad;
            for (g, w) in got_dw.iter().zip(&want_dw) {
                assert!(
                    (g - w).abs() < 1e-3 * (1.0 + w.abs()),
                    "{input:?}: dw {g} vs {w}"
                );
            }
        }
    }
}
