//! Deskewing: shears a 28x28 digit so its principal axis is upright, from its second moments.
//! Slant is one of the largest sources of variation between writers; removing it helps
//! distance-based classifiers (the SVM) most, since they cannot learn to ignore it.

use crate::SIDE;

/// Slants beyond this (in pixels of horizontal shift per pixel of height) are clamped: only a
/// stroke lying nearly flat has one, and shearing it would smear it across the field.
const MAX_SLANT: f32 = 1.0;

/// The digit with its slant removed and its centre of mass at the field's centre (bilinear).
pub fn deskew(pixels: &[f32]) -> Vec<f32> {
    assert_eq!(pixels.len(), SIDE * SIDE, "deskew takes a 28x28 field");
    let (mut total, mut sx, mut sy) = (0f64, 0f64, 0f64);
    for (i, &p) in pixels.iter().enumerate() {
        let (x, y) = ((i % SIDE) as f64, (i / SIDE) as f64);
        total += p as f64;
        sx += x * p as f64;
        sy += y * p as f64;
    }
    if total <= 0.0 {
        return pixels.to_vec();
    }
    let (cx, cy) = (sx / total, sy / total);
    let (mut cov_xy, mut var_y) = (0f64, 0f64);
    for (i, &p) in pixels.iter().enumerate() {
        let (dx, dy) = ((i % SIDE) as f64 - cx, (i / SIDE) as f64 - cy);
        cov_xy += dx * dy * p as f64;
        var_y += dy * dy * p as f64;
    }
    let slant = if var_y > 1e-9 {
        ((cov_xy / var_y) as f32).clamp(-MAX_SLANT, MAX_SLANT)
    } else {
        0.0
    };
    let centre = (SIDE / 2) as f32;
    let (cx, cy) = (cx as f32, cy as f32);
    let mut out = vec![0f32; SIDE * SIDE];
    for (i, o) in out.iter_mut().enumerate() {
        let (x, y) = ((i % SIDE) as f32, (i / SIDE) as f32);
        let sy = y + cy - centre;
        let sx = x + cx - centre + slant * (y - centre);
        *o = bilinear(pixels, sx, sy);
    }
    out
}

fn bilinear(p: &[f32], x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| {
        if xi < 0.0 || yi < 0.0 || xi >= SIDE as f32 || yi >= SIDE as f32 {
            0.0
        } else {
            p[yi as usize * SIDE + xi as usize]
        }
    };
    (1.0 - fy) * ((1.0 - fx) * at(x0, y0) + fx * at(x0 + 1.0, y0))
        + fy * ((1.0 - fx) * at(x0, y0 + 1.0) + fx * at(x0 + 1.0, y0 + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-pixel-wide line from (x0, 4) to (x1, 24), its centre of mass on row 14.
    fn line(x0: f32, x1: f32) -> Vec<f32> {
        let mut p = vec![0f32; SIDE * SIDE];
        for y in 4..25 {
            let x = x0 + (x1 - x0) * (y - 4) as f32 / 20.0;
            p[y * SIDE + x.round() as usize] = 1.0;
        }
        p
    }

    /// Mean column of the ink, and the ink's variance about it.
    fn columns(p: &[f32]) -> (f32, f32) {
        let total: f32 = p.iter().sum();
        let x = |i: usize| (i % SIDE) as f32;
        let cx = p.iter().enumerate().map(|(i, v)| x(i) * v).sum::<f32>() / total;
        let spread = p
            .iter()
            .enumerate()
            .map(|(i, v)| (x(i) - cx).powi(2) * v)
            .sum::<f32>()
            / total;
        (cx, spread)
    }

    #[test]
    fn a_slanted_stroke_becomes_upright_and_centred() {
        let slanted = line(8.0, 18.0);
        let straight = deskew(&slanted);
        assert!(columns(&slanted).1 > 5.0);
        let (cx, spread) = columns(&straight);
        assert!(spread < 0.5, "{spread}");
        assert!((cx - 14.0).abs() < 0.5, "{cx}");
    }

    #[test]
    fn upright_and_blank_fields_are_left_alone() {
        let upright = line(14.0, 14.0);
        let out = deskew(&upright);
        assert!(out.iter().zip(&upright).all(|(a, b)| (a - b).abs() < 1e-3));
        let blank = vec![0f32; SIDE * SIDE];
        assert_eq!(deskew(&blank), blank);
    }
}
