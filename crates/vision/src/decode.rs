//! Bounded decoding: sizes are checked from the header before any pixel is decoded.

use crate::VisionError;
use image::{ImageFormat, ImageReader, RgbaImage};
use std::io::Cursor;

/// What an input may cost before it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_pixels: u64,
}

impl Default for Limits {
    /// 20 MB and 40 megapixels: any phone photo, never a decompression bomb.
    fn default() -> Self {
        Limits {
            max_bytes: 20 << 20,
            max_pixels: 40_000_000,
        }
    }
}

/// Reads an image file, at most `limits.max_bytes` plus one byte of it: a larger file is then
/// refused by [`decode`] without the rest ever being read.
pub fn read_file(path: &std::path::Path, limits: &Limits) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limits.max_bytes as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Decodes PNG, JPEG, BMP, GIF (first frame), WebP or TIFF into RGBA.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RgbaImage, VisionError> {
    if bytes.is_empty() {
        return Err(VisionError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(VisionError::TooManyBytes {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let format = image::guess_format(bytes).map_err(|_| VisionError::UnknownFormat)?;
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::Bmp
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Tiff
    ) {
        return Err(VisionError::UnknownFormat);
    }
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|e| VisionError::Decode(e.to_string()))?;
    if width == 0 || height == 0 {
        return Err(VisionError::Decode(format!(
            "the header declares a {width}x{height} image"
        )));
    }
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(VisionError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    let mut r = reader();
    let mut l = image::Limits::default();
    l.max_image_width = Some(width);
    l.max_image_height = Some(height);
    l.max_alloc = Some(limits.max_pixels * 16 + (64 << 20));
    r.limits(l);
    let img = r.decode().map_err(|e| VisionError::Decode(e.to_string()))?;
    // `into_rgba8` reuses the buffer when the file already is 8-bit RGBA (a browser canvas).
    Ok(img.into_rgba8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbaImage::new(w, h)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn refuses_empty_unknown_and_truncated() {
        let l = Limits::default();
        assert_eq!(decode(&[], &l), Err(VisionError::Empty));
        assert_eq!(decode(b"hello, world", &l), Err(VisionError::UnknownFormat));
        let p = png(40, 30);
        assert!(matches!(
            decode(&p[..p.len() - 20], &l),
            Err(VisionError::Decode(_))
        ));
        assert!(matches!(decode(&p[..20], &l), Err(VisionError::Decode(_))));
        assert_eq!(decode(&p, &l).unwrap().dimensions(), (40, 30));
    }

    #[test]
    fn checks_size_from_the_header_before_decoding() {
        // A PNG header that claims 30000x30000 pixels, with no pixel data at all.
        let p = crate::synth::png_claiming(30000, 30000);
        let e = decode(&p, &Limits::default()).unwrap_err();
        assert_eq!(
            e,
            VisionError::TooManyPixels {
                width: 30000,
                height: 30000,
                limit: 40_000_000
            }
        );
        assert!(e.to_string().contains("30000x30000"));
        let small = Limits {
            max_bytes: 10,
            max_pixels: 1,
        };
        assert!(matches!(
            decode(&png(2, 2), &small),
            Err(VisionError::TooManyBytes { .. })
        ));
    }
}
