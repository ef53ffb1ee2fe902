//! Reading user images: the vision pipeline followed by a model, as every front end uses it.

use crate::judge::Judge;
use crate::model::{Classify, Model, Prediction};
use crate::shipped;
use digits_vision::{
    context_view, decode, lattice, InkMap, Lattice, Limits, Normalized, Region, RgbaImage,
    VisionError,
};
use std::cell::RefCell;

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
    /// Probability that every digit is right (product of the digits' confidences; with the
    /// judge's probabilities multiplied in too, it came out worse calibrated: BENCHMARKS.md).
    pub confidence: f32,
    pub uncertain: bool,
}

impl Reading {
    fn new(prediction: Prediction, normalized: Normalized) -> Self {
        Reading {
            uncertain: prediction.confidence < UNCERTAIN_BELOW,
            prediction,
            normalized,
        }
    }
}

fn reading(model: &mut Model, normalized: Normalized) -> Reading {
    let prediction = model.predict(&normalized.pixels).remove(0);
    Reading::new(prediction, normalized)
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

thread_local! {
    /// The number reader's judge, one per thread (a network owns its working buffers).
    static JUDGE: RefCell<Option<Judge>> = const { RefCell::new(None) };
}

/// `f` with this thread's judge. The judge is taken out meanwhile: while its network waits for
/// the pool's threads, rayon may start another reading on this thread, which then builds a
/// judge of its own instead of finding this one borrowed.
fn with_judge<T>(f: impl FnOnce(&mut Judge) -> T) -> T {
    let mut judge = JUDGE.take().unwrap_or_else(|| {
        shipped::judge().expect("the shipped judge is verified by the test suite")
    });
    let out = f(&mut judge);
    JUDGE.set(Some(judge));
    out
}

/// Reads a number written on one line. Segmentation is settled by recognition: each blob is
/// read whole or cut into pieces, and neighbouring blobs that nearly touch are also read as one
/// digit (a broken stroke); every piece is read by the model and weighed by the judge
/// ([`crate::judge`]: is this piece, among its neighbours, one whole digit?), and dynamic
/// programming keeps the reading that is likeliest as a whole: the product over its pieces of
/// the judge's probability times the model's confidence.
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
    let lattice = lattice(&ink);
    let pieces: Vec<&Region> = lattice.steps.iter().flat_map(|s| &s.pieces).collect();
    let views: Vec<f32> = pieces
        .iter()
        .flat_map(|r| context_view(&ink, r, &lattice.line))
        .collect();
    let whole = with_judge(|judge| judge.whole(&views));
    // Where each step's pieces start in `pieces`.
    let starts: Vec<usize> = lattice
        .steps
        .iter()
        .scan(0, |at, s| {
            let here = *at;
            *at += s.pieces.len();
            Some(here)
        })
        .collect();
    // The model reads every blob whole (each segment's first step), then only the steps that
    // could still beat reading their stretch of the line as whole blobs: a step whose judge's
    // probabilities alone (the model's confidence is at most 1) fall below that is never
    // part of the best reading, so skipping it changes nothing.
    let whole_step: Vec<usize> = (0..lattice.segments)
        .map(|s| {
            lattice
                .steps
                .iter()
                .position(|step| step.from == s)
                .expect("every segment starts a step")
        })
        .collect();
    let mut read = |chosen: &[usize]| -> Result<Vec<(Normalized, Prediction)>, VisionError> {
        let batch = chosen
            .iter()
            .map(|&i| ink.normalize(pieces[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let pixels: Vec<f32> = batch
            .iter()
            .flat_map(|n| n.pixels.iter().copied())
            .collect();
        Ok(batch.into_iter().zip(model.predict(&pixels)).collect())
    };
    let score = |p: &Prediction, w: f32| (p.confidence * w).max(1e-12).ln();
    let firsts: Vec<usize> = whole_step.iter().map(|&k| starts[k]).collect();
    let first_reads = read(&firsts)?;
    let as_blobs: Vec<f32> = first_reads
        .iter()
        .zip(&firsts)
        .map(|((_, p), &i)| score(p, whole[i]))
        .collect();
    let rest: Vec<usize> = lattice
        .steps
        .iter()
        .enumerate()
        .filter(|(k, step)| {
            let pieces = starts[*k]..starts[*k] + step.pieces.len();
            let best_case: f32 = whole[pieces].iter().map(|w| w.max(1e-12).ln()).sum();
            !whole_step.contains(k) && best_case >= as_blobs[step.from..step.to].iter().sum()
        })
        .flat_map(|(k, step)| starts[k]..starts[k] + step.pieces.len())
        .collect();
    let rest_reads = read(&rest)?;
    let mut reads: Vec<Option<(Normalized, Prediction)>> = vec![None; pieces.len()];
    for (i, r) in firsts
        .into_iter()
        .chain(rest)
        .zip(first_reads.into_iter().chain(rest_reads))
    {
        reads[i] = Some(r);
    }
    // A piece's score: the log-probability that it is one whole digit, and this one.
    let step_scores: Vec<f32> = lattice
        .steps
        .iter()
        .enumerate()
        .map(|(k, step)| {
            (starts[k]..starts[k] + step.pieces.len())
                .map(|i| {
                    reads[i]
                        .as_ref()
                        .map_or(f32::NEG_INFINITY, |(_, p)| score(p, whole[i]))
                })
                .sum()
        })
        .collect();
    let chosen = best_path(&lattice, &step_scores);
    let mut digits = Vec::new();
    for k in chosen {
        for read in &mut reads[starts[k]..][..lattice.steps[k].pieces.len()] {
            // Every blob read whole scores above minus infinity, so the best path never
            // holds a piece that was not read.
            let Some((normalized, prediction)) = read.take() else {
                unreachable!("the best reading holds only pieces that were read");
            };
            digits.push(Reading::new(prediction, normalized));
        }
    }
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

/// The steps of the best-scoring path through the lattice, left to right (dynamic
/// programming: steps come in order of the segment they start at).
fn best_path(lattice: &Lattice, step_scores: &[f32]) -> Vec<usize> {
    // best[i]: the best total for the first i segments, and the step that ends it there.
    let mut best: Vec<Option<(f32, usize)>> = vec![None; lattice.segments + 1];
    best[0] = Some((0.0, usize::MAX));
    for (k, (step, &score)) in lattice.steps.iter().zip(step_scores).enumerate() {
        let Some((base, _)) = best[step.from] else {
            continue;
        };
        if best[step.to].is_none_or(|(s, _)| base + score > s) {
            best[step.to] = Some((base + score, k));
        }
    }
    let mut path = Vec::new();
    let mut at = lattice.segments;
    while let Some((_, k)) = best[at].filter(|_| at > 0) {
        path.push(k);
        at = lattice.steps[k].from;
    }
    path.reverse();
    path
}
