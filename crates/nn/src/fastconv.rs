//! Forward convolution without im2col, for stride-1 layers on CPUs with AVX-512.
//!
//! Why: for one image the im2col + GEMM product is short and thin (784 x 288 by 32 on the
//! default CNN's widest layer) and `gemm` reaches ~80 GFLOP/s on it after the patch copy,
//! while one core here does ~115 GFLOP/s of 512-bit FMAs at best. Both methods below share one
//! register-blocked micro-kernel that keeps up to 14 rows x 32 output channels in 28 registers:
//!
//! - 3x3 kernels with enough input channels use Winograd F(2x2, 3x3): each 4x4 input tile and
//!   each 3x3 filter is transformed so that a 2x2 output tile costs 16 multiplies per channel
//!   pair instead of 36 (2.25x fewer), leaving 16 small products for the micro-kernel.
//! - Other stride-1 kernels (and the first layer's single input channel) run directly on the
//!   zero-padded input, one kernel tap at a time.
//!
//! Strides other than 1, filter counts not a multiple of 32 and CPUs without AVX-512 take the
//! im2col path. [`crate::conv`]'s tests hold every path to the same scalar reference.

use crate::conv::ConvGeometry;

/// Output channels per pass: two 16-lane registers per row.
const BLOCK: usize = 32;

/// How a convolution's forward pass runs when it does not use im2col.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Winograd,
    Direct,
}

/// The fast method for this convolution on this CPU, if any.
pub(crate) fn method(g: &ConvGeometry) -> Option<Method> {
    if g.stride != 1 || !g.output.c.is_multiple_of(BLOCK) || !avx512() {
        return None;
    }
    // With a handful of input channels the tile transforms cost more than they save.
    Some(if g.kernel == 3 && g.input.c >= 8 {
        Method::Winograd
    } else {
        Method::Direct
    })
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn avx512() -> bool {
    false
}

/// The layer's weights in the form its method reads. The layer clears it whenever it hands out
/// its weights for writing, so it is rebuilt on the next forward pass after any change.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prepared {
    weights: Vec<f32>,
}

impl Prepared {
    /// Weights for `method`: Winograd's transformed filters, or the weights themselves.
    pub(crate) fn weights<'a>(
        &'a mut self,
        g: &ConvGeometry,
        method: Method,
        w: &'a [f32],
    ) -> &'a [f32] {
        match method {
            Method::Direct => w,
            Method::Winograd => {
                if self.weights.is_empty() {
                    self.weights = winograd_filters(g, w);
                }
                &self.weights
            }
        }
    }
}

/// `y = act(conv(x) + bias)` for the NHWC images in `x`, with `weights` from [`Prepared`].
/// `scratch` is reused between calls. Only call with the [`method`] of `g`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    g: &ConvGeometry,
    method: Method,
    weights: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    x: &[f32],
    scratch: &mut Vec<f32>,
    y: &mut [f32],
) {
    assert_eq!(
        self::method(g),
        Some(method),
        "unsupported fast convolution"
    );
    assert!(bias.is_none_or(|b| b.len() >= g.output.c));
    let images = x
        .chunks_exact(g.input.len())
        .zip(y.chunks_exact_mut(g.output.len()));
    match method {
        Method::Direct => {
            let taps = direct_taps(g);
            for (image, y) in images {
                direct(g, weights, &taps, bias, relu, image, scratch, y);
            }
        }
        Method::Winograd => {
            for (image, y) in images {
                winograd(g, weights, bias, relu, image, scratch, y);
            }
        }
    }
}

/// Zeros standing in for a missing bias, one block of output channels.
const NO_BIAS: [f32; BLOCK] = [0.0; BLOCK];

/// Copies `image` into a `rows x cols` canvas at (`pad`, `pad`), zeroing only the margins.
fn pad_into(g: &ConvGeometry, image: &[f32], rows: usize, cols: usize, canvas: &mut [f32]) {
    let (c, p) = (g.input.c, g.padding);
    let (line, stride) = (g.input.w * c, cols * c);
    let canvas = &mut canvas[..rows * stride];
    let (top, rest) = canvas.split_at_mut(p * stride);
    top.fill(0.0);
    let (middle, bottom) = rest.split_at_mut(g.input.h * stride);
    bottom.fill(0.0);
    for (dst, src) in middle
        .chunks_exact_mut(stride)
        .zip(image.chunks_exact(line))
    {
        let (left, rest) = dst.split_at_mut(p * c);
        left.fill(0.0);
        let (inside, right) = rest.split_at_mut(line);
        inside.copy_from_slice(src);
        right.fill(0.0);
    }
}

