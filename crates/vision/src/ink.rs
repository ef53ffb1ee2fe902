//! Separating ink from paper: alpha on white, grey, polarity, uneven lighting, noise.

use crate::resample::area;
use crate::{Normalized, VisionError, BOX, SIDE};
use image::RgbaImage;
use std::ops::Range;

/// Ink contrast (0..1 grey levels) below which an image counts as blank.
pub const MIN_CONTRAST: f32 = 0.12;
/// Fraction of the ink's contrast under which a pixel is paper texture, noise or JPEG ringing.
const NOISE_FLOOR: f32 = 0.25;
/// The same on a small canvas of perfectly even paper (a digit drawn at 28-64 px in a paint
/// program), which has no texture or noise to remove: there the light edges of thin
/// anti-aliased strokes are ink, and cutting them at a quarter of the darkest stroke breaks
/// light hairlines into dashes. (Photos can be even too, where overexposed paper clips to
/// white, but their shading is not ink: they keep the full floor.)
const CANVAS_NOISE_FLOOR: f32 = 0.05;
/// Longest side of what counts as a small canvas.
pub(crate) const SMALL_CANVAS: usize = 64;
/// Long side of the thumbnail the background is fitted on.
const THUMB: usize = 64;
/// Radius, in strokes' widths, of the window that finds the paper where no smooth surface
/// follows it: dark features up to four strokes wide (a filled loop) are taken for ink, wider
/// ones for paper. Chosen on the validation digits (BENCHMARKS.md, "A fill that turns").
const LOCAL_WINDOW: f32 = 2.0;
/// Grey levels by which paper may lie below the fitted surface and still be paper: its texture,
/// a photo's noise and JPEG's blocks.
const PAPER_TEXTURE: f32 = 0.03;
/// How far the paper must fall below the fitted surface, somewhere, before its local shape is
/// used, as a share of the strokes' depth (and more than [`PAPER_TEXTURE`]): on a fill only a
/// little lighter than the ink, a shallow turn of the fill is already as dark as the ink's
/// faint edges. Chosen on the validation digits (BENCHMARKS.md, "A shallow turn of the fill"):
/// 0.03-0.05 read the same, the old fixed 0.1 grey levels lost `backdrop` digits, and using the
/// local shape always lost `finger` ones.
const LOCAL_DEPTH: f32 = 0.05;
/// Where the paper's local shape is used, ink is measured as the fraction of the paper's light
/// it takes away, so black over a dark part of the fill is as much ink as black over a light
/// one; paper darker than this counts as this dark, so its noise is not made ink.
const DIMMEST_PAPER: f32 = 0.3;
/// Paper levels (the border's median grey) at which the polarity is read from the strokes
/// rather than from the paper: a fill of colour, neither paper-white nor board-black.
const UNCLEAR_PAPER: Range<f32> = 0.25..0.75;
/// Share of the thumbnail at each end of its departures from the paper that is compared when
/// the polarity is read from the strokes.
const POLARITY_TAIL: f32 = 0.01;
/// How many times one tail (or one reading's ink area) must outweigh the other to decide.
const CLEAR_POLARITY: f32 = 1.5;
/// Share of the strongest ink above which a pixel counts when the two readings' ink areas are
/// compared. Chosen on the validation digits (BENCHMARKS.md, "The polarity of a fill with a
/// light band").
const INK_AREA_LEVEL: f32 = 0.5;
/// Working scale of the stroke-width correction, in multiples of the final size.
const MID: usize = 4;
/// Stroke width, in pixels of the 20-pixel box, that MNIST digits have (median of 2A/P over the
/// test set: 1.84; 5th and 95th percentiles 1.2 and 2.9). Strokes outside the bounds are
/// thickened or thinned towards the median.
const MNIST_STROKE: f32 = 1.84;
const THINNEST: f32 = 1.2;
const THICKEST: f32 = 3.2;

/// Mean stroke width of the ink above half strength: twice the area over the perimeter.
fn stroke_width(v: &[f32], w: usize, h: usize) -> f32 {
    let on = |x: usize, y: usize| v[y * w + x] > 0.5;
    let (mut area, mut edges) = (0usize, 0usize);
    for y in 0..h {
        for x in 0..w {
            let here = on(x, y);
            area += usize::from(here);
            edges += usize::from(
                (here && (x == 0 || x + 1 == w)) || (x + 1 < w && here != on(x + 1, y)),
            );
            edges += usize::from(
                (here && (y == 0 || y + 1 == h)) || (y + 1 < h && here != on(x, y + 1)),
            );
        }
    }
    2.0 * area as f32 / edges.max(1) as f32
}

/// Whether [`InkMap::from_rgba`]'s wide twin may run: the same code compiled for AVX2 and FMA
/// (its helpers are `inline(always)` so they are compiled into it), twice as wide as the x86-64
/// baseline's SSE2.
/// The readings are the same bit for bit: Rust does not fuse multiplies and adds on its own.
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Sum in eight lanes, which vectorises (a plain `iter().sum()` of floats must add in order).
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        lanes.iter_mut().zip(c).for_each(|(l, x)| *l += x);
    }
    lanes.iter().sum::<f32>() + tail
}

/// Running max (`grow`) or min over a square window of radius `r`, separably. Each pass costs
/// the same whatever the radius (van Herk / Gil-Werman: the extremes of fixed blocks of the
/// window's size, from their start and from their end, meet in every window).
pub(crate) fn morph(v: &mut [f32], w: usize, h: usize, r: usize, grow: bool) {
    if r == 0 {
        return;
    }
    let pick = |a: f32, b: f32| if grow { a.max(b) } else { a.min(b) };
    let outside = if grow {
        f32::NEG_INFINITY
    } else {
        f32::INFINITY
    };
    let mut running = Running::new(w.max(h), r, outside);
    for row in v.chunks_exact_mut(w) {
        running.apply(row, pick);
    }
    let mut column = vec![0f32; h];
    for x in 0..w {
        for (y, c) in column.iter_mut().enumerate() {
            *c = v[y * w + x];
        }
        running.apply(&mut column, pick);
        for (y, c) in column.iter().enumerate() {
            v[y * w + x] = *c;
        }
    }
}

/// Scratch for [`morph`]'s passes over lines of up to `longest` values.
struct Running {
    padded: Vec<f32>,
    from_start: Vec<f32>,
    from_end: Vec<f32>,
    r: usize,
    outside: f32,
}

impl Running {
    fn new(longest: usize, r: usize, outside: f32) -> Self {
        let n = longest + 2 * r;
        Running {
            padded: vec![outside; n],
            from_start: vec![outside; n],
            from_end: vec![outside; n],
            r,
            outside,
        }
    }

