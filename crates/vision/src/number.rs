//! Splitting a number written on one line into its digits: connected components of the ink,
//! merged where one digit broke into pieces (the detached top of a 5), split where two digits
//! touch, ordered left to right.

use crate::ink::{InkMap, Region, SMALL_CANVAS, STROKE};
use crate::resample::taps;

/// Blobs wider than this times their height may be touching digits: they are offered both
/// whole and split (evenly, and in two at each of the [`PAIR_CUTS`] emptiest columns), and the
/// reader keeps the reading its judge and model find likeliest. Both chosen on numbers built
/// from the validation split (`digits realworld --source validation`).
const SPLIT_ASPECT: f32 = 0.6;
const PAIR_CUTS: usize = 5;
/// Typical width of a digit relative to its height, for guessing how many digits a blob holds.
const TYPICAL_ASPECT: f32 = 0.65;
/// Cells of the stroke grid (64 on its longer side) along the image's edge that a piece of ink
/// must cover to be taken for what holds the page rather than a digit the edge cuts (in pixels,
/// this many cells' width).
const HOLD_CONTACT: usize = 6;
/// How many times as thick as the digit's strokes a piece of ink at the edge is when it is a
/// finger or a pen cap, not a piece of the digit: a hand's strokes are about equally thick.
const HOLDER_THICKNESS: u16 = 2;
/// A piece of the writing whose strokes are measured has at least this fraction (its inverse)
/// of the largest piece's ink, at the edge or not.
const SUBSTANTIAL: usize = 4;
/// Most neighbouring segments read together as one digit.
const MAX_MERGED: usize = 3;
/// Most digits one blob is cut into. Without a cap a long thin stroke (a 5000x10 underline)
/// would be offered as thousands of cuts, each read by the model: minutes of work per request.
/// With the pair cuts a blob is offered at most `MAX_PARTS + PAIR_CUTS` readings.
const MAX_PARTS: usize = 8;

/// One blob of ink on the line, with the ways of reading it: `options[0]` is the blob as one
/// digit; further options cut it into 2, 3, ... digits (left to right).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub options: Vec<Vec<Region>>,
}

#[derive(Debug, Clone)]
struct Blob {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    pixels: Vec<usize>,
}

impl Blob {
    fn width(&self) -> usize {
        self.x1 - self.x0
    }

    fn height(&self) -> usize {
        self.y1 - self.y0
    }

    fn absorb(&mut self, other: Blob) {
        self.x0 = self.x0.min(other.x0);
        self.y0 = self.y0.min(other.y0);
        self.x1 = self.x1.max(other.x1);
        self.y1 = self.y1.max(other.y1);
        self.pixels.extend(other.pixels);
    }

    /// Gap between the boxes: the larger of the horizontal and vertical gaps (0 if they overlap).
    fn distance(&self, other: &Blob) -> usize {
        let dx = other
            .x0
            .saturating_sub(self.x1)
            .max(self.x0.saturating_sub(other.x1));
        let dy = other
            .y0
            .saturating_sub(self.y1)
            .max(self.y0.saturating_sub(other.y1));
        dx.max(dy)
    }

    /// Whether `other`'s box lies inside this one's.
    fn encloses(&self, other: &Blob) -> bool {
        self.x0 <= other.x0 && other.x1 <= self.x1 && self.y0 <= other.y0 && other.y1 <= self.y1
    }

    /// Horizontal overlap as a fraction of the narrower blob.
    fn overlap(&self, other: &Blob) -> f32 {
        let inter = self.x1.min(other.x1).saturating_sub(self.x0.max(other.x0));
        inter as f32 / self.width().min(other.width()).max(1) as f32
    }
}

/// 8-connected components of the pixels with ink above [`STROKE`].
fn components(ink: &InkMap) -> Vec<Blob> {
    components_of(ink.width, ink.height, |p| ink.ink[p] > STROKE)
}

