//! The drawing: strokes kept as paths (so undo is exact) and rasterised, anti-aliased with round
//! caps and joins like the web page's canvas, into the image the recognition pipeline reads.

use digits_vision::RgbaImage;

/// Side of the drawing in image pixels (the web page's canvas is the same size).
pub const SIDE: u32 = 280;

#[derive(Debug, Clone, PartialEq)]
pub struct Stroke {
    /// Points in image pixels.
    pub points: Vec<[f32; 2]>,
    pub width: f32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Canvas {
    strokes: Vec<Stroke>,
    drawing: Option<Stroke>,
}

impl Canvas {
    pub fn begin(&mut self, at: [f32; 2], width: f32) {
        self.end();
        self.drawing = Some(Stroke {
            points: vec![at],
            width,
        });
    }

    /// Adds a point to the stroke being drawn (ignored when none is, or it barely moved).
    pub fn extend(&mut self, at: [f32; 2]) {
        if let Some(s) = &mut self.drawing {
            let last = s.points[s.points.len() - 1];
            if (at[0] - last[0]).hypot(at[1] - last[1]) >= 0.5 {
                s.points.push(at);
            }
        }
    }

    pub fn end(&mut self) {
        if let Some(s) = self.drawing.take() {
            self.strokes.push(s);
        }
    }

    /// Adds a finished stroke (a demo drawing, a test).
    pub fn push(&mut self, stroke: Stroke) {
        self.end();
        self.strokes.push(stroke);
    }

    pub fn is_drawing(&self) -> bool {
        self.drawing.is_some()
    }

    /// Removes the last stroke; false when there was none.
    pub fn undo(&mut self) -> bool {
        self.drawing.take().is_some() || self.strokes.pop().is_some()
    }

    pub fn clear(&mut self) {
        self.strokes.clear();
        self.drawing = None;
    }

    pub fn is_empty(&self) -> bool {
        self.strokes.is_empty() && self.drawing.is_none()
    }

    /// Finished strokes, then the one being drawn.
    pub fn strokes(&self) -> impl Iterator<Item = &Stroke> {
        self.strokes.iter().chain(&self.drawing)
    }

    /// Black ink on white, `SIDE x SIDE`.
    pub fn render(&self) -> RgbaImage {
        let n = SIDE as usize;
        let mut ink = vec![0f32; n * n];
        for s in self.strokes() {
            let r = s.width / 2.0;
            let mut stamp = |c: [f32; 2]| disk(&mut ink, n, c, r);
            stamp(s.points[0]);
            for pair in s.points.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let steps = ((b[0] - a[0]).hypot(b[1] - a[1]) * 2.0).ceil().max(1.0) as usize;
                for k in 1..=steps {
                    let t = k as f32 / steps as f32;
                    stamp([a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]);
                }
            }
        }
        RgbaImage::from_fn(SIDE, SIDE, |x, y| {
            let v = 255 - (ink[y as usize * n + x as usize] * 255.0).round() as u8;
            image::Rgba([v, v, v, 255])
        })
    }
}

impl Canvas {
    /// The drawing as a PNG file's bytes, as it is stored with a correction.
    pub fn png(&self) -> Result<Vec<u8>, image::ImageError> {
        let mut out = Vec::new();
        self.render()
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
        Ok(out)
    }
}

/// Ink coverage of a round brush of radius `r` centred at `c` (one pixel of anti-aliasing).
fn disk(ink: &mut [f32], n: usize, c: [f32; 2], r: f32) {
    let lo = |v: f32| (v - r - 1.0).floor().max(0.0) as usize;
    let hi = |v: f32| ((v + r + 1.0).ceil().max(0.0) as usize).min(n);
    for y in lo(c[1])..hi(c[1]) {
        for x in lo(c[0])..hi(c[0]) {
            let d = (x as f32 + 0.5 - c[0]).hypot(y as f32 + 0.5 - c[1]);
            let cover = (r + 0.5 - d).clamp(0.0, 1.0);
            let v = &mut ink[y * n + x];
            *v = v.max(cover);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strokes_render_as_thick_round_ink_and_undo_removes_them() {
        let mut c = Canvas::default();
        assert!(c.is_empty() && !c.undo());
        c.begin([40.0, 140.3], 20.0);
        c.extend([40.2, 140.3]); // too small a move to keep
        c.extend([240.0, 140.3]);
        assert!(c.is_drawing());
        c.end();
        let img = c.render();
        let at = |x, y| img.get_pixel(x, y).0[0];
        assert_eq!((at(140, 140), at(140, 131), at(140, 100)), (0, 0, 255));
        assert_eq!(at(32, 140), 0, "round cap reaches back half the width");
        assert!(at(140, 150) > 0 && at(140, 150) < 255, "anti-aliased edge");
        c.begin([140.0, 40.0], 10.0);
        c.end();
        assert_eq!(c.strokes().count(), 2);
        assert!(c.undo());
        assert_eq!(c.strokes().count(), 1);
        c.clear();
        assert!(c.is_empty());
        assert!(c.render().pixels().all(|p| p.0 == [255, 255, 255, 255]));
    }
}
