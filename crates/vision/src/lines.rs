//! Lines across the page that are not the digit: ruled or squared paper, a crossing-out, a
//! background's pattern. Left in, they join the digit into one shape (a 1 on crossed lines
//! reads as a 4). They are told apart from the digit by being much thinner than its strokes,
//! straight, and at least half as long as it is; a digit's own hairlines (the thin top of a
//! printed 0) are curved or short, and stay.
//!
//! Lines across the page reach its edge and a digit rarely does, so images without ink at the
//! edge are left alone at the cost of one look along it.

use crate::ink::{morph, InkMap, StrokeGrid, SMALL_CANVAS};
use crate::resample::area;

/// Longest side the lines are looked for at: big photos are averaged down to it.
const WORK: usize = 512;
/// Ink level from which a pixel counts: low, so that a line's faint stretches (a one-pixel
/// line at a slant covers some pixels only partly) keep it whole and go with it.
pub(crate) const FAINT: f32 = 0.01;
/// Ink below which, on a page that had lines, a pixel is taken for their remains.
const RESIDUE: f32 = 0.05;
/// Half-width (chessboard distance to the paper, in working pixels) that the digit's thickest
/// strokes must reach for lines to be told apart from them by width at all.
const THICK_ENOUGH: u16 = 3;

/// Whether any pixel along the map's edge holds ink: lines as faint as ruled paper's count.
pub(crate) fn touches_border(ink: &InkMap) -> bool {
    let (w, h, v) = (ink.width, ink.height, &ink.ink);
    let faint = |p: usize| v[p] > FAINT;
    (0..w).any(|x| faint(x) || faint((h - 1) * w + x))
        || (0..h).any(|y| faint(y * w) || faint(y * w + w - 1))
}

/// How deep the deepest tenth of a piece of ink lies (`depths`, each of its pixels' distance
/// from paper; reordered): the strokes' half-width, not counting the few deeper pixels where
/// strokes cross or the pen paused. None for no ink.
pub(crate) fn deepest_tenth(depths: &mut [u16]) -> Option<u16> {
    let tenth = depths.len().checked_sub(1 + depths.len() / 10)?;
    Some(*depths.select_nth_unstable(tenth).1)
}

/// How many pixels lie between pixel `p` of a `w x h` map and the nearest edge.
pub(crate) fn from_edge(p: usize, w: usize, h: usize) -> usize {
    let (x, y) = (p % w, p / w);
    x.min(y).min(w - 1 - x).min(h - 1 - y)
}

/// Chessboard distance from each set pixel to the nearest unset one, in two passes. Outside
/// the image does not count: a stroke the edge cuts through is as thick there as it was.
pub(crate) fn distance_to_paper(on: &[bool], w: usize, h: usize) -> Vec<u16> {
    let mut d: Vec<u16> = on.iter().map(|&o| if o { u16::MAX } else { 0 }).collect();
    let at = |d: &[u16], x: isize, y: isize| {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            u16::MAX
        } else {
            d[y as usize * w + x as usize]
        }
    };
    for y in 0..h as isize {
        for x in 0..w as isize {
            let p = y as usize * w + x as usize;
            if d[p] > 0 {
                let m = [(-1, 0), (-1, -1), (0, -1), (1, -1)]
                    .iter()
                    .map(|&(dx, dy)| at(&d, x + dx, y + dy))
                    .min()
                    .unwrap_or(u16::MAX);
                d[p] = d[p].min(m.saturating_add(1));
            }
        }
    }
    for y in (0..h as isize).rev() {
        for x in (0..w as isize).rev() {
            let p = y as usize * w + x as usize;
            if d[p] > 0 {
                let m = [(1, 0), (1, 1), (0, 1), (-1, 1)]
                    .iter()
                    .map(|&(dx, dy)| at(&d, x + dx, y + dy))
                    .min()
                    .unwrap_or(u16::MAX);
                d[p] = d[p].min(m.saturating_add(1));
            }
        }
    }
    d
}

