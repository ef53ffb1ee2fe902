//! Whether a network reads real drawings better after seeing them: fine-tunes a shipped network
//! on training digits (never the validation or test ones) redrawn in `digits realworld`'s
//! styles, one drawn at random for each, and normalised by the reader, mixed with as many MNIST
//! training images (MIX per styled digit). A tenth of the styled digits is held out to measure
//! on; MNIST validation guards against forgetting (`FinetuneRequest`). Then score the written
//! model with `digits realworld --source validation --model OUT` (BENCHMARKS.md, "A shallow
//! turn of the fill").
//!
//! `DIGITS_DATA_DIR=../shared/data/mnist cargo run --release -p digits-model --example
//! style_finetune -- BASE COUNT EPOCHS PEAK_LR OUT [MIX]`

use digits_data::{DataDir, Digits};
use digits_model::finetune::{Corrections, FinetuneRequest};
use digits_model::shipped;
use digits_rng::Rng;
use digits_vision::synth::{render_digit, Style};
use digits_vision::{normalize, Limits};
use rayon::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        anyhow::bail!("usage: style_finetune BASE COUNT EPOCHS PEAK_LR OUT [MIX]");
    }
    let base_name = &args[1];
    let count: usize = args[2].parse()?;
    let epochs: usize = args[3].parse()?;
    let lr: f32 = args[4].parse()?;
    let out = std::path::PathBuf::from(&args[5]);
    let mix: usize = args.get(6).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let dir = DataDir::resolve(None)?;
    let data = dir.load()?;
    let train = digits_data::split::HeldOut::default()
        .apply(&data.train)?
        .train;
    let limits = Limits::default();
    let t = std::time::Instant::now();
    let made: Vec<(Vec<u8>, u8)> = (0..count)
        .into_par_iter()
        .filter_map(|i| {
            let mut rng = Rng::derive(77, &[i as u64]);
            let idx = rng.below(train.len());
            let style = Style::ALL[rng.below(Style::ALL.len())];
            let bytes = render_digit(train.image(idx), style, &mut rng);
            let n = normalize(&bytes, &limits).ok()?;
            let px = n
                .pixels
                .iter()
                .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            Some((px, train.labels[idx]))
        })
        .collect();
    eprintln!(
        "{} styled digits in {:.1} s",
        made.len(),
        t.elapsed().as_secs_f32()
    );
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (px, l) in made {
        images.extend(px);
        labels.push(l);
    }
    let corrections = Corrections {
        digits: Digits::new(images, labels),
        sha256: format!("styles-{count}"),
    };
    let base = shipped::resolve(base_name)?;
    let req = FinetuneRequest {
        epochs,
        learning_rate: lr,
        holdout: 0.1,
        mnist_per_correction: mix,
        repeats: 1,
        max_mnist_drop: 0.1,
        max_mnist_loss_rise: 0.1,
        seed: 1,
        resume: false,
    };
    struct Notes;
    impl digits_model::train::Observer for Notes {
        fn note(&mut self, line: &str) {
            eprintln!("{line}");
        }
        fn epoch(&mut self, s: &digits_model::train::EpochStats) {
            eprintln!("{s:?}");
        }
    }
    let r = req.run(&base, base_name, &corrections, &data, &out, &mut Notes)?;
    eprintln!(
        "held-out styled: {:.2}% -> {:.2}%; MNIST validation {:.2}% -> {:.2}% (loss {:.4} -> {:.4}); kept {}",
        100.0 * r.before.corrections.accuracy,
        100.0 * r.after.corrections.accuracy,
        100.0 * r.before.mnist_validation.accuracy,
        100.0 * r.after.mnist_validation.accuracy,
        r.before.mnist_validation.loss,
        r.after.mnist_validation.loss,
        r.kept
    );
    if let Some(why) = r.refused {
        eprintln!("{why}");
    }
    Ok(())
}
