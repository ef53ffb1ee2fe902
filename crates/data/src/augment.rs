//! Random augmentation of 28x28 training images: an affine map (rotation, scale, shift) about
//! the image centre, optionally bent by a smooth random warp (an elastic distortion, as in
//! Simard et al. 2003), bilinear sampling, and optionally strokes made thinner or thicker. It is
//! what makes a CNN robust to the off-centre, tilted, oddly sized, wobbly and fine- or
//! broad-pen digits users draw.

use crate::{normalize_into_pixel, SIDE};
use digits_rng::Rng;

/// Ranges the random transform is drawn from (uniformly).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Largest rotation either way, in degrees.
    pub rotation_deg: f32,
    /// Largest relative change of size either way (0.1 = 90%..110%).
    pub scale: f32,
    /// Largest shift either way, in pixels.
    pub shift: f32,
    /// Largest displacement of the smooth random warp at its control points, in pixels
    /// (0: none). Files written before it existed read as 0.
    #[serde(default)]
    pub elastic: f32,
    /// Largest change of stroke width either way, as a fraction of one pixel's erosion or
    /// dilation of the stroke's edge (0: none; 1: from a one-pixel erosion to a one-pixel
    /// dilation).
    #[serde(default)]
    pub stroke: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            rotation_deg: 10.0,
            scale: 0.1,
            shift: 2.0,
            elastic: 0.0,
            stroke: 0.0,
        }
    }
}

/// Control points of the elastic warp per side: a 4x4 grid nine pixels apart bends a digit's
/// strokes as a hand does, without tearing them.
const GRID: usize = 4;

impl Augment {
    /// Writes a randomly transformed copy of `src` (784 bytes), scaled to [0, 1], into `dst`.
    pub fn apply(&self, src: &[u8], dst: &mut [f32], rng: &mut Rng) {
        let angle = rng
            .range(-self.rotation_deg, self.rotation_deg)
            .to_radians();
        let scale = 1.0 + rng.range(-self.scale, self.scale);
        let (dx, dy) = (
            rng.range(-self.shift, self.shift),
            rng.range(-self.shift, self.shift),
        );
        // Without the newer options no further numbers are drawn, so runs made before they
        // existed resume and reproduce exactly.
        let field = (self.elastic > 0.0).then(|| {
            let mut f = [[0f32; 2]; GRID * GRID];
            for d in f.iter_mut().flatten() {
                *d = rng.range(-self.elastic, self.elastic);
            }
            f
        });
        warp_bent(src, dst, angle, scale, (dx, dy), field.as_ref());
        if self.stroke > 0.0 {
            restroke(dst, rng.range(-self.stroke, self.stroke));
        }
    }
}

/// Displacement of the elastic field at output pixel (x, y): bilinear between control points.
fn bend(field: &[[f32; 2]; GRID * GRID], x: usize, y: usize) -> [f32; 2] {
    let step = (SIDE - 1) as f32 / (GRID - 1) as f32;
    let (gx, gy) = (x as f32 / step, y as f32 / step);
    let (x0, y0) = ((gx as usize).min(GRID - 2), (gy as usize).min(GRID - 2));
    let (fx, fy) = (gx - x0 as f32, gy - y0 as f32);
    let at = |i: usize, j: usize, k: usize| field[j * GRID + i][k];
    [0, 1].map(|k| {
        at(x0, y0, k) * (1.0 - fx) * (1.0 - fy)
            + at(x0 + 1, y0, k) * fx * (1.0 - fy)
            + at(x0, y0 + 1, k) * (1.0 - fx) * fy
            + at(x0 + 1, y0 + 1, k) * fx * fy
    })
}

/// Thins (`amount` < 0) or thickens (> 0) the strokes of a [0, 1] image in place: a blend
/// towards its erosion or dilation over the four nearest neighbours.
fn restroke(img: &mut [f32], amount: f32) {
    let src = img.to_vec();
    let pick = |a: f32, b: f32| if amount > 0.0 { a.max(b) } else { a.min(b) };
    let t = amount.abs().min(1.0);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let at = |xx: usize, yy: usize| src[yy * SIDE + xx];
            let edge = if amount > 0.0 { 0.0 } else { 1.0 };
            let mut m = at(x, y);
            m = pick(m, if x > 0 { at(x - 1, y) } else { edge });
            m = pick(m, if x + 1 < SIDE { at(x + 1, y) } else { edge });
            m = pick(m, if y > 0 { at(x, y - 1) } else { edge });
            m = pick(m, if y + 1 < SIDE { at(x, y + 1) } else { edge });
            img[y * SIDE + x] = src[y * SIDE + x] * (1.0 - t) + m * t;
        }
    }
}