/// 8-connected components of the `w x h` grid's cells where `stroke` holds.
fn components_of(w: usize, h: usize, stroke: impl Fn(usize) -> bool) -> Vec<Blob> {
    let mut seen = vec![false; w * h];
    let mut blobs = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if seen[start] || !stroke(start) {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut b = Blob {
            x0: usize::MAX,
            y0: usize::MAX,
            x1: 0,
            y1: 0,
            pixels: Vec::new(),
        };
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            b.x0 = b.x0.min(x);
            b.y0 = b.y0.min(y);
            b.x1 = b.x1.max(x + 1);
            b.y1 = b.y1.max(y + 1);
            b.pixels.push(p);
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let (nx, ny) = (x as isize + dx, y as isize + dy);
                    if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if !seen[q] && stroke(q) {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        blobs.push(b);
    }
    blobs
}

/// Ink pixels in each column of a blob.
fn column_ink(blob: &Blob, width: usize) -> Vec<usize> {
    let mut column = vec![0usize; blob.width()];
    for &p in &blob.pixels {
        column[p % width - blob.x0] += 1;
    }
    column
}

/// Cuts a blob of touching digits into `parts` at the columns with the least ink near the
/// evenly spaced positions.
fn split(blob: &Blob, parts: usize, width: usize) -> Vec<Blob> {
    let bw = blob.width();
    let column = column_ink(blob, width);
    let cuts: Vec<usize> = (1..parts)
        .map(|k| {
            let centre = bw * k / parts;
            let reach = bw / (parts * 3);
            let lo = centre.saturating_sub(reach).max(1);
            let hi = (centre + reach).min(bw - 1);
            let best = (lo..=hi)
                .min_by_key(|&c| (column[c], c.abs_diff(centre)))
                .unwrap_or(centre);
            blob.x0 + best
        })
        .collect();
    cut(blob, &cuts, width)
}

/// Where two touching digits may part, besides the middle: the columns (from the blob's left)
/// of least ink between a tenth and nine tenths of its width (a narrow 1 leaning on a 6 parts
/// near the edge).
fn pair_cuts(blob: &Blob, width: usize) -> Vec<usize> {
    let bw = blob.width();
    let column = column_ink(blob, width);
    let (lo, hi) = ((bw / 10).max(1), (bw * 9 / 10).min(bw - 1));
    let mut minima: Vec<usize> = (lo..hi)
        .filter(|&c| column[c] <= column[c - 1] && column[c] <= column[c + 1])
        .collect();
    minima.sort_by_key(|&c| (column[c], c.abs_diff(bw / 2)));
    let mut picked: Vec<usize> = Vec::new();
    for c in minima {
        // Columns next to one already picked give the same pieces.
        if picked.iter().all(|&p| p.abs_diff(c) * 12 > bw) {
            picked.push(c);
        }
        if picked.len() == PAIR_CUTS {
            break;
        }
    }
    picked
}

/// Divides a blob's pixels at the given columns (ascending; each the first column of the next
/// piece) into the pieces between them.
fn cut(blob: &Blob, cuts: &[usize], width: usize) -> Vec<Blob> {
    let mut pieces: Vec<Blob> = (0..=cuts.len())
        .map(|_| Blob {
            x0: usize::MAX,
            y0: usize::MAX,
            x1: 0,
            y1: 0,
            pixels: Vec::new(),
        })
        .collect();
    for &p in &blob.pixels {
        let (x, y) = (p % width, p / width);
        let i = cuts.iter().filter(|&&c| x >= c).count();
        let b = &mut pieces[i];
        b.x0 = b.x0.min(x);
        b.y0 = b.y0.min(y);
        b.x1 = b.x1.max(x + 1);
        b.y1 = b.y1.max(y + 1);
        b.pixels.push(p);
    }
    pieces.retain(|b| !b.pixels.is_empty());
    pieces
}

/// Splits pieces of ink into the writing and what holds the page: on a photo (`photo`), a piece
/// that meets the edge of the `w x h` grid over at least `contact` cells, beside a piece that
/// does not, and either farther from every other piece than a quarter of either's size or
/// bulky: not around any other piece, with its deepest ink [`HOLDER_THICKNESS`] times as far
/// from paper as the deepest tenth of the writing's (`depths` lists a piece's ink pixels'
/// distances from paper). That is a finger or a pen cap, however close it comes. Where every
/// piece meets the edge broadly, the writing is the thinnest and what is not bulky beside it.
/// A small canvas is the digit's own: its strokes may run to the edge. A digit the edge cuts
/// meets it where a stroke does, a stroke's width and thickness, and lies close to its other
/// pieces.
fn leave_out_holders(
    blobs: Vec<Blob>,
    w: usize,
    h: usize,
    contact: usize,
    photo: bool,
    depths: impl Fn(&Blob) -> Vec<u16>,
) -> (Vec<Blob>, Vec<Blob>) {
    if !photo {
        return (blobs, Vec::new());
    }
    let holds_page = |b: &Blob| {
        let edge = |&&p: &&usize| p % w == 0 || p % w == w - 1 || p < w || p / w == h - 1;
        b.pixels.iter().filter(edge).count() >= contact
    };
    // Strokes are measured on pieces of a substantial size: a speck's depth says nothing, and
    // where all but a small piece is at the edge, the edge cuts the digit.
    let largest = blobs.iter().map(|b| b.pixels.len()).max().unwrap_or(0);
    let stroke_of = |pieces: &[&Blob]| {
        let mut strokes: Vec<u16> = pieces
            .iter()
            .filter(|b| b.pixels.len() * SUBSTANTIAL >= largest)
            .flat_map(|b| depths(b))
            .collect();
        crate::lines::deepest_tenth(&mut strokes)
    };
    let bulky = |b: &Blob, stroke: Option<u16>, others: &[Blob]| {
        let deepest = || depths(b).into_iter().max().unwrap_or(0);
        !others.iter().any(|k| !std::ptr::eq(k, b) && b.encloses(k))
            && stroke.is_some_and(|s| deepest() >= s.saturating_mul(HOLDER_THICKNESS))
    };
    if blobs.iter().all(holds_page) {
        if blobs.len() < 2 {
            return (blobs, Vec::new());
        }
        let strokes: Vec<Option<u16>> = blobs.iter().map(|b| stroke_of(&[b])).collect();
        let thinnest = strokes.iter().flatten().min().copied();
        let hands: Vec<bool> = (blobs.iter().zip(&strokes))
            .map(|(b, &s)| s != thinnest && bulky(b, thinnest, &blobs))
            .collect();
        if hands.iter().all(|&hand| hand) {
            return (blobs, Vec::new());
        }
        let (mut kept, mut held) = (Vec::new(), Vec::new());
        for (b, hand) in blobs.into_iter().zip(hands) {
            if hand { &mut held } else { &mut kept }.push(b);
        }
        return (kept, held);
    }
    let (held, mut kept): (Vec<Blob>, Vec<Blob>) = blobs.into_iter().partition(holds_page);
    if held.is_empty() {
        return (kept, held);
    }
    // The writing's strokes, only when a piece close to it holds the page.
    let stroke = std::cell::OnceCell::new();
    let stroke = || *stroke.get_or_init(|| stroke_of(&kept.iter().collect::<Vec<_>>()));
    let near = |a: &Blob, b: &Blob| a.distance(b) * 4 <= a.width().max(a.height());
    let (close, clear): (Vec<Blob>, Vec<Blob>) = held
        .into_iter()
        .partition(|h| kept.iter().any(|k| near(h, k) || near(k, h)) && !bulky(h, stroke(), &kept));
    kept.extend(close);
    (kept, clear)
}

/// The distances from paper of the ink pixels of `b` (cells `cell` pixels a side of a grid
/// over the ink map, one pixel each where `cell` is 1), `depth` being each pixel's.
fn depths(ink: &InkMap, depth: &[u16], b: &Blob, cell: usize) -> Vec<u16> {
    let gw = ink.width.div_ceil(cell);
    b.pixels
        .iter()
        .flat_map(|&p| {
            let (cx, cy) = ((p % gw) * cell, (p / gw) * cell);
            (cy..(cy + cell).min(ink.height))
                .flat_map(move |y| (cx..(cx + cell).min(ink.width)).map(move |x| y * ink.width + x))
        })
        .map(|p| depth[p])
        .filter(|&d| d > 0)
        .collect()
}

/// Each pixel's distance from paper (ink below [`STROKE`], and outside the image: a stroke
/// that runs along the edge is as thick as it looks, not twice).
fn depth_map(ink: &InkMap) -> Vec<u16> {
    let (w, h) = (ink.width, ink.height);
    let on: Vec<bool> = ink.ink.iter().map(|&v| v > STROKE).collect();
    let mut depth = crate::lines::distance_to_paper(&on, w, h);
    for (p, d) in depth.iter_mut().enumerate() {
        let outside = crate::lines::from_edge(p, w, h) + 1;
        *d = (*d).min(outside.min(u16::MAX as usize) as u16);
    }
    depth
}

/// Whether ink (any at all) meets the edge of the map away from the cells of `pieces` and
/// their neighbours: something fainter than a stroke holds the page (skin), where the rim of
/// a digit the edge cuts lies beside its strokes.
fn faint_at_the_edge(ink: &InkMap, pieces: &[Blob]) -> bool {
    if !crate::lines::touches_border(ink) {
        return false;
    }
    let (w, h) = (ink.width, ink.height);
    let inked = (0..w)
        .flat_map(|x| [(x, 0), (x, h - 1)])
        .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]))
        .filter(|&(x, y)| ink.ink[y * w + x] > crate::lines::FAINT);
    let grid = &ink.strokes;
    let (gw, gh) = (grid.width, grid.height);
    let mut beside = vec![false; gw * gh];
    for p in pieces.iter().flat_map(|b| &b.pixels) {
        let (x, y) = (p % gw, p / gw);
        for ny in y.saturating_sub(1)..(y + 2).min(gh) {
            for nx in x.saturating_sub(1)..(x + 2).min(gw) {
                beside[ny * gw + nx] = true;
            }
        }
    }
    inked
        .into_iter()
        .any(|(x, y)| !beside[(y / grid.cell) * gw + x / grid.cell])
}

