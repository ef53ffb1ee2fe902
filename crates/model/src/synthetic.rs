//! Scoring the reader on realistic images redrawn from MNIST digits (`digits realworld`): each
//! style of page, pen and light a user brings, drawn from digits the model never trained on and
//! read back through the whole pipeline, so a change to normalisation shows what it costs
//! before real images do. The CLI and the Python package both run this.

use crate::eval::{expected_calibration_error, groups_json, GroupScore};
use crate::model::{Classify, Model};
use crate::recognize::{read_digit, read_many, read_number};
use digits_data::Digits;
use digits_rng::Rng;
use digits_vision::synth::{number_from, render_digit, Style};
use digits_vision::Limits;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many images to draw, and how.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticRun {
    /// Digits redrawn in each of [`Style::ALL`].
    pub per_style: usize,
    /// Numbers of two to six digits, written on one line.
    pub numbers: usize,
    /// The style the numbers are written in.
    pub number_style: Style,
    /// The same seed draws the same images.
    pub seed: u64,
}

/// The most images of one group (a style's digits, the numbers) a run draws: figures to a
/// ten-thousandth, and the counts' memory bounded whatever a caller asks for.
pub const MAX_PER_GROUP: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    #[error("{count} {what} asked for: a run draws at most {MAX_PER_GROUP} images a group")]
    TooMany { what: &'static str, count: usize },
    #[error("the run was stopped")]
    Stopped,
}

/// An image the reader got wrong, named by what it holds and what was read
/// (`thin-test1234-is7-read1.png`, `number5-is42-read47.png`), with its encoded bytes.
pub struct Misread {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What a run scored: each style's digits, all of them together, and the numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticScore {
    pub styles: Vec<GroupScore>,
    /// For each style (in the order of `styles`), how many of its misread digits the model also
    /// misreads as the MNIST image itself: errors no reader of drawings could mend, which
    /// leaves the rest to the redraw and the normalisation.
    pub misread_as_mnist: Vec<usize>,
    pub digits: GroupScore,
    /// Numbers read exactly, every digit right and none missing or added.
    pub numbers: GroupScore,
    /// Expected calibration error of the numbers' confidence.
    pub number_calibration_error: f32,
}

impl SyntheticScore {
    /// The scores as `digits realworld --json` prints them, for `model` (its name or file).
    pub fn to_json(&self, model: &str) -> serde_json::Value {
        let as_mnist: serde_json::Map<String, serde_json::Value> = self
            .styles
            .iter()
            .zip(&self.misread_as_mnist)
            .map(|(s, &n)| (s.name.clone(), n.into()))
            .collect();
        serde_json::json!({"model": model, "styles": groups_json(&self.styles),
            "misread_as_mnist": as_mnist,
            "digit_accuracy": self.digits.accuracy(),
            "number_accuracy": self.numbers.accuracy(),
            "number_calibration_error": self.number_calibration_error,
            "numbers": self.numbers.total})
    }
}