    /// Replaces each value of `line` by the `pick` of those within `r` of it (outside the line
    /// counts as nothing).
    fn apply(&mut self, line: &mut [f32], pick: impl Fn(f32, f32) -> f32) {
        let (n, r) = (line.len(), self.r);
        let (k, m) = (2 * r + 1, n + 2 * r);
        let padded = &mut self.padded[..m];
        padded.fill(self.outside);
        padded[r..r + n].copy_from_slice(line);
        let blocks = padded
            .chunks(k)
            .zip(self.from_start[..m].chunks_mut(k))
            .zip(self.from_end[..m].chunks_mut(k));
        for ((block, from_start), from_end) in blocks {
            let mut so_far = self.outside;
            for (s, &v) in from_start.iter_mut().zip(block) {
                so_far = pick(so_far, v);
                *s = so_far;
            }
            so_far = self.outside;
            for (e, &v) in from_end.iter_mut().zip(block).rev() {
                so_far = pick(so_far, v);
                *e = so_far;
            }
        }
        // The window of line[x] is padded[x..=x + 2r]: the end of one block and the start of
        // the next (or one whole block).
        for (x, out) in line.iter_mut().enumerate() {
            *out = pick(self.from_end[x], self.from_start[x + 2 * r]);
        }
    }
}

/// Thickens hairlines and thins marker strokes towards MNIST's width; `scale` maps working
/// pixels to final ones.
fn normalize_stroke_width(v: &mut [f32], w: usize, h: usize, scale: f32) {
    let width = stroke_width(v, w, h) * scale;
    let (grow, delta) = if width < THINNEST {
        (true, MNIST_STROKE - width)
    } else if width > THICKEST {
        (false, width - MNIST_STROKE)
    } else {
        return;
    };
    // Each pixel of radius changes the width by two working pixels.
    let r = (delta / scale / 2.0).round() as usize;
    if r > 0 {
        morph(v, w, h, r, grow);
    }
}

/// How much ink every pixel of an image holds: 0 = paper, 1 = full ink, whatever the polarity.
#[derive(Debug, Clone, PartialEq)]
pub struct InkMap {
    pub width: usize,
    pub height: usize,
    pub ink: Vec<f32>,
    pub light_on_dark: bool,
    /// Where the strokes are, coarsely (for finding specks without another pass over `ink`).
    pub strokes: StrokeGrid,
}

/// Ink level that counts as a stroke.
pub(crate) const STROKE: f32 = 0.3;
/// Cells on the longer side of a [`StrokeGrid`].
const STROKE_GRID: usize = 64;

/// A grid of at most 64 cells a side over an ink map: a cell is set where any of its pixels
/// holds a stroke (ink above [`STROKE`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StrokeGrid {
    /// Side of a cell in pixels.
    pub cell: usize,
    pub width: usize,
    pub height: usize,
    pub cells: Vec<bool>,
}

impl StrokeGrid {
    fn empty(width: usize, height: usize) -> Self {
        let cell = width.max(height).div_ceil(STROKE_GRID).max(1);
        let (w, h) = (width.div_ceil(cell), height.div_ceil(cell));
        StrokeGrid {
            cell,
            width: w,
            height: h,
            cells: vec![false; w * h],
        }
    }

    /// The grid of an ink map built some other way (tests, synthetic maps).
    pub fn of(ink: &[f32], width: usize, height: usize) -> Self {
        let mut rows = StrokeRows::new(width, height);
        ink.chunks_exact(width).for_each(|row| rows.add(row));
        rows.grid
    }
}

/// Fills a [`StrokeGrid`] from an ink map's rows, given in order: the most ink of each pixel
/// column is kept over a band of `cell` rows, then each cell of the band is marked from its
/// columns.
struct StrokeRows {
    grid: StrokeGrid,
    columns: Vec<f32>,
    height: usize,
    done: usize,
}

impl StrokeRows {
    fn new(width: usize, height: usize) -> Self {
        StrokeRows {
            grid: StrokeGrid::empty(width, height),
            columns: vec![0f32; width],
            height,
            done: 0,
        }
    }

    #[inline(always)]
    fn add(&mut self, row: &[f32]) {
        for (m, &v) in self.columns.iter_mut().zip(row) {
            *m = m.max(v);
        }
        self.done += 1;
        let cell = self.grid.cell;
        if self.done.is_multiple_of(cell) || self.done == self.height {
            let band = (self.done - 1) / cell;
            let width = self.grid.width;
            let cells = &mut self.grid.cells[band * width..][..width];
            for (c, most) in cells.iter_mut().zip(self.columns.chunks(cell)) {
                *c |= most.iter().any(|&v| v > STROKE);
            }
            self.columns.fill(0.0);
        }
    }
}

/// Part of an ink map: a box, and optionally which of its pixels belong (for one digit of a
/// number, whose box may also hold bits of its neighbours).
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
    pub mask: Option<Vec<bool>>,
}

/// Least-squares fit of a quadratic surface a + bx + cy + dx^2 + exy + fy^2 to the `kept`
/// values of a `w x h` grid (x = column / w, y = row / h). The normal equations need only the
/// moments sum(x^i y^j) for i + j <= 4 and sum(v x^i y^j) for i + j <= 2; summed along each
/// row first with the columns' powers of x from a table, a sample costs eight additions.
#[inline(always)]
fn fit_quadratic(values: &[f32], w: usize, h: usize, kept: &[bool]) -> Option<[f64; 6]> {
    let powers: Vec<[f64; 5]> = (0..w)
        .map(|c| {
            let x = c as f64 / w as f64;
            [1.0, x, x * x, x * x * x, x * x * x * x]
        })
        .collect();
    let mut m = [[0f64; 5]; 5];
    let mut mv = [[0f64; 3]; 3];
    for (r, (row, keep)) in values.chunks_exact(w).zip(kept.chunks_exact(w)).enumerate() {
        let (mut rm, mut rv) = ([0f64; 5], [0f64; 3]);
        for ((&v, _), p) in row.iter().zip(keep).zip(&powers).filter(|((_, &k), _)| k) {
            rm.iter_mut().zip(p).for_each(|(a, p)| *a += p);
            rv.iter_mut().zip(p).for_each(|(a, p)| *a += v as f64 * p);
        }
        let y = r as f64 / h as f64;
        let mut yj = 1.0;
        for j in 0..5 {
            for i in 0..5 - j {
                m[i][j] += rm[i] * yj;
            }
            if j < 3 {
                for i in 0..3 - j {
                    mv[i][j] += rv[i] * yj;
                }
            }
            yj *= y;
        }
    }
    // The terms' powers of x and y, in coefficient order.
    const POWERS: [(usize, usize); 6] = [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)];
    let mut ata = [[0f64; 6]; 6];
    let mut atb = [0f64; 6];
    for (r, &(ri, rj)) in POWERS.iter().enumerate() {
        for (c, &(ci, cj)) in POWERS.iter().enumerate() {
            ata[r][c] = m[ri + ci][rj + cj];
        }
        atb[r] = mv[ri][rj];
    }
    // Gaussian elimination with partial pivoting; a tiny ridge keeps flat images solvable.
    for (i, r) in ata.iter_mut().enumerate() {
        r[i] += 1e-6;
    }
    for col in 0..6 {
        let pivot = (col..6).max_by(|&a, &b| ata[a][col].abs().total_cmp(&ata[b][col].abs()))?;
        ata.swap(col, pivot);
        atb.swap(col, pivot);
        if ata[col][col].abs() < 1e-12 {
            return None;
        }
        for r in col + 1..6 {
            let f = ata[r][col] / ata[col][col];
            let pivot_row = ata[col];
            for (v, p) in ata[r].iter_mut().zip(pivot_row).skip(col) {
                *v -= f * p;
            }
            atb[r] -= f * atb[col];
        }
    }
    let mut coef = [0f64; 6];
    for i in (0..6).rev() {
        let s: f64 = (i + 1..6).map(|j| ata[i][j] * coef[j]).sum();
        coef[i] = (atb[i] - s) / ata[i][i];
    }
    Some(coef)
}