/// Where the one digit of an image is: everything with ink, less the specks far from it (dust,
/// flecks of the paper, dots a camera's sharpening makes) that would otherwise stretch the ink
/// box and leave the digit small in its 28x28. A speck is what the number reader takes for
/// noise: a component with under a 40th of the largest one's area, further from the rest than a
/// quarter of their size. Components are found on the ink map's coarse grid of strokes (at most
/// 64 cells a side, built with the map). On a photo, what holds the page at its edge
/// (`leave_out_holders`) is left out too, and so is ink at the edge fainter than a stroke
/// (skin). Without any of these the whole image is the region, as before.
pub fn digit_region(ink: &InkMap) -> Region {
    let grid = &ink.strokes;
    let cell = grid.cell;
    let blobs = components_of(grid.width, grid.height, |p| grid.cells[p]);
    let largest = blobs.iter().map(|b| b.pixels.len()).max().unwrap_or(0);
    let (mut main, specks): (Vec<Blob>, Vec<Blob>) = blobs
        .into_iter()
        .partition(|b| b.pixels.len() * 40 >= largest);
    let (gw, gh) = (grid.width, grid.height);
    let photo = ink.width.max(ink.height) > SMALL_CANVAS;
    let held;
    // Measured only where a piece at the edge is to be told from the digit.
    let depth = std::cell::OnceCell::new();
    (main, held) = leave_out_holders(main, gw, gh, HOLD_CONTACT, photo, |b| {
        depths(ink, depth.get_or_init(|| depth_map(ink)), b, cell)
    });
    // Fainter than a stroke, it is not in the grid, but its ink would still widen the box.
    let faint_hold = photo && faint_at_the_edge(ink, &main);
    let Some(mut host) = main.pop() else {
        return ink.full_region();
    };
    for b in main {
        host.absorb(b);
    }
    let reach = host.height().max(host.width()) / 4;
    let (near, far): (Vec<Blob>, Vec<Blob>) =
        specks.into_iter().partition(|s| host.distance(s) <= reach);
    if far.is_empty() && held.is_empty() && !faint_hold {
        return ink.full_region();
    }
    for s in near {
        host.absorb(s);
    }
    // One cell of margin keeps the faint edges of the strokes (ink below STROKE).
    let (x0, y0) = (
        host.x0.saturating_sub(1) * cell,
        host.y0.saturating_sub(1) * cell,
    );
    let (x1, y1) = (
        ((host.x1 + 1) * cell).min(ink.width),
        ((host.y1 + 1) * cell).min(ink.height),
    );
    let (w, h) = (x1 - x0, y1 - y0);
    // Where what holds the page reaches into the digit's box, its cells are masked out.
    let mut mask: Option<Vec<bool>> = None;
    for p in held.iter().flat_map(|b| &b.pixels) {
        let (cx, cy) = ((p % grid.width) * cell, (p / grid.width) * cell);
        for y in cy.max(y0)..(cy + cell).min(y1) {
            for x in cx.max(x0)..(cx + cell).min(x1) {
                mask.get_or_insert_with(|| vec![true; w * h])[(y - y0) * w + x - x0] = false;
            }
        }
    }
    Region {
        x: x0,
        y: y0,
        w,
        h,
        mask,
    }
}

