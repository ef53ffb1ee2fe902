//! Realistic test images made from MNIST digits: what users actually send. A 28x28 digit is
//! redrawn on a large canvas at a random size and place, in one of several styles (thick or thin
//! strokes, either polarity, colour, grey, transparent background, rotation, blur, JPEG
//! artefacts, uneven lighting), and encoded as a file. Numbers are several digits on one line.
//! Used by the tests and by `digits realworld`, fed with the MNIST *test* split (or the
//! validation split, to tune on); what trains on these drawings (touching pairs as negatives,
//! the `style_finetune` example) draws them from training digits only.

use crate::{InkMap, Region};
use digits_data::Digits;
use digits_rng::Rng;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Style {
    /// Black strokes on a white canvas, RGB PNG.
    Canvas,
    /// Strokes several times thicker than MNIST's.
    Thick,
    /// Hairline strokes.
    Thin,
    /// White chalk on a blackboard.
    LightOnDark,
    /// Blue ink on cream paper.
    Colour,
    /// 8-bit grey PNG.
    Grey,
    /// Black strokes on a transparent background, as a browser canvas exports them.
    Transparent,
    /// Tilted up to 15 degrees.
    Rotated,
    /// Out of focus.
    Blurred,
    /// Low-quality JPEG.
    Jpeg,
    /// A photo of paper lit from one side.
    UnevenLight,
    /// Thin straight lines across the digit: a crossed-out background.
    Crossed,
    /// Dark pen on ruled or squared paper: light blue lines a third to a half of the digit's
    /// height apart.
    Ruled,
    /// A paint program's small canvas (28-64 pixels a side) filled edge to edge, its strokes a
    /// pixel or two wide, smoothed or hard-edged (the pencil tool), dark on light or light on
    /// dark: the test images digit projects draw for themselves.
    Small,
    /// A photo of the page held at its edge: a finger (skin, soft-edged) or a pen cap (dark,
    /// hard-edged) reaching in from the side farthest from the digit, clear of it.
    Finger,
    /// Coloured ink over a paint program's gradient fill: two colours blended along a line
    /// (linear), out from a line on both sides (reflected: a band of one colour) or out from a
    /// point (radial), the backdrop's lightness turning where no single smooth surface follows it.
    Backdrop,
}

impl Style {
    pub const ALL: [Style; 16] = [
        Style::Canvas,
        Style::Thick,
        Style::Thin,
        Style::LightOnDark,
        Style::Colour,
        Style::Grey,
        Style::Transparent,
        Style::Rotated,
        Style::Blurred,
        Style::Jpeg,
        Style::UnevenLight,
        Style::Crossed,
        Style::Ruled,
        Style::Small,
        Style::Finger,
        Style::Backdrop,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Style::Canvas => "canvas",
            Style::Thick => "thick",
            Style::Thin => "thin",
            Style::LightOnDark => "light-on-dark",
            Style::Colour => "colour",
            Style::Grey => "grey",
            Style::Transparent => "transparent",
            Style::Rotated => "rotated",
            Style::Blurred => "blurred",
            Style::Jpeg => "jpeg",
            Style::UnevenLight => "uneven-light",
            Style::Crossed => "crossed",
            Style::Ruled => "ruled",
            Style::Small => "small",
            Style::Finger => "finger",
            Style::Backdrop => "backdrop",
        }
    }

    /// The style of this name, or a message that lists the names.
    pub fn parse(name: &str) -> Result<Style, String> {
        Style::ALL
            .into_iter()
            .find(|style| style.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Style::ALL.iter().map(Style::name).collect();
                format!("unknown style '{name}' (choose {})", names.join(", "))
            })
    }

    /// The file extension of images rendered in this style.
    pub fn extension(&self) -> &'static str {
        if *self == Style::Jpeg {
            "jpg"
        } else {
            "png"
        }
    }
}

/// Marks pixels no digit drew in [`Line::owner`].
pub const NO_OWNER: u8 = u8::MAX;

/// Ink coverage of a canvas, 0..1, before styling, and which drawn digit each pixel's ink
/// came from.
struct Coverage {
    w: usize,
    h: usize,
    v: Vec<f32>,
    owner: Vec<u8>,
}

impl Coverage {
    fn new(w: usize, h: usize) -> Self {
        Coverage {
            w,
            h,
            v: vec![0.0; w * h],
            owner: vec![NO_OWNER; w * h],
        }
    }

