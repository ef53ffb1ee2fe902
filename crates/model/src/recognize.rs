//! Reading user images: the vision pipeline followed by a model, as every front end uses it.

use crate::model::{Classify, Model, Prediction};
use digits_vision::{decode, segment, InkMap, Limits, Normalized, RgbaImage, VisionError};

/// Below this calibrated confidence a reading is flagged `uncertain`.
pub const UNCERTAIN_BELOW: f32 = 0.8;

/// One digit read from an image.
#[derive(Debug, Clone)]
pub struct Reading {
    pub prediction: Prediction,
    /// The 28x28 the model saw, and where the ink was.
    pub normalized: Normalized,
    pub uncertain: bool,
}

/// A number read from an image, digit by digit, left to right.
#[derive(Debug, Clone)]
pub struct NumberReading {
    pub text: String,
    pub digits: Vec<Reading>,
    /// Probability that every digit is right (product of the digits' confidences).
    pub confidence: f32,
    pub uncertain: bool,
}

fn reading(model: &mut Model, normalized: Normalized) -> Reading {
    let prediction = model.predict(&normalized.pixels).remove(0);
    Reading {
        uncertain: prediction.confidence < UNCERTAIN_BELOW,
        prediction,
        normalized,
    }
}

/// Total ink below which a normalised input counts as blank: MNIST digits carry 20 or more.
const MIN_PIXEL_INK: f32 = 3.0;

/// Classifies an already normalised 28x28 input (784 values in 0..1); a blank one is an error,
/// not a guess.
pub fn read_pixels(model: &mut Model, pixels: &[f32]) -> Result<Reading, VisionError> {
    if pixels.iter().sum::<f32>() < MIN_PIXEL_INK {
        return Err(VisionError::NoInk);
    }
    Ok(reading(
        model,
        Normalized {
            pixels: pixels.to_vec(),
            bbox: [0, 0, 28, 28],
            light_on_dark: true,
        },
    ))
}

/// Reads the single digit an image file holds.
pub fn read_digit(
    model: &mut Model,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Reading, VisionError> {
    read_digit_image(model, &decode(bytes, limits)?)
}

/// Reads the single digit in an already decoded image (a canvas, a window's drawing).
pub fn read_digit_image(model: &mut Model, image: &RgbaImage) -> Result<Reading, VisionError> {
    Ok(reading(model, digits_vision::normalize_image(image)?))
}

/// Cost (in nats) of reading a piece less than 55% of the line's height as a digit.
const SHORT_PENALTY: f32 = 8.0;

/// Reads a number written on one line. Segmentation is settled by recognition: each blob is
/// read whole or cut into pieces, and neighbouring blobs that nearly touch are also read as one
/// digit (a broken stroke); dynamic programming keeps the reading with the best total of
/// log-confidences (each extra digit multiplies in another confidence below one, so a cut must
/// earn its place), where pieces too short to be digits cost [`SHORT_PENALTY`].
pub fn read_number(
    model: &mut Model,
    bytes: &[u8],
    limits: &Limits,
) -> Result<NumberReading, VisionError> {
    read_number_image(model, &decode(bytes, limits)?)
}

/// Reads a number in an already decoded image; see [`read_number`].
pub fn read_number_image(
    model: &mut Model,
    image: &RgbaImage,
) -> Result<NumberReading, VisionError> {
    let ink = InkMap::from_rgba(image)?;
    let segments = segment(&ink);
    let n = segments.len();
    let line_height = segments
        .iter()
        .map(|s| s.options[0][0].h)
        .max()
        .unwrap_or(0);
    let mut read_all =
        |regions: &[digits_vision::Region]| -> Result<(f32, Vec<Reading>), VisionError> {
            let readings = regions
                .iter()
                .map(|r| Ok(reading(model, ink.normalize(r)?)))
                .collect::<Result<Vec<_>, VisionError>>()?;
            let score = readings
                .iter()
                .zip(regions)
                .map(|(r, region)| {
                    // On a line of digits written alike, a piece much shorter than the line is a
                    // stroke of a digit (the bar of a 5), not a digit of its own.
                    let short = if region.h * 20 < line_height * 11 {
                        SHORT_PENALTY
                    } else {
                        0.0
                    };
                    r.prediction.confidence.max(1e-6).ln() - short
                })
                .sum();
            Ok((score, readings))
        };
    // best[i]: the best reading of the first i segments.
    let mut best: Vec<Option<(f32, Vec<Reading>)>> = vec![None; n + 1];
    best[0] = Some((0.0, Vec::new()));
    for i in 0..n {
        let Some((base, so_far)) = best[i].clone() else {
            continue;
        };
        let mut offer = |to: usize, (score, readings): (f32, Vec<Reading>)| {
            let total = base + score;
            if best[to].as_ref().is_none_or(|(s, _)| total > *s) {
                best[to] = Some((total, so_far.iter().cloned().chain(readings).collect()));
            }
        };
        for option in &segments[i].options {
            offer(i + 1, read_all(option)?);
        }
        if i + 1 < n {
            let (a, b) = (&segments[i].options[0][0], &segments[i + 1].options[0][0]);
            // Only pieces that overlap horizontally, or a short stroke close to its neighbour,
            // can be one digit; well-separated full-height blobs are separate digits.
            let overlap = (a.x + a.w).min(b.x + b.w).saturating_sub(b.x.max(a.x));
            let overlapping = overlap * 10 >= a.w.min(b.w) * 3;
            let stroke_nearby =
                a.h.min(b.h) * 20 < line_height * 11 && b.x <= a.x + a.w + line_height / 5;
            let merged = a.union(b);
            if stroke_nearby || (overlapping && merged.w * 20 <= merged.h * 19) {
                offer(i + 2, read_all(&[merged])?);
            }
        }
    }
    let digits = best[n].take().map(|(_, r)| r).unwrap_or_default();
    if digits.is_empty() {
        return Err(VisionError::NoInk);
    }
    let confidence = digits
        .iter()
        .map(|d| d.prediction.confidence)
        .product::<f32>();
    Ok(NumberReading {
        text: digits
            .iter()
            .map(|d| char::from(b'0' + d.prediction.digit))
            .collect(),
        uncertain: digits.iter().any(|d| d.uncertain),
        confidence,
        digits,
    })
}