/// The digits of a number written on one line, left to right.
pub fn segment(ink: &InkMap) -> Vec<Segment> {
    let cell = ink.strokes.cell;
    let photo = ink.width.max(ink.height) > SMALL_CANVAS;
    let depth = std::cell::OnceCell::new();
    let (mut blobs, _) = leave_out_holders(
        components(ink),
        ink.width,
        ink.height,
        HOLD_CONTACT * cell,
        photo,
        |b| depths(ink, depth.get_or_init(|| depth_map(ink)), b, 1),
    );
    blobs.sort_by_key(|b| std::cmp::Reverse(b.pixels.len()));
    let largest = blobs.first().map_or(0, |b| b.pixels.len());
    let line_height = blobs.iter().map(Blob::height).max().unwrap_or(0);
    // Specks far smaller than the biggest stroke are parts of the digit they sit on or next to
    // (the bar of a 5), or noise when far from every digit.
    let digit_sized = |b: &Blob| b.pixels.len() * 40 >= largest && b.height() * 4 >= line_height;
    let within_reach = |a: &Blob, b: &Blob| a.distance(b) * 4 <= line_height;
    let (major, minor): (Vec<Blob>, Vec<Blob>) = blobs.into_iter().partition(digit_sized);
    let mut merged: Vec<Blob> = Vec::new();
    for b in major {
        // A short piece over or under a digit is part of it (the top of a 5 over its body);
        // taller pieces that overlap may be two digits, which the reader decides.
        if let Some(host) = merged
            .iter_mut()
            .filter(|m| is_short(b.height(), line_height) && m.overlap(&b) >= 0.5)
            .max_by_key(|m| m.pixels.len())
        {
            host.absorb(b);
        } else {
            merged.push(b);
        }
    }
    let mut stray: Vec<Blob> = Vec::new();
    for b in minor {
        if let Some(host) = merged
            .iter_mut()
            .filter(|m| within_reach(m, &b))
            .min_by_key(|m| m.distance(&b))
        {
            host.absorb(b);
        } else if b.height() * 8 >= line_height {
            stray.push(b);
        }
    }
    // Pieces far from every digit but close to each other are a light, thin digit that the
    // stroke level broke apart, where together they are as tall and as heavy as a digit (its
    // pieces are strokes, at least an eighth of the line's height: dots are noise).
    let mut groups: Vec<Blob> = Vec::new();
    for mut b in stray {
        // A piece may join groups that were apart until it came.
        while let Some(i) = groups.iter().position(|g| within_reach(g, &b)) {
            b.absorb(groups.swap_remove(i));
        }
        groups.push(b);
    }
    merged.extend(groups.into_iter().filter(digit_sized));
    merged.sort_by_key(|b| b.x0);
    merged
        .into_iter()
        .map(|b| {
            let aspect = b.width() as f32 / b.height().max(1) as f32;
            let most = if aspect > SPLIT_ASPECT {
                ((aspect / TYPICAL_ASPECT).round() as usize).clamp(2, MAX_PARTS)
            } else {
                1
            };
            let mut options = vec![vec![region(&b, ink.width)]];
            let pieces = (most > 1)
                .then(|| pair_cuts(&b, ink.width))
                .into_iter()
                .flatten()
                .map(|c| cut(&b, &[b.x0 + c], ink.width))
                .chain((2..=most).map(|parts| split(&b, parts, ink.width)));
            for p in pieces {
                let option: Vec<Region> = p.iter().map(|p| region(p, ink.width)).collect();
                // An even cut can fall on an emptiest column: read each way of cutting once.
                if !options.contains(&option) {
                    options.push(option);
                }
            }
            Segment { options }
        })
        .collect()
}