    /// Draws a 28x28 MNIST digit with its ink box's top-left at (x, y), `size` canvas pixels per
    /// 28 source pixels, rotated by `angle` about its centre; overlapping ink takes the maximum,
    /// and the pixel belongs to digit `id` where its ink is the stronger.
    fn draw(&mut self, digit: &[u8], id: u8, x: f32, y: f32, size: f32, angle: f32) {
        let s = size / 28.0;
        let (sin, cos) = angle.sin_cos();
        let (cx, cy) = (x + 14.0 * s, y + 14.0 * s);
        let reach = size * 0.75;
        let (xa, xb) = (
            (cx - reach).max(0.0) as usize,
            ((cx + reach) as usize).min(self.w),
        );
        let (ya, yb) = (
            (cy - reach).max(0.0) as usize,
            ((cy + reach) as usize).min(self.h),
        );
        for py in ya..yb {
            for qx in xa..xb {
                let (dx, dy) = (qx as f32 + 0.5 - cx, py as f32 + 0.5 - cy);
                let (u, v) = (
                    (cos * dx + sin * dy) / s + 14.0 - 0.5,
                    (-sin * dx + cos * dy) / s + 14.0 - 0.5,
                );
                let val = digits_data::augment::sample(digit, u, v);
                let at = py * self.w + qx;
                if val > self.v[at] {
                    self.v[at] = val;
                    self.owner[at] = id;
                }
            }
        }
    }

    /// Running max (`grow`) or min over a square window of radius `r`.
    fn morph(&mut self, r: usize, grow: bool) {
        crate::ink::morph(&mut self.v, self.w, self.h, r, grow);
    }

    /// Zhang-Suen thinning of the ink above 0.3 to a one-pixel centre line (topology kept).
    fn skeletonize(&mut self) {
        let (w, h) = (self.w, self.h);
        let mut on: Vec<bool> = self.v.iter().map(|&v| v > 0.3).collect();
        loop {
            let mut changed = false;
            for pass in 0..2 {
                let mut remove = Vec::new();
                for y in 1..h.saturating_sub(1) {
                    for x in 1..w.saturating_sub(1) {
                        if !on[y * w + x] {
                            continue;
                        }
                        // Neighbours clockwise from north.
                        let n = [
                            (0, -1),
                            (1, -1),
                            (1, 0),
                            (1, 1),
                            (0, 1),
                            (-1, 1),
                            (-1, 0),
                            (-1, -1),
                        ]
                        .map(|(dx, dy): (isize, isize)| {
                            on[(y as isize + dy) as usize * w + (x as isize + dx) as usize]
                        });
                        let count = n.iter().filter(|&&b| b).count();
                        let transitions = (0..8).filter(|&i| !n[i] && n[(i + 1) % 8]).count();
                        let (a, b) = if pass == 0 {
                            (n[0] && n[2] && n[4], n[2] && n[4] && n[6])
                        } else {
                            (n[0] && n[2] && n[6], n[0] && n[4] && n[6])
                        };
                        if (2..=6).contains(&count) && transitions == 1 && !a && !b {
                            remove.push(y * w + x);
                        }
                    }
                }
                changed |= !remove.is_empty();
                for i in remove {
                    on[i] = false;
                }
            }
            if !changed {
                break;
            }
        }
        self.v = on.into_iter().map(|b| if b { 1.0 } else { 0.0 }).collect();
    }