fn eval_quadratic(c: &[f64; 6], x: f32, y: f32) -> f32 {
    let (x, y) = (x as f64, y as f64);
    (c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * x * y + c[5] * y * y) as f32
}

/// The value below which `fraction` of the `values` above `floor` lie (values in 0..1,
/// 1024-bin histogram). Branch-free, with four interleaved histograms so that runs of equal
/// values (a page of paper) do not wait on each other's increments.
#[inline(always)]
fn percentile(values: &[f32], floor: f32, fraction: f32) -> f32 {
    const BINS: usize = 1024;
    // Bin BINS collects the values at or below the floor.
    let mut hist = [[0u32; BINS + 1]; 4];
    let bin = |v: f32| {
        if v > floor {
            ((v.clamp(0.0, 1.0) * (BINS - 1) as f32) as usize).min(BINS - 1)
        } else {
            BINS
        }
    };
    let mut count = |q: &[f32; 4]| {
        for (h, &v) in hist.iter_mut().zip(q) {
            h[bin(v)] += 1;
        }
    };
    // Blocks of values at or below the floor (paper) are skipped after one vector compare;
    // the values they would have counted (bin BINS) are never read.
    let (blocks, rest) = values.as_chunks::<PAPER_BLOCK>();
    for block in blocks {
        if any_above(block, floor) {
            block.as_chunks::<4>().0.iter().for_each(&mut count);
        }
    }
    let (quads, rest) = rest.as_chunks::<4>();
    quads.iter().for_each(&mut count);
    for &v in rest {
        hist[0][bin(v)] += 1;
    }
    let [mut counts, rest @ ..] = hist;
    for h in &rest {
        counts.iter_mut().zip(h).for_each(|(c, n)| *c += n);
    }
    let target = (counts[..BINS].iter().sum::<u32>() as f32 * fraction) as u32;
    let mut seen = 0;
    for (i, &h) in counts[..BINS].iter().enumerate() {
        seen += h;
        if seen > target {
            return i as f32 / (BINS - 1) as f32;
        }
    }
    1.0
}

impl Region {
    /// The smallest region holding both, with the pixels of either.
    pub fn union(&self, other: &Region) -> Region {
        let (x, y) = (self.x.min(other.x), self.y.min(other.y));
        let (x1, y1) = (
            (self.x + self.w).max(other.x + other.w),
            (self.y + self.h).max(other.y + other.h),
        );
        let (w, h) = (x1 - x, y1 - y);
        let mut mask = vec![false; w * h];
        for r in [self, other] {
            for yy in 0..r.h {
                for xx in 0..r.w {
                    if r.mask.as_ref().is_none_or(|m| m[yy * r.w + xx]) {
                        mask[(r.y + yy - y) * w + r.x + xx - x] = true;
                    }
                }
            }
        }
        Region {
            x,
            y,
            w,
            h,
            mask: Some(mask),
        }
    }
}

/// Luminance composited on white, 1 - alpha * (1 - lum), with the 1/255 scalings folded into
/// constants so the loop vectorises. Collected, not zeroed and then filled: zeroing a
/// full-size map cost as much as filling it.
#[inline(always)]
fn grey_map(img: &RgbaImage) -> Vec<f32> {
    const K: f32 = 1.0 / 255.0;
    let (pixels, _) = img.as_raw().as_chunks::<4>();
    pixels
        .iter()
        .map(|&[r, gr, b, a]| {
            let lum = (0.299 * K) * r as f32 + (0.587 * K) * gr as f32 + (0.114 * K) * b as f32;
            1.0 - K * a as f32 * (1.0 - lum)
        })
        .collect()
}

/// The values along the edge of a `width x height` map: paper is what the border mostly shows.
fn border_of(grey: &[f32], width: usize, height: usize) -> Vec<f32> {
    (0..width)
        .flat_map(|x| [grey[x], grey[(height - 1) * width + x]])
        .chain((0..height).flat_map(|y| [grey[y * width], grey[y * width + width - 1]]))
        .collect()
}

/// Grey levels within which paper counts as perfectly even.
const FLAT_TOLERANCE: f32 = 1.0 / 255.0;

/// The paper's level when it is perfectly even (a canvas or a scan: the whole border and at
/// least half the image within [`FLAT_TOLERANCE`] of one value), so there is no lighting to
/// model. Fitting the surface costs more than half of the ink map on a 280x280 canvas and
/// would find this same constant.
#[inline(always)]
fn flat_paper(grey: &[f32], border: &[f32]) -> Option<f32> {
    let level = border.iter().copied().fold(f32::NAN, f32::max);
    let even = |g: f32| (g - level).abs() <= FLAT_TOLERANCE;
    if !border.iter().all(|&g| even(g)) {
        return None;
    }
    let paper: usize = grey.iter().map(|&g| usize::from(even(g))).sum();
    (paper * 2 >= grey.len()).then_some(level)
}

/// A small copy of the grey map, by area: what the paper's shape is found on.
struct Thumbnail {
    grey: Vec<f32>,
    width: usize,
    height: usize,
}

impl Thumbnail {
    fn of(grey: &[f32], width: usize, height: usize) -> Self {
        let scale = (width.max(height) as f32 / THUMB as f32).max(1.0);
        let (tw, th) = (
            ((width as f32 / scale).round() as usize).max(1),
            ((height as f32 / scale).round() as usize).max(1),
        );
        Thumbnail {
            grey: area(grey, width, height, tw, th),
            width: tw,
            height: th,
        }
    }