/// (input offset, weight offset) of each kernel tap on the zero-padded canvas of `direct`.
fn direct_taps(g: &ConvGeometry) -> Vec<(usize, usize)> {
    let (k, cin, n) = (g.kernel, g.input.c, g.output.c);
    let pw = g.input.w + 2 * g.padding;
    (0..k * k)
        .map(|t| (((t / k) * pw + t % k) * cin, t * cin * n))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn direct(
    g: &ConvGeometry,
    w: &[f32],
    taps: &[(usize, usize)],
    bias: Option<&[f32]>,
    relu: bool,
    image: &[f32],
    scratch: &mut Vec<f32>,
    y: &mut [f32],
) {
    let (cin, n) = (g.input.c, g.output.c);
    let (ph, pw) = (g.input.h + 2 * g.padding, g.input.w + 2 * g.padding);
    if scratch.len() < ph * pw * cin {
        scratch.resize(ph * pw * cin, 0.0);
    }
    pad_into(g, image, ph, pw, scratch);
    for oy in 0..g.output.h {
        for cb in (0..n).step_by(BLOCK) {
            let tile = Tile {
                taps,
                depth: cin,
                stride: cin,
                w: &w[cb..],
                n,
                bias: bias.map_or(&NO_BIAS[..], |b| &b[cb..cb + BLOCK]),
                relu,
            };
            let row = &scratch[oy * pw * cin..];
            tile.row(row, g.output.w, &mut y[oy * g.output.w * n + cb..]);
        }
    }
}

/// G applied along one axis of a 3-tap filter: the F(2x2, 3x3) filter transform.
fn g_axis([a, b, c]: [f32; 3]) -> [f32; 4] {
    [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
}

/// Transformed filters `[16][c_in][n]`: U = G g Gᵀ for every (input, output) channel pair.
fn winograd_filters(g: &ConvGeometry, w: &[f32]) -> Vec<f32> {
    let (cin, n) = (g.input.c, g.output.c);
    let mut u = vec![0.0f32; 16 * cin * n];
    for ci in 0..cin {
        for co in 0..n {
            let tap = |ky: usize, kx: usize| w[((ky * 3 + kx) * cin + ci) * n + co];
            let cols: [[f32; 4]; 3] =
                std::array::from_fn(|kx| g_axis([0, 1, 2].map(|ky| tap(ky, kx))));
            let tile: [[f32; 4]; 4] = std::array::from_fn(|i| g_axis(cols.map(|c| c[i])));
            for (i, row) in tile.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    u[((i * 4 + j) * cin + ci) * n + co] = v;
                }
            }
        }
    }
    u
}

fn winograd(
    g: &ConvGeometry,
    u: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    image: &[f32],
    scratch: &mut Vec<f32>,
    y: &mut [f32],
) {
    let (cin, n) = (g.input.c, g.output.c);
    let (oh, ow) = (g.output.h, g.output.w);
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let tiles = th * tw;
    // The canvas covers every 4x4 input tile, including the last row and column of tiles when
    // the output size is odd.
    let (ph, pw) = (2 * th + 2, 2 * tw + 2);
    let (canvas_len, v_len, m_len) = (ph * pw * cin, 16 * tiles * cin, 16 * tiles * n);
    if scratch.len() < canvas_len + v_len + m_len {
        scratch.resize(canvas_len + v_len + m_len, 0.0);
    }
    let (canvas, rest) = scratch.split_at_mut(canvas_len);
    let (v, m) = rest.split_at_mut(v_len);
    pad_into(g, image, ph, pw, canvas);

    // V = Bᵀ d B for every tile and channel, stored `[16][tile][c_in]`.
    assert!(canvas.len() >= ((2 * th + 1) * pw + 2 * tw + 2) * cin && v.len() >= 16 * tiles * cin);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `method` only picks Winograd when AVX-512F is present; the assert covers the
    // last tile's last pixel and the last transformed value.
    unsafe {
        transform_input(canvas, pw, cin, (th, tw), v)
    };

    // M[ξ] = V[ξ] U[ξ]: sixteen [tiles x c_in] by [c_in x n] products.
    for xi in 0..16 {
        let vx = &v[xi * tiles * cin..(xi + 1) * tiles * cin];
        let ux = &u[xi * cin * n..(xi + 1) * cin * n];
        let mx = &mut m[xi * tiles * n..(xi + 1) * tiles * n];
        for cb in (0..n).step_by(BLOCK) {
            let tile = Tile {
                taps: &[(0, 0)],
                depth: cin,
                stride: cin,
                w: &ux[cb..],
                n,
                bias: &NO_BIAS,
                relu: false,
            };
            tile.row(vx, tiles, &mut mx[cb..]);
        }
    }

    // Y = Aᵀ M A, plus bias and ReLU, cropped to the output.
    assert!(m.len() >= 16 * tiles * n && y.len() >= oh * ow * n && n % 16 == 0);
    assert!(bias.is_none_or(|b| b.len() >= n));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; the asserts cover every tile, channel and output pixel.
    unsafe {
        transform_output(m, n, (th, tw), bias, relu, (oh, ow), y)
    };
}