    /// Coverage of something holding the page (over 1 deep inside it): a rounded shape
    /// reaching in from the edge with the widest strip of paper between it and the ink, at
    /// most four fifths of the way to the ink, so it never touches the digit.
    fn holder(&self, rng: &mut Rng) -> Vec<f32> {
        let (w, h) = (self.w, self.h);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        for (p, _) in self.v.iter().enumerate().filter(|(_, &v)| v > 0.05) {
            let (x, y) = (p % w, p / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
        }
        if x0 >= x1 {
            return vec![0.0; w * h];
        }
        // Sides in order: left, right, top, bottom, with the paper between them and the ink.
        let gaps = [x0, w - x1, y0, h - y1];
        let side = (0..4).max_by_key(|&i| gaps[i]).unwrap_or(0);
        let along = if side < 2 { h } else { w } as f32;
        let half_width = along * rng.range(0.08, 0.18);
        let depth = (gaps[side] as f32 * 0.8).min(along * rng.range(0.15, 0.4));
        let centre = rng.range(half_width, along - half_width);
        let soft = (depth.min(half_width) * rng.range(0.05, 0.2)).max(1.0);
        let mut out = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                // u across the side, v inward from it.
                let (u, v) = match side {
                    0 => (py - centre, px),
                    1 => (py - centre, w as f32 - px),
                    2 => (px - centre, py),
                    _ => (px - centre, h as f32 - py),
                };
                // A superellipse: rounded at the tip, square where it leaves the picture.
                let r = ((u / half_width).powi(4) + (v / depth.max(1.0)).powi(4)).powf(0.25);
                out[y * w + x] = ((1.0 - r) * depth.min(half_width) / soft).max(0.0);
            }
        }
        out
    }

    /// Rules two to four thin straight lines, each at least half the canvas's shorter side
    /// long where it shows and half of them running from edge to edge; they belong to no digit.
    fn cross(&mut self, size: f32, rng: &mut Rng) {
        let (w, h) = (self.w as f32, self.h as f32);
        let half_width = rng.range(0.5, (size / 200.0).max(0.5) + 0.5);
        let lines = 2 + rng.below(3);
        let mut drawn = 0;
        while drawn < lines {
            let (ax, ay, angle) = (rng.range(0.0, w), rng.range(0.0, h), rng.range(0.0, 3.2));
            let (dx, dy) = (angle.cos(), angle.sin());
            let reach = if drawn % 2 == 0 {
                2.0 * (w + h)
            } else {
                w.max(h)
            };
            let (mut t0, mut t1) = (-reach * rng.range(0.25, 1.0), reach * rng.range(0.25, 1.0));
            // Clip to the canvas: where a + t d lies within 0..w and 0..h.
            for (a, d, end) in [(ax, dx, w), (ay, dy, h)] {
                if d.abs() > 1e-6 {
                    let (u, v) = ((0.0 - a) / d, (end - a) / d);
                    (t0, t1) = (t0.max(u.min(v)), t1.min(u.max(v)));
                }
            }
            if t1 - t0 < w.min(h) / 2.0 {
                continue;
            }
            drawn += 1;
            let (sx, sy) = (ax + t0 * dx, ay + t0 * dy);
            let length = t1 - t0;
            for py in 0..self.h {
                for px in 0..self.w {
                    let (qx, qy) = (px as f32 + 0.5 - sx, py as f32 + 0.5 - sy);
                    let t = (qx * dx + qy * dy).clamp(0.0, length);
                    let (ex, ey) = (qx - t * dx, qy - t * dy);
                    let cover = (half_width + 0.5 - (ex * ex + ey * ey).sqrt()).clamp(0.0, 1.0);
                    let at = py * self.w + px;
                    self.v[at] = self.v[at].max(cover);
                }
            }
        }
    }

    /// Three box blurs of radius `r` (close to a Gaussian).
    fn blur(&mut self, r: usize) {
        let (w, h) = (self.w, self.h);
        for _ in 0..3 {
            let mut tmp = vec![0f32; w * h];
            for y in 0..h {
                for x in 0..w {
                    let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
                    tmp[y * w + x] =
                        self.v[y * w + a..y * w + b].iter().sum::<f32>() / (b - a) as f32;
                }
            }
            for y in 0..h {
                for x in 0..w {
                    let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
                    self.v[y * w + x] =
                        (a..b).map(|yy| tmp[yy * w + x]).sum::<f32>() / (b - a) as f32;
                }
            }
        }
    }
}

/// Bounding box of a 28x28 digit's ink: x0, y0, x1, y1 (exclusive).
fn ink_box(digit: &[u8]) -> (usize, usize, usize, usize) {
    let (mut x0, mut y0, mut x1, mut y1) = (28, 28, 0, 0);
    for y in 0..28 {
        for x in 0..28 {
            if digit[y * 28 + x] > 30 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    if x0 >= x1 {
        (0, 0, 28, 28)
    } else {
        (x0, y0, x1, y1)
    }
}

fn encode(img: DynamicImage, jpeg_quality: Option<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    match jpeg_quality {
        Some(q) => img
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, q))
            .expect("in-memory JPEG"),
        None => img
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .expect("in-memory PNG"),
    }
    out
}