    /// The quadratic surface `coef` (fitted to this thumbnail) at each of its pixels.
    fn surface(&self, coef: [f64; 6]) -> impl Iterator<Item = f32> + '_ {
        let (w, h) = (self.width, self.height);
        (0..w * h).map(move |i| {
            eval_quadratic(&coef, (i % w) as f32 / w as f32, (i / w) as f32 / h as f32)
        })
    }

    /// How far each pixel lies below `surface` (the paper), and the strongest ink: the 99th
    /// percentile of those depths (at least [`MIN_CONTRAST`]).
    fn depth_below(&self, surface: impl Iterator<Item = f32>) -> (Vec<f32>, f32) {
        let depth: Vec<f32> = (surface.zip(&self.grey))
            .map(|(s, g)| (s - g).max(0.0))
            .collect();
        let strongest = percentile(&depth, 0.02, 0.99).max(MIN_CONTRAST);
        (depth, strongest)
    }

    /// Whether the strokes are lighter than the paper (Some(true)) or darker: from the tails of
    /// the departures from a smooth surface, else from which reading finds less ink.
    fn ink_is_light(&self) -> Option<bool> {
        self.ink_is_light_by_tails()
            .or_else(|| self.ink_is_light_by_area())
    }

    /// Where one tail of the thumbnail's departures from a smooth surface fitted to all of it
    /// clearly outweighs the other: the strokes are the few pixels far to one side.
    fn ink_is_light_by_tails(&self) -> Option<bool> {
        let (w, h) = (self.width, self.height);
        let coef = fit_quadratic(&self.grey, w, h, &vec![true; w * h])?;
        let mut departures: Vec<f32> = (self.surface(coef).zip(&self.grey))
            .map(|(s, g)| g - s)
            .collect();
        departures.sort_unstable_by(f32::total_cmp);
        let at = |q: f32| departures[((departures.len() - 1) as f32 * q) as usize];
        let (dark, light) = (-at(POLARITY_TAIL), at(1.0 - POLARITY_TAIL));
        clearly(light, dark)
    }

    /// Where the tails are as strong (a light band or spot of the fill as far from the paper
    /// as the strokes): the paper is fitted both ways, and the reading whose ink covers clearly
    /// less of the picture is the right one, as strokes cover a small part of it and a fill's
    /// band or spot, taken for ink, much more.
    fn ink_is_light_by_area(&self) -> Option<bool> {
        let ink_area = |grey: Vec<f32>| {
            let thumbnail = Thumbnail { grey, ..*self };
            let coef = fit_paper(&thumbnail).ok()?;
            let (depth, strongest) = thumbnail.depth_below(thumbnail.surface(coef));
            Some(
                depth
                    .iter()
                    .filter(|&&d| d > INK_AREA_LEVEL * strongest)
                    .count() as f32,
            )
        };
        let dark = ink_area(self.grey.clone())?;
        let light = ink_area(self.grey.iter().map(|g| 1.0 - g).collect())?;
        // Less ink is the stronger case: the measures are compared the other way round.
        clearly(dark, light)
    }
}

/// Some(true) where `light` outweighs `dark` by [`CLEAR_POLARITY`], Some(false) the other way,
/// None where neither does.
fn clearly(light: f32, dark: f32) -> Option<bool> {
    if light > CLEAR_POLARITY * dark {
        Some(true)
    } else if dark > CLEAR_POLARITY * light {
        Some(false)
    } else {
        None
    }
}

/// The paper's brightness as a quadratic surface, fitted on a thumbnail: first to every pixel,
/// then again to the pixels that the previous fit says are paper (not much darker than it).
#[inline(always)]
fn fit_paper(thumbnail: &Thumbnail) -> Result<[f64; 6], VisionError> {
    let (thumb, tw, th) = (&thumbnail.grey, thumbnail.width, thumbnail.height);
    let mut kept = vec![true; thumb.len()];
    let mut coef = fit_quadratic(thumb, tw, th, &kept).ok_or(VisionError::NoInk)?;
    for _ in 0..3 {
        let depth: Vec<f32> = (thumbnail.surface(coef).zip(thumb))
            .map(|(s, v)| s - v)
            .collect();
        let mut kept_depth = Vec::with_capacity(depth.len());
        for (&d, &k) in depth.iter().zip(&kept) {
            if k {
                kept_depth.push(d);
            }
        }
        let cut = (percentile(&kept_depth, -1.0, 0.98) * 0.3).max(PAPER_TEXTURE);
        let mut left = 0;
        for (k, &d) in kept.iter_mut().zip(&depth) {
            *k = *k && d < cut;
            left += usize::from(*k);
        }
        if left < 6 {
            break;
        }
        coef = fit_quadratic(thumb, tw, th, &kept).unwrap_or(coef);
    }
    Ok(coef)
}

/// The paper under the strokes where it falls below the fitted surface: a paint program's
/// gradient that turns (a band of dark colour across a light fill) is no quadratic, and the
/// surface stretched over it would make the band ink. The thumbnail closed (a running max,
/// then a running min) over a window of radius [`LOCAL_WINDOW`] strokes loses every dark
/// feature narrower than the window, strokes among them, and keeps the paper's broad shapes.
/// None where it is nowhere [`LOCAL_DEPTH`] of the strokes' depth below the surface: smooth
/// paper keeps the surface alone.
#[inline(always)]
fn local_paper(thumbnail: &Thumbnail, coef: &[f64; 6]) -> Option<Vec<f32>> {
    let (tw, th) = (thumbnail.width, thumbnail.height);
    let surface: Vec<f32> = thumbnail.surface(*coef).map(|s| s.min(1.0)).collect();
    // The window is wider than the strokes (measured on the ink the surface finds, at half
    // the strongest), so that no stroke, however broad the pen, is taken for paper.
    let (mut depth, strongest) = thumbnail.depth_below(surface.iter().copied());
    depth.iter_mut().for_each(|d| *d /= strongest);
    let radius = (LOCAL_WINDOW * stroke_width(&depth, tw, th)).ceil() as usize;
    let closed = |radius: usize| {
        let mut closed = thumbnail.grey.clone();
        morph(&mut closed, tw, th, radius.clamp(2, THUMB / 4), true);
        morph(&mut closed, tw, th, radius.clamp(2, THUMB / 4), false);
        closed
    };
    // Whether the paper falls below the surface is asked of a window twice as wide, which no
    // broad stroke the width missed survives; a band of the fill wider than that does.
    let deepest = closed(2 * radius)
        .iter()
        .zip(&surface)
        .map(|(c, s)| s - c)
        .fold(0.0, f32::max);
    (deepest > (LOCAL_DEPTH * strongest).max(PAPER_TEXTURE)).then(|| closed(radius))
}

/// Bilinear taps (first index, weight of the next) that map `n` pixels onto `n_thumb`, in the
/// surface's coordinates (pixel i at i / n of the side).
fn thumb_taps(n: usize, n_thumb: usize) -> Vec<(usize, f32)> {
    (0..n)
        .map(|i| {
            let t = i as f32 * n_thumb as f32 / n as f32;
            let first = (t as usize).min(n_thumb.saturating_sub(2));
            (first, (t - first as f32).min(1.0))
        })
        .collect()
}

/// Values looked at together when skipping paper: one vector compare clears 16 of them.
const PAPER_BLOCK: usize = 16;

fn holds_ink(ink: &[f32], mask: Option<&[bool]>, x: usize) -> bool {
    ink[x] > 0.0 && mask.is_none_or(|m| m[x])
}

/// Whether any value exceeds `floor`: one vector compare per block, no early exit to break it.
#[inline(always)]
fn any_above(values: &[f32], floor: f32) -> bool {
    values.iter().fold(false, |any, &v| any | (v > floor))
}