/// The 28x28 digit turned by `degrees` (counter-clockwise on screen) about its centre: how a
/// writer who holds the paper turned writes every digit.
pub fn tilt(src: &[u8], degrees: f32) -> Vec<u8> {
    let mut out = vec![0f32; SIDE * SIDE];
    warp(src, &mut out, degrees.to_radians(), 1.0, 0.0, 0.0);
    out.iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

/// Bilinear sample of a 28x28 byte image at (x, y) in pixel-index coordinates, scaled to
/// [0, 1]; outside the image is background.
pub fn sample(img: &[u8], x: f32, y: f32) -> f32 {
    let px = |x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= SIDE as isize || y >= SIDE as isize {
            0.0
        } else {
            normalize_into_pixel(img[y as usize * SIDE + x as usize])
        }
    };
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as isize, y0 as isize);
    px(x0, y0) * (1.0 - fx) * (1.0 - fy)
        + px(x0 + 1, y0) * fx * (1.0 - fy)
        + px(x0, y0 + 1) * (1.0 - fx) * fy
        + px(x0 + 1, y0 + 1) * fx * fy
}

/// Output pixel p samples the source at R(-angle) (p - c - t) / scale + c.
fn warp(src: &[u8], dst: &mut [f32], angle: f32, scale: f32, dx: f32, dy: f32) {
    warp_bent(src, dst, angle, scale, (dx, dy), None);
}