/// Bᵀ applied along one axis of four tile values: the F(2x2, 3x3) input transform.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn bt(d: [std::arch::x86_64::__m512; 4]) -> [std::arch::x86_64::__m512; 4] {
    use std::arch::x86_64::*;
    [
        _mm512_sub_ps(d[0], d[2]),
        _mm512_add_ps(d[1], d[2]),
        _mm512_sub_ps(d[2], d[1]),
        _mm512_sub_ps(d[1], d[3]),
    ]
}

/// Aᵀ applied along one axis: the F(2x2, 3x3) output transform.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn at(m: [std::arch::x86_64::__m512; 4]) -> [std::arch::x86_64::__m512; 2] {
    use std::arch::x86_64::*;
    [
        _mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]),
        _mm512_sub_ps(_mm512_sub_ps(m[1], m[2]), m[3]),
    ]
}

/// Lanes of a 16-channel group that exist when only `left` channels remain.
fn lanes(left: usize) -> u16 {
    if left >= 16 {
        u16::MAX
    } else {
        (1u16 << left) - 1
    }
}

/// V = Bᵀ d B, 16 channels at a time (masked at the end of an odd channel count).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_input(
    canvas: &[f32],
    pw: usize,
    cin: usize,
    (th, tw): (usize, usize),
    v: &mut [f32],
) {
    use std::arch::x86_64::*;
    let tiles = th * tw;
    let (src, dst) = (canvas.as_ptr(), v.as_mut_ptr());
    // SAFETY: the caller checked the canvas and `v` against the last tile and channel.
    unsafe {
        for t in 0..tiles {
            let base = (2 * (t / tw) * pw + 2 * (t % tw)) * cin;
            for c in (0..cin).step_by(16) {
                let mask = lanes(cin - c);
                let d = |i: usize, j: usize| {
                    _mm512_maskz_loadu_ps(mask, src.add(base + (i * pw + j) * cin + c))
                };
                let cols: [[__m512; 4]; 4] =
                    std::array::from_fn(|j| bt([d(0, j), d(1, j), d(2, j), d(3, j)]));
                let tile: [[__m512; 4]; 4] = std::array::from_fn(|i| bt(cols.map(|c| c[i])));
                for (i, row) in tile.into_iter().enumerate() {
                    for (j, value) in row.into_iter().enumerate() {
                        _mm512_mask_storeu_ps(
                            dst.add(((i * 4 + j) * tiles + t) * cin + c),
                            mask,
                            value,
                        );
                    }
                }
            }
        }
    }
}

