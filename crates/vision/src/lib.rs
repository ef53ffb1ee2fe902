//! From a user's image to what an MNIST model expects: the preprocessing stage of the workspace.
//!
//! MNIST digits are white ink on black, scaled so the longer side of the ink is 20 px (keeping
//! the aspect ratio, anti-aliased) and placed in a 28x28 field with the ink's centre of mass at
//! the centre. Real inputs are big, off-centre, dark-on-light, photographed or transparent; the
//! usual "grey, invert, squash to 28x28" reads only about a quarter of them. [`normalize`] does
//! the whole MNIST procedure, and [`segment`] splits a written number into its digits first.
//!
//! Every front end (CLI, web server, desktop app) goes through this crate, so a drawing is read
//! the same way everywhere.

mod decode;
mod deskew;
mod ink;
mod lines;
mod number;
mod resample;
pub mod synth;

pub use decode::{decode, read_file, Limits};
pub use deskew::deskew;
pub use image::RgbaImage;
pub use ink::{InkMap, Region, StrokeGrid, MIN_CONTRAST};
pub use number::{
    context_view, lattice, segment, Lattice, LineBox, Segment, Step, VIEW_CHANNELS, VIEW_H, VIEW_W,
};

/// Side of the model's input.
pub const SIDE: usize = 28;
/// Side of the box the longer side of the ink is scaled to.
pub const BOX: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VisionError {
    #[error("image is {bytes} bytes; the limit is {limit}")]
    TooManyBytes { bytes: usize, limit: usize },
    #[error("image is {width}x{height} pixels; the limit is {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("empty input (0 bytes)")]
    Empty,
    #[error("not a supported image (PNG, JPEG, BMP, GIF, WebP or TIFF)")]
    UnknownFormat,
    #[error("the image could not be decoded: {0}")]
    Decode(String),
    #[error("no ink found: the image is blank or has too little contrast to hold a digit")]
    NoInk,
}

/// A 28x28 input ready for a model (row-major, 0 = background, 1 = full ink), with where the
/// ink was found in the source image.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub pixels: Vec<f32>,
    /// Bounding box of the ink in source pixels: x, y, width, height.
    pub bbox: [u32; 4],
    /// Whether the source had light ink on a dark background.
    pub light_on_dark: bool,
}

/// Decodes an image and normalises the single digit it holds.
pub fn normalize(bytes: &[u8], limits: &Limits) -> Result<Normalized, VisionError> {
    normalize_image(&decode(bytes, limits)?)
}

/// Normalises the single digit in a decoded image (a canvas, a window's drawing).
pub fn normalize_image(image: &RgbaImage) -> Result<Normalized, VisionError> {
    normalize_ink(&InkMap::from_rgba(image)?)
}

/// Normalises the single digit of an ink map: its region (less far specks), then MNIST's
/// procedure.
pub fn normalize_ink(ink: &InkMap) -> Result<Normalized, VisionError> {
    ink.normalize(&number::digit_region(ink))
}

/// Height of the pictures [`beside`] draws.
const BESIDE_HEIGHT: u32 = 224;

/// The original image (scaled to 224 px high, at most twice as wide) beside the 28x28 the model
/// saw (enlarged 8x, ink dark on white like the original): what `--save-failures` writes, so
/// a misreading can be traced to the image or to its normalisation.
pub fn beside(original: &RgbaImage, seen: &[f32]) -> RgbaImage {
    use image::imageops::{overlay, resize, FilterType};
    let (w, h) = original.dimensions();
    let width = ((w as u64 * BESIDE_HEIGHT as u64) / h.max(1) as u64)
        .clamp(1, 2 * BESIDE_HEIGHT as u64) as u32;
    let scaled = resize(original, width, BESIDE_HEIGHT, FilterType::Triangle);
    let cell = BESIDE_HEIGHT / SIDE as u32;
    let gap = 16;
    let mut out = RgbaImage::from_pixel(
        width + gap + BESIDE_HEIGHT,
        BESIDE_HEIGHT,
        image::Rgba([255, 255, 255, 255]),
    );
    overlay(&mut out, &scaled, 0, 0);
    for (i, &v) in seen.iter().enumerate().take(SIDE * SIDE) {
        let grey = 255 - (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        let (x0, y0) = (
            width + gap + (i % SIDE) as u32 * cell,
            (i / SIDE) as u32 * cell,
        );
        for y in y0..y0 + cell {
            for x in x0..x0 + cell {
                out.put_pixel(x, y, image::Rgba([grey, grey, grey, 255]));
            }
        }
    }
    out
}