/// [`warp`], with the sampling point moved by the elastic `field` where there is one.
fn warp_bent(
    src: &[u8],
    dst: &mut [f32],
    angle: f32,
    scale: f32,
    (dx, dy): (f32, f32),
    field: Option<&[[f32; 2]; GRID * GRID]>,
) {
    let c = (SIDE as f32 - 1.0) / 2.0;
    let (sin, cos) = angle.sin_cos();
    let inv = 1.0 / scale;
    for oy in 0..SIDE {
        for ox in 0..SIDE {
            let [ex, ey] = field.map_or([0.0; 2], |f| bend(f, ox, oy));
            let (rx, ry) = (ox as f32 - c - dx, oy as f32 - c - dy);
            let sx = (cos * rx + sin * ry) * inv + c + ex;
            let sy = (-sin * rx + cos * ry) * inv + c + ey;
            dst[oy * SIDE + ox] = sample(src, sx, sy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PIXELS;

    fn blob() -> Vec<u8> {
        let mut img = vec![0u8; PIXELS];
        for y in 10..18 {
            for x in 12..16 {
                img[y * SIDE + x] = 255;
            }
        }
        img
    }

    #[test]
    fn identity_transform_reproduces_the_image() {
        let src = blob();
        let mut dst = vec![0f32; PIXELS];
        warp(&src, &mut dst, 0.0, 1.0, 0.0, 0.0);
        for (d, s) in dst.iter().zip(&src) {
            assert!((d - *s as f32 / 255.0).abs() < 1e-6);
        }
    }

    #[test]
    fn a_quarter_tilt_turns_a_bar_on_its_side() {
        let src = blob();
        let turned = tilt(&src, 90.0);
        let mass = |img: &[u8]| img.iter().map(|&p| p as u32).sum::<u32>();
        assert!(mass(&turned).abs_diff(mass(&src)) < mass(&src) / 20);
        // The 4-wide, 8-tall bar is now 8 wide and 4 tall.
        let rows = (0..SIDE)
            .filter(|y| (0..SIDE).any(|x| turned[y * SIDE + x] > 127))
            .count();
        assert_eq!(rows, 4);
        assert_eq!(tilt(&src, 0.0), src);
    }

    #[test]
    fn whole_pixel_shift_moves_ink() {
        let src = blob();
        let mut dst = vec![0f32; PIXELS];
        warp(&src, &mut dst, 0.0, 1.0, 3.0, -2.0);
        assert_eq!(dst[8 * SIDE + 15], 1.0);
        assert_eq!(dst[8 * SIDE + 14], 0.0);
        assert_eq!(dst[15 * SIDE + 18], 1.0);
        assert_eq!(dst[16 * SIDE + 18], 0.0);
    }

    #[test]
    fn random_transforms_keep_ink_mass_roughly() {
        let src = blob();
        let mass: f32 = src.iter().map(|&p| p as f32 / 255.0).sum();
        let aug = Augment::default();
        let mut rng = Rng::new(5);
        let mut dst = vec![0f32; PIXELS];
        for _ in 0..50 {
            aug.apply(&src, &mut dst, &mut rng);
            let m: f32 = dst.iter().sum();
            // Area changes with scale^2 (0.81..1.21); the blob never leaves the frame.
            assert!(m > mass * 0.75 && m < mass * 1.3, "{m} vs {mass}");
        }
    }

    #[test]
    fn without_the_newer_options_four_numbers_are_drawn_as_before() {
        let src = blob();
        let mut dst = vec![0f32; PIXELS];
        let (mut a, mut b) = (Rng::new(11), Rng::new(11));
        Augment::default().apply(&src, &mut dst, &mut a);
        for _ in 0..4 {
            b.range(0.0, 1.0);
        }
        assert_eq!(
            a.next_u64(),
            b.next_u64(),
            "old runs would not resume exactly"
        );
    }

    #[test]
    fn a_still_elastic_field_is_the_affine_warp() {
        let src = blob();
        let (mut plain, mut bent) = (vec![0f32; PIXELS], vec![0f32; PIXELS]);
        warp(&src, &mut plain, 0.3, 1.1, 1.0, -0.5);
        warp_bent(
            &src,
            &mut bent,
            0.3,
            1.1,
            (1.0, -0.5),
            Some(&[[0.0; 2]; GRID * GRID]),
        );
        assert_eq!(plain, bent);
        // A uniform field is a shift: every control point one pixel right moves the bar left.
        warp_bent(
            &src,
            &mut bent,
            0.0,
            1.0,
            (0.0, 0.0),
            Some(&[[1.0, 0.0]; GRID * GRID]),
        );
        assert_eq!(bent[12 * SIDE + 11], 1.0);
        assert_eq!(bent[12 * SIDE + 15], 0.0);
    }

    #[test]
    fn elastic_warps_bend_without_losing_the_digit() {
        let src = blob();
        let mass: f32 = src.iter().map(|&p| p as f32 / 255.0).sum();
        let aug = Augment {
            elastic: 1.5,
            ..Augment::default()
        };
        let (mut rng, mut dst, mut plain) = (Rng::new(2), vec![0f32; PIXELS], vec![0f32; PIXELS]);
        let mut moved = 0;
        for _ in 0..50 {
            let mut twin = rng.clone();
            aug.apply(&src, &mut dst, &mut rng);
            Augment {
                elastic: 0.0,
                ..aug
            }
            .apply(&src, &mut plain, &mut twin);
            let m: f32 = dst.iter().sum();
            assert!(m > mass * 0.6 && m < mass * 1.5, "{m} vs {mass}");
            moved += usize::from(dst != plain);
        }
        assert_eq!(moved, 50, "the field changes every image");
    }

    #[test]
    fn strokes_thin_and_thicken() {
        let src = blob();
        let base: Vec<f32> = src.iter().map(|&p| p as f32 / 255.0).collect();
        let mass = |v: &[f32]| v.iter().sum::<f32>();
        let (mut thin, mut thick) = (base.clone(), base.clone());
        restroke(&mut thin, -1.0);
        restroke(&mut thick, 1.0);
        // The 4x8 bar loses its one-pixel rim (2x6 left) or gains one (a 6x10 cross shape).
        assert_eq!(mass(&thin), 12.0);
        assert_eq!(mass(&thick), 32.0 + 2.0 * 8.0 + 2.0 * 4.0);
        let mut half = base.clone();
        restroke(&mut half, 0.5);
        assert_eq!(mass(&half), (32.0 + 56.0) / 2.0);
    }
}
