//! Why numbers are misread: reads numbers built from the held-out validation digits (as
//! `digits realworld --source validation` does) and sorts each failure by its cause, using the
//! generator's record of which digit drew every pixel:
//!
//! - no right cut on offer: no path through the reader's lattice has every piece hold at least
//!   85% of one digit's ink and at most 15% of any other's;
//! - the reader chose wrong: such a path exists and the model reads it right;
//! - misread alone too: the model misreads a digit even given only that digit's own ink;
//! - misread in the line: the right cut leaves enough of a neighbour to change the reading.
//!
//! `DIGITS_DATA_DIR=../shared/data/mnist cargo run --release -p digits-model --example
//! number_failures -- [NUMBERS] [--list]`

use digits_data::split::{split, SEED, VALIDATION};
use digits_data::DataDir;
use digits_model::recognize::read_number;
use digits_model::{shipped, Classify, Model};
use digits_vision::synth::{number_from, Style, Truth};
use digits_vision::{decode, lattice, InkMap, Lattice, Limits, Region};
use rayon::prelude::*;

const CAUSES: [&str; 5] = [
    "read right",
    "no right cut on offer",
    "the reader chose wrong",
    "misread alone too",
    "misread in the line",
];

/// The path through the lattice whose pieces best hold one digit each, if every piece does.
fn right_cut(lattice: &Lattice, truth: &Truth) -> Option<Vec<Region>> {
    let mut best: Vec<Option<(f32, Vec<Region>)>> = vec![None; lattice.segments + 1];
    best[0] = Some((0.0, Vec::new()));
    for step in &lattice.steps {
        let Some((base, path)) = best[step.from].clone() else {
            continue;
        };
        let shares: Vec<(f32, f32)> = step.pieces.iter().map(|p| truth.attribution(p)).collect();
        if shares
            .iter()
            .any(|&(main, stray)| main < 0.85 || stray > 0.15)
        {
            continue;
        }
        let total = base
            + shares
                .iter()
                .map(|(m, s)| m.ln() + (1.0 - s).ln())
                .sum::<f32>();
        if best[step.to].as_ref().is_none_or(|(t, _)| total > *t) {
            let mut path = path;
            path.extend(step.pieces.iter().cloned());
            best[step.to] = Some((total, path));
        }
    }
    best[lattice.segments].take().map(|(_, path)| path)
}

fn read_regions(model: &mut Model, ink: &InkMap, regions: &[Region]) -> String {
    let pixels: Vec<f32> = regions
        .iter()
        .flat_map(|r| ink.normalize(r).map(|n| n.pixels).unwrap_or_default())
        .collect();
    model
        .predict(&pixels)
        .iter()
        .map(|p| char::from(b'0' + p.digit))
        .collect()
}

fn cause(model: &mut Model, digits: &digits_data::Digits, i: usize) -> (usize, String) {
    let (line, want) = number_from(digits, Style::Canvas, 1, i);
    let got = read_number(model, &line.bytes, &Limits::default())
        .map(|n| n.text)
        .unwrap_or_default();
    let what = format!("number {i}: {want} read as {got}");
    if got == want {
        return (0, what);
    }
    let image = decode(&line.bytes, &Limits::default()).expect("the generator's PNG");
    let ink = InkMap::from_rgba(&image).expect("the generator's ink");
    let truth = line.truth(&ink);
    let Some(path) = right_cut(&lattice(&ink), &truth).filter(|p| p.len() == want.len()) else {
        return (1, what);
    };
    if read_regions(model, &ink, &path) == want {
        return (2, what);
    }
    let alone: Vec<Region> = (0..want.len())
        .map(|d| Region {
            x: 0,
            y: 0,
            w: ink.width,
            h: ink.height,
            mask: Some(line.owner.iter().map(|&o| o as usize == d).collect()),
        })
        .collect();
    if read_regions(model, &ink, &alone) == want {
        (4, what)
    } else {
        (3, what)
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3000);
    let list = args.iter().any(|a| a == "--list");
    let mnist = DataDir::resolve(None)?.load()?;
    let digits = split(&mnist.train, VALIDATION, SEED)?.validation;
    let model = shipped::resolve("cnn")?;
    let results: Vec<(usize, String)> = (0..numbers)
        .into_par_iter()
        .map_init(|| model.clone(), |m, i| cause(m, &digits, i))
        .collect();
    let mut counts = [0usize; CAUSES.len()];
    for (c, what) in &results {
        counts[*c] += 1;
        if list && *c > 0 {
            println!("{}: {what}", CAUSES[*c]);
        }
    }
    for (name, n) in CAUSES.iter().zip(counts) {
        println!("{name:<24} {n:>5}");
    }
    Ok(())
}
