//! Convolution without im2col, for stride-1 layers on CPUs with AVX-512 or AVX2: the forward
//! pass, and in training the input gradient (itself a convolution, [`input_gradient`]) and
//! Winograd's weight gradient ([`weight_gradient`]). Each kernel is written once over
//! `simd::Vector` and compiled for both instruction sets (`on_this_cpu`).
//!
//! Why: for one image the im2col + GEMM product is short and thin (784 x 288 by 32 on the
//! default CNN's widest layer) and `gemm` reaches ~80 GFLOP/s on it after the patch copy,
//! while one core here does ~115 GFLOP/s of 512-bit FMAs at best. Both methods below share one
//! register-blocked micro-kernel that keeps up to 14 rows x 32 output channels in 28 registers
//! (AVX2: 6 rows x 16 channels in 12, twice per block of 32):
//!
//! - 3x3 kernels with enough input channels use Winograd F(4x4, 3x3): each 6x6 input tile and
//!   each 3x3 filter is transformed so that a 4x4 output tile costs 36 multiplies per channel
//!   pair instead of 144 (4x fewer), leaving 36 small products for the micro-kernel; in
//!   inference those can be bfloat16 (see [`TILE`] for what that rounding costs).
//! - Other stride-1 kernels (and the first layer's single input channel) run directly on the
//!   zero-padded input, one kernel tap at a time.
//!
//! Strides other than 1, filter counts not a multiple of 32 and CPUs with neither take the
//! im2col path. [`crate::conv`]'s tests hold every path to the same scalar reference.

use crate::conv::ConvGeometry;
use crate::infer::Precision;
use crate::layer::Shape;
#[cfg(target_arch = "x86_64")]
use crate::simd::on_this_cpu;
use crate::simd::Isa;
#[cfg(target_arch = "x86_64")]
use crate::simd::Vector;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, __m512};

/// Output channels per pass: two 16-lane registers per row.
const BLOCK: usize = 32;

/// How a convolution's forward pass runs when it does not use im2col.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Winograd F(4x4, 3x3) in f32.
    Winograd,
    /// Winograd F(4x4, 3x3) with its 36 products in bfloat16 (f32 sums): inference only.
    WinogradBf16,
    Direct,
}

/// The fast method for this convolution on this CPU, if any.
pub(crate) fn method(g: &ConvGeometry) -> Option<Method> {
    if g.stride != 1 || !g.output.c.is_multiple_of(BLOCK) || Isa::detect().is_none() {
        return None;
    }
    // With a handful of input channels the tile transforms cost more than they save.
    Some(if g.kernel == 3 && g.input.c >= 8 {
        Method::Winograd
    } else {
        Method::Direct
    })
}

/// [`method`] for inference at `precision`: Winograd's products move to bfloat16 where the CPU
/// multiplies bfloat16 pairs natively (`vdpbf16ps`: twice the multiplies of an f32 FMA per
/// instruction, measured 117 G/s against 57 G/s here) and the channels fill whole registers.
pub(crate) fn inference_method(g: &ConvGeometry, precision: Precision) -> Option<Method> {
    let method = self::method(g)?;
    let bf16 = precision == Precision::Bf16 && g.input.c.is_multiple_of(16) && avx512_bf16();
    Some(if method == Method::Winograd && bf16 {
        Method::WinogradBf16
    } else {
        method
    })
}

/// Whether [`forward`] can fold a 2x2 max pool into `method`'s output pass: Winograd's 2x2 and
/// 4x4 output tiles hold whole pooling windows when the output's sides are even.
pub(crate) fn can_pool(g: &ConvGeometry, method: Method) -> bool {
    method != Method::Direct && g.output.h.is_multiple_of(2) && g.output.w.is_multiple_of(2)
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn avx512() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512_bf16() -> bool {
    avx512() && std::arch::is_x86_feature_detected!("avx512bf16")
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn avx512_bf16() -> bool {
    false
}

/// The layer's weights in the form its method reads. The layer clears it whenever it hands out
/// its weights for writing, so it is rebuilt on the next forward pass after any change.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prepared {
    floats: Vec<f32>,
    pairs: Vec<u32>,
    /// The weights of the layer's [`input_gradient`] convolution, as its method reads them.
    input_gradient: Vec<f32>,
}

/// The convolution whose forward pass is `g`'s input gradient, where it is one this module
/// runs: for stride 1, the gradient with respect to the input is the output gradient
/// convolved with the filters flipped in space and with input and output channels swapped,
/// over the output gradient zero-padded by `kernel - 1 - padding`. Winograd does that in a
/// quarter of the multiplies the im2col product and its scatter-add take (which were the
/// larger half of a `cnn-ref` training step).
pub(crate) fn input_gradient(g: &ConvGeometry) -> Option<(ConvGeometry, Method)> {
    if g.stride != 1 || g.padding >= g.kernel {
        return None;
    }
    let back = ConvGeometry {
        input: g.output,
        output: g.input,
        kernel: g.kernel,
        stride: 1,
        padding: g.kernel - 1 - g.padding,
    };
    method(&back).map(|m| (back, m))
}

/// `g`'s weights `[ky][kx][c_in][n]` as the weights of its [`input_gradient`] convolution:
/// `[k-1-ky][k-1-kx][n][c_in]`.
fn flipped(g: &ConvGeometry, w: &[f32]) -> Vec<f32> {
    let (k, cin, n) = (g.kernel, g.input.c, g.output.c);
    let mut out = vec![0.0; w.len()];
    for tap in 0..k * k {
        let from = &w[tap * cin * n..(tap + 1) * cin * n];
        let to = &mut out[(k * k - 1 - tap) * cin * n..(k * k - tap) * cin * n];
        for (ci, row) in from.chunks_exact(n).enumerate() {
            for (co, &v) in row.iter().enumerate() {
                to[co * cin + ci] = v;
            }
        }
    }
    out
}

/// Weights as a method reads them: f32, or bfloat16 pairs of neighbouring input channels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Weights<'a> {
    F32(&'a [f32]),
    Bf16Pairs(&'a [u32]),
}

impl Prepared {
    /// Weights for `method`: Winograd's transformed filters, or the weights themselves.
    pub(crate) fn weights<'a>(
        &'a mut self,
        g: &ConvGeometry,
        method: Method,
        w: &'a [f32],
    ) -> Weights<'a> {
        match method {
            Method::Direct => Weights::F32(w),
            Method::Winograd => {
                if self.floats.is_empty() {
                    self.floats = winograd_filters(g, w);
                }
                Weights::F32(&self.floats)
            }
            Method::WinogradBf16 => {
                if self.pairs.is_empty() {
                    self.pairs = bf16_pairs(&winograd_filters(g, w), g.output.c);
                }
                Weights::Bf16Pairs(&self.pairs)
            }
        }
    }

    /// Weights for the [`input_gradient`] convolution `back` (with `method`) of the layer `g`
    /// whose weights are `w`.
    pub(crate) fn input_gradient_weights(
        &mut self,
        g: &ConvGeometry,
        (back, method): (ConvGeometry, Method),
        w: &[f32],
    ) -> Weights<'_> {
        if self.input_gradient.is_empty() {
            let w = flipped(g, w);
            self.input_gradient = match method {
                Method::Winograd => winograd_filters(&back, &w),
                _ => w,
            };
        }
        Weights::F32(&self.input_gradient)
    }

    /// A dense layer's `[k x n]` weights as bfloat16 pairs of rows.
    pub(crate) fn pairs(&mut self, w: &[f32], n: usize) -> &[u32] {
        if self.pairs.is_empty() {
            self.pairs = bf16_pairs(w, n);
        }
        &self.pairs
    }
}