/// The first column in `range` of a row that holds ink (and is not masked out).
fn first_inked(ink: &[f32], mask: Option<&[bool]>, range: Range<usize>) -> Option<usize> {
    let start = range.start;
    ink[range]
        .chunks(PAPER_BLOCK)
        .enumerate()
        .filter(|(_, block)| any_above(block, 0.0))
        .find_map(|(b, block)| {
            let at = start + b * PAPER_BLOCK;
            (at..at + block.len()).find(|&x| holds_ink(ink, mask, x))
        })
}

/// The last column in `range` of a row that holds ink (and is not masked out).
fn last_inked(ink: &[f32], mask: Option<&[bool]>, range: Range<usize>) -> Option<usize> {
    let end = range.end;
    ink[range]
        .rchunks(PAPER_BLOCK)
        .enumerate()
        .filter(|(_, block)| any_above(block, 0.0))
        .find_map(|(b, block)| {
            let at = end - b * PAPER_BLOCK - block.len();
            (at..at + block.len())
                .rev()
                .find(|&x| holds_ink(ink, mask, x))
        })
}

impl InkMap {
    /// Composites alpha on white, converts to grey, finds the polarity, removes a smoothly
    /// varying background (uneven lighting), the noise floor and thin lines across the page,
    /// and scales the ink to 0..1.
    pub fn from_rgba(img: &RgbaImage) -> Result<Self, VisionError> {
        let mut map = if wide() {
            // SAFETY: `wide` has checked that the CPU supports AVX2 and FMA.
            unsafe { Self::from_rgba_wide(img) }
        } else {
            Self::from_rgba_portable(img)
        }?;
        crate::lines::remove_thin_lines(&mut map);
        Ok(map)
    }

    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    unsafe fn from_rgba_wide(img: &RgbaImage) -> Result<Self, VisionError> {
        Self::from_rgba_portable(img)
    }

    #[inline(always)]
    fn from_rgba_portable(img: &RgbaImage) -> Result<Self, VisionError> {
        let (width, height) = (img.width() as usize, img.height() as usize);
        let mut grey = grey_map(img);
        let mut border = border_of(&grey, width, height);
        let paper_level = percentile(&border, -1.0, 0.5);
        // Paper neither light nor dark (a coloured fill) says nothing of the ink's polarity:
        // there the strokes, thin features darker or lighter than what is around them, do.
        let mut thumbnail =
            (UNCLEAR_PAPER.contains(&paper_level)).then(|| Thumbnail::of(&grey, width, height));
        let light_on_dark = thumbnail
            .as_ref()
            .and_then(Thumbnail::ink_is_light)
            .unwrap_or(paper_level < 0.5);
        if light_on_dark {
            grey.iter_mut().for_each(|g| *g = 1.0 - *g);
            border.iter_mut().for_each(|g| *g = 1.0 - *g);
            if let Some(t) = thumbnail.as_mut() {
                t.grey.iter_mut().for_each(|g| *g = 1.0 - *g);
            }
        }
        let flat = flat_paper(&grey, &border);
        let (coef, local) = match flat {
            Some(level) => ([level as f64, 0.0, 0.0, 0.0, 0.0, 0.0], None),
            None => {
                let thumbnail = thumbnail.unwrap_or_else(|| Thumbnail::of(&grey, width, height));
                let coef = fit_paper(&thumbnail)?;
                let local = local_paper(&thumbnail, &coef).map(|l| (thumbnail, l));
                (coef, local)
            }
        };
        let noise_floor = if flat.is_some() && width.max(height) <= SMALL_CANVAS {
            CANVAS_NOISE_FLOOR
        } else {
            NOISE_FLOOR
        };
        // The surface row by row: a_row + x * (b_row + c3 * x), in f32 (this is the hot loop).
        let c = coef.map(|v| v as f32);
        let xs: Vec<f32> = (0..width).map(|x| x as f32 / width as f32).collect();
        let mut ink = Vec::with_capacity(width * height);
        let row_of = |y: usize| {
            let yf = y as f32 / height as f32;
            (c[0] + c[2] * yf + c[5] * yf * yf, c[1] + c[4] * yf)
        };
        match &local {
            None => {
                for (y, grey_row) in grey.chunks_exact(width).enumerate() {
                    let (a, b) = row_of(y);
                    ink.extend(
                        grey_row
                            .iter()
                            .zip(&xs)
                            .map(|(&g, &x)| ((a + x * (b + c[3] * x)).min(1.0) - g).max(0.0)),
                    );
                }
            }
            Some((t, paper)) => {
                let (across, down) = (thumb_taps(width, t.width), thumb_taps(height, t.height));
                // Runs of pixels between the same two thumbnail columns: along each the local
                // paper is a line, so the loop over its pixels vectorises.
                let weights: Vec<f32> = across.iter().map(|&(_, f)| f).collect();
                let mut runs: Vec<(Range<usize>, usize)> = Vec::new();
                for (x, &(i, _)) in across.iter().enumerate() {
                    match runs.last_mut() {
                        Some((r, last)) if *last == i => r.end = x + 1,
                        _ => runs.push((x..x + 1, i)),
                    }
                }
                let mut near = vec![0f32; t.width];
                for (y, grey_row) in grey.chunks_exact(width).enumerate() {
                    let (a, b) = row_of(y);
                    // The local paper's row, between two thumbnail rows, then along it.
                    let (first, f) = down[y];
                    let (upper, lower) = (
                        &paper[first * t.width..(first + 1) * t.width],
                        &paper[(first + 1).min(t.height - 1) * t.width..][..t.width],
                    );
                    for ((n, &u), &l) in near.iter_mut().zip(upper).zip(lower) {
                        *n = u + (l - u) * f;
                    }
                    for (r, i) in &runs {
                        let (left, step) = (near[*i], near[(i + 1).min(t.width - 1)] - near[*i]);
                        ink.extend(
                            grey_row[r.clone()]
                                .iter()
                                .zip(&xs[r.clone()])
                                .zip(&weights[r.clone()])
                                .map(|((&g, &x), &f)| {
                                    let paper =
                                        (a + x * (b + c[3] * x)).min(1.0).min(left + step * f);
                                    (paper - g).max(0.0) / paper.max(DIMMEST_PAPER)
                                }),
                        );
                    }
                }
            }
        }
        let contrast = percentile(&ink, 0.02, 0.99);
        if contrast < MIN_CONTRAST {
            return Err(VisionError::NoInk);
        }
        let (scale, floor) = (
            1.0 / (contrast * (1.0 - noise_floor)),
            noise_floor / (1.0 - noise_floor),
        );
        // The stroke grid is filled in the same pass, row by row, while the values are in cache
        // (two loops over the row: each vectorises alone).
        let mut strokes = StrokeRows::new(width, height);
        for row in ink.chunks_exact_mut(width) {
            for v in row.iter_mut() {
                *v = (*v * scale - floor).clamp(0.0, 1.0);
            }
            strokes.add(row);
        }
        let mass = sum(&ink);
        if mass < (6.0f32).max(2e-4 * (width * height) as f32) {
            return Err(VisionError::NoInk);
        }
        Ok(InkMap {
            width,
            height,
            ink,
            light_on_dark,
            strokes: strokes.grid,
        })
    }

