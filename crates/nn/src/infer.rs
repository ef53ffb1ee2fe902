//! Evaluation-mode forward passes, compiled: the layers a trained network runs in evaluation,
//! with every batch norm folded into the convolution or dense layer before it, every ReLU and
//! 2x2 max pool folded into the output pass of the layer before, dropout and flattening gone.
//!
//! Why: one image through the default CNN spent more time between the convolutions (batch-norm
//! and ReLU passes, pooling, copies) than the FMA units left for them. Training keeps the plain
//! layers, whose outputs the backward pass needs.

use crate::conv::{Conv2d, Dense};
use crate::layer::{Ctx, Layer, Mode, Shape};
use std::sync::atomic::{AtomicBool, Ordering};

/// The arithmetic of Winograd convolutions in evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// bfloat16 products with f32 sums where the CPU has AVX-512 BF16 (twice the multiplies
    /// of f32 per instruction); f32 elsewhere. Inputs, outputs and every sum stay f32.
    #[default]
    Bf16,
    /// f32 throughout.
    F32,
}

impl Precision {
    /// What this precision computes in on this CPU.
    pub fn effective(self) -> Precision {
        if crate::fastconv::avx512_bf16() {
            self
        } else {
            Precision::F32
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Bf16 => "bf16",
            Precision::F32 => "f32",
        }
    }
}

static F32_ONLY: AtomicBool = AtomicBool::new(false);

/// The precision [`crate::Network::predict`] uses from now on, in every network.
pub fn set_precision(precision: Precision) {
    F32_ONLY.store(precision == Precision::F32, Ordering::Relaxed);
}

pub fn precision() -> Precision {
    if F32_ONLY.load(Ordering::Relaxed) {
        Precision::F32
    } else {
        Precision::Bf16
    }
}

/// One step of a [`Plan`].
#[derive(Debug, Clone)]
enum Step {
    /// A convolution with its batch norm and ReLU folded in, and a 2x2 max pool when `pool`.
    Conv {
        layer: Conv2d,
        pool: bool,
    },
    Dense(Dense),
    /// A layer that could not be folded, run as in training's evaluation mode.
    Plain(Layer),
}

/// A network's evaluation-mode layers, folded; built from the layers at one moment, so it is
/// rebuilt whenever the weights change.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    precision: Precision,
    steps: Vec<Step>,
    /// Output shape of each step.
    shapes: Vec<Shape>,
    /// Output of each step, sized for the last batch.
    acts: Vec<Vec<f32>>,
}

impl Plan {
    pub(crate) fn new(input: Shape, layers: &[Layer], precision: Precision) -> Self {
        let mut steps: Vec<Step> = Vec::with_capacity(layers.len());
        for layer in layers {
            let last = steps.last_mut();
            match (layer, last) {
                (Layer::Dropout(_) | Layer::Flatten(_), _) => {}
                (Layer::Conv2d(l), _) => steps.push(Step::Conv {
                    layer: l.clone(),
                    pool: false,
                }),
                (Layer::Dense(l), _) => steps.push(Step::Dense(l.clone())),
                // An affine map folds into a linear layer's weights before its ReLU and pool.
                (Layer::BatchNorm(bn), Some(Step::Conv { layer, pool: false }))
                    if !layer.relu() =>
                {
                    let (scale, shift) = bn.eval_affine();
                    layer.fold_affine(&scale, &shift);
                }
                (Layer::BatchNorm(bn), Some(Step::Dense(layer))) if !layer.relu() => {
                    let (scale, shift) = bn.eval_affine();
                    layer.fold_affine(&scale, &shift);
                }
                // ReLU commutes with max pooling, so it folds after a pool too.
                (Layer::Relu(_), Some(Step::Conv { layer, .. })) => layer.set_relu(),
                (Layer::Relu(_), Some(Step::Dense(layer))) => layer.set_relu(),
                (Layer::MaxPool2d(p), Some(Step::Conv { layer, pool }))
                    if !*pool && p.size() == 2 && layer.can_pool(precision) =>
                {
                    *pool = true
                }
                (other, _) => steps.push(Step::Plain(other.clone())),
            }
        }
        if steps.is_empty() {
            // Only dropout: the output is the input, copied.
            steps.push(Step::Plain(Layer::Flatten(Shape::flat(input.len()))));
        }
        let shapes = steps
            .iter()
            .map(|step| match step {
                Step::Conv { layer, pool } => {
                    let s = layer.output();
                    if *pool {
                        Shape::new(s.h / 2, s.w / 2, s.c)
                    } else {
                        s
                    }
                }
                Step::Dense(layer) => Shape::flat(layer.units()),
                Step::Plain(layer) => layer.output_shape(),
            })
            .collect();
        Plan {
            precision,
            acts: vec![Vec::new(); steps.len()],
            steps,
            shapes,
        }
    }

    pub(crate) fn precision(&self) -> Precision {
        self.precision
    }