/// What follows the convolution in its output pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
    /// A 2x2 max pool (only where [`can_pool`]).
    pub pool: bool,
}

/// Per-thread working memory, reused between calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scratch {
    floats: Vec<f32>,
    pairs: Vec<u32>,
    /// Winograd's weight gradient `[36][c_in][n]`, summed over images.
    gradient: Vec<f32>,
}

/// `v` rounded to the nearest bfloat16 (ties to even), as the CPU's conversion does.
pub(crate) fn bf16_bits(v: f32) -> u32 {
    let bits = v.to_bits();
    (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
}

/// Rows `[..][k][n]` of f32 as `[..][k / 2][n]` pairs: the low half of each holds row `2i`,
/// the high half row `2i + 1`, the order `vdpbf16ps` multiplies them in.
pub(crate) fn bf16_pairs(w: &[f32], n: usize) -> Vec<u32> {
    w.chunks_exact(2 * n)
        .flat_map(|rows| {
            let (even, odd) = rows.split_at(n);
            even.iter()
                .zip(odd)
                .map(|(&a, &b)| bf16_bits(a) | (bf16_bits(b) << 16))
        })
        .collect()
}

/// `y = out(conv(x))` for the NHWC images in `x`, with `weights` from [`Prepared`] for
/// `method`. Only call with the [`method`] or [`inference_method`] of `g`.
pub(crate) fn forward(
    g: &ConvGeometry,
    method: Method,
    weights: Weights,
    out: Epilogue,
    x: &[f32],
    scratch: &mut Scratch,
    y: &mut [f32],
) {
    let supported = match method {
        Method::WinogradBf16 => inference_method(g, Precision::Bf16),
        _ => self::method(g),
    };
    assert_eq!(supported, Some(method), "unsupported fast convolution");
    assert!(
        !out.pool || can_pool(g, method),
        "no pool fits this convolution"
    );
    assert!(out.bias.is_none_or(|b| b.len() >= g.output.c));
    let out_len = g.output.len() / if out.pool { 4 } else { 1 };
    let images = x
        .chunks_exact(g.input.len())
        .zip(y.chunks_exact_mut(out_len));
    match (method, weights) {
        (Method::Direct, Weights::F32(w)) => {
            let taps = direct_taps(g);
            for (image, y) in images {
                direct(g, w, &taps, out, image, &mut scratch.floats, y);
            }
        }
        (Method::Winograd, Weights::F32(_)) | (Method::WinogradBf16, Weights::Bf16Pairs(_)) => {
            for (image, y) in images {
                winograd(g, weights, out, image, scratch, y, None);
            }
        }
        _ => panic!("weights prepared for another method"),
    }
}

/// Zeros standing in for a missing bias, one block of output channels.
const NO_BIAS: [f32; BLOCK] = [0.0; BLOCK];

fn ensure<T: Clone + Default>(buf: &mut Vec<T>, len: usize) {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
}

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

fn direct(
    g: &ConvGeometry,
    w: &[f32],
    taps: &[(usize, usize)],
    out: Epilogue,
    image: &[f32],
    canvas: &mut Vec<f32>,
    y: &mut [f32],
) {
    let (cin, n) = (g.input.c, g.output.c);
    let (ph, pw) = (g.input.h + 2 * g.padding, g.input.w + 2 * g.padding);
    ensure(canvas, ph * pw * cin);
    pad_into(g, image, ph, pw, canvas);
    for oy in 0..g.output.h {
        for cb in (0..n).step_by(BLOCK) {
            let tile = Tile {
                taps,
                depth: cin,
                stride: cin,
                w: &w[cb..],
                n,
                out_stride: n,
                bias: out.bias.map_or(&NO_BIAS[..], |b| &b[cb..cb + BLOCK]),
                relu: out.relu,
            };
            let row = &canvas[oy * pw * cin..];
            tile.rows(row, g.output.w, &mut y[oy * g.output.w * n + cb..]);
        }
    }
}

/// Winograd F(4x4, 3x3) at the points 0, ±1, ±2: a 6x6 input tile and a 3x3 filter, each
/// transformed, give a 4x4 output tile from 36 products per channel pair instead of 144 (4x
/// fewer; F(2x2, 3x3), used before, saves 2.25x). Its transforms scale values by up to 5 and 8
/// before they cancel, so rounding grows: harmless in f32 (within 1/65536 of the terms'
/// magnitudes in the tests), about 2% of an output's size (RMS, on random ReLU inputs)
/// with bfloat16 products against 0.35% for F(2x2, 3x3). On the 5,000 validation digits the
/// shipped `cnn` misreads 17 in bfloat16, 16 in f32 and with F(2x2, 3x3) in bfloat16.
const TILE: usize = 4;
/// Input tile side: the output tile and the 3x3 kernel's reach.
const SPAN: usize = TILE + 2;

/// G, the filter transform along one axis (3 taps to 6 values), as small integers over a
/// divisor per row: sums of exact multiples, then one division (as few roundings as the
/// scalar form `(a + 2b + 4c) / 24`).
const G: ([[f32; 3]; SPAN], [f32; SPAN]) = (
    [
        [1.0, 0.0, 0.0],
        [-1.0, -1.0, -1.0],
        [-1.0, 1.0, -1.0],
        [1.0, 2.0, 4.0],
        [1.0, -2.0, 4.0],
        [0.0, 0.0, 1.0],
    ],
    [4.0, 6.0, 6.0, 24.0, 24.0, 1.0],
);

/// Gᵀ, for the weight gradient (divisors of 1).
const GT: ([[f32; SPAN]; 3], [f32; 3]) = {
    let mut t = [[0.0; SPAN]; 3];
    let mut i = 0;
    while i < SPAN {
        let mut k = 0;
        while k < 3 {
            t[k][i] = G.0[i][k] / G.1[i];
            k += 1;
        }
        i += 1;
    }
    (t, [1.0; 3])
};

/// `out[a][b] = Σ_p Σ_q m[a][p] m[b][q] x[p][q]` (with `m`'s rows over their divisors) for a
/// `P x P` grid of planes `x`, each `plane` floats, into an `A x A` grid: `m x mᵀ` on every
/// channel pair at once, one axis at a time, whole planes per step so that it vectorises
/// (channel pair by channel pair it took 0.3 ms a training step on the calling thread, while
/// the pool waited).
fn transform_planes<const A: usize, const P: usize>(
    (m, divisors): &([[f32; P]; A], [f32; A]),
    x: &[f32],
    plane: usize,
    (half, out): (&mut Vec<f32>, &mut [f32]),
) {
    // One row of the result, a combination of `P` planes.
    fn row<'x>(out: &mut [f32], m: &[f32], divisor: f32, x: impl Iterator<Item = &'x [f32]>) {
        out.fill(0.0);
        for (&c, x) in m.iter().zip(x) {
            if c != 0.0 {
                out.iter_mut().zip(x).for_each(|(o, x)| *o += c * x);
            }
        }
        if divisor != 1.0 {
            out.iter_mut().for_each(|o| *o /= divisor);
        }
    }
    // Along the first axis: half[a][q] from x[p][q].
    ensure(half, A * P * plane);
    for (i, out) in half[..A * P * plane].chunks_exact_mut(plane).enumerate() {
        let (a, q) = (i / P, i % P);
        let planes = (0..P).map(|p| &x[(p * P + q) * plane..(p * P + q + 1) * plane]);
        row(out, &m[a], divisors[a], planes);
    }
    // Along the second: out[a][b] from half[a][q].
    for (i, out) in out[..A * A * plane].chunks_exact_mut(plane).enumerate() {
        let (a, b) = (i / A, i % A);
        let planes = (0..P).map(|q| &half[(a * P + q) * plane..(a * P + q + 1) * plane]);
        row(out, &m[b], divisors[b], planes);
    }
}