/// Turns ink coverage into an encoded image in `style`.
fn finish(mut cov: Coverage, style: Style, size: f32, rng: &mut Rng) -> Vec<u8> {
    match style {
        Style::Thick => cov.morph((size / 30.0).round().max(2.0) as usize, true),
        Style::Thin => {
            // A fine pen: the stroke's centre line, a pixel or two wide.
            cov.skeletonize();
            cov.morph((size / 200.0).round() as usize, true);
        }
        Style::Blurred => cov.blur((size / 45.0).round().max(1.0) as usize),
        Style::Crossed => cov.cross(size, rng),
        _ => {}
    }
    let (w, h) = (cov.w as u32, cov.h as u32);
    let mix = |paper: f32, ink: f32, v: f32| {
        ((paper * (1.0 - v) + ink * v) * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8
    };
    match style {
        Style::Transparent => {
            let img = RgbaImage::from_fn(w, h, |x, y| {
                image::Rgba([0, 0, 0, mix(0.0, 1.0, cov.v[(y * w + x) as usize])])
            });
            encode(DynamicImage::ImageRgba8(img), None)
        }
        Style::Grey => {
            let img = GrayImage::from_fn(w, h, |x, y| {
                image::Luma([mix(1.0, 0.0, cov.v[(y * w + x) as usize])])
            });
            encode(DynamicImage::ImageLuma8(img), None)
        }
        Style::LightOnDark => {
            let img = RgbImage::from_fn(w, h, |x, y| {
                let v = cov.v[(y * w + x) as usize];
                image::Rgb([mix(0.1, 0.95, v), mix(0.15, 0.95, v), mix(0.12, 0.92, v)])
            });
            encode(DynamicImage::ImageRgb8(img), None)
        }
        Style::Colour => {
            let img = RgbImage::from_fn(w, h, |x, y| {
                let v = cov.v[(y * w + x) as usize];
                image::Rgb([mix(0.98, 0.1, v), mix(0.95, 0.2, v), mix(0.85, 0.7, v)])
            });
            encode(DynamicImage::ImageRgb8(img), None)
        }
        Style::Ruled => {
            let gap = size * rng.range(0.25, 0.4);
            let (offset, half_width) = (rng.range(0.0, gap), rng.range(0.5, 1.0));
            let squared = rng.uniform() < 0.3;
            // Coverage of the rules at a pixel centre `p` along one axis.
            let rule = |p: f32| {
                let d = (p - offset).rem_euclid(gap);
                (half_width + 0.5 - d.min(gap - d)).clamp(0.0, 1.0)
            };
            let img = RgbImage::from_fn(w, h, |x, y| {
                let across = if squared { rule(x as f32 + 0.5) } else { 0.0 };
                let r = rule(y as f32 + 0.5).max(across);
                let v = cov.v[(y * w + x) as usize];
                let paper = |white: f32, blue: f32| white * (1.0 - r) + blue * r;
                image::Rgb([
                    mix(paper(0.97, 0.55), 0.1, v),
                    mix(paper(0.97, 0.7), 0.1, v),
                    mix(paper(0.95, 0.95), 0.25, v),
                ])
            });
            encode(DynamicImage::ImageRgb8(img), None)
        }
        Style::Small => {
            let hard = rng.uniform() < 0.4;
            let light_on_dark = rng.uniform() < 0.5;
            let img = GrayImage::from_fn(w, h, |x, y| {
                let v = cov.v[(y * w + x) as usize];
                let v = if hard {
                    f32::from(u8::from(v > 0.5))
                } else {
                    v
                };
                image::Luma([if light_on_dark {
                    mix(0.0, 1.0, v)
                } else {
                    mix(1.0, 0.0, v)
                }])
            });
            encode(DynamicImage::ImageLuma8(img), None)
        }
        Style::Finger => {
            let (occluder, finger) = (cov.holder(rng), rng.uniform() < 0.5);
            let img = RgbImage::from_fn(w, h, |x, y| {
                let at = (y * w + x) as usize;
                let (o, v) = (occluder[at].min(1.0), cov.v[at]);
                let tone = if finger {
                    [0.78, 0.57, 0.47]
                } else {
                    [0.12, 0.12, 0.18]
                };
                let base = tone.map(|c| 0.97 * (1.0 - o) + c * o);
                image::Rgb(base.map(|paper| mix(paper, 0.05, v)))
            });
            encode(DynamicImage::ImageRgb8(img), None)
        }
        Style::Backdrop => {
            let fill = Gradient::new(w as f32, h as f32, rng);
            let img = RgbImage::from_fn(w, h, |x, y| {
                let (paper, v) = (fill.at(x as f32, y as f32), cov.v[(y * w + x) as usize]);
                image::Rgb([0, 1, 2].map(|c| mix(paper[c], fill.ink[c], v)))
            });
            encode(DynamicImage::ImageRgb8(img), None)
        }
        Style::UnevenLight => {
            let (gx, gy) = (rng.range(-0.5, 0.5), rng.range(-0.5, 0.5));
            let noise_seed = rng.next_u64();
            let img = RgbImage::from_fn(w, h, |x, y| {
                let light =
                    0.75 + gx * (x as f32 / w as f32 - 0.5) + gy * (y as f32 / h as f32 - 0.5);
                let grain = (Rng::derive(noise_seed, &[(y * w + x) as u64]).uniform() - 0.5) * 0.06;
                let v = cov.v[(y * w + x) as usize];
                let g = mix(light + grain, 0.15 * light, v);
                image::Rgb([g, g, g.saturating_sub(8)])
            });
            encode(DynamicImage::ImageRgb8(img), None)
        }
        _ => {
            let img = RgbImage::from_fn(w, h, |x, y| {
                let g = mix(1.0, 0.0, cov.v[(y * w + x) as usize]);
                image::Rgb([g, g, g])
            });
            let quality = (style == Style::Jpeg).then(|| 25 + rng.below(30) as u8);
            encode(DynamicImage::ImageRgb8(img), quality)
        }
    }
}

/// A paint program's gradient fill behind the digit, and the ink drawn over it.
struct Gradient {
    /// Colours at the start and the end of the blend, RGB in 0..1.
    from: [f32; 3],
    to: [f32; 3],
    ink: [f32; 3],
    /// Where the blend starts (a point of the canvas), its direction (unit) and length.
    origin: (f32, f32),
    direction: (f32, f32),
    length: f32,
    shape: GradientShape,
}

#[derive(Clone, Copy, PartialEq)]
enum GradientShape {
    Linear,
    Reflected,
    Radial,
}

/// Relative luminance of an RGB colour (0..1), as the reader's grey map weighs it.
fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

impl Gradient {
    /// Two colours at least a little apart in lightness, the darker still clearly lighter than
    /// the ink (dark, often coloured), so the digit stays legible over the whole canvas.
    fn new(w: f32, h: f32, rng: &mut Rng) -> Self {
        let colour = |rng: &mut Rng, lightness: (f32, f32)| loop {
            let c = [rng.uniform(), rng.uniform(), rng.uniform()];
            if (lightness.0..=lightness.1).contains(&luminance(c)) {
                return c;
            }
        };
        let ink = colour(rng, (0.0, 0.15));
        let dark = colour(rng, (luminance(ink) + 0.3, 0.65));
        let light = colour(rng, (luminance(dark) + 0.15, 1.0));
        let (from, to) = if rng.uniform() < 0.5 {
            (dark, light)
        } else {
            (light, dark)
        };
        let angle = rng.range(0.0, std::f32::consts::TAU);
        let shape = match rng.below(3) {
            0 => GradientShape::Linear,
            1 => GradientShape::Reflected,
            _ => GradientShape::Radial,
        };
        Gradient {
            from,
            to,
            ink,
            origin: (rng.range(0.0, w), rng.range(0.0, h)),
            direction: (angle.cos(), angle.sin()),
            length: w.max(h) * rng.range(0.2, 0.8),
            shape,
        }
    }

    fn at(&self, x: f32, y: f32) -> [f32; 3] {
        let (dx, dy) = (x - self.origin.0, y - self.origin.1);
        let along = dx * self.direction.0 + dy * self.direction.1;
        let t = match self.shape {
            GradientShape::Linear => along / self.length,
            GradientShape::Reflected => along.abs() / self.length,
            GradientShape::Radial => dx.hypot(dy) / self.length,
        }
        .clamp(0.0, 1.0);
        [0, 1, 2].map(|c| self.from[c] * (1.0 - t) + self.to[c] * t)
    }
}

/// One MNIST digit (784 bytes) redrawn as an image file in `style`.
pub fn render_digit(digit: &[u8], style: Style, rng: &mut Rng) -> Vec<u8> {
    let (w, h, size) = if style == Style::Small {
        // The digit fills the canvas nearly to its edges, as MNIST's own 28x28 do.
        let side = 28 + rng.below(37);
        (side, side, side as f32 * rng.range(0.75, 1.2))
    } else {
        let (w, h) = (200 + rng.below(300), 200 + rng.below(300));
        // The 28-pixel field spans `size` canvas pixels; the ink is about 20/28 of it.
        (w, h, w.min(h) as f32 * rng.range(0.45, 1.1))
    };
    let (x0, y0, x1, y1) = ink_box(digit);
    let s = size / 28.0;
    let (iw, ih) = ((x1 - x0) as f32 * s, (y1 - y0) as f32 * s);
    let x = rng.range(0.0, (w as f32 - iw).max(1.0)) - x0 as f32 * s;
    let y = rng.range(0.0, (h as f32 - ih).max(1.0)) - y0 as f32 * s;
    let angle = if style == Style::Rotated {
        rng.range(-15.0, 15.0).to_radians()
    } else {
        0.0
    };
    let mut cov = Coverage::new(w, h);
    cov.draw(digit, 0, x, y, size, angle);
    finish(cov, style, size, rng)
}

/// Several MNIST digits written side by side on one line, as an image in `style` (rotation
/// aside: the line stays level): varied sizes and spacing, some touching.
pub fn render_number(digits: &[&[u8]], style: Style, rng: &mut Rng) -> Line {
    let gap = |rng: &mut Rng, size: f32| {
        if rng.uniform() < 0.15 {
            -0.02 * size
        } else {
            rng.range(0.05, 0.35) * size
        }
    };
    render_line(digits, rng, gap, 0.1, style)
}

/// The `index`th of a seeded series of numbers of 2-6 digits drawn from `digits`, written by
/// [`render_number`] in `style`: the line, and the number it shows.
pub fn number_from(digits: &Digits, style: Style, seed: u64, index: usize) -> (Line, String) {
    let mut rng = Rng::derive(seed, &[99, index as u64]);
    let len = 2 + rng.below(5);
    let picked: Vec<usize> = (0..len).map(|_| rng.below(digits.len())).collect();
    let images: Vec<&[u8]> = picked.iter().map(|&j| digits.image(j)).collect();
    let text = picked
        .iter()
        .map(|&j| char::from(b'0' + digits.labels[j]))
        .collect();
    (render_number(&images, style, &mut rng), text)
}

/// Two digits written so close that their ink touches or overlaps, as a PNG: what a reader of
/// numbers must not take for one digit.
pub fn render_touching_pair(a: &[u8], b: &[u8], rng: &mut Rng) -> Vec<u8> {
    let gap = |rng: &mut Rng, size: f32| rng.range(-0.1, 0.0) * size;
    render_line(&[a, b], rng, gap, 0.1, Style::Canvas).bytes
}

/// Styles a line for teaching the number reader: the shapes of strokes people write with.
const LINE_STYLES: [Style; 5] = [
    Style::Canvas,
    Style::Canvas,
    Style::Thick,
    Style::Thin,
    Style::Blurred,
];

/// A line of digits for teaching the number reader where digits begin and end, with its ground
/// truth: wider ranges of spacing (a third touching or overlapping), size and stroke than
/// [`render_number`]'s, so the reader does not learn one generator's habits. Only ever fed
/// with training digits.
pub fn render_training_line(digits: &[&[u8]], rng: &mut Rng) -> Line {
    let gap = |rng: &mut Rng, size: f32| {
        if rng.uniform() < 0.3 {
            rng.range(-0.12, 0.0) * size
        } else {
            rng.range(0.0, 0.45) * size
        }
    };
    let style = LINE_STYLES[rng.below(LINE_STYLES.len())];
    render_line(digits, rng, gap, 0.2, style)
}

/// A synthetic line of digits and which digit drew each pixel.
#[derive(Debug, Clone)]
pub struct Line {
    /// The encoded image.
    pub bytes: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// Per pixel: the digit (0 = the leftmost) that drew the strongest ink there, before the
    /// style thickened or blurred it; [`NO_OWNER`] where none did.
    pub owner: Vec<u8>,
    pub digits: usize,
    /// How far the style may have spread ink, in pixels.
    pub spread: usize,
}

impl Line {
    /// The ground truth for this line's ink map (read from [`Line::bytes`]): ink the style
    /// spread belongs to the digit whose drawn ink is nearest.
    pub fn truth<'a>(&self, ink: &'a InkMap) -> Truth<'a> {
        let mut owner = self.owner.clone();
        spread_owners(&mut owner, self.width, self.height, self.spread);
        let mut digit_ink = vec![0f32; self.digits];
        for (&o, &v) in owner.iter().zip(&ink.ink) {
            if o != NO_OWNER {
                digit_ink[o as usize] += v;
            }
        }
        Truth {
            owner,
            ink,
            digit_ink,
        }
    }
}