/// Where a line of writing lies: the rows its ink spans and the height of its tallest blob
/// (about one digit's height: touching digits stand side by side, not on top of each other).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineBox {
    pub top: usize,
    pub bottom: usize,
    pub digit_height: usize,
}

/// One way to read a stretch of the line: segments `from..to` read as the digits in `pieces`,
/// left to right.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub from: usize,
    pub to: usize,
    pub pieces: Vec<Region>,
}

/// Every way of reading a line the reader weighs: a path of [`Step`]s from segment 0 to
/// `segments` is one reading of the whole number.
#[derive(Debug, Clone, PartialEq)]
pub struct Lattice {
    pub segments: usize,
    pub steps: Vec<Step>,
    pub line: LineBox,
}

/// The segments of a line and the ways of reading them: each blob whole or cut, and
/// neighbouring blobs that may be pieces of one digit (a broken stroke) read together.
pub fn lattice(ink: &InkMap) -> Lattice {
    let segments = segment(ink);
    let n = segments.len();
    let firsts: Vec<&Region> = segments.iter().map(|s| &s.options[0][0]).collect();
    let line = LineBox {
        top: firsts.iter().map(|r| r.y).min().unwrap_or(0),
        bottom: firsts.iter().map(|r| r.y + r.h).max().unwrap_or(0),
        digit_height: firsts.iter().map(|r| r.h).max().unwrap_or(0),
    };
    let mut steps = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        steps.extend(s.options.iter().map(|o| Step {
            from: i,
            to: i + 1,
            pieces: o.clone(),
        }));
        // Neighbours close enough to be pieces of one broken digit are also read together,
        // up to three of them, while the whole stays about as narrow as a digit.
        let mut merged = firsts[i].clone();
        for (j, next) in firsts.iter().enumerate().skip(i + 1).take(MAX_MERGED - 1) {
            let gap = next.x.saturating_sub(merged.x + merged.w);
            merged = merged.union(next);
            if gap * 5 > line.digit_height || merged.w * 5 > line.digit_height * 6 {
                break;
            }
            steps.push(Step {
                from: i,
                to: j + 1,
                pieces: vec![merged.clone()],
            });
        }
    }
    Lattice {
        segments: n,
        steps,
        line,
    }
}

/// Whether a piece `height` tall is much shorter than the line's digits, `digit_height` tall
/// (the bar of a 5, or a digit written small).
fn is_short(height: usize, digit_height: usize) -> bool {
    height * 20 < digit_height * 11
}

/// Rows, columns and channels of [`context_view`].
pub const VIEW_H: usize = 28;
pub const VIEW_W: usize = 40;
pub const VIEW_CHANNELS: usize = 2;
/// View pixels one digit height of the line spans (MNIST's 20-pixel box).
const VIEW_DIGIT: f32 = 20.0;

/// A piece of a line as it sits among its neighbours: a window centred on the piece, scaled so
/// the line's digits are 20 pixels tall, with the piece's own ink in channel 0 and every other
/// ink in channel 1 (NHWC, values 0..1). From it one can tell a whole digit from a fragment of
/// one, or from two digits run together, which the 28x28 of the piece alone cannot show.
pub fn context_view(ink: &InkMap, piece: &Region, line: &LineBox) -> Vec<f32> {
    let scale = line.digit_height.max(1) as f32 / VIEW_DIGIT;
    let (sw, sh) = (
        ((VIEW_W as f32 * scale).round() as usize).max(1),
        ((VIEW_H as f32 * scale).round() as usize).max(1),
    );
    let cx = piece.x as f32 + piece.w as f32 / 2.0;
    let cy = (line.top + line.bottom) as f32 / 2.0;
    let (left, top) = (
        (cx - sw as f32 / 2.0).round() as isize,
        (cy - sh as f32 / 2.0).round() as isize,
    );
    // The part of the window inside the image, in window coordinates: only it is read, so a
    // huge digit's window (mostly off the image) costs no more than the image.
    let inside = |start: isize, len: usize, size: usize| {
        let lo = (-start).clamp(0, len as isize) as usize;
        let hi = (size as isize - start).clamp(lo as isize, len as isize) as usize;
        lo..hi
    };
    let (cols, rows) = (inside(left, sw, ink.width), inside(top, sh, ink.height));
    let is_mine = |x: usize, y: usize| {
        (piece.x..piece.x + piece.w).contains(&x)
            && (piece.y..piece.y + piece.h).contains(&y)
            && piece
                .mask
                .as_ref()
                .is_none_or(|m| m[(y - piece.y) * piece.w + x - piece.x])
    };
    // Area averaging as `resample::area` does it, rows first: each view row is the weighted
    // sum of the window rows it covers, split into the piece's ink and the rest.
    let mut own = vec![0f32; VIEW_H * sw];
    let mut other = vec![0f32; VIEW_H * sw];
    for (vy, (first, weights)) in taps(sh, VIEW_H).into_iter().enumerate() {
        for (k, wt) in weights.into_iter().enumerate() {
            let wy = first + k;
            if !rows.contains(&wy) {
                continue;
            }
            let y = (top + wy as isize) as usize;
            for wx in cols.clone() {
                let x = (left + wx as isize) as usize;
                let v = ink.ink[y * ink.width + x];
                if v == 0.0 {
                    continue;
                }
                let dst = if is_mine(x, y) { &mut own } else { &mut other };
                dst[vy * sw + wx] += wt * v;
            }
        }
    }
    let column_taps = taps(sw, VIEW_W);
    let mut view = Vec::with_capacity(VIEW_H * VIEW_W * VIEW_CHANNELS);
    for vy in 0..VIEW_H {
        for (first, weights) in &column_taps {
            for channel in [&own, &other] {
                let row = &channel[vy * sw + first..];
                view.push(weights.iter().zip(row).map(|(wt, v)| wt * v).sum());
            }
        }
    }
    view
}

