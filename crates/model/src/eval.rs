//! Accuracy, loss, confusion matrix, per-class scores, calibration and speed on a labelled set.

use crate::model::{Classify, Prediction};
use digits_data::{Digits, PIXELS};
use digits_nn::softmax_in_place;
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassScores {
    pub digit: u8,
    pub precision: f32,
    pub recall: f32,
    pub f1: f32,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub images: usize,
    pub accuracy: f32,
    pub errors: usize,
    /// Mean cross-entropy of the calibrated probabilities.
    pub loss: f32,
    /// `confusion[true][predicted]`.
    pub confusion: [[usize; 10]; 10],
    pub per_class: Vec<ClassScores>,
    /// Expected calibration error of the reported confidence (15 equal-width bins).
    pub calibration_error: f32,
    pub seconds: f32,
    pub images_per_second: f32,
}

/// Right answers out of all, for one group of images (a style, a kind of photo, numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupScore {
    pub name: String,
    pub correct: usize,
    pub total: usize,
}

impl GroupScore {
    pub fn new(name: &str, correct: usize, total: usize) -> GroupScore {
        GroupScore {
            name: name.to_string(),
            correct,
            total,
        }
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

/// Groups as JSON, as `digits realworld --json` and Python give them:
/// `{name: {correct, total, accuracy}}`.
pub fn groups_json(groups: &[GroupScore]) -> serde_json::Map<String, serde_json::Value> {
    groups
        .iter()
        .map(|g| {
            let value = serde_json::json!({"correct": g.correct, "total": g.total,
                "accuracy": g.accuracy()});
            (g.name.clone(), value)
        })
        .collect()
}

/// Classifies every image of `set` and scores the result.
pub fn evaluate(model: &mut (impl Classify + ?Sized), set: &Digits) -> Evaluation {
    let start = Instant::now();
    let predictions = model.predict_bytes(&set.images);
    score(&predictions, &set.labels, start.elapsed().as_secs_f32())
}

/// Scores predictions of a labelled set that took `seconds` to make.
pub fn score(predictions: &[Prediction], labels: &[u8], seconds: f32) -> Evaluation {
    let mut confusion = [[0usize; 10]; 10];
    let mut loss = 0f64;
    for (p, &label) in predictions.iter().zip(labels) {
        confusion[label as usize][p.digit as usize] += 1;
        loss -= (p.probabilities[label as usize].max(1e-12) as f64).ln();
    }
    let n = predictions.len();
    let correct: usize = (0..10).map(|i| confusion[i][i]).sum();
    let per_class = (0..10)
        .map(|d| {
            let tp = confusion[d][d] as f32;
            let predicted: usize = (0..10).map(|t| confusion[t][d]).sum();
            let support: usize = confusion[d].iter().sum();
            let precision = if predicted > 0 {
                tp / predicted as f32
            } else {
                0.0
            };
            let recall = if support > 0 {
                tp / support as f32
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                digit: d as u8,
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let confidences: Vec<(f32, bool)> = predictions
        .iter()
        .zip(labels)
        .map(|(p, &l)| (p.confidence, p.digit == l))
        .collect();
    Evaluation {
        images: n,
        accuracy: correct as f32 / n.max(1) as f32,
        errors: n - correct,
        loss: (loss / n.max(1) as f64) as f32,
        confusion,
        per_class,
        calibration_error: expected_calibration_error(&confidences),
        seconds,
        images_per_second: n as f32 / seconds.max(1e-9),
    }
}

/// ECE: the gap between confidence and accuracy, averaged over 15 confidence bins by weight.
pub fn expected_calibration_error(confidence_and_correct: &[(f32, bool)]) -> f32 {
    const BINS: usize = 15;
    let mut count = [0usize; BINS];
    let mut conf = [0f64; BINS];
    let mut hits = [0f64; BINS];
    for &(c, ok) in confidence_and_correct {
        let b = ((c * BINS as f32) as usize).min(BINS - 1);
        count[b] += 1;
        conf[b] += c as f64;
        hits[b] += f64::from(u8::from(ok));
    }
    let n = confidence_and_correct.len().max(1) as f64;
    (0..BINS)
        .map(|b| (conf[b] - hits[b]).abs() / n)
        .sum::<f64>() as f32
}

/// Mean negative log-likelihood of `labels` under softmax(logits / t).
fn nll(logits: &[f32], labels: &[u8], t: f32) -> f64 {
    let mut p: Vec<f32> = logits.iter().map(|v| v / t).collect();
    softmax_in_place(&mut p, 10);
    let total: f64 = p
        .chunks_exact(10)
        .zip(labels)
        .map(|(row, &l)| -(row[l as usize].max(1e-30) as f64).ln())
        .sum();
    total / labels.len().max(1) as f64
}

/// Temperature scaling: the `t` minimising the validation NLL (golden-section search on log t).
pub fn fit_temperature(model: &mut (impl Classify + ?Sized), validation: &Digits) -> f32 {
    let mut x = vec![0f32; validation.len() * PIXELS];
    digits_data::normalize_into(&validation.images, &mut x);
    let logits = model.logits(&x);
    let f = |log_t: f64| nll(&logits, &validation.labels, log_t.exp() as f32);
    let (mut a, mut b) = ((0.05f64).ln(), (20f64).ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..40 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_of_perfect_and_overconfident() {
        let perfect: Vec<(f32, bool)> = (0..100).map(|i| (1.0, i < 100)).collect();
        assert!(expected_calibration_error(&perfect) < 1e-6);
        let over: Vec<(f32, bool)> = (0..100).map(|i| (0.99, i < 50)).collect();
        assert!((expected_calibration_error(&over) - 0.49).abs() < 1e-4);
    }

    #[test]
    fn nll_prefers_the_temperature_that_matches_the_data() {
        // Logits that are right 3/4 of the time but always very confident: t > 1 must help.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let mut row = [0f32; 10];
            row[0] = 8.0;
            logits.extend_from_slice(&row);
            labels.push(if i % 4 == 0 { 1 } else { 0 });
        }
        assert!(nll(&logits, &labels, 4.0) < nll(&logits, &labels, 1.0));
    }
}