    pub fn full_region(&self) -> Region {
        Region {
            x: 0,
            y: 0,
            w: self.width,
            h: self.height,
            mask: None,
        }
    }

    /// The MNIST procedure on one region: crop to the ink, scale the longer side to 20 px with
    /// area averaging, restore full ink strength, centre the mass in 28x28.
    pub fn normalize(&self, r: &Region) -> Result<Normalized, VisionError> {
        let row = |y: usize| {
            let at = (r.y + y) * self.width + r.x;
            let mask = r.mask.as_ref().map(|m| &m[y * r.w..(y + 1) * r.w]);
            (&self.ink[at..at + r.w], mask)
        };
        let row_inked = |y: &usize| {
            let (ink, mask) = row(*y);
            first_inked(ink, mask, 0..r.w).is_some()
        };
        let Some(y0) = (0..r.h).find(row_inked) else {
            return Err(VisionError::NoInk);
        };
        let y1 = (y0..r.h).rev().find(row_inked).unwrap_or(y0) + 1;
        // Each row is searched only outside the columns already known to hold ink, so a big
        // canvas costs little more than its inked box.
        let (mut x0, mut x1) = (r.w, 0);
        for y in y0..y1 {
            let (ink, mask) = row(y);
            if let Some(first) = first_inked(ink, mask, 0..x0) {
                x0 = first;
            }
            if let Some(last) = last_inked(ink, mask, x1.max(x0)..r.w) {
                x1 = last + 1;
            }
        }
        let (bw, bh) = (x1 - x0, y1 - y0);
        let mut crop = Vec::with_capacity(bw * bh);
        for y in y0..y1 {
            let row = &self.ink[(r.y + y) * self.width + r.x + x0..][..bw];
            match &r.mask {
                None => crop.extend_from_slice(row),
                Some(m) => {
                    crop.extend(row.iter().zip(&m[y * r.w + x0..][..bw]).map(|(&v, &keep)| {
                        if keep {
                            v
                        } else {
                            0.0
                        }
                    }))
                }
            }
        }
        let s = BOX as f32 / bw.max(bh) as f32;
        let (ow, oh) = (
            ((bw as f32 * s).round() as usize).clamp(1, BOX),
            ((bh as f32 * s).round() as usize).clamp(1, BOX),
        );
        // Stroke width is judged and corrected at four times the final size: fine enough for
        // steps of half a final pixel, small enough to be cheap whatever the source resolution.
        // Small sources (a 28x28 paint-program canvas) are enlarged to it too: at their own
        // resolution the correction can only add a whole source pixel each side, which turns a
        // one-pixel hairline into a bar three times MNIST's width.
        let (mw, mh) = (ow * MID, oh * MID);
        let mut mid = if (mw, mh) == (bw, bh) {
            crop
        } else {
            area(&crop, bw, bh, mw, mh)
        };
        normalize_stroke_width(&mut mid, mw, mh, ow as f32 / mw as f32);
        let mut small = area(&mid, mw, mh, ow, oh);
        // Thin strokes on a big canvas come out faint after averaging; MNIST strokes are solid.
        let peak = percentile(&small, 0.05, 0.95).max(1e-3);
        small.iter_mut().for_each(|v| *v = (*v / peak).min(1.0));
        let mass: f32 = small.iter().sum();
        let (mut cx, mut cy) = (0f32, 0f32);
        for (i, &v) in small.iter().enumerate() {
            cx += (i % ow) as f32 * v;
            cy += (i / ow) as f32 * v;
        }
        let (cx, cy) = if mass > 0.0 {
            (cx / mass, cy / mass)
        } else {
            (ow as f32 / 2.0, oh as f32 / 2.0)
        };
        // MNIST puts the centre of mass at pixel index 14 (measured on its test set: 14.0, 14.0).
        let left = ((14.0 - cx).round() as isize).clamp(0, (SIDE - ow) as isize) as usize;
        let top = ((14.0 - cy).round() as isize).clamp(0, (SIDE - oh) as isize) as usize;
        let mut pixels = vec![0f32; SIDE * SIDE];
        for y in 0..oh {
            for x in 0..ow {
                pixels[(top + y) * SIDE + left + x] = small[y * ow + x];
            }
        }
        Ok(Normalized {
            pixels,
            bbox: [(r.x + x0) as u32, (r.y + y0) as u32, bw as u32, bh as u32],
            light_on_dark: self.light_on_dark,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    fn canvas(w: u32, h: u32, paper: [u8; 4]) -> RgbaImage {
        RgbaImage::from_pixel(w, h, Rgba(paper))
    }

    fn bar(img: &mut RgbaImage, x: std::ops::Range<u32>, y: std::ops::Range<u32>, ink: [u8; 4]) {
        for yy in y {
            for xx in x.clone() {
                img.put_pixel(xx, yy, Rgba(ink));
            }
        }
    }

    #[test]
    fn running_extremes_match_the_window_they_stand_for() {
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32
        };
        for (w, h) in [(1, 1), (5, 3), (17, 29), (64, 40)] {
            let v: Vec<f32> = (0..w * h).map(|_| next()).collect();
            for r in 0..12 {
                for grow in [true, false] {
                    let mut fast = v.clone();
                    morph(&mut fast, w, h, r, grow);
                    for y in 0..h {
                        for x in 0..w {
                            let window = (y.saturating_sub(r)..(y + r + 1).min(h)).flat_map(|yy| {
                                (x.saturating_sub(r)..(x + r + 1).min(w)).map(move |xx| (xx, yy))
                            });
                            let values = window.map(|(xx, yy)| v[yy * w + xx]);
                            let want = if grow {
                                values.fold(f32::NEG_INFINITY, f32::max)
                            } else {
                                values.fold(f32::INFINITY, f32::min)
                            };
                            assert_eq!(fast[y * w + x], want, "{w}x{h} r {r} at {x},{y}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dark_on_light_light_on_dark_and_transparent_agree() {
        let mut a = canvas(200, 300, [255, 255, 255, 255]);
        bar(&mut a, 90..110, 50..250, [0, 0, 0, 255]);
        let mut b = canvas(200, 300, [0, 0, 0, 255]);
        bar(&mut b, 90..110, 50..250, [255, 255, 255, 255]);
        let mut c = canvas(200, 300, [0, 0, 0, 0]);
        bar(&mut c, 90..110, 50..250, [0, 0, 0, 255]);
        let na = InkMap::from_rgba(&a).unwrap();
        let nb = InkMap::from_rgba(&b).unwrap();
        let nc = InkMap::from_rgba(&c).unwrap();
        assert!(!na.light_on_dark && nb.light_on_dark && !nc.light_on_dark);
        let pa = na.normalize(&na.full_region()).unwrap();
        assert_eq!(pa.pixels, nb.normalize(&nb.full_region()).unwrap().pixels);
        assert_eq!(pa.pixels, nc.normalize(&nc.full_region()).unwrap().pixels);
        assert_eq!(pa.bbox, [90, 50, 20, 200]);
        // A 20x200 bar becomes 2x20, centred at index 14.
        let rows_with_ink = (0..28)
            .filter(|y| (0..28).any(|x| pa.pixels[y * 28 + x] > 0.0))
            .count();
        assert_eq!(rows_with_ink, 20);
        assert!(pa.pixels[14 * 28 + 14] > 0.9 || pa.pixels[14 * 28 + 13] > 0.9);
    }

    /// A 4 drawn at 28x28 in a paint program: light one-pixel strokes, and one darker dot where
    /// the pen paused (the strokes hold a fifth of its ink).
    fn light_hairline(side: u32) -> RgbaImage {
        let mut img = canvas(side, side, [255, 255, 255, 255]);
        let s = side / 28;
        let light = [215, 215, 215, 255];
        bar(&mut img, 17 * s..18 * s, 4 * s..24 * s, light);
        bar(&mut img, 9 * s..10 * s, 4 * s..16 * s, light);
        bar(&mut img, 9 * s..21 * s, 16 * s..17 * s, light);
        bar(&mut img, 17 * s..18 * s, 10 * s..11 * s, [55, 55, 55, 255]);
        img
    }

    fn inked_rows(n: &Normalized) -> usize {
        (0..28)
            .filter(|y| (0..28).any(|x| n.pixels[y * 28 + x] > 0.2))
            .count()
    }

    #[test]
    fn a_light_hairline_on_a_small_canvas_stays_whole_and_near_mnist_width() {
        let ink = InkMap::from_rgba(&light_hairline(28)).unwrap();
        let n = ink.normalize(&ink.full_region()).unwrap();
        // The whole stroke is kept: cut at a quarter of the dot's strength, it would vanish.
        assert!(inked_rows(&n) >= 19, "{}", inked_rows(&n));
        // Thickened to about MNIST's two pixels per stroke, not to bars of three source pixels.
        let row = &n.pixels[10 * 28..11 * 28];
        let width: f32 = row.iter().sum::<f32>() / 2.0;
        assert!((1.0..=3.0).contains(&width), "{width} {row:?}");
        // On paper that is not perfectly even (grain of two levels) the full noise floor
        // stays, since there faint grey may be texture or shading: the light strokes go (and
        // with them, here, enough ink to count as a digit at all).
        let mut grainy = light_hairline(28);
        for (x, y, p) in grainy.enumerate_pixels_mut() {
            if p.0[0] == 255 && (x + y) % 2 == 0 {
                *p = Rgba([252, 252, 252, 255]);
            }
        }
        let kept = InkMap::from_rgba(&grainy)
            .and_then(|g| g.normalize(&g.full_region()))
            .map_or(0, |n| inked_rows(&n));
        assert!(kept < 19, "{kept}");
    }

    #[test]
    fn blank_and_faint_images_have_no_ink() {
        assert_eq!(
            InkMap::from_rgba(&canvas(100, 100, [255, 255, 255, 255])),
            Err(VisionError::NoInk)
        );
        assert_eq!(
            InkMap::from_rgba(&canvas(100, 100, [0, 0, 0, 0])),
            Err(VisionError::NoInk)
        );
        let mut faint = canvas(100, 100, [250, 250, 250, 255]);
        bar(&mut faint, 40..60, 20..80, [245, 245, 245, 255]);
        assert_eq!(InkMap::from_rgba(&faint), Err(VisionError::NoInk));
        let mut speck = canvas(300, 300, [255, 255, 255, 255]);
        bar(&mut speck, 10..11, 10..11, [0, 0, 0, 255]);
        assert_eq!(InkMap::from_rgba(&speck), Err(VisionError::NoInk));
    }

    #[test]
    fn ink_search_agrees_with_a_plain_scan() {
        let w = 53;
        for seed in 0..200u32 {
            // A sparse row of ink, and a mask hiding every third or fifth pixel.
            let ink: Vec<f32> = (0..w as u32)
                .map(|x| {
                    if (x * 7 + seed * 13) % 29 < 2 {
                        0.5
                    } else {
                        0.0
                    }
                })
                .collect();
            let mask: Vec<bool> = (0..w).map(|x| x % (3 + seed as usize % 3) != 0).collect();
            for m in [None, Some(&mask[..])] {
                let (a, b) = ((seed as usize * 3) % w, (seed as usize * 11) % (w + 1));
                let range = a.min(b)..a.max(b);
                let plain: Vec<usize> = range
                    .clone()
                    .filter(|&x| ink[x] > 0.0 && m.is_none_or(|m| m[x]))
                    .collect();
                assert_eq!(first_inked(&ink, m, range.clone()), plain.first().copied());
                assert_eq!(last_inked(&ink, m, range), plain.last().copied());
            }
        }
    }

    #[test]
    fn quadratic_fit_recovers_the_surface() {
        let want = [0.8, -0.1, 0.2, 0.05, -0.3, 0.15];
        let (w, h) = (7, 5);
        let mut values: Vec<f32> = (0..w * h)
            .map(|i| eval_quadratic(&want, (i % w) as f32 / w as f32, (i / w) as f32 / h as f32))
            .collect();
        // Samples left out of the fit do not count, whatever their value.
        let kept: Vec<bool> = (0..w * h).map(|i| i % 3 != 0).collect();
        values
            .iter_mut()
            .zip(&kept)
            .filter(|(_, &k)| !k)
            .for_each(|(v, _)| *v = 9.0);
        let got = fit_quadratic(&values, w, h, &kept).expect("solvable");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
        }
    }

    /// Greys and border of an image, as `from_rgba` sees them (dark ink on light paper).
    fn grey_and_border(img: &RgbaImage) -> (Vec<f32>, Vec<f32>) {
        let grey = grey_map(img);
        let border = border_of(&grey, img.width() as usize, img.height() as usize);
        (grey, border)
    }

    #[test]
    fn even_paper_skips_the_fit_that_would_find_the_same_level() {
        let mut opaque = canvas(280, 280, [255, 255, 255, 255]);
        let mut transparent = canvas(280, 280, [0, 0, 0, 0]);
        for img in [&mut opaque, &mut transparent] {
            bar(img, 100..130, 40..240, [0, 0, 0, 255]);
            bar(img, 60..200, 40..70, [30, 30, 30, 255]);
            let (grey, border) = grey_and_border(img);
            let level = flat_paper(&grey, &border).expect("even paper");
            assert!((level - 1.0).abs() < 1e-4, "{level}");
            let fitted = fit_paper(&Thumbnail::of(&grey, 280, 280)).unwrap();
            for (x, y) in [(0.0, 0.0), (0.5, 0.5), (1.0, 0.2), (0.3, 1.0)] {
                let surface = eval_quadratic(&fitted, x, y);
                assert!((surface - level).abs() < 0.02, "{surface} at {x},{y}");
            }
        }
    }

    #[test]
    fn uneven_paper_is_fitted() {
        // A stroke on paper that is even along the border but brighter in the middle (a lamp).
        let (w, h) = (200u32, 200u32);
        let mut lamp = canvas(w, h, [200, 200, 200, 255]);
        for y in 20..h - 20 {
            for x in 20..w - 20 {
                let d = ((x as f32 - 100.0).powi(2) + (y as f32 - 100.0).powi(2)).sqrt();
                let v = (240.0 - d * 0.5) as u8;
                lamp.put_pixel(x, y, Rgba([v, v, v, 255]));
            }
        }
        bar(&mut lamp, 90..110, 50..150, [40, 40, 40, 255]);
        let (grey, border) = grey_and_border(&lamp);
        assert_eq!(flat_paper(&grey, &border), None);
        // A gradient along the border.
        let mut shaded = canvas(w, h, [0, 0, 0, 255]);
        for x in 0..w {
            let v = (250 - x / 2) as u8;
            bar(&mut shaded, x..x + 1, 0..h, [v, v, v, 255]);
        }
        let (grey, border) = grey_and_border(&shaded);
        assert_eq!(flat_paper(&grey, &border), None);
    }

    #[test]
    fn uneven_lighting_is_removed() {
        // Paper that darkens from 250 to 120 left to right, a stroke 80 levels darker than it.
        let (w, h) = (240u32, 240u32);
        let mut img = canvas(w, h, [0, 0, 0, 255]);
        for y in 0..h {
            for x in 0..w {
                let paper = 250.0 - 130.0 * x as f32 / w as f32;
                let v = if (100..130).contains(&x) && (40..200).contains(&y) {
                    paper - 80.0
                } else {
                    paper
                };
                img.put_pixel(x, y, Rgba([v as u8, v as u8, v as u8, 255]));
            }
        }
        let ink = InkMap::from_rgba(&img).unwrap();
        let n = ink.normalize(&ink.full_region()).unwrap();
        // Only the stroke is ink: its box, not the dark right side of the page.
        assert!(n.bbox[0] >= 98 && n.bbox[2] <= 34, "{:?}", n.bbox);
    }

    /// A ring (a 0, 12 px strokes) of grey level `ink` centred at (130, 120) on a 240x240
    /// fill whose lightness is `fill(x, y)` (0..1).
    fn ring_over(ink: f32, fill: impl Fn(f32, f32) -> f32) -> RgbaImage {
        let mut img = canvas(240, 240, [0, 0, 0, 255]);
        for y in 0..240 {
            for x in 0..240 {
                let r = (x as f32 - 130.0).hypot(y as f32 - 120.0);
                let v = if (38.0..50.0).contains(&r) {
                    ink
                } else {
                    fill(x as f32, y as f32)
                };
                let v = (v * 255.0).round() as u8;
                img.put_pixel(x, y, Rgba([v, v, v, 255]));
            }
        }
        img
    }

    /// The ink map of a black ring over `fill`, checked to be dark ink with little of it off
    /// the ring.
    fn black_ring_over(fill: impl Fn(f32, f32) -> f32) -> InkMap {
        let ink = InkMap::from_rgba(&ring_over(0.0, fill)).unwrap();
        assert!(!ink.light_on_dark);
        let (mut ring, mut rest) = (0.0, 0.0);
        for (i, v) in ink.ink.iter().enumerate() {
            let (x, y) = ((i % ink.width) as f32, (i / ink.width) as f32);
            if (x - 130.0).hypot(y - 120.0) < 56.0 {
                ring += v;
            } else {
                rest += v;
            }
        }
        assert!(
            rest < 0.25 * ring,
            "ink off the ring: {rest} against {ring}"
        );
        ink
    }

    #[test]
    fn a_fill_that_turns_is_paper_and_the_ink_over_its_dark_side_is_whole() {
        // A paint program's reflected gradient: a dark band along the top-left diagonal,
        // lightening to both sides, which no quadratic surface follows.
        let ink = black_ring_over(|x, y| (0.15 + ((x + y - 120.0) / 240.0).abs()).min(1.0));
        // The ring's upper left, over the darker fill, is as much ink as its lower right.
        let strength = |x: usize, y: usize| ink.ink[y * ink.width + x];
        assert!(strength(130 - 31, 120 - 31) > 0.8 * strength(130 + 31, 120 + 31));
    }

    #[test]
    fn a_shallow_turn_of_the_fill_is_paper() {
        // A radial gradient's darker spot beside the digit, 0.3 deep at its centre: the
        // quadratic surface takes most of it, and what it misses lies less than 0.1 below
        // the surface, yet is as dark, against strokes this strong, as their faint edges.
        let spot = |x: f32, y: f32| 0.3 * (1.0 - (x - 40.0).hypot(y - 120.0) / 90.0).max(0.0);
        let ink = InkMap::from_rgba(&ring_over(0.1, |x, y| 0.85 - spot(x, y))).unwrap();
        let off_the_ring: f32 = (ink.ink.iter().enumerate())
            .filter(|(i, _)| {
                let (x, y) = ((i % ink.width) as f32, (i / ink.width) as f32);
                (x - 130.0).hypot(y - 120.0) > 56.0
            })
            .map(|(_, v)| v)
            .sum();
        assert!(
            off_the_ring < 1.0,
            "the spot came out as ink: {off_the_ring}"
        );
    }

    #[test]
    fn a_light_band_of_the_fill_as_strong_as_the_strokes_is_not_ink() {
        // A reflected gradient's light band (0.5 above the fill) across a fill darker than
        // mid-grey, beside a small black ring (0.4 below it): the tails of the departures
        // cannot tell, and the border's median alone would call the band chalk; the band, taken
        // for ink, covers far more of the picture than the ring.
        let mut img = canvas(240, 240, [0, 0, 0, 255]);
        for y in 0..240 {
            for x in 0..240 {
                let (xf, yf) = (x as f32, y as f32);
                let band =
                    (1.0 - (xf - yf - 60.0).abs() / std::f32::consts::SQRT_2 / 60.0).max(0.0);
                let v = if (16.0..22.0).contains(&(xf - 80.0).hypot(yf - 150.0)) {
                    0.0
                } else {
                    0.4 + 0.5 * band
                };
                let v = (v * 255.0).round() as u8;
                img.put_pixel(x, y, Rgba([v, v, v, 255]));
            }
        }
        let ink = InkMap::from_rgba(&img).unwrap();
        assert!(!ink.light_on_dark);
    }

    #[test]
    fn the_polarity_on_a_fill_near_mid_grey_is_the_strokes() {
        // The border's median (0.45) alone would call this chalk on a board.
        black_ring_over(|x, _| 0.35 + 0.2 * x / 240.0);
        // And white strokes on a fill a little lighter (0.55) for dark ink on paper.
        let light = ring_over(1.0, |x, _| 0.45 + 0.2 * x / 240.0);
        assert!(InkMap::from_rgba(&light).unwrap().light_on_dark);
    }
}