/// The region of a blob: its box, and its own pixels grown by one to keep the anti-aliased rim.
fn region(b: &Blob, image_width: usize) -> Region {
    let (w, h) = (b.width(), b.height());
    let mut mask = vec![false; w * h];
    for &p in &b.pixels {
        let (x, y) = (p % image_width, p / image_width);
        mask[(y - b.y0) * w + x - b.x0] = true;
    }
    // Keep the faint anti-aliased rim of the strokes too: grow the mask by one pixel.
    let grown = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as isize, (i / w) as isize);
            (-1..=1).any(|dy| {
                (-1..=1).any(|dx| {
                    let (nx, ny) = (x + dx, y + dy);
                    nx >= 0
                        && ny >= 0
                        && nx < w as isize
                        && ny < h as isize
                        && mask[ny as usize * w + nx as usize]
                })
            })
        })
        .collect();
    Region {
        x: b.x0,
        y: b.y0,
        w,
        h,
        mask: Some(grown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(w: usize, h: usize, strokes: &[(usize, usize, usize, usize)]) -> InkMap {
        let mut ink = vec![0f32; w * h];
        for &(x0, y0, x1, y1) in strokes {
            for y in y0..y1 {
                for x in x0..x1 {
                    ink[y * w + x] = 1.0;
                }
            }
        }
        InkMap {
            width: w,
            height: h,
            strokes: crate::ink::StrokeGrid::of(&ink, w, h),
            ink,
            light_on_dark: false,
        }
    }

    #[test]
    fn what_holds_the_page_at_its_edge_is_left_out_of_the_digits_box() {
        let digit = [(250, 150, 350, 170), (330, 170, 350, 350)];
        // A finger from the left edge, level with the digit, and a pen cap from the bottom.
        let finger = (0, 200, 120, 300);
        let region = digit_region(&map(600, 500, &[&digit[..], &[finger]].concat()));
        assert!(region.x >= 200 && region.x + region.w <= 400, "{region:?}");
        let cap = (270, 430, 350, 500);
        let region = digit_region(&map(600, 500, &[&digit[..], &[cap]].concat()));
        assert!(region.y + region.h <= 380, "{region:?}");
        // Where it reaches into the box of a digit in two pieces far apart, between them, it
        // is masked out.
        let pieces = [(100, 150, 120, 350), (400, 150, 500, 170)];
        let between = (240, 300, 310, 500);
        let region = digit_region(&map(600, 500, &[&pieces[..], &[between]].concat()));
        let mask = region.mask.as_ref().expect("a mask");
        let at = |x: usize, y: usize| mask[(y - region.y) * region.w + x - region.x];
        assert!(!at(260, 320) && at(110, 320), "{region:?}");
        // Close to the digit and far thicker than its strokes, it is still a hand.
        let close = (0, 200, 200, 260);
        let region = digit_region(&map(600, 500, &[&digit[..], &[close]].concat()));
        assert!(region.x >= 200, "{region:?}");
        // Close to the digit and as thick as its strokes, along the edge, it could be a piece
        // of it, and stays.
        let stroke = (200, 380, 400, 400);
        let region = digit_region(&map(600, 400, &[&digit[..], &[stroke]].concat()));
        assert!(region.x <= 200 && region.y + region.h == 400, "{region:?}");
        // Where the digit meets the edge broadly too (a 7 whose bar the top edge cuts), the
        // piece far thicker than the thinnest is still a hand.
        let seven = [(250, 0, 350, 20), (330, 20, 350, 300)];
        let cap = (0, 200, 150, 260);
        let region = digit_region(&map(600, 500, &[&seven[..], &[cap]].concat()));
        assert!(region.x >= 200 && region.y == 0, "{region:?}");
        // Fainter than a stroke, it is not in the stroke grid, but still left out.
        let mut faint = map(600, 500, &digit);
        for y in 200..300 {
            for x in 0..120 {
                faint.ink[y * 600 + x] = 0.15;
            }
        }
        let region = digit_region(&faint);
        assert!(region.x >= 200, "{region:?}");
        // And so it is where the digit itself runs off the edge.
        let mut faint = map(600, 500, &[(250, 150, 350, 170), (330, 170, 350, 500)]);
        for y in 200..300 {
            for x in 0..120 {
                faint.ink[y * 600 + x] = 0.15;
            }
        }
        let region = digit_region(&faint);
        assert!(region.x >= 200 && region.y + region.h == 500, "{region:?}");
    }

    #[test]
    fn a_number_held_at_the_edge_is_read_without_the_hand() {
        // Two 1s, and a thumb from the bottom edge well clear of them.
        let ones = [(200, 100, 215, 300), (300, 100, 315, 300)];
        let thumb = (400, 400, 520, 500);
        let plain = segment(&map(600, 500, &ones));
        let held = segment(&map(600, 500, &[&ones[..], &[thumb]].concat()));
        assert_eq!(plain.len(), 2);
        assert_eq!(held, plain);
        // A thumb close to the writing, far thicker than its strokes, is left out too.
        let ones = [(200, 100, 220, 300), (300, 100, 320, 300)];
        let thumb = (330, 330, 420, 500);
        let plain = segment(&map(600, 500, &ones));
        let held = segment(&map(600, 500, &[&ones[..], &[thumb]].concat()));
        assert_eq!(held, plain);
    }

    #[test]
    fn a_digit_the_edge_cuts_is_kept_whole() {
        // A 7 whose stem runs off the bottom of the photo, beside the detached bar of its top:
        // the edge meets it only a stroke wide, so it is the digit, not a hand.
        let seven = [(250, 300, 350, 320), (330, 330, 350, 500)];
        let region = digit_region(&map(600, 500, &seven));
        assert!(region.y <= 300 && region.y + region.h == 500, "{region:?}");
        // On a small canvas, ink at the edge is the digit's own, however long.
        let canvas = [(0, 10, 28, 13), (20, 13, 23, 28), (5, 20, 8, 23)];
        assert_eq!(
            digit_region(&map(28, 28, &canvas)),
            map(28, 28, &canvas).full_region()
        );
    }

    #[test]
    fn specks_far_from_the_digit_are_left_out_of_its_box() {
        // A 7-like digit in the middle of a 600x500 photo, dust in two corners.
        let digit = [(250, 150, 350, 170), (330, 170, 350, 350)];
        let clean = map(600, 500, &digit);
        let dusty = map(
            600,
            500,
            &[&digit[..], &[(5, 5, 9, 9), (590, 480, 594, 484)]].concat(),
        );
        let region = digit_region(&dusty);
        assert!(region.x <= 250 && region.x + region.w >= 350, "{region:?}");
        assert!(region.y <= 150 && region.y + region.h >= 350, "{region:?}");
        assert!(region.x > 9 && region.y > 9, "dust kept: {region:?}");
        let (a, b) = (
            dusty.normalize(&region).unwrap(),
            clean.normalize(&clean.full_region()).unwrap(),
        );
        assert_eq!(a.pixels, b.pixels);
        // Without dust, or with a speck close to the digit (part of it: the dot of a
        // broken stroke), the whole image is the region, as before.
        assert_eq!(digit_region(&clean), clean.full_region());
        let near = map(600, 500, &[&digit[..], &[(360, 340, 364, 344)]].concat());
        assert_eq!(digit_region(&near), near.full_region());
    }

    #[test]
    fn a_long_thin_stroke_is_offered_few_cuts() {
        let m = map(5000, 10, &[(10, 4, 4990, 7)]);
        let segments = segment(&m);
        assert_eq!(segments.len(), 1);
        assert!(segments[0].options.len() <= MAX_PARTS + PAIR_CUTS);
    }

    #[test]
    fn separate_digits_in_order() {
        let m = map(
            300,
            100,
            &[(200, 10, 215, 90), (20, 10, 35, 90), (110, 10, 125, 90)],
        );
        let xs: Vec<usize> = segment(&m).iter().map(|s| s.options[0][0].x).collect();
        assert_eq!(xs, vec![20, 110, 200]);
    }

    #[test]
    fn broken_strokes_of_one_digit_merge() {
        // The detached top bar of a 5 sits above its body.
        let m = map(
            200,
            100,
            &[
                (40, 10, 90, 18),
                (40, 30, 52, 90),
                (52, 80, 90, 90),
                (150, 10, 160, 90),
            ],
        );
        let segs = segment(&m);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].options[0][0].y, segs[0].options[0][0].h), (10, 80));
    }

    #[test]
    fn touching_digits_are_split_at_the_thinnest_column() {
        // Two 60-wide blocks joined by a thin bridge at x 100..110.
        let m = map(
            300,
            120,
            &[(40, 10, 100, 110), (110, 10, 170, 110), (100, 55, 110, 60)],
        );
        let segs = segment(&m);
        assert_eq!(segs.len(), 1);
        let halves = &segs[0].options[1];
        assert_eq!(halves.len(), 2);
        assert!(halves[0].x + halves[0].w <= 111 && halves[1].x >= 99);
    }

    #[test]
    fn a_narrow_digit_leaning_on_a_wide_one_is_offered_its_own_cut() {
        // A 1 (x 20..30) joined at its foot to a wide ring (x 38..120): the even split of the
        // blob falls inside the ring; the cut at the emptiest column does not.
        let m = map(
            200,
            120,
            &[
                (20, 10, 30, 110),
                (30, 100, 40, 106),
                (38, 30, 120, 40),
                (38, 100, 120, 110),
                (38, 30, 48, 110),
                (110, 30, 120, 110),
            ],
        );
        let segs = segment(&m);
        assert_eq!(segs.len(), 1);
        let apart = segs[0]
            .options
            .iter()
            .any(|o| o.len() == 2 && o[0].x + o[0].w <= 41 && o[1].x >= 30 && o[1].w >= 70);
        assert!(
            apart,
            "{:?}",
            segs[0]
                .options
                .iter()
                .map(|o| o.iter().map(|r| (r.x, r.w)).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_short_stroke_beside_a_digit_joins_it() {
        // The bar of a 5 written apart from its body, up and to the right, not over it.
        let m = map(
            300,
            120,
            &[(40, 20, 80, 100), (84, 12, 110, 16), (200, 20, 215, 100)],
        );
        let segs = segment(&m);
        assert_eq!(segs.len(), 2);
        let first = &segs[0].options[0][0];
        assert_eq!((first.x, first.w, first.y), (40, 70, 12));
    }

    #[test]
    fn pieces_of_a_broken_digit_are_offered_together() {
        // A 0 drawn in two strokes with a gap between them, then a 1 well apart.
        let m = map(
            300,
            120,
            &[(40, 20, 70, 100), (74, 20, 100, 100), (200, 20, 212, 100)],
        );
        let lattice = lattice(&m);
        assert_eq!(lattice.segments, 3);
        assert!(lattice
            .steps
            .iter()
            .any(|s| (s.from, s.to) == (0, 2) && s.pieces.len() == 1 && s.pieces[0].w == 60));
        // The 1 is too far from the 0 to be part of it.
        assert!(!lattice.steps.iter().any(|s| s.to == 3 && s.from < 2));
        assert_eq!(lattice.line.digit_height, 80);
    }

    #[test]
    fn a_piece_is_viewed_at_line_scale_among_its_neighbours() {
        let m = map(400, 200, &[(100, 40, 140, 160), (150, 40, 190, 160)]);
        let line = LineBox {
            top: 40,
            bottom: 160,
            digit_height: 120,
        };
        let piece = Region {
            x: 100,
            y: 40,
            w: 40,
            h: 120,
            mask: None,
        };
        let view = context_view(&m, &piece, &line);
        assert_eq!(view.len(), VIEW_H * VIEW_W * VIEW_CHANNELS);
        let at = |y: usize, x: usize, c: usize| view[(y * VIEW_W + x) * VIEW_CHANNELS + c];
        let rows = |c: usize| -> Vec<usize> {
            (0..VIEW_H)
                .filter(|&y| (0..VIEW_W).any(|x| at(y, x, c) > 0.5))
                .collect()
        };
        // The line's digit height spans 20 view rows, centred; the piece sits in the middle
        // columns, its neighbour to the right in the other channel.
        assert_eq!(rows(0).len(), 20);
        assert_eq!(rows(0)[0], 4);
        let cols = |c: usize| -> Vec<usize> {
            (0..VIEW_W)
                .filter(|&x| (0..VIEW_H).any(|y| at(y, x, c) > 0.5))
                .collect()
        };
        // 40 of 120 source pixels wide: 6.7 view columns about the centre (20).
        assert_eq!((cols(0)[0], *cols(0).last().unwrap()), (17, 22));
        assert_eq!((cols(1)[0], *cols(1).last().unwrap()), (25, 31));
    }

    #[test]
    fn a_huge_digit_is_viewed_from_the_image_alone() {
        // A 6000-pixel stroke: its window is 12000x8400 source pixels, nearly all off the
        // image; only the part on it is read.
        let m = map(300, 6000, &[(100, 0, 200, 6000)]);
        let line = LineBox {
            top: 0,
            bottom: 6000,
            digit_height: 6000,
        };
        let view = context_view(&m, &m.full_region(), &line);
        let own: f32 = view.iter().step_by(VIEW_CHANNELS).sum();
        // 100 x 6000 ink pixels, 300 x 300 of them per view pixel.
        assert!((own - 100.0 * 6000.0 / 90_000.0).abs() < 1e-3, "{own}");
        assert!(view
            .iter()
            .skip(1)
            .step_by(VIEW_CHANNELS)
            .all(|&v| v == 0.0));
    }

    #[test]
    fn a_digit_the_stroke_level_broke_into_short_pieces_is_read() {
        // A bar, and beside it, far from it, three short pieces close to each other: a light,
        // thin digit whose faint joins fell below a stroke. Each alone is a speck; together
        // they are a digit's height.
        let m = map(
            200,
            100,
            &[
                (50, 10, 65, 90),
                (140, 30, 146, 45),
                (140, 50, 146, 64),
                (140, 69, 156, 80),
            ],
        );
        assert_eq!(segment(&m).len(), 2);
    }

    #[test]
    fn specks_are_ignored() {
        let m = map(200, 100, &[(50, 10, 65, 90), (150, 95, 152, 97)]);
        assert_eq!(segment(&m).len(), 1);
        // A field of dots close to each other is noise, not a digit broken apart.
        let dots: Vec<_> = (0..20)
            .flat_map(|i| (0..10).map(move |j| (100 + 5 * i, 10 + 8 * j, 102 + 5 * i, 12 + 8 * j)))
            .collect();
        let m = map(200, 100, &[&[(50, 10, 65, 90)][..], &dots].concat());
        assert_eq!(segment(&m).len(), 1);
    }
}