    /// Outputs for the `batch` samples in `input`, split over `groups` threads.
    pub(crate) fn run(&mut self, input: &[f32], batch: usize, groups: usize) -> &[f32] {
        for (acts, shape) in self.acts.iter_mut().zip(&self.shapes) {
            acts.resize(batch * shape.len(), 0.0);
        }
        let ctx = Ctx {
            mode: Mode::Eval,
            seed: 0,
            index: 0,
            groups,
        };
        for (index, step) in self.steps.iter_mut().enumerate() {
            let (done, rest) = self.acts.split_at_mut(index);
            let x = done.last().map_or(input, |a| a.as_slice());
            let y = &mut rest[0];
            match step {
                Step::Conv { layer, pool } => layer.infer(x, y, batch, self.precision, *pool),
                Step::Dense(layer) => layer.infer(x, y, batch, self.precision),
                Step::Plain(layer) => layer.forward(x, y, batch, ctx),
            }
        }
        &self.acts[self.acts.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LayerSpec, Network};
    use digits_rng::Rng;

    fn conv(filters: usize, padding: usize, bias: bool, relu: bool) -> LayerSpec {
        LayerSpec::Conv2d {
            filters,
            kernel: 3,
            stride: 1,
            padding,
            bias,
            relu,
        }
    }

    const BN: LayerSpec = LayerSpec::BatchNorm {
        momentum: 0.1,
        eps: 1e-5,
    };
    const POOL: LayerSpec = LayerSpec::MaxPool2d { size: 2 };

    /// A network with random weights and batch-norm statistics (some scales negative, which a
    /// fold must carry through the ReLU and pool after it).
    fn random_network(input: Shape, specs: &[LayerSpec], seed: u64) -> Network {
        let mut net = Network::new(input, specs, seed).unwrap();
        let mut rng = Rng::new(seed);
        for p in net.params_mut() {
            for v in p.value.iter_mut() {
                *v = if p.name.ends_with("running_var") {
                    0.2 + rng.uniform()
                } else if p.name.ends_with("gamma") {
                    rng.normal()
                } else if p.name.ends_with("beta") || p.name.ends_with("running_mean") {
                    0.5 * rng.normal()
                } else {
                    *v
                };
            }
        }
        net
    }

    /// The plain layers in evaluation mode against the folded plan at both precisions, one
    /// sample and several; returns the plan's number of steps.
    fn check(input: Shape, specs: &[LayerSpec]) -> usize {
        let mut net = random_network(input, specs, 11);
        let mut rng = Rng::new(4);
        for batch in [1, 3] {
            let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.uniform()).collect();
            net.input_mut(batch).copy_from_slice(&x);
            let want = net.forward(Mode::Eval, 0).to_vec();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "a network that outputs zeros tests nothing");
            // f32 differs by rounding only; bfloat16 keeps 8 bits of each product's factors.
            for (precision, tolerance) in [(Precision::F32, 1e-4), (Precision::Bf16, 3e-2)] {
                let got = net.predict_at(&x, batch, precision);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= tolerance * scale,
                        "{precision:?}, batch {batch}: {g} vs {w} (scale {scale})"
                    );
                }
            }
        }
        net.plan.as_ref().expect("predicted").steps.len()
    }

    #[test]
    fn folded_layers_compute_what_the_plain_layers_do() {
        let fast = crate::fastconv::avx512();
        // The default CNN's shape: batch norms and ReLUs fold, and so do both pools with
        // AVX-512; dropout goes.
        let cnn = [
            conv(32, 1, false, false),
            BN,
            LayerSpec::Relu,
            conv(32, 1, false, false),
            BN,
            LayerSpec::Relu,
            POOL,
            conv(32, 1, false, false),
            BN,
            LayerSpec::Relu,
            POOL,
            LayerSpec::Dense {
                units: 16,
                relu: false,
            },
            BN,
            LayerSpec::Relu,
            LayerSpec::Dropout { rate: 0.3 },
            LayerSpec::Dense {
                units: 10,
                relu: false,
            },
        ];
        assert_eq!(check(Shape::new(12, 12, 1), &cnn), if fast { 5 } else { 7 });
        // The reference CNN's shape: bias and ReLU in the convolution, a pool after it.
        let reference = [
            conv(32, 0, true, true),
            conv(32, 0, true, true),
            POOL,
            LayerSpec::Dropout { rate: 0.25 },
            LayerSpec::Dense {
                units: 16,
                relu: true,
            },
            LayerSpec::Dropout { rate: 0.5 },
            LayerSpec::Dense {
                units: 10,
                relu: false,
            },
        ];
        assert_eq!(
            check(Shape::new(12, 12, 1), &reference),
            if fast { 4 } else { 5 }
        );
        // What cannot fold stays: a batch norm after a ReLU or a pool (its scale may be
        // negative), a pool over odd sides, a flatten before a dense layer goes.
        let odd = [
            conv(32, 0, true, true),
            BN,
            POOL,
            BN,
            LayerSpec::Flatten,
            LayerSpec::Dense {
                units: 10,
                relu: false,
            },
        ];
        assert_eq!(check(Shape::new(9, 9, 3), &odd), 5);
    }

    #[test]
    fn a_network_of_dropout_alone_passes_its_input_through() {
        let input = Shape::new(2, 2, 1);
        let mut net = Network::new(input, &[LayerSpec::Dropout { rate: 0.5 }], 1).unwrap();
        let x = [1.0, -2.0, 3.0, 0.5];
        assert_eq!(net.predict_at(&x, 1, Precision::Bf16), &x);
    }
}
