//! Random affine augmentation of 28x28 training images (rotation, scale, shift), bilinear
//! sampling about the image centre. It is what makes a CNN robust to the off-centre, tilted and
//! oddly sized digits users draw.

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
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            rotation_deg: 10.0,
            scale: 0.1,
            shift: 2.0,
        }
    }
}

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
        warp(src, dst, angle, scale, dx, dy);
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
    let c = (SIDE as f32 - 1.0) / 2.0;
    let (sin, cos) = angle.sin_cos();
    let inv = 1.0 / scale;
    for oy in 0..SIDE {
        for ox in 0..SIDE {
            let (rx, ry) = (ox as f32 - c - dx, oy as f32 - c - dy);
            let sx = (cos * rx + sin * ry) * inv + c;
            let sy = (-sin * rx + cos * ry) * inv + c;
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
}