// The vector transforms below are only called from kernels compiled with their vector's CPU
// features, into which they inline (`inline(always)`).

/// Bᵀ along one axis of a tile's values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bt<V: Vector>(d: [V; SPAN]) -> [V; SPAN] {
    // SAFETY: see above.
    unsafe {
        let k = V::splat;
        let t0 = V::fmadd(k(-4.0), d[2], d[4]);
        let t1 = V::fmadd(k(-4.0), d[1], d[3]);
        let t2 = V::sub(d[4], d[2]);
        let t3 = V::mul(k(2.0), V::sub(d[3], d[1]));
        [
            V::fmadd(k(4.0), d[0], V::fmadd(k(-5.0), d[2], d[4])),
            V::add(t0, t1),
            V::sub(t0, t1),
            V::add(t2, t3),
            V::sub(t2, t3),
            V::fmadd(k(4.0), d[1], V::fmadd(k(-5.0), d[3], d[5])),
        ]
    }
}

/// Aᵀ along one axis of a tile's products.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn at<V: Vector>(m: [V; SPAN]) -> [V; TILE] {
    // SAFETY: see above.
    unsafe {
        let k = V::splat;
        let (s1, d1) = (V::add(m[1], m[2]), V::sub(m[1], m[2]));
        let (s2, d2) = (V::add(m[3], m[4]), V::sub(m[3], m[4]));
        [
            V::add(V::add(m[0], s1), s2),
            V::fmadd(k(2.0), d2, d1),
            V::fmadd(k(4.0), s2, s1),
            V::add(V::fmadd(k(8.0), d2, d1), m[5]),
        ]
    }
}

/// Transformed filters `[36][c_in][n]`: U = G g Gᵀ for every (input, output) channel pair.
fn winograd_filters(g: &ConvGeometry, w: &[f32]) -> Vec<f32> {
    let plane = g.input.c * g.output.c;
    let mut u = vec![0.0f32; SPAN * SPAN * plane];
    transform_planes(&G, w, plane, (&mut Vec::new(), &mut u));
    u
}

/// Where the input transform reads its tiles: an `h x w` image, zero-padded by `pad` on the
/// top and left and by whatever the last tiles reach past it, without a padded copy (which
/// cost more than a tenth of the one-image pass in copying and zeroing).
#[derive(Clone, Copy)]
struct Source {
    image: *const f32,
    h: usize,
    w: usize,
    pad: usize,
}

/// Where the input transform writes V: f32 values, or bfloat16 pairs of channels.
#[derive(Clone, Copy)]
enum Transformed {
    F32(*mut f32),
    Bf16Pairs(*mut u32),
}