/// Which digit every bit of a line's ink belongs to.
pub struct Truth<'a> {
    owner: Vec<u8>,
    ink: &'a InkMap,
    /// Each digit's total ink.
    digit_ink: Vec<f32>,
}

impl Truth<'_> {
    /// How nearly `region` holds exactly one digit: the largest share of any digit's ink that
    /// it holds (its main digit's), and the next largest (another digit's, which should be
    /// near 0: a 1 run into a 3 is a small part of the piece's ink, but all of the 1's).
    pub fn attribution(&self, region: &Region) -> (f32, f32) {
        let mut inside = vec![0f32; self.digit_ink.len()];
        for y in 0..region.h {
            for x in 0..region.w {
                if region.mask.as_ref().is_some_and(|m| !m[y * region.w + x]) {
                    continue;
                }
                let at = (region.y + y) * self.ink.width + region.x + x;
                if let Some(held) = inside.get_mut(self.owner[at] as usize) {
                    *held += self.ink.ink[at];
                }
            }
        }
        let (mut main, mut next) = (0f32, 0f32);
        for (held, total) in inside.iter().zip(&self.digit_ink) {
            let share = held / total.max(f32::MIN_POSITIVE);
            if share > main {
                (main, next) = (share, main);
            } else if share > next {
                next = share;
            }
        }
        (main, next)
    }
}