/// The longer side of the box around the set pixels of a map `w` wide.
fn extent(map: &[f32], w: usize) -> usize {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (p, _) in map.iter().enumerate().filter(|(_, &v)| v > 0.0) {
        let (x, y) = (p % w, p / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
    }
    x1.saturating_sub(x0).max(y1.saturating_sub(y0))
}

/// Angles the Hough transform tries: one per degree.
const ANGLES: usize = 180;
/// Most lines removed from one image.
const MOST_LINES: usize = 32;
/// How far from a found line's centre (working pixels) a thin pixel belongs to it.
const LINE_REACH: f32 = 1.5;

/// A straight line: the points where x cos + y sin = centre.
struct Line {
    sin: f32,
    cos: f32,
    centre: f32,
}

impl Line {
    fn distance(&self, x: f32, y: f32) -> f32 {
        (x * self.cos + y * self.sin - self.centre).abs()
    }
}

/// Straight lines among the `thin` pixels of a `w x h` map (Hough transform, strongest line
/// first), each supported by at least `votes` pixels.
fn straight_lines(thin: &[bool], w: usize, h: usize, votes: u32) -> Vec<Line> {
    let points: Vec<(f32, f32)> = (0..w * h)
        .filter(|&p| thin[p])
        .map(|p| ((p % w) as f32, (p / w) as f32))
        .collect();
    let trig: Vec<(f32, f32)> = (0..ANGLES)
        .map(|a| (a as f32 * std::f32::consts::PI / ANGLES as f32).sin_cos())
        .collect();
    // Distances from the origin run over -diagonal..diagonal, one bin per pixel.
    let diagonal = (w as f32).hypot(h as f32).ceil() + 1.0;
    let bins = 2 * diagonal as usize + 1;
    let mut acc = vec![0u32; ANGLES * bins];
    let vote = |acc: &mut [u32], x: f32, y: f32, add: bool| {
        for (row, &(sin, cos)) in acc.chunks_exact_mut(bins).zip(&trig) {
            // Never negative, so truncating after adding a half rounds.
            let cell = &mut row[(x * cos + y * sin + diagonal + 0.5) as usize];
            *cell = if add { *cell + 1 } else { *cell - 1 };
        }
    };
    points.iter().for_each(|&(x, y)| vote(&mut acc, x, y, true));
    let mut taken = vec![false; points.len()];
    let mut found = Vec::new();
    for _ in 0..MOST_LINES {
        // A line a few pixels wide spreads over neighbouring bins: count three together.
        let (mut best, mut support) = ((0, 0.0), 0);
        for (angle, row) in acc.chunks_exact(bins).enumerate() {
            for (i, three) in row.windows(3).enumerate() {
                let v = three[0] + three[1] + three[2];
                if v > support {
                    (best, support) = ((angle, (i + 1) as f32 - diagonal), v);
                }
            }
        }
        if support < votes {
            break;
        }
        let (sin, cos) = trig[best.0];
        let line = Line {
            sin,
            cos,
            centre: best.1,
        };
        let mut any = false;
        for (k, &(x, y)) in points.iter().enumerate() {
            if !taken[k] && line.distance(x, y) <= LINE_REACH {
                taken[k] = true;
                any = true;
                vote(&mut acc, x, y, false);
            }
        }
        if !any {
            break;
        }
        found.push(line);
    }
    found
}

/// The ink that meets the image's edge twice as thick as strokes must be to be told from
/// lines, and all that joins it at least half as thick: a finger or a pen cap holding the page,
/// however far it reaches in. Lines meet the edge thin, and a digit they cross is not reached
/// through them.
fn held_at_the_edge(depth: &[u16], w: usize, h: usize) -> Vec<bool> {
    let mut held = vec![false; w * h];
    let mut stack: Vec<usize> = (0..w)
        .flat_map(|x| [x, (h - 1) * w + x])
        .chain((0..h).flat_map(|y| [y * w, y * w + w - 1]))
        .filter(|&p| depth[p] >= 2 * THICK_ENOUGH)
        .collect();
    while let Some(p) = stack.pop() {
        if held[p] || depth[p] < THICK_ENOUGH {
            continue;
        }
        held[p] = true;
        let (x, y) = (p % w, p / w);
        if x > 0 {
            stack.push(p - 1);
        }
        if x + 1 < w {
            stack.push(p + 1);
        }
        if y > 0 {
            stack.push(p - w);
        }
        if y + 1 < h {
            stack.push(p + w);
        }
    }
    held
}

/// The working pixels that belong to thin straight lines in a `w x h` ink map, or None when
/// there are none or the strokes are too thin to tell lines from the digit.
fn thin_lines(work: &[f32], w: usize, h: usize) -> Option<Vec<bool>> {
    let on: Vec<bool> = work.iter().map(|&v| v > FAINT).collect();
    if on.iter().all(|&o| o) {
        // No paper at all: nothing to measure a stroke's width against.
        return None;
    }
    let depth = distance_to_paper(&on, w, h);
    // The digit's strokes: how deep the deepest tenth of the ink lies (not counting the
    // outermost ring, which is all that thin lines have, nor what runs into the image's edge
    // thicker than it is far from it: a finger holding the page, whose width would make
    // every stroke of the digit look thin).
    let strokes = |leave_out: &[bool]| {
        let mut inked: Vec<u16> = (0..w * h)
            .filter(|&p| {
                depth[p] > 1 && from_edge(p, w, h) > 2 * depth[p] as usize && !leave_out[p]
            })
            .map(|p| depth[p])
            .collect();
        deepest_tenth(&mut inked).filter(|&t| t >= THICK_ENOUGH)
    };
    // Without what holds the page, unless that leaves no strokes: then the thick ink at the
    // edge is the digit itself, cut by the edge.
    let thick =
        strokes(&held_at_the_edge(&depth, w, h)).or_else(|| strokes(&vec![false; w * h]))?;
    // The strokes' cores (deeper than half the thick width), grown back by that much: the
    // opening of the ink. What it leaves out is much thinner than the digit's strokes.
    let cut = thick / 2;
    let mut opened: Vec<f32> = depth
        .iter()
        .map(|&d| if d > cut { 1.0 } else { 0.0 })
        .collect();
    let core = extent(&opened, w);
    morph(&mut opened, w, h, cut as usize, true);
    let thin: Vec<bool> = on
        .iter()
        .zip(&opened)
        .map(|(&o, &k)| o && k == 0.0)
        .collect();
    // A line is straight and at least half as long as the digit: the thin parts of a digit
    // (the hairlines of a printed 0) are curved or short.
    let found = straight_lines(&thin, w, h, (core / 2).max(1) as u32);
    if found.is_empty() {
        return None;
    }
    // Everything along them goes, down to the faintest rim (which would still widen the
    // digit's box), but nothing of the digit's strokes.
    let mut cleared = vec![false; w * h];
    for (p, clear) in cleared.iter_mut().enumerate() {
        let (x, y) = ((p % w) as f32, (p / w) as f32);
        *clear = work[p] > 0.0
            && opened[p] == 0.0
            && found.iter().any(|l| l.distance(x, y) <= LINE_REACH + 1.0);
    }
    Some(cleared)
}

/// Clears thin straight lines from an ink map that has ink at its edge; says whether it did.
pub(crate) fn remove_thin_lines(ink: &mut InkMap) -> bool {
    // On a small canvas the digit's strokes are a pixel or two wide, as lines would be.
    if ink.width.max(ink.height) <= SMALL_CANVAS || !touches_border(ink) {
        return false;
    }
    let (w, h) = (ink.width, ink.height);
    let scale = (w.max(h) as f32 / WORK as f32).max(1.0);
    let (ww, wh) = (
        ((w as f32 / scale).round() as usize).max(1),
        ((h as f32 / scale).round() as usize).max(1),
    );
    let work = if (ww, wh) == (w, h) {
        ink.ink.clone()
    } else {
        area(&ink.ink, w, h, ww, wh)
    };
    let Some(lines) = thin_lines(&work, ww, wh) else {
        return false;
    };
    for y in 0..h {
        let wy = (y * wh / h).min(wh - 1);
        for x in 0..w {
            if lines[wy * ww + (x * ww / w).min(ww - 1)] {
                ink.ink[y * w + x] = 0.0;
            }
        }
    }
    // Where the page had lines, what is left of them too faint to be found as a line (a rule
    // that mostly fell under the noise floor leaves dashes) would still widen the digit's box.
    for v in ink.ink.iter_mut().filter(|v| **v < RESIDUE) {
        *v = 0.0;
    }
    ink.strokes = StrokeGrid::of(&ink.ink, w, h);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ink map of a square of ink levels, dark ink on light paper.
    fn square(ink: Vec<f32>) -> InkMap {
        let side = (ink.len() as f64).sqrt() as usize;
        InkMap {
            width: side,
            height: side,
            strokes: StrokeGrid::of(&ink, side, side),
            ink,
            light_on_dark: false,
        }
    }

    /// A `side`-pixel ink map holding a thick vertical bar (the digit) and, if asked, a
    /// one-pixel diagonal line from corner to corner across it.
    fn bar_and_line(side: usize, line: bool) -> InkMap {
        let mut ink = vec![0f32; side * side];
        for y in side / 5..side * 4 / 5 {
            for x in side / 2 - side / 20..side / 2 + side / 20 {
                ink[y * side + x] = 1.0;
            }
        }
        if line {
            for i in 0..side {
                ink[i * side + i] = 1.0;
            }
        }
        square(ink)
    }

    #[test]
    fn a_finger_at_the_edge_does_not_make_the_digits_strokes_thin() {
        // A 1 drawn as a straight bar, and a finger four times as wide reaching in from the
        // left: measured against the finger, the bar would be a thin straight line to clear.
        let side = 240;
        let mut held = bar_and_line(side, false);
        for y in 100..180 {
            for x in 0..60 {
                held.ink[y * side + x] = 1.0;
            }
        }
        held.strokes = StrokeGrid::of(&held.ink, side, side);
        let before = held.ink.clone();
        assert!(!remove_thin_lines(&mut held));
        assert_eq!(held.ink, before);
    }

    #[test]
    fn a_pen_cap_reaching_far_into_the_page_does_not_make_the_digits_strokes_thin() {
        // A 1 as a bar 8 pixels wide, and a pen cap ten times as thick reaching in from the
        // left edge most of the way to it: far from the edge, the cap is no thinner there.
        let side = 240;
        let mut ink = vec![0f32; side * side];
        for y in 20..220 {
            for x in 200..208 {
                ink[y * side + x] = 1.0;
            }
        }
        for y in 100..180 {
            for x in 0..180 {
                ink[y * side + x] = 1.0;
            }
        }
        let mut held = square(ink);
        let before = held.ink.clone();
        assert!(!remove_thin_lines(&mut held));
        assert_eq!(held.ink, before);
    }

    #[test]
    fn a_thin_line_to_the_edge_goes_and_the_thick_stroke_it_crosses_stays() {
        let clean = bar_and_line(200, false);
        let mut crossed = bar_and_line(200, true);
        assert!(remove_thin_lines(&mut crossed));
        // Away from the bar the line is gone; the bar is whole.
        assert_eq!(crossed.ink[10 * 200 + 10], 0.0);
        assert_eq!(crossed.ink[190 * 200 + 190], 0.0);
        let kept = |m: &InkMap| m.ink.iter().filter(|&&v| v > 0.0).count();
        assert!(kept(&crossed) >= kept(&clean), "bar eaten");
        // At most the line's stubs within a half stroke of the bar are left.
        assert!(kept(&crossed) <= kept(&clean) + 12, "{}", kept(&crossed));
    }

    #[test]
    fn faint_ruled_paper_goes_to_its_last_trace() {
        // Eight rules across the page, far fainter than the digit (ruled paper's light blue
        // after the noise floor): nothing of them may stay, or it would widen the digit's box.
        let mut ruled = bar_and_line(240, false);
        for y in (15..240).step_by(30) {
            (0..240).for_each(|x| ruled.ink[y * 240 + x] = ruled.ink[y * 240 + x].max(0.05));
        }
        ruled.strokes = StrokeGrid::of(&ruled.ink, 240, 240);
        assert!(remove_thin_lines(&mut ruled));
        assert_eq!(ruled, bar_and_line(240, false));
    }

    #[test]
    fn images_without_lines_or_with_thin_strokes_are_left_alone() {
        let mut clean = bar_and_line(200, false);
        let before = clean.clone();
        assert!(!remove_thin_lines(&mut clean));
        assert_eq!(clean, before);
        // Ink everywhere (no paper to measure strokes against) is left as it is, at once.
        let mut full = square(vec![1.0; 300 * 300]);
        assert!(!remove_thin_lines(&mut full));
        assert!(full.ink.iter().all(|&v| v == 1.0));
        // A hairline digit that reaches the edge: nothing is thicker than it, so nothing goes;
        // nor does anything on a small canvas, where a two-pixel stroke beside a blot of ink
        // (a pen's pause) is as thin as a line would be.
        let map = |side: usize, stroke: usize, blot: bool| {
            let mut ink = vec![0f32; side * side];
            for y in 0..side {
                (side / 2..side / 2 + stroke).for_each(|x| ink[y * side + x] = 1.0);
            }
            if blot {
                for y in side / 2..side / 2 + 6 {
                    (side / 4..side / 4 + 6).for_each(|x| ink[y * side + x] = 1.0);
                }
            }
            square(ink)
        };
        for mut left in [map(100, 1, false), map(28, 2, true)] {
            let before = left.clone();
            assert!(!remove_thin_lines(&mut left));
            assert_eq!(left, before);
        }
        // The same blot and stroke on a bigger canvas: the stroke is a line.
        assert!(remove_thin_lines(&mut map(100, 2, true)));
    }

    #[test]
    fn a_digits_own_hairlines_stay_even_where_they_touch_the_edge() {
        // A printed 0 cropped tight: thick sides, a thin arc over the top that reaches the
        // edge, and a short thin stub (a serif) at the bottom edge.
        let side = 200;
        let mut ink = vec![0f32; side * side];
        for y in 40..190 {
            for x in (40..60).chain(140..160) {
                ink[y * side + x] = 1.0;
            }
        }
        for i in 0..=200 {
            let t = std::f32::consts::PI * i as f32 / 200.0;
            let (x, y) = (100.0 - 50.0 * t.cos(), 40.0 - 40.0 * t.sin());
            ink[y.round() as usize * side + x.round() as usize] = 1.0;
        }
        (190..200).for_each(|y| ink[y * side + 50] = 1.0);
        let mut printed = square(ink.clone());
        assert!(!remove_thin_lines(&mut printed));
        assert_eq!(printed.ink, ink);
    }

    #[test]
    fn lines_on_a_big_photo_are_found_at_the_working_scale() {
        let mut crossed = bar_and_line(1200, true);
        // Three pixels wide at 1200 px: half a working pixel.
        for i in 1..1199 {
            crossed.ink[i * 1200 + i - 1] = 1.0;
            crossed.ink[i * 1200 + i + 1] = 1.0;
        }
        crossed.strokes = StrokeGrid::of(&crossed.ink, 1200, 1200);
        assert!(remove_thin_lines(&mut crossed));
        assert_eq!(crossed.ink[50 * 1200 + 50], 0.0);
        assert_eq!(crossed.ink[600 * 1200 + 600], 1.0, "the bar stays");
    }
}