/// Y = Aᵀ M A plus bias and ReLU, 16 channels at a time, cropped to the output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_output(
    m: &[f32],
    n: usize,
    (th, tw): (usize, usize),
    bias: Option<&[f32]>,
    relu: bool,
    (oh, ow): (usize, usize),
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let tiles = th * tw;
    let (src, dst) = (m.as_ptr(), y.as_mut_ptr());
    // SAFETY: the caller checked `m`, `y` and the bias against every tile and channel.
    unsafe {
        for t in 0..tiles {
            let (ty, tx) = (t / tw, t % tw);
            for c in (0..n).step_by(16) {
                let mv = |xi: usize| _mm512_loadu_ps(src.add((xi * tiles + t) * n + c));
                let rows: [[__m512; 2]; 4] = std::array::from_fn(|i| {
                    at([mv(i * 4), mv(i * 4 + 1), mv(i * 4 + 2), mv(i * 4 + 3)])
                });
                let b = bias.map_or(_mm512_setzero_ps(), |b| _mm512_loadu_ps(b.as_ptr().add(c)));
                let tile: [[__m512; 2]; 2] = std::array::from_fn(|j| at(rows.map(|r| r[j])));
                for (j, col) in tile.into_iter().enumerate() {
                    for (i, value) in col.into_iter().enumerate() {
                        let (oy, ox) = (2 * ty + i, 2 * tx + j);
                        if oy < oh && ox < ow {
                            let mut value = _mm512_add_ps(value, b);
                            if relu {
                                value = _mm512_max_ps(value, _mm512_setzero_ps());
                            }
                            _mm512_storeu_ps(dst.add((oy * ow + ox) * n + c), value);
                        }
                    }
                }
            }
        }
    }
}

/// The micro-kernel's work: `rows` output rows (pixels, or Winograd tiles) of one block of 32
/// output channels. Row `r` is `bias + Σ_taps Σ_c x[tap.0 + r * stride + c] * w[tap.1 + c * n]`.
struct Tile<'a> {
    /// (input offset, weight offset) of each kernel tap.
    taps: &'a [(usize, usize)],
    /// Values summed per tap (input channels).
    depth: usize,
    /// Input floats between consecutive rows.
    stride: usize,
    /// Weights `[..][n]`, offset to the block's first channel.
    w: &'a [f32],
    n: usize,
    bias: &'a [f32],
    relu: bool,
}