/// Gives pixels no digit drew the owner of the nearest drawn pixel up to `reach` pixels away
/// (8-connected steps), so ink a style spread out still has its digit.
fn spread_owners(owner: &mut [u8], w: usize, h: usize, reach: usize) {
    let mut frontier: Vec<usize> = (0..w * h).filter(|&p| owner[p] != NO_OWNER).collect();
    for _ in 0..reach {
        let mut next = Vec::new();
        for &p in &frontier {
            let (x, y) = (p % w, p / w);
            for ny in y.saturating_sub(1)..(y + 2).min(h) {
                for nx in x.saturating_sub(1)..(x + 2).min(w) {
                    let q = ny * w + nx;
                    if owner[q] == NO_OWNER {
                        owner[q] = owner[p];
                        next.push(q);
                    }
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
}

/// Digits on one line; `gap(rng, size)` gives the space before each digit after the first,
/// `scatter` how much each digit's size varies either way.
fn render_line(
    digits: &[&[u8]],
    rng: &mut Rng,
    mut gap: impl FnMut(&mut Rng, f32) -> f32,
    scatter: f32,
    style: Style,
) -> Line {
    let (size, margin) = if style == Style::Small {
        (rng.range(20.0, 40.0), 3.0)
    } else {
        (rng.range(90.0, 160.0), 30.0)
    };
    let s = size / 28.0;
    let boxes: Vec<_> = digits.iter().map(|d| ink_box(d)).collect();
    let mut placements = Vec::new();
    let mut cursor = margin;
    for (i, b) in boxes.iter().enumerate() {
        let scale = rng.range(1.0 - scatter, 1.0 + scatter);
        if i > 0 {
            cursor += gap(rng, size);
        }
        let x = cursor - b.0 as f32 * s * scale;
        let y = margin + rng.range(-0.05, 0.05) * size - b.1 as f32 * s * scale;
        placements.push((x, y, size * scale));
        cursor += (b.2 - b.0) as f32 * s * scale;
    }
    let (w, h) = (
        (cursor + margin) as usize,
        (size * (1.0 + scatter) + 2.0 * margin) as usize,
    );
    let mut cov = Coverage::new(w, h);
    for (id, (d, &(x, y, sz))) in digits.iter().zip(&placements).enumerate() {
        cov.draw(d, id as u8, x, y, sz, 0.0);
    }
    let owner = cov.owner.clone();
    Line {
        bytes: finish(cov, style, size, rng),
        width: w,
        height: h,
        owner,
        digits: digits.len(),
        // Thickening and blur spread ink by at most about size / 15 pixels.
        spread: (size / 12.0) as usize,
    }
}

/// A valid 1x1 PNG whose header claims `width x height` pixels (with a correct checksum):
/// the decompression-bomb shape that limits must refuse before decoding.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut p = encode(DynamicImage::ImageLuma8(GrayImage::new(1, 1)), None);
    p[16..20].copy_from_slice(&width.to_be_bytes());
    p[20..24].copy_from_slice(&height.to_be_bytes());
    // CRC-32 of the IHDR chunk's type and data.
    let mut crc = 0xffff_ffffu32;
    for &b in &p[12..29] {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xedb8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    p[29..33].copy_from_slice(&(!crc).to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seven() -> Vec<u8> {
        let mut d = vec![0u8; 784];
        for x in 6..22 {
            d[6 * 28 + x] = 255;
        }
        for y in 6..23 {
            d[y * 28 + 21 - (y - 6) / 3] = 255;
        }
        d
    }

    #[test]
    fn every_style_decodes_to_an_image_with_ink() {
        let mut rng = Rng::new(4);
        for style in Style::ALL {
            let bytes = render_digit(&seven(), style, &mut rng);
            let n = crate::normalize(&bytes, &crate::Limits::default())
                .unwrap_or_else(|e| panic!("{style:?}: {e}"));
            assert!(n.pixels.iter().sum::<f32>() > 5.0, "{style:?}");
            if style != Style::Small {
                assert_eq!(n.light_on_dark, style == Style::LightOnDark, "{style:?}");
            }
        }
    }

    #[test]
    fn backdrops_turn_and_stay_clearly_lighter_than_their_ink() {
        let mut rng = Rng::new(9);
        let mut shapes = std::collections::HashSet::new();
        for _ in 0..60 {
            let fill = Gradient::new(300.0, 200.0, &mut rng);
            shapes.insert(fill.shape as u8);
            let lightness: Vec<f32> = (0..30)
                .flat_map(|j| (0..20).map(move |i| (i as f32 * 15.0, j as f32 * 10.0)))
                .map(|(x, y)| luminance(fill.at(x, y)))
                .collect();
            let darkest = lightness.iter().copied().fold(1.0, f32::min);
            assert!(darkest >= luminance(fill.ink) + 0.3 - 1e-4, "{darkest}");
        }
        assert_eq!(shapes.len(), 3, "linear, reflected and radial fills");
    }

    #[test]
    fn small_canvases_are_small_and_holders_stay_clear_of_the_digit() {
        let mut rng = Rng::new(8);
        for _ in 0..20 {
            let img = crate::decode(
                &render_digit(&seven(), Style::Small, &mut rng),
                &crate::Limits::default(),
            )
            .unwrap();
            assert!((28..=64).contains(&img.width()) && img.width() == img.height());
            let mut cov = Coverage::new(300, 240);
            cov.draw(&seven(), 0, rng.range(0.0, 150.0), 40.0, 150.0, 0.0);
            let holder = cov.holder(&mut rng);
            assert!(holder.iter().any(|&o| o > 1.0), "something holds the page");
            let touching = cov
                .v
                .iter()
                .zip(&holder)
                .any(|(&v, &o)| v > 0.05 && o > 0.0);
            assert!(!touching, "the holder reaches the digit");
        }
    }

    #[test]
    fn truth_credits_each_piece_to_its_digit_whatever_the_stroke() {
        let d = seven();
        for style in [Style::Canvas, Style::Thick, Style::Thin, Style::Blurred] {
            let mut rng = Rng::new(6);
            let line = render_line(&[&d, &d], &mut rng, |_, size| 0.5 * size, 0.0, style);
            let img = crate::decode(&line.bytes, &crate::Limits::default()).unwrap();
            let ink = InkMap::from_rgba(&img).unwrap();
            let truth = line.truth(&ink);
            let segments = crate::segment(&ink);
            assert_eq!(segments.len(), 2, "{style:?}");
            let (a, b) = (&segments[0].options[0][0], &segments[1].options[0][0]);
            for piece in [a, b] {
                let (main, stray) = truth.attribution(piece);
                assert!(main > 0.95 && stray < 0.01, "{style:?}: {main} {stray}");
            }
            let (main, stray) = truth.attribution(&a.union(b));
            assert!(main > 0.95 && stray > 0.95, "{style:?}: {main} {stray}");
            let left_half = Region {
                w: a.w / 2,
                mask: None,
                ..a.clone()
            };
            let (main, stray) = truth.attribution(&left_half);
            assert!(main < 0.75 && stray < 0.01, "{style:?}: {main} {stray}");
        }
    }

    #[test]
    fn numbers_segment_into_their_digits() {
        let mut rng = Rng::new(5);
        let d = seven();
        let bytes = render_number(&[&d, &d, &d], Style::Canvas, &mut rng).bytes;
        let img = crate::decode(&bytes, &crate::Limits::default()).unwrap();
        let ink = crate::InkMap::from_rgba(&img).unwrap();
        assert_eq!(crate::segment(&ink).len(), 3);
    }
}