/// One image through Winograd; with a pool, `winners` (when given) receives the position in
/// its window (0 to 3, row-major) that each pooled value came from.
fn winograd(
    g: &ConvGeometry,
    weights: Weights,
    out: Epilogue,
    image: &[f32],
    scratch: &mut Scratch,
    y: &mut [f32],
    winners: Option<&mut [u8]>,
) {
    let (cin, n) = (g.input.c, g.output.c);
    let (oh, ow) = (g.output.h, g.output.w);
    let (th, tw) = (oh.div_ceil(TILE), ow.div_ceil(TILE));
    let tiles = th * tw;
    let values = SPAN * SPAN;
    let (v_row, m_row) = tile_rows(cin, n);
    let (v_len, m_len) = (tiles * v_row, tiles * m_row);
    let pairs = matches!(weights, Weights::Bf16Pairs(_));
    // V takes f32 room, or half as many u32 pairs.
    ensure(&mut scratch.floats, m_len + if pairs { 0 } else { v_len });
    if pairs {
        ensure(&mut scratch.pairs, v_len / 2);
    }
    let (m, v) = scratch.floats.split_at_mut(m_len);

    // V = Bᵀ d B for every tile and channel, stored `[tile][36][c_in]`.
    let dst = match weights {
        Weights::F32(_) => {
            assert!(v.len() >= v_len);
            Transformed::F32(v.as_mut_ptr())
        }
        Weights::Bf16Pairs(_) => {
            assert!(cin.is_multiple_of(16) && scratch.pairs.len() >= v_len / 2);
            Transformed::Bf16Pairs(scratch.pairs.as_mut_ptr())
        }
    };
    let src = Source {
        image: image.as_ptr(),
        h: g.input.h,
        w: g.input.w,
        pad: g.padding,
    };
    assert!(image.len() >= src.h * src.w * cin && !image.is_empty());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `method` only picks Winograd where AVX-512 or AVX2 is; the image holds every
    // pixel `Source` reads and the destination `v_len` values, as checked above.
    unsafe {
        transform_input(src, cin, (th, tw), v_row, dst)
    };

    // M[ξ] = V[ξ] U[ξ]: 36 [tiles x c_in] by [c_in x n] products.
    match weights {
        Weights::F32(u) => products(&v[..v_len], u, cin, (values, n), m, |vx, w, mx| {
            let tile = Tile {
                taps: &[(0, 0)],
                depth: cin,
                stride: v_row,
                w,
                n,
                out_stride: m_row,
                bias: &NO_BIAS,
                relu: false,
            };
            tile.rows(vx, tiles, mx)
        }),
        Weights::Bf16Pairs(u) => {
            let (v, pairs) = (&scratch.pairs[..v_len / 2], cin / 2);
            products(v, u, pairs, (values, n), m, |vx, w, mx| {
                let (stride, out_stride) = (v_row / 2, m_row);
                PairTile {
                    pairs,
                    stride,
                    w,
                    n,
                    out_stride,
                }
                .rows(vx, tiles, mx)
            })
        }
    }

    // Y = Aᵀ M A, plus bias and ReLU (and the pool), cropped to the output.
    let out_len = oh * ow * n / if out.pool { 4 } else { 1 };
    assert!(m.len() >= m_len && y.len() >= out_len && n % 16 == 0);
    assert!(out.bias.is_none_or(|b| b.len() >= n));
    assert!(!out.pool || (oh % 2 == 0 && ow % 2 == 0));
    assert!(winners
        .as_ref()
        .is_none_or(|w| out.pool && w.len() >= out_len));
    let winners = winners.map_or(std::ptr::null_mut(), |w| w.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; the asserts cover every tile, channel and output pixel.
    unsafe {
        let (grid, size, output) = ((th, tw), (oh, ow), (y, winners));
        on_this_cpu!(transform_output(
            m: &[f32],
            n: usize,
            grid: (usize, usize),
            m_row: usize,
            out: Epilogue,
            size: (usize, usize),
            output: (&mut [f32], *mut u8),
        ))
    };
}

/// Training's forward pass of a Winograd layer with a 2x2 max pool folded in (where
/// [`can_pool`]): `y` receives the pooled outputs and `winners` the position in its window
/// (0 to 3, row-major) each came from, for [`unpool`]. The full-size output is never
/// written: on the reference CNN it is 19 MB per batch, written, read by the pool and read
/// again by the backward pass.
pub(crate) fn forward_pooled(
    g: &ConvGeometry,
    weights: &[f32],
    out: Epilogue,
    x: &[f32],
    scratch: &mut Scratch,
    y: &mut [f32],
    winners: &mut [u8],
) {
    assert_eq!(
        method(g),
        Some(Method::Winograd),
        "unsupported fast convolution"
    );
    assert!(out.pool && can_pool(g, Method::Winograd));
    let out_len = g.output.len() / 4;
    let images = x.chunks_exact(g.input.len()).zip(
        y.chunks_exact_mut(out_len)
            .zip(winners.chunks_exact_mut(out_len)),
    );
    for (image, (y, winners)) in images {
        let weights = Weights::F32(weights);
        winograd(g, weights, out, image, scratch, y, Some(winners));
    }
}

/// The full-size output gradient `dy` `[h][w][n]` of a layer whose pooled outputs `y` (after
/// the ReLU) have gradients `dpooled`: each pooled gradient goes to the window position that
/// won, where the output was positive; the rest is zero. Adds the result to the bias
/// gradient `gb`. Only for outputs where [`can_pool`].
pub(crate) fn unpool(
    output: Shape,
    y: &[f32],
    dpooled: &[f32],
    winners: &[u8],
    dy: &mut [f32],
    gb: &mut [f32],
) {
    let (n, w, pw) = (output.c, output.w, output.w / 2);
    let dy = &mut dy[..output.len()];
    let pooled = y
        .chunks_exact(n)
        .zip(dpooled.chunks_exact(n).zip(winners.chunks_exact(n)))
        .take(output.len() / 4 / n);
    for (pixel, (y, (d, winners))) in pooled.enumerate() {
        let (py, px) = (pixel / pw, pixel % pw);
        for (g, (&y, &d)) in gb.iter_mut().zip(y.iter().zip(d)) {
            *g += if y > 0.0 { d } else { 0.0 };
        }
        // Every value of the window written once, as selects (which vectorise).
        for position in 0..4u8 {
            let (wy, wx) = (usize::from(position >> 1), usize::from(position & 1));
            let at = ((2 * py + wy) * w + 2 * px + wx) * n;
            let out = dy[at..at + n].iter_mut().zip(y.iter().zip(d).zip(winners));
            for (out, ((&y, &d), &winner)) in out {
                *out = if winner == position && y > 0.0 {
                    d
                } else {
                    0.0
                };
            }
        }
    }
}

/// Floats from one tile's values to the next in V and M: one cache line more than they hold,
/// since a power of two (2 or 4 KB with F(2x2, 3x3)'s 16 values) put the micro-kernel's rows
/// in one L1 set (8% slower).
fn tile_rows(cin: usize, n: usize) -> (usize, usize) {
    (SPAN * SPAN * cin + 32, SPAN * SPAN * n + 16)
}

/// Whether [`weight_gradient`] runs for `g`: Winograd layers whose input channels fill its
/// kernel's blocks of 8.
pub(crate) fn winograd_weight_gradient(g: &ConvGeometry) -> bool {
    method(g) == Some(Method::Winograd) && g.input.c.is_multiple_of(GRADIENT_ROWS)
}

/// Input channels per pass of the weight gradient's kernel (with 32 output channels: 16
/// accumulators).
const GRADIENT_ROWS: usize = 8;

/// Adds one image's contribution to Winograd's weight gradient in `scratch`: the adjoint of
/// the forward pass in the filter, ΔU[ξ] += V[ξ]ᵀ ΔM[ξ] with V = Bᵀ d B as in the forward pass
/// and ΔM = A ΔY Aᵀ, 36 products of `[c_in x tiles]` by `[tiles x n]` (a quarter of the
/// multiplies of im2col's `[k x pixels]` by `[pixels x n]`). `dy` is the output gradient
/// after the fused ReLU. Call [`start_weight_gradient`] first and [`finish_weight_gradient`]
/// after the last image.
pub(crate) fn weight_gradient(g: &ConvGeometry, image: &[f32], dy: &[f32], scratch: &mut Scratch) {
    assert!(
        winograd_weight_gradient(g),
        "no Winograd weight gradient for this layer"
    );
    let (cin, n) = (g.input.c, g.output.c);
    let (oh, ow) = (g.output.h, g.output.w);
    let (th, tw) = (oh.div_ceil(TILE), ow.div_ceil(TILE));
    let tiles = th * tw;
    let (v_row, m_row) = tile_rows(cin, n);
    let (v_len, m_len) = (tiles * v_row, tiles * m_row);
    ensure(&mut scratch.floats, m_len + v_len);
    let (m, v) = scratch.floats.split_at_mut(m_len);
    let du = &mut scratch.gradient;
    assert!(image.len() >= g.input.len() && dy.len() >= g.output.len());
    assert!(du.len() == SPAN * SPAN * cin * n && n % 32 == 0 && cin % GRADIENT_ROWS == 0);
    let src = Source {
        image: image.as_ptr(),
        h: g.input.h,
        w: g.input.w,
        pad: g.padding,
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: Winograd only runs where AVX-512 or AVX2 is present; the asserts above cover
    // every pixel, tile and channel the transforms and the products touch.
    unsafe {
        transform_input(src, cin, (th, tw), v_row, Transformed::F32(v.as_mut_ptr()));
        let (grid, size, gradient) = ((th, tw), (oh, ow), &mut *m);
        on_this_cpu!(transform_output_gradient(
            dy: &[f32],
            n: usize,
            grid: (usize, usize),
            m_row: usize,
            size: (usize, usize),
            gradient: &mut [f32],
        ));
        for xi in 0..SPAN * SPAN {
            for ci in (0..cin).step_by(GRADIENT_ROWS) {
                for co in (0..n).step_by(32) {
                    let at = (xi * cin + ci) * n + co;
                    let (vx, mx) = (&v[xi * cin + ci..], &m[xi * n + co..]);
                    outer_sums(vx, v_row, mx, m_row, tiles, n, &mut du[at..]);
                }
            }
        }
    }
}

/// Adds one image's weight gradient to `gw` (`[k][k][c_in][n]`) for a layer whose [`method`]
/// is [`Method::Direct`]: for each tap and input channel, the input pixels it reads times the
/// output gradients `dy` (after the fused ReLU), over the output pixels whose tap lands inside
/// the image. No im2col copy: on the reference CNN's first layer that copy and a GEMM nine
/// rows tall scaled 1.5x on two threads.
pub(crate) fn direct_weight_gradient(g: &ConvGeometry, image: &[f32], dy: &[f32], gw: &mut [f32]) {
    assert_eq!(
        method(g),
        Some(Method::Direct),
        "no direct weight gradient here"
    );
    let (k, pad, cin, n) = (g.kernel, g.padding, g.input.c, g.output.c);
    let (ih, iw, oh, ow) = (g.input.h, g.input.w, g.output.h, g.output.w);
    assert!(image.len() >= ih * iw * cin && dy.len() >= oh * ow * n);
    assert!(gw.len() >= k * k * cin * n && n % 16 == 0);
    for ky in 0..k {
        for kx in 0..k {
            // Output pixels whose tap reads inside the image: 0 <= o + tap - pad < side.
            let rows = pad.saturating_sub(ky)..oh.min((ih + pad).saturating_sub(ky));
            let cols = pad.saturating_sub(kx)..ow.min((iw + pad).saturating_sub(kx));
            if rows.is_empty() || cols.is_empty() {
                continue;
            }
            for ci in 0..cin {
                // The input value for output pixel (0, 0): offsets from it are (oy * iw + ox)
                // pixels (it may lie before the image; only in-range pixels are read).
                let origin = (ky * iw + kx) as isize - (pad * iw + pad) as isize;
                let at = ((ky * k + kx) * cin + ci) * n;
                let (span, place) = ((rows.clone(), cols.clone()), (origin, iw, ow, cin, ci));
                let row = &mut gw[at..at + n];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `method` only picks Direct where AVX-512 or AVX2 is present; `rows`
                // and `cols` keep every input pixel inside the image, and the asserts cover
                // `dy` and the gradient row.
                unsafe {
                    on_this_cpu!(tap_sums(
                        image: &[f32],
                        dy: &[f32],
                        span: (std::ops::Range<usize>, std::ops::Range<usize>),
                        place: (isize, usize, usize, usize, usize),
                        n: usize,
                        row: &mut [f32],
                    ));
                }
            }
        }
    }
}

/// `gw[..n] += Σ x[origin + oy * iw + ox][ci] dy[oy * ow + ox][..n]` over `rows x cols`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tap_sums<V: Vector>(
    x: &[f32],
    dy: &[f32],
    (rows, cols): (std::ops::Range<usize>, std::ops::Range<usize>),
    (origin, iw, ow, cin, ci): (isize, usize, usize, usize, usize),
    n: usize,
    gw: &mut [f32],
) {
    let (xp, dp) = (x.as_ptr(), dy.as_ptr());
    // SAFETY: the caller keeps every pixel in range.
    unsafe {
        for c in (0..n).step_by(V::LANES) {
            // Four sums over consecutive pixels, so the multiply-adds do not wait on each
            // other (one sum, or sums picked by index, which went through memory, ran 6% of
            // a training step slower than im2col).
            let [mut a0, mut a1, mut a2, mut a3] = [V::zero(); 4];
            let term = |oy: usize, ox: usize| {
                let pixel = (origin + (oy * iw + ox) as isize) as usize;
                let v = V::splat(*xp.add(pixel * cin + ci));
                (v, V::load(dp.add((oy * ow + ox) * n + c)))
            };
            for oy in rows.clone() {
                let mut ox = cols.start;
                while ox + 4 <= cols.end {
                    let ((v0, d0), (v1, d1)) = (term(oy, ox), term(oy, ox + 1));
                    let ((v2, d2), (v3, d3)) = (term(oy, ox + 2), term(oy, ox + 3));
                    a0 = V::fmadd(v0, d0, a0);
                    a1 = V::fmadd(v1, d1, a1);
                    a2 = V::fmadd(v2, d2, a2);
                    a3 = V::fmadd(v3, d3, a3);
                    ox += 4;
                }
                for ox in ox..cols.end {
                    let (v, d) = term(oy, ox);
                    a0 = V::fmadd(v, d, a0);
                }
            }
            let sum = V::add(V::add(a0, a1), V::add(a2, a3));
            let out = gw.as_mut_ptr().add(c);
            V::store(out, V::add(V::load(out), sum));
        }
    }
}

/// Clears the weight gradient's sums for a new batch.
pub(crate) fn start_weight_gradient(g: &ConvGeometry, scratch: &mut Scratch) {
    let len = SPAN * SPAN * g.input.c * g.output.c;
    scratch.gradient.clear();
    scratch.gradient.resize(len, 0.0);
}

/// The weight gradient `[3][3][c_in][n]` from the sums: ΔW = Gᵀ ΔU G.
pub(crate) fn finish_weight_gradient(g: &ConvGeometry, scratch: &mut Scratch, dw: &mut [f32]) {
    let plane = g.input.c * g.output.c;
    let Scratch {
        floats, gradient, ..
    } = scratch;
    transform_planes(&GT, gradient, plane, (floats, dw));
}

/// M[ξ] = V[ξ] U[ξ] for each ξ: `[tiles x depth]` by `[depth x n]` products, one block of
/// output channels at a time: `block(V[ξ], U[ξ] from the block, M[ξ] from the block)`. V and
/// M are tile-major (`[tile][ξ][..]`), so each transform reads or writes one tile's values in
/// one stretch of memory; `[ξ][tile][..]` put them 4 KB apart on the 14x14 layers, all in
/// one L1 set, and the output transform took a quarter of the time.
fn products<T>(
    v: &[T],
    u: &[T],
    depth: usize,
    (values, n): (usize, usize),
    m: &mut [f32],
    block: impl Fn(&[T], &[T], &mut [f32]),
) {
    for xi in 0..values {
        let ux = &u[xi * depth * n..(xi + 1) * depth * n];
        for cb in (0..n).step_by(BLOCK) {
            block(&v[xi * depth..], &ux[cb..], &mut m[xi * n + cb..]);
        }
    }
}

/// V = Bᵀ d B, a vector of channels at a time (the last one partly, for odd channel counts;
/// bfloat16 output needs whole groups of 16).
#[cfg(target_arch = "x86_64")]
unsafe fn transform_input(
    src: Source,
    cin: usize,
    tiles: (usize, usize),
    v_row: usize,
    dst: Transformed,
) {
    // SAFETY: the caller's promises are the kernels'; the bfloat16 destination is only made
    // for CPUs with AVX-512 BF16 (`inference_method`).
    unsafe {
        match dst {
            Transformed::F32(_) => on_this_cpu!(transform_input_body(
                src: Source,
                cin: usize,
                tiles: (usize, usize),
                v_row: usize,
                dst: Transformed,
            )),
            Transformed::Bf16Pairs(_) => transform_input_bf16(src, cin, tiles, v_row, dst),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn transform_input_bf16(
    src: Source,
    cin: usize,
    tiles: (usize, usize),
    v_row: usize,
    dst: Transformed,
) {
    // SAFETY: as `transform_input`.
    unsafe { transform_input_body::<__m512>(src, cin, tiles, v_row, dst) }
}

/// The body of [`transform_input`], inlined into each of its variants so that its intrinsics
/// compile with the variant's CPU features (the bfloat16 store only in the one that has them).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transform_input_body<V: Vector>(
    src: Source,
    cin: usize,
    (th, tw): (usize, usize),
    v_row: usize,
    dst: Transformed,
) {
    let tiles = th * tw;
    // SAFETY: the caller checked the image and the destination against the last tile and
    // channel; a pixel outside the image is a load of no lanes.
    unsafe {
        for t in 0..tiles {
            // Offsets of the tile's rows and columns in the image, `None` outside it.
            let (y0, x0) = (TILE * (t / tw), TILE * (t % tw));
            let mut rows = [None; SPAN];
            let mut cols = [None; SPAN];
            for (k, (row, col)) in rows.iter_mut().zip(&mut cols).enumerate() {
                let (y, x) = (
                    (y0 + k).wrapping_sub(src.pad),
                    (x0 + k).wrapping_sub(src.pad),
                );
                *row = (y < src.h).then_some(y * src.w * cin);
                *col = (x < src.w).then_some(x * cin);
            }
            for c in (0..cin).step_by(V::LANES) {
                let count = (cin - c).min(V::LANES);
                // Plain loops over fixed bounds: unrolled into registers, where closures,
                // array maps and flattened iterators were left as calls or loops through
                // memory.
                let mut bd = [[V::zero(); SPAN]; SPAN];
                for (col, out) in cols.iter().zip(&mut bd) {
                    let mut d = [V::zero(); SPAN];
                    for (row, v) in rows.iter().zip(&mut d) {
                        let (count, at) = match (row, col) {
                            (Some(r), Some(k)) => (count, r + k + c),
                            _ => (0, 0),
                        };
                        *v = V::load_first(src.image.add(at), count);
                    }
                    *out = bt(d);
                }
                let mut tile = [[V::zero(); SPAN]; SPAN];
                for (i, out) in tile.iter_mut().enumerate() {
                    let mut row = [V::zero(); SPAN];
                    for (v, col) in row.iter_mut().zip(&bd) {
                        *v = col[i];
                    }
                    *out = bt(row);
                }
                // Value ξ = (i, j) of this tile and channel group goes to `[t][ξ][c]`.
                let first = t * v_row + c;
                for (i, row) in tile.iter().enumerate() {
                    let start = first + i * SPAN * cin;
                    for (j, &value) in row.iter().enumerate() {
                        match dst {
                            Transformed::F32(v) => {
                                V::store_first(v.add(start + j * cin), count, value)
                            }
                            Transformed::Bf16Pairs(v) => {
                                V::store_bf16(v.add(start / 2 + j * (cin / 2)), value)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Y = Aᵀ M A plus bias and ReLU, a vector of channels at a time, cropped to the output; with
/// a pool, the largest value of each 2x2 window of the tile.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transform_output<V: Vector>(
    m: &[f32],
    n: usize,
    (th, tw): (usize, usize),
    m_row: usize,
    out: Epilogue,
    (oh, ow): (usize, usize),
    (y, winners): (&mut [f32], *mut u8),
) {
    let tiles = th * tw;
    let (src, dst) = (m.as_ptr(), y.as_mut_ptr());
    // SAFETY: the caller checked `m`, `y` and the bias against every tile and channel.
    unsafe {
        for t in 0..tiles {
            let (ty, tx) = (t / tw, t % tw);
            for c in (0..n).step_by(V::LANES) {
                // Plain loops, as in `transform_input_body`.
                let mut rows = [[V::zero(); TILE]; SPAN];
                for (i, row) in rows.iter_mut().enumerate() {
                    let mut mv = [V::zero(); SPAN];
                    for (xi, v) in mv.iter_mut().enumerate() {
                        *v = V::load(src.add(t * m_row + (i * SPAN + xi) * n + c));
                    }
                    *row = at(mv);
                }
                // `tile[j][i]`: output row `i`, column `j` of the tile.
                let mut tile = [[V::zero(); TILE]; TILE];
                for (j, col) in tile.iter_mut().enumerate() {
                    let mut mv = [V::zero(); SPAN];
                    for (i, v) in mv.iter_mut().enumerate() {
                        *v = rows[i][j];
                    }
                    *col = at(mv);
                }
                let b = match out.bias {
                    Some(b) => V::load(b.as_ptr().add(c)),
                    None => V::zero(),
                };
                let finish = |v: V| {
                    let v = V::add(v, b);
                    if out.relu {
                        V::max(v, V::zero())
                    } else {
                        v
                    }
                };
                if out.pool {
                    let (ph, pw) = (oh / 2, ow / 2);
                    for a in 0..TILE / 2 {
                        for bx in 0..TILE / 2 {
                            let (py, px) = (ty * TILE / 2 + a, tx * TILE / 2 + bx);
                            if py < ph && px < pw {
                                let (i, j) = (2 * a, 2 * bx);
                                let (top, bottom) = (
                                    V::max(tile[j][i], tile[j + 1][i]),
                                    V::max(tile[j][i + 1], tile[j + 1][i + 1]),
                                );
                                let best = V::max(top, bottom);
                                let at = (py * pw + px) * n + c;
                                V::store(dst.add(at), finish(best));
                                if !winners.is_null() {
                                    // The first of equal values wins, as in the pool layer.
                                    let right = |l: V, r: V| V::greater(r, l);
                                    let lower = right(top, bottom);
                                    let column = (lower
                                        & right(tile[j][i + 1], tile[j + 1][i + 1]))
                                        | (!lower & right(tile[j][i], tile[j + 1][i]));
                                    V::store_bit_pairs(winners.add(at), lower, column);
                                }
                            }
                        }
                    }
                    continue;
                }
                for (j, col) in tile.iter().enumerate() {
                    for (i, &value) in col.iter().enumerate() {
                        let (oy, ox) = (TILE * ty + i, TILE * tx + j);
                        if oy < oh && ox < ow {
                            V::store(dst.add((oy * ow + ox) * n + c), finish(value));
                        }
                    }
                }
            }
        }
    }
}

/// ΔM = A ΔY Aᵀ for every tile, a vector of channels at a time: the adjoint of
/// `transform_output` without its epilogue (gradients of outputs cropped away are zero).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transform_output_gradient<V: Vector>(
    dy: &[f32],
    n: usize,
    (th, tw): (usize, usize),
    m_row: usize,
    (oh, ow): (usize, usize),
    m: &mut [f32],
) {
    let (src, dst) = (dy.as_ptr(), m.as_mut_ptr());
    // SAFETY: the caller checked `dy` and `m` against every tile and channel; a pixel outside
    // the output is a load of no lanes.
    unsafe {
        for t in 0..th * tw {
            let (y0, x0) = (TILE * (t / tw), TILE * (t % tw));
            for c in (0..n).step_by(V::LANES) {
                // `cols[i][xi]`: the gradient of output row `i` along ξ's second axis.
                let mut cols = [[V::zero(); SPAN]; TILE];
                for (i, col) in cols.iter_mut().enumerate() {
                    let mut row = [V::zero(); TILE];
                    for (j, v) in row.iter_mut().enumerate() {
                        let (oy, ox) = (y0 + i, x0 + j);
                        let (count, at) = if oy < oh && ox < ow {
                            (V::LANES, (oy * ow + ox) * n + c)
                        } else {
                            (0, 0)
                        };
                        *v = V::load_first(src.add(at), count);
                    }
                    *col = a(row);
                }
                for xi in 0..SPAN {
                    let mut column = [V::zero(); TILE];
                    for (v, col) in column.iter_mut().zip(&cols) {
                        *v = col[xi];
                    }
                    for (i, value) in a(column).into_iter().enumerate() {
                        V::store(dst.add(t * m_row + (i * SPAN + xi) * n + c), value);
                    }
                }
            }
        }
    }
}

/// A along one axis of a tile's output gradients: the adjoint of [`at`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn a<V: Vector>(d: [V; TILE]) -> [V; SPAN] {
    // SAFETY: see `bt`.
    unsafe {
        let k = V::splat;
        let (even, odd) = (V::add(d[0], d[2]), V::add(d[1], d[3]));
        let even4 = V::fmadd(k(4.0), d[2], d[0]);
        let odd8 = V::mul(k(2.0), V::fmadd(k(4.0), d[3], d[1]));
        [
            d[0],
            V::add(even, odd),
            V::sub(even, odd),
            V::add(even4, odd8),
            V::sub(even4, odd8),
            d[3],
        ]
    }
}

/// `du[r][..32] += Σ_t v[t][r] m[t][..32]` for `GRADIENT_ROWS` rows `r`: rows of V are
/// `v_row` apart, of ΔM `m_row`, of ΔU `n`.
#[cfg(target_arch = "x86_64")]
fn outer_sums(
    v: &[f32],
    v_row: usize,
    m: &[f32],
    m_row: usize,
    tiles: usize,
    n: usize,
    du: &mut [f32],
) {
    assert!(tiles > 0 && v.len() > (tiles - 1) * v_row + GRADIENT_ROWS - 1);
    assert!(m.len() >= (tiles - 1) * m_row + BLOCK && du.len() >= (GRADIENT_ROWS - 1) * n + BLOCK);
    // SAFETY: only reached where Winograd runs (`method`); the asserts cover every load and
    // store.
    unsafe {
        on_this_cpu!(outer_sums_body(
            v: &[f32],
            v_row: usize,
            m: &[f32],
            m_row: usize,
            tiles: usize,
            n: usize,
            du: &mut [f32],
        ))
    }
}

/// [`outer_sums`] in passes of `R` rows by two vectors of channels: all eight rows by 32 with
/// AVX-512's 32 registers, four rows by 16 (four passes) in AVX2's 16.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn outer_sums_body<V: Vector>(
    v: &[f32],
    v_row: usize,
    m: &[f32],
    m_row: usize,
    tiles: usize,
    n: usize,
    du: &mut [f32],
) {
    #[inline(always)]
    unsafe fn pass<V: Vector, const R: usize>(
        (vp, v_row): (*const f32, usize),
        (mp, m_row): (*const f32, usize),
        tiles: usize,
        (dp, n): (*mut f32, usize),
    ) {
        // SAFETY: `outer_sums`'s asserts cover every load and store.
        unsafe {
            let mut acc = [[V::zero(); 2]; R];
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = [0, V::LANES].map(|o| V::load(dp.add(r * n + o)));
            }
            for t in 0..tiles {
                let (m0, m1) = (
                    V::load(mp.add(t * m_row)),
                    V::load(mp.add(t * m_row + V::LANES)),
                );
                for (r, acc) in acc.iter_mut().enumerate() {
                    let b = V::splat(*vp.add(t * v_row + r));
                    acc[0] = V::fmadd(b, m0, acc[0]);
                    acc[1] = V::fmadd(b, m1, acc[1]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                V::store(dp.add(r * n), acc[0]);
                V::store(dp.add(r * n + V::LANES), acc[1]);
            }
        }
    }
    let rows = if V::LANES >= 16 { GRADIENT_ROWS } else { 4 };
    // SAFETY: as `pass`.
    unsafe {
        for r0 in (0..GRADIENT_ROWS).step_by(rows) {
            for c0 in (0..BLOCK).step_by(2 * V::LANES) {
                let vs = (v.as_ptr().add(r0), v_row);
                let ms = (m.as_ptr().add(c0), m_row);
                let ds = (du.as_mut_ptr().add(r0 * n + c0), n);
                if rows == GRADIENT_ROWS {
                    pass::<V, GRADIENT_ROWS>(vs, ms, tiles, ds);
                } else {
                    pass::<V, 4>(vs, ms, tiles, ds);
                }
            }
        }
    }
}

/// A register-blocked micro-kernel: `P` rows (pixels, or Winograd tiles) of one block of 32
/// output channels per call.
trait Kernel {
    type Input;
    /// (input values, output values) between consecutive rows.
    fn strides(&self) -> (usize, usize);
    /// Computes `P` rows; returns `P`.
    fn run<const P: usize>(&self, x: &[Self::Input], y: &mut [f32]) -> usize;

    /// Writes `rows` rows starting at `x` into `y`, in as few calls of at most 14 rows (AVX2:
    /// 6) as possible, all of nearly the same size: a call of few rows waits on the FMA
    /// latency (49 rows as 13 + 12 + 12 + 12, not 14 + 14 + 14 + 4 + 2 + 1).
    fn rows(&self, x: &[Self::Input], rows: usize, y: &mut [f32]) {
        // Accumulators for 14 rows fill 28 of AVX-512's 32 registers; AVX2 has 16.
        let most = if Isa::detect() == Some(Isa::Avx2) {
            6
        } else {
            14
        };
        let (calls, (sx, sy)) = (rows.div_ceil(most), self.strides());
        let mut r = 0;
        for call in 0..calls {
            let (x, y) = (&x[r * sx..], &mut y[r * sy..]);
            r += match (rows - r).div_ceil(calls - call) {
                14 => self.run::<14>(x, y),
                13 => self.run::<13>(x, y),
                12 => self.run::<12>(x, y),
                11 => self.run::<11>(x, y),
                10 => self.run::<10>(x, y),
                9 => self.run::<9>(x, y),
                8 => self.run::<8>(x, y),
                7 => self.run::<7>(x, y),
                6 => self.run::<6>(x, y),
                5 => self.run::<5>(x, y),
                4 => self.run::<4>(x, y),
                3 => self.run::<3>(x, y),
                2 => self.run::<2>(x, y),
                _ => self.run::<1>(x, y),
            };
        }
    }
}

/// The f32 kernel: row `r`, at `y[r * out_stride]`, is
/// `bias + Σ_taps Σ_c x[tap.0 + r * stride + c] * w[tap.1 + c * n]`, keeping up to 14 rows x
/// 32 channels in 28 registers (with AVX2, 6 rows x 16 channels in 12, twice).
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
    /// Output floats between consecutive rows.
    out_stride: usize,
    bias: &'a [f32],
    relu: bool,
}

impl Kernel for Tile<'_> {
    type Input = f32;

    fn strides(&self) -> (usize, usize) {
        (self.stride, self.out_stride)
    }

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
        assert!(y.len() >= (P - 1) * self.out_stride + BLOCK && self.bias.len() >= BLOCK);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `method` only picks this kernel where AVX-512 or AVX2 is present, and the
        // asserts above cover every load and store.
        unsafe {
            let (x, y) = (x.as_ptr(), y.as_mut_ptr());
            match Isa::detect() {
                Some(Isa::Avx512) => self.run_avx512::<P>(x, y),
                Some(Isa::Avx2) => self.run_avx2::<P>(x, y),
                None => unreachable!("fast convolutions run only with AVX-512 or AVX2"),
            }
        };
        P
    }
}

impl Tile<'_> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512<const P: usize>(&self, x: *const f32, y: *mut f32) {
        // SAFETY: as `run`.
        unsafe { self.channels::<__m512, P>(x, y, 0) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2<const P: usize>(&self, x: *const f32, y: *mut f32) {
        for first in [0, BLOCK / 2] {
            // SAFETY: as `run`.
            unsafe { self.channels::<__m256, P>(x, y, first) }
        }
    }

    /// `P` rows of the block's channels `first..first + 2 * V::LANES`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn channels<V: Vector, const P: usize>(&self, x: *const f32, y: *mut f32, first: usize) {
        let (depth, n, stride, out) = (self.depth, self.n, self.stride, self.out_stride);
        let lanes = V::LANES;
        // SAFETY (whole body): offsets stay inside the slices, see `run`'s asserts.
        unsafe {
            let bias = self.bias.as_ptr().add(first);
            let mut acc = [[V::load(bias), V::load(bias.add(lanes))]; P];
            for &(xo, wo) in self.taps {
                let (xs, ws) = (x.add(xo), self.w.as_ptr().add(wo + first));
                for c in 0..depth {
                    let w0 = V::load(ws.add(c * n));
                    let w1 = V::load(ws.add(c * n + lanes));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let v = V::splat(*xs.add(r * stride + c));
                        acc[0] = V::fmadd(v, w0, acc[0]);
                        acc[1] = V::fmadd(v, w1, acc[1]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let (mut a0, mut a1) = (acc[0], acc[1]);
                if self.relu {
                    a0 = V::max(a0, V::zero());
                    a1 = V::max(a1, V::zero());
                }
                V::store(y.add(r * out + first), a0);
                V::store(y.add(r * out + first + lanes), a1);
            }
        }
    }
}

/// The bfloat16 kernel for Winograd's products: row `r`, at `y[r * out_stride]`, is
/// `Σ_p x[r * stride + p] · w[p * n]`, where each `u32` holds two neighbouring input channels
/// and `vdpbf16ps` multiplies both pairs into one f32 sum: the same instruction count as
/// [`Tile`] for twice the channels.
struct PairTile<'a> {
    /// Channel pairs summed per row.
    pairs: usize,
    /// Input pairs between consecutive rows.
    stride: usize,
    /// Weight pairs `[pairs][n]`, offset to the block's first channel.
    w: &'a [u32],
    n: usize,
    /// Output floats between consecutive rows.
    out_stride: usize,
}

impl Kernel for PairTile<'_> {
    type Input = u32;

    fn strides(&self) -> (usize, usize) {
        (self.stride, self.out_stride)
    }

    fn run<const P: usize>(&self, x: &[u32], y: &mut [f32]) -> usize {
        let (pairs, n) = (self.pairs, self.n);
        assert!(pairs > 0 && x.len() >= (P - 1) * self.stride + pairs);
        assert!(self.w.len() >= (pairs - 1) * n + BLOCK);
        assert!(y.len() >= (P - 1) * self.out_stride + BLOCK);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `inference_method` only picks this kernel when AVX-512F and AVX-512 BF16 are
        // present, and the asserts above cover every load and store.
        unsafe {
            self.run_avx512_bf16::<P>(x.as_ptr(), y.as_mut_ptr())
        };
        P
    }
}

impl PairTile<'_> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn run_avx512_bf16<const P: usize>(&self, x: *const u32, y: *mut f32) {
        use std::arch::x86_64::*;
        let (pairs, n, stride, out) = (self.pairs, self.n, self.stride, self.out_stride);
        // Bit patterns: a register of 32 bfloat16 values is one of 16 pairs.
        let bf16 = |v: __m512i| -> __m512bh { unsafe { std::mem::transmute(v) } };
        // SAFETY (whole body): offsets stay inside the slices, see `run`'s asserts.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; P];
            let ws = self.w.as_ptr();
            for p in 0..pairs {
                let w0 = bf16(_mm512_loadu_si512(ws.add(p * n).cast()));
                let w1 = bf16(_mm512_loadu_si512(ws.add(p * n + 16).cast()));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = bf16(_mm512_set1_epi32(*x.add(r * stride + p) as i32));
                    acc[0] = _mm512_dpbf16_ps(acc[0], v, w0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], v, w1);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(y.add(r * out), acc[0]);
                _mm512_storeu_ps(y.add(r * out + 16), acc[1]);
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

    /// `reference_conv`, then a 2x2 max pool when `pool`.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        g: &ConvGeometry,
        w: &[f32],
        b: &[f32],
        relu: bool,
        pool: bool,
    ) -> Vec<f32> {
        let (input, out) = (g.input, g.output);
        let (k, p) = (g.kernel, g.padding);
        let y = reference_conv(x, input, w, b, out.c, k, 1, p, relu);
        if !pool {
            return y;
        }
        let (h, wd, c) = (out.h / 2, out.w / 2, out.c);
        let at = |yy: usize, xx: usize, ch: usize| y[(yy * out.w + xx) * c + ch];
        (0..h * wd * c)
            .map(|i| {
                let (py, px, ch) = (i / (wd * c), i / c % wd, i % c);
                let (y0, x0) = (2 * py, 2 * px);
                at(y0, x0, ch)
                    .max(at(y0, x0 + 1, ch))
                    .max(at(y0 + 1, x0, ch).max(at(y0 + 1, x0 + 1, ch)))
            })
            .collect()
    }

    /// Every method against the scalar reference: output widths 28 (14 + 14 rows), 27
    /// (14 + 8 + 4 + 1), odd sizes (a cropped last Winograd tile), 1 to 64 input channels,
    /// 32 and 64 filters, with and without padding, bias, ReLU and a folded pool, several
    /// images. Winograd in f32 is held nearly as closely as the direct method, so what the
    /// bfloat16 products are allowed is rounding alone: 1/16 of the sum of the terms' magnitudes
    /// (bfloat16 keeps 8 bits; a wrong pairing, tile or transform is off by about the output
    /// itself, several times that).
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
            (Shape::new(26, 26, 32), 64, 3, 0, true, true),
            (Shape::new(9, 9, 48), 32, 3, 1, true, true),
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
            let Some(plain) = self::method(&g) else {
                eprintln!("neither AVX-512 nor AVX2 here: the fast convolutions are not used");
                return;
            };
            let w: Vec<f32> = (0..k * k * input.c * filters)
                .map(|_| rng.normal())
                .collect();
            let b: Vec<f32> = (0..filters).map(|_| rng.normal()).collect();
            let images = 2;
            let x: Vec<f32> = (0..images * input.len()).map(|_| rng.normal()).collect();
            let bias = bias.then_some(&b[..]);
            let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
            let mut methods = vec![plain];
            for precision in [Precision::F32, Precision::Bf16] {
                let fast = inference_method(&g, precision).expect("training has one");
                if !methods.contains(&fast) {
                    methods.push(fast);
                }
            }
            for method in methods {
                for pool in [false, true] {
                    if pool && !can_pool(&g, method) {
                        continue;
                    }
                    seen.push((method, pool));
                    let out = Epilogue { bias, relu, pool };
                    let out_len = output.len() / if pool { 4 } else { 1 };
                    let mut y = vec![f32::NAN; images * out_len];
                    let mut prepared = Prepared::default();
                    let weights = prepared.weights(&g, method, &w);
                    // Scratch left dirty by earlier use: margins must be zeroed, not assumed so.
                    let mut scratch = Scratch {
                        floats: vec![f32::NAN; 1 << 18],
                        pairs: vec![u32::MAX; 1 << 18],
                        gradient: Vec::new(),
                    };
                    forward(&g, method, weights, out, &x, &mut scratch, &mut y);
                    for i in 0..images {
                        let image = &x[i * input.len()..(i + 1) * input.len()];
                        let b = bias.unwrap_or(&[]);
                        let want = reference(image, &g, &w, b, relu, pool);
                        // What each output sums, in magnitude (pooled alike).
                        let size = reference(&abs(image), &g, &abs(&w), &abs(b), false, pool);
                        let got = &y[i * out_len..(i + 1) * out_len];
                        for ((g, w), size) in got.iter().zip(&want).zip(&size) {
                            // Winograd adds and subtracts before multiplying: a little more
                            // rounding than the reference, and F(4x4, 3x3) scales values by
                            // up to 40 before they cancel, which shows in f32 on large sums
                            // and in bfloat16 everywhere (measured here: up to 1/26 of the
                            // magnitude on random signed data).
                            let tolerance = match method {
                                Method::WinogradBf16 => size / 16.0,
                                Method::Winograd => 1e-4 * (1.0 + w.abs()) + size / 65536.0,
                                Method::Direct => 1e-4 * (1.0 + w.abs()),
                            };
                            assert!(
                                (g - w).abs() <= tolerance,
                                "{method:?}, pool {pool}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
        for want in [
            (Method::Direct, false),
            (Method::Winograd, false),
            (Method::Winograd, true),
        ] {
            assert!(seen.contains(&want), "{want:?} untested");
        }
        if avx512_bf16() {
            assert!(seen.contains(&(Method::WinogradBf16, true)));
        }
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