impl Tile<'_> {
    /// Writes `rows` rows starting at `x` into `y` (row stride `n`), 14 at a time.
    fn row(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let mut r = 0;
        while r < rows {
            let (x, y) = (&x[r * self.stride..], &mut y[r * self.n..]);
            r += match rows - r {
                14.. => self.run::<14>(x, y),
                8.. => self.run::<8>(x, y),
                4.. => self.run::<4>(x, y),
                2.. => self.run::<2>(x, y),
                _ => self.run::<1>(x, y),
            };
        }
    }

    /// Computes `P` rows; returns `P`.
    fn run<const P: usize>(&self, x: &[f32], y: &mut [f32]) -> usize {
        let (depth, n) = (self.depth, self.n);
        // Bounds for every pointer the kernel forms, checked once here.
        let (x_end, w_end) = self.taps.iter().fold((0, 0), |(a, b), &(xo, wo)| {
            (
                a.max(xo + (P - 1) * self.stride + depth),
                b.max(wo + (depth - 1) * n + BLOCK),
            )
        });
        assert!(depth > 0 && x.len() >= x_end && self.w.len() >= w_end);
        assert!(y.len() >= (P - 1) * n + BLOCK && self.bias.len() >= BLOCK);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `method` only picks this kernel when AVX-512F is present, and the asserts
        // above cover every load and store.
        unsafe {
            self.run_avx512::<P>(x.as_ptr(), y.as_mut_ptr())
        };
        P
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512<const P: usize>(&self, x: *const f32, y: *mut f32) {
        use std::arch::x86_64::*;
        let (depth, n, stride) = (self.depth, self.n, self.stride);
        // SAFETY (whole body): offsets stay inside the slices, see `run`'s asserts.
        unsafe {
            let b0 = _mm512_loadu_ps(self.bias.as_ptr());
            let b1 = _mm512_loadu_ps(self.bias.as_ptr().add(16));
            let mut acc = [[b0, b1]; P];
            for &(xo, wo) in self.taps {
                let (xs, ws) = (x.add(xo), self.w.as_ptr().add(wo));
                for c in 0..depth {
                    let w0 = _mm512_loadu_ps(ws.add(c * n));
                    let w1 = _mm512_loadu_ps(ws.add(c * n + 16));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let v = _mm512_set1_ps(*xs.add(r * stride + c));
                        acc[0] = _mm512_fmadd_ps(v, w0, acc[0]);
                        acc[1] = _mm512_fmadd_ps(v, w1, acc[1]);
                    }
                }
            }
            let zero = _mm512_setzero_ps();
            for (r, acc) in acc.iter().enumerate() {
                let (mut a0, mut a1) = (acc[0], acc[1]);
                if self.relu {
                    a0 = _mm512_max_ps(a0, zero);
                    a1 = _mm512_max_ps(a1, zero);
                }
                _mm512_storeu_ps(y.add(r * n), a0);
                _mm512_storeu_ps(y.add(r * n + 16), a1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::reference_conv;
    use crate::layer::Shape;
    use digits_rng::Rng;

    /// Both methods against the scalar reference: output widths 28 (14 + 14 rows), 27
    /// (14 + 8 + 4 + 1), odd sizes (a cropped last Winograd tile), 1 to 64 input channels,
    /// 32 and 64 filters, with and without padding, bias and ReLU, several images.
    #[test]
    fn fast_methods_match_the_reference() {
        let mut rng = Rng::new(9);
        let mut seen = Vec::new();
        for (input, filters, k, pad, bias, relu) in [
            (Shape::new(28, 28, 1), 32, 3, 1, true, true),
            (Shape::new(5, 29, 5), 64, 3, 0, false, false),
            (Shape::new(8, 8, 2), 32, 5, 2, true, false),
            (Shape::new(28, 28, 32), 32, 3, 1, false, false),
            (Shape::new(7, 9, 16), 64, 3, 1, true, true),
            (Shape::new(14, 14, 64), 64, 3, 1, true, false),
            (Shape::new(6, 5, 8), 32, 3, 0, false, true),
        ] {
            let output = Shape::new(
                input.h + 2 * pad - k + 1,
                input.w + 2 * pad - k + 1,
                filters,
            );
            let g = ConvGeometry {
                input,
                output,
                kernel: k,
                stride: 1,
                padding: pad,
            };
            let Some(method) = self::method(&g) else {
                eprintln!("no AVX-512 on this CPU: the fast convolutions are not used here");
                return;
            };
            seen.push(method);
            let w: Vec<f32> = (0..k * k * input.c * filters)
                .map(|_| rng.normal())
                .collect();
            let b: Vec<f32> = (0..filters).map(|_| rng.normal()).collect();
            let images = 2;
            let x: Vec<f32> = (0..images * input.len()).map(|_| rng.normal()).collect();
            let mut y = vec![f32::NAN; images * output.len()];
            let bias = bias.then_some(&b[..]);
            let mut prepared = Prepared::default();
            let weights = prepared.weights(&g, method, &w);
            // Scratch left dirty by earlier use: every margin must be zeroed, not assumed zero.
            let mut scratch = vec![f32::NAN; 1 << 18];
            forward(&g, method, weights, bias, relu, &x, &mut scratch, &mut y);
            for i in 0..images {
                let want = reference_conv(
                    &x[i * input.len()..(i + 1) * input.len()],
                    input,
                    &w,
                    bias.unwrap_or(&[]),
                    filters,
                    k,
                    1,
                    pad,
                    relu,
                );
                let got = &y[i * output.len()..(i + 1) * output.len()];
                for (g, w) in got.iter().zip(&want) {
                    // Winograd adds and subtracts before multiplying: a little more rounding.
                    assert!(
                        (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{method:?}: {g} vs {w}"
                    );
                }
            }
        }
        assert!(seen.contains(&Method::Direct) && seen.contains(&Method::Winograd));
    }

    /// Prepared filters must follow weights changed through the public parameter access
    /// (optimiser steps, loading a model file).
    #[test]
    fn forward_follows_weight_changes() {
        use crate::layer::LayerSpec;
        use crate::network::Network;
        let spec = LayerSpec::Conv2d {
            filters: 32,
            kernel: 3,
            stride: 1,
            padding: 1,
            bias: false,
            relu: false,
        };
        let mut net = Network::new(Shape::new(6, 6, 8), &[spec], 1).unwrap();
        let x = vec![1.0f32; 6 * 6 * 8];
        let before = net.predict(&x, 1).to_vec();
        for p in net.params_mut() {
            p.value.iter_mut().for_each(|v| *v *= 2.0);
        }
        let after = net.predict(&x, 1).to_vec();
        for (a, b) in after.iter().zip(&before) {
            assert!(
                (a - 2.0 * b).abs() < 1e-4 * (1.0 + b.abs()),
                "{a} vs 2 x {b}"
            );
        }
    }
}