/// Draws and reads `run`'s images of `digits` (named `source` in the misread files' names) on
/// `threads` workers. `progress` is called once per image read, from any worker: when it
/// answers false, the images not yet read are skipped and the run ends as
/// [`SyntheticError::Stopped`] (how Python's Ctrl+C stops it). `misread` is called once per
/// image read wrong; each misread digit's MNIST image is read as well (a few images a run, so
/// it costs little), to tell the model's errors from the reader's.
pub fn score_synthetic(
    model: &mut Model,
    digits: &Digits,
    source: &str,
    run: &SyntheticRun,
    threads: usize,
    progress: &(dyn Fn() -> bool + Sync),
    misread: &(dyn Fn(Misread) + Sync),
) -> Result<SyntheticScore, SyntheticError> {
    for (what, count) in [
        ("digits per style", run.per_style),
        ("numbers", run.numbers),
    ] {
        if count > MAX_PER_GROUP {
            return Err(SyntheticError::TooMany { what, count });
        }
    }
    let limits = Limits::default();
    let stopped = AtomicBool::new(false);
    let go_on = || {
        if !stopped.load(Ordering::Relaxed) && !progress() {
            stopped.store(true, Ordering::Relaxed);
        }
    };
    let (styles, misread_as_mnist): (Vec<GroupScore>, Vec<usize>) = Style::ALL
        .iter()
        .enumerate()
        .map(|(si, &style)| {
            let indices: Vec<usize> = (0..run.per_style).collect();
            // Per digit: read right, and if not, whether its MNIST image is misread too.
            let read = read_many(model, &indices, threads, |m, &i| {
                if stopped.load(Ordering::Relaxed) {
                    return (false, false);
                }
                let idx = (si * run.per_style + i) % digits.len();
                let mut rng = Rng::derive(run.seed, &[si as u64, i as u64]);
                let bytes = render_digit(digits.image(idx), style, &mut rng);
                let got = read_digit(m, &bytes, &limits)
                    .map(|r| r.prediction.digit.to_string())
                    .unwrap_or_else(|_| "none".into());
                let want = digits.labels[idx].to_string();
                go_on();
                if got != want {
                    let name = format!(
                        "{}-{source}{idx}-is{want}-read{got}.{}",
                        style.name(),
                        style.extension()
                    );
                    misread(Misread { name, bytes });
                    let plain = m.predict_bytes(digits.image(idx))[0].digit;
                    return (false, plain != digits.labels[idx]);
                }
                (true, false)
            });
            let score = GroupScore::new(
                style.name(),
                read.iter().filter(|(ok, _)| *ok).count(),
                read.len(),
            );
            (score, read.iter().filter(|(_, plain)| *plain).count())
        })
        .unzip();
    let indices: Vec<usize> = (0..run.numbers).collect();
    let numbers = read_many(model, &indices, threads, |m, &i| {
        if stopped.load(Ordering::Relaxed) {
            return (0.0, false);
        }
        let (line, want) = number_from(digits, run.number_style, run.seed, i);
        let (got, confidence) = read_number(m, &line.bytes, &limits)
            .map(|n| (n.text, n.confidence))
            .unwrap_or_else(|_| ("none".into(), 0.0));
        go_on();
        if got != want {
            let ext = run.number_style.extension();
            let name = format!("number{i}-is{want}-read{got}.{ext}");
            misread(Misread {
                name,
                bytes: line.bytes,
            });
        }
        (confidence, got == want)
    });
    if stopped.into_inner() {
        return Err(SyntheticError::Stopped);
    }
    Ok(SyntheticScore {
        digits: GroupScore::new(
            "all digits",
            styles.iter().map(|s| s.correct).sum(),
            styles.iter().map(|s| s.total).sum(),
        ),
        styles,
        misread_as_mnist,
        numbers: GroupScore::new(
            "numbers",
            numbers.iter().filter(|(_, ok)| *ok).count(),
            numbers.len(),
        ),
        number_calibration_error: expected_calibration_error(&numbers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Three digits: a bar drawn as MNIST draws a 1, and two empty images (no ink to read).
    fn digits() -> Digits {
        let mut images = vec![0u8; 3 * 784];
        for y in 4..24 {
            images[y * 28 + 13..y * 28 + 16].fill(255);
        }
        Digits::new(images, vec![1, 7, 7])
    }

    #[test]
    fn every_style_and_number_is_read_and_a_false_progress_stops_the_run() {
        let mut model = crate::shipped::by_name("cnn").unwrap().unwrap();
        let run = SyntheticRun {
            per_style: 3,
            numbers: 2,
            number_style: Style::Canvas,
            seed: 1,
        };
        let read = AtomicUsize::new(0);
        let wrong = AtomicUsize::new(0);
        let progress = || read.fetch_add(1, Ordering::Relaxed) < usize::MAX;
        let misread = |m: Misread| {
            assert!(m.name.contains("-is") && !m.bytes.is_empty(), "{}", m.name);
            wrong.fetch_add(1, Ordering::Relaxed);
        };
        let score = score_synthetic(&mut model, &digits(), "test", &run, 2, &progress, &misread)
            .expect("nothing stopped it");
        let too_many = SyntheticRun {
            numbers: MAX_PER_GROUP + 1,
            ..run
        };
        let e = score_synthetic(
            &mut model,
            &digits(),
            "test",
            &too_many,
            1,
            &progress,
            &misread,
        );
        assert!(
            matches!(
                e,
                Err(SyntheticError::TooMany {
                    what: "numbers",
                    ..
                })
            ),
            "{e:?}"
        );
        assert_eq!(read.load(Ordering::Relaxed), 16 * 3 + 2);
        assert_eq!(score.styles.len(), 16);
        assert!(score.styles.iter().all(|s| s.total == 3));
        assert_eq!((score.digits.total, score.numbers.total), (48, 2));
        // The empty sevens are never read right: at least two of each style's three are wrong.
        assert!(score.digits.correct <= 16, "{score:?}");
        // Of those, the ones the model misreads as MNIST images too: the two sevens wherever
        // it reads an empty image as something else, never the bar it reads as a 1.
        let plain = model.predict_bytes(&digits().images);
        assert_eq!(plain[0].digit, 1);
        let blank_misread = 2 * usize::from(plain[1].digit != 7);
        assert!(
            score.misread_as_mnist.iter().all(|&n| n == blank_misread),
            "{score:?}"
        );
        let json = score.to_json("cnn");
        assert_eq!(json["misread_as_mnist"]["thin"], blank_misread, "{json}");
        let wrong_digits = wrong.load(Ordering::Relaxed) - (2 - score.numbers.correct);
        assert_eq!(wrong_digits, 48 - score.digits.correct);

        read.store(0, Ordering::Relaxed);
        let stop_after_five = || read.fetch_add(1, Ordering::Relaxed) < 4;
        let stopped = score_synthetic(
            &mut model,
            &digits(),
            "test",
            &run,
            1,
            &stop_after_five,
            &|_| {},
        );
        assert!(matches!(stopped, Err(SyntheticError::Stopped)));
        assert_eq!(
            read.load(Ordering::Relaxed),
            5,
            "images were read after the stop"
        );
    }
}
