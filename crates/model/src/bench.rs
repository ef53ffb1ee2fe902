//! Whole-model timings behind `digits bench`: what one request costs stage by stage, and how
//! many images a model classifies per second in bulk. Medians of many runs, because the machines
//! these run on are shared and noisy.

use crate::model::{Classify, Model};
use digits_data::PIXELS;
use digits_vision::{decode, InkMap, Limits};
use serde::Serialize;
use std::time::Instant;

/// Median seconds of `f` over `runs` runs, after `runs / 10 + 1` untimed warm-up runs.
fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..runs / 10 + 1 {
        f();
    }
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Median cost of each stage of reading one image file, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct StageTimes {
    pub decode_us: f64,
    pub ink_us: f64,
    pub normalize_us: f64,
    pub classify_us: f64,
    /// The sum of the stages' medians.
    pub total_us: f64,
    /// Median of the whole `read_digit` call on the bytes, stages together as every front end
    /// runs them: the baseline front ends' own overhead is measured against.
    pub read_us: f64,
}

/// Times the stages `read_digit` goes through on `bytes`, each on its own.
pub fn stage_times(
    model: &mut Model,
    bytes: &[u8],
    runs: usize,
) -> Result<StageTimes, digits_vision::VisionError> {
    let limits = Limits::default();
    let image = decode(bytes, &limits)?;
    let ink = InkMap::from_rgba(&image)?;
    let normalized = digits_vision::normalize_ink(&ink)?;
    let us = |s: f64| s * 1e6;
    let decode_us = us(median_seconds(runs, || {
        std::hint::black_box(decode(bytes, &limits).ok());
    }));
    let ink_us = us(median_seconds(runs, || {
        std::hint::black_box(InkMap::from_rgba(&image).ok());
    }));
    let normalize_us = us(median_seconds(runs, || {
        std::hint::black_box(digits_vision::normalize_ink(&ink).ok());
    }));
    let classify_us = us(median_seconds(runs, || {
        std::hint::black_box(model.predict(&normalized.pixels));
    }));
    let read_us = us(median_seconds(runs, || {
        std::hint::black_box(crate::recognize::read_digit(model, bytes, &limits).ok());
    }));
    Ok(StageTimes {
        decode_us,
        ink_us,
        normalize_us,
        classify_us,
        total_us: decode_us + ink_us + normalize_us + classify_us,
        read_us,
    })
}

/// Images per second classifying `images` (normalised, `n x 784`) in one call, best of `rounds`.
pub fn bulk_images_per_second(model: &mut Model, images: &[f32], rounds: usize) -> f64 {
    let n = images.len() / PIXELS;
    let best = (0..rounds.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(model.logits(images));
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    n as f64 / best
}
