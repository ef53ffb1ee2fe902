//! Reading user images: the vision pipeline followed by a model, as every front end uses it.

use crate::judge::Judge;
use crate::model::{Classify, Model, Prediction};
use crate::shipped;
use digits_vision::{
    context_view, decode, lattice, InkMap, Lattice, Limits, Normalized, Region, RgbaImage,
    VisionError, MIN_CONTRAST,
};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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

    /// The `k` (1 to 10) likeliest digits with their probabilities, likeliest first.
    pub fn top(&self, k: usize) -> Vec<(u8, f32)> {
        let mut ranked: Vec<(u8, f32)> = (0u8..).zip(self.prediction.probabilities).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(k.clamp(1, 10));
        ranked
    }
}

/// What reading an image gave: one digit, or, when a number was asked for, a number.
#[derive(Debug, Clone)]
pub enum Answer {
    Digit(Reading),
    Number(NumberReading),
}

/// Reads an image file as one digit, or as a number when `number` is set.
pub fn read_answer(
    model: &mut Model,
    bytes: &[u8],
    limits: &Limits,
    number: bool,
) -> Result<Answer, VisionError> {
    read_image_answer(model, &decode(bytes, limits)?, number)
}

/// The same for an already decoded image.
pub fn read_image_answer(
    model: &mut Model,
    image: &RgbaImage,
    number: bool,
) -> Result<Answer, VisionError> {
    Ok(if number {
        Answer::Number(read_number_image(model, image)?)
    } else {
        Answer::Digit(read_digit_image(model, image)?)
    })
}

fn reading(model: &mut Model, normalized: Normalized) -> Reading {
    let prediction = model.predict(&normalized.pixels).remove(0);
    Reading::new(prediction, normalized)
}

/// Total ink below which a normalised input counts as blank: MNIST digits carry 20 or more.
const MIN_PIXEL_INK: f32 = 3.0;

/// Classifies an already normalised 28x28 input (784 values in 0..1); a blank one is an error,
/// not a guess. So is a flat one (every value about the same: a grey or fully inked square),
/// which holds no strokes, as the image path refuses a picture with too little contrast.
pub fn read_pixels(model: &mut Model, pixels: &[f32]) -> Result<Reading, VisionError> {
    let (low, high) = pixels
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if pixels.iter().sum::<f32>() < MIN_PIXEL_INK || high - low < MIN_CONTRAST {
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

/// Runs `read` over `items` on `threads` workers of the current rayon pool (at least one, at
/// most one per item): the first reads with `model` itself, every other with its own copy (a
/// network owns its working buffers); the answers come back in input order. Bulk reading in
/// every front end (`digits predict DIR`, Python's `read_many`) goes through here, so a folder
/// reads on every core, and one image costs no copy of the model.
pub fn read_many<S: Sync, T: Send>(
    model: &mut Model,
    items: &[S],
    threads: usize,
    read: impl Fn(&mut Model, &S) -> T + Sync,
) -> Vec<T> {
    let workers = threads.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(|item| read(model, item)).collect();
    }
    let mut copies: Vec<Model> = (1..workers).map(|_| model.clone()).collect();
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    let work = |m: &mut Model| {
        let mut answers = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            answers.push((i, read(m, item)));
        }
        done.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(answers);
    };
    rayon::scope(|scope| {
        for copy in &mut copies {
            scope.spawn(|_| work(copy));
        }
        work(model);
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, answer)| answer).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Bars at different places and slants: inputs the model reads as various digits.
    fn inputs(n: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                let mut p = vec![0f32; 28 * 28];
                for y in 4..24 {
                    let x = 6 + (i % 13) + (y * (i % 5)) / 12;
                    p[y * 28 + x.min(26)] = 1.0;
                    p[y * 28 + (x + 1).min(27)] = 0.8;
                    if i % 3 == 0 {
                        p[(4 + i % 7) * 28 + y] = 1.0;
                    }
                }
                p
            })
            .collect()
    }

    #[test]
    fn read_many_answers_in_input_order_on_any_number_of_threads() {
        let mut model = shipped::by_name("cnn").unwrap().unwrap();
        let items = inputs(57);
        let one_by_one: Vec<Prediction> = items
            .iter()
            .map(|p| read_pixels(&mut model, p).unwrap().prediction)
            .collect();
        let digits: std::collections::HashSet<u8> = one_by_one.iter().map(|p| p.digit).collect();
        assert!(digits.len() > 2, "the inputs are read as several digits");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for threads in [1, 2, 3, 8] {
            let many = pool.install(|| {
                read_many(&mut model, &items, threads, |m, p| {
                    read_pixels(m, p).unwrap().prediction
                })
            });
            assert_eq!(many, one_by_one, "{threads} threads");
        }
        assert!(read_many(&mut model, &[] as &[Vec<f32>], 4, |_, _| 0).is_empty());
    }
}
