//! Evaluation-mode forward passes, compiled: the layers a trained network runs in evaluation,
//! with every batch norm folded into the convolution or dense layer before it, every ReLU and
//! 2x2 max pool folded into the output pass of the layer before, dropout and flattening gone.
//!
//! Why: one image through the default CNN spent more time between the convolutions (batch-norm
//! and ReLU passes, pooling, copies) than the FMA units left for them. Training keeps the plain
//! layers, whose outputs the backward pass needs.

use crate::conv::{Conv2d, Dense};
use crate::layer::{Ctx, Layer, Mode, Shape};
use crate::network::Network;
use std::sync::atomic::{AtomicU8, Ordering};

/// The arithmetic of Winograd convolutions in evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Whichever of the two is faster on this CPU for the batch at hand ([`Precision::choose`]).
    #[default]
    Auto,
    /// bfloat16 products with f32 sums where the CPU has AVX-512 BF16 (twice the multiplies
    /// of f32 per instruction); f32 elsewhere. Inputs, outputs and every sum stay f32.
    Bf16,
    /// f32 throughout.
    F32,
}

/// From this many images a batch is read in f32 on Intel CPUs under [`Precision::Auto`].
pub const INTEL_F32_BATCH: usize = 16;

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Auto, Precision::Bf16, Precision::F32];

    /// What a batch of `batch` images computes in on this CPU at this setting, and why.
    ///
    /// The rule for `Auto` is what was measured (`bench/peers/infer_speed.sh`, BENCHMARKS.md):
    /// on AMD Zen 4 and Zen 5 bf16 reads one image and batches faster than f32 (by 1.4-1.6x
    /// for batches on Zen 4); on the Intel Xeon with AVX-512 BF16 and AMX bf16 was faster for
    /// one image but f32 faster for batches (7,400-8,000 against 6,100-6,400 images/s).
    pub fn choose(self, batch: usize) -> (Precision, &'static str) {
        if !crate::fastconv::avx512_bf16() {
            return (Precision::F32, "this CPU has no AVX-512 BF16");
        }
        match self {
            Precision::Bf16 => (Precision::Bf16, "asked for"),
            Precision::F32 => (Precision::F32, "asked for"),
            Precision::Auto if intel() && batch >= INTEL_F32_BATCH => (
                Precision::F32,
                "Intel CPU: f32 reads batches faster than bf16 there",
            ),
            Precision::Auto if intel() => (
                Precision::Bf16,
                "Intel CPU with AVX-512 BF16: bf16 reads one image faster there",
            ),
            Precision::Auto => (
                Precision::Bf16,
                "AVX-512 BF16: bf16 reads one image and batches faster than f32 here",
            ),
        }
    }

    /// What a batch of `batch` images computes in: [`Precision::Bf16`] or [`Precision::F32`].
    pub fn resolve(self, batch: usize) -> Precision {
        self.choose(batch).0
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Bf16 => "bf16",
            Precision::F32 => "f32",
        }
    }

    pub fn parse(name: &str) -> Option<Precision> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[cfg(target_arch = "x86_64")]
fn intel() -> bool {
    let id = std::arch::x86_64::__cpuid(0);
    let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    vendor == b"GenuineIntel"
}

#[cfg(not(target_arch = "x86_64"))]
fn intel() -> bool {
    false
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// The precision [`crate::Network::predict`] uses from now on, in every network.
pub fn set_precision(precision: Precision) {
    let index = Precision::ALL.iter().position(|p| *p == precision);
    PRECISION.store(index.unwrap_or(0) as u8, Ordering::Relaxed);
}

/// The setting (`Auto` unless changed); [`Precision::resolve`] says what a batch computes in.
pub fn precision() -> Precision {
    Precision::ALL[PRECISION.load(Ordering::Relaxed) as usize]
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

/// The layers as evaluation mode runs them: dropout gone, and each batch norm folded into the
/// convolution or dense layer before it where one does (before any ReLU), kept where none does.
fn fold_batch_norms(layers: &[Layer]) -> Vec<Layer> {
    let mut folded: Vec<Layer> = Vec::with_capacity(layers.len());
    for layer in layers {
        match (layer, folded.last_mut()) {
            (Layer::Dropout(_), _) => {}
            (Layer::BatchNorm(bn), Some(Layer::Conv2d(l))) if !l.relu() => {
                let (scale, shift) = bn.eval_affine();
                l.fold_affine(&scale, &shift);
            }
            (Layer::BatchNorm(bn), Some(Layer::Dense(l))) if !l.relu() => {
                let (scale, shift) = bn.eval_affine();
                l.fold_affine(&scale, &shift);
            }
            (other, _) => folded.push(other.clone()),
        }
    }
    folded
}

/// One layer of a network in evaluation mode with its batch norms folded in
/// ([`Network::eval_layers`]): what an exporter writes. Weights keep our layouts, a
/// convolution's `[(ky, kx, in) x out]` and a dense layer's `[(h, w, c) x units]`; a layer
/// without a bias has zeros.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalLayer {
    Conv {
        weight: Vec<f32>,
        bias: Vec<f32>,
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// Flattens its input.
    Dense {
        weight: Vec<f32>,
        bias: Vec<f32>,
    },
    /// A batch norm with no linear layer right before it, per channel.
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    Relu,
    MaxPool {
        size: usize,
    },
    Flatten,
}

impl Network {
    /// The network as evaluation mode computes it, layer by layer.
    pub fn eval_layers(&self) -> Vec<EvalLayer> {
        let mut out = Vec::new();
        for layer in fold_batch_norms(&self.layers) {
            let (linear, relu) = match &layer {
                Layer::Conv2d(l) => {
                    let g = l.geometry();
                    let (weight, bias) = l.core.folded_weights();
                    let conv = EvalLayer::Conv {
                        weight,
                        bias,
                        kernel: g.kernel,
                        stride: g.stride,
                        padding: g.padding,
                    };
                    (conv, l.relu())
                }
                Layer::Dense(l) => {
                    let (weight, bias) = l.core.folded_weights();
                    (EvalLayer::Dense { weight, bias }, l.relu())
                }
                Layer::BatchNorm(bn) => {
                    let (scale, shift) = bn.eval_affine();
                    (EvalLayer::Affine { scale, shift }, false)
                }
                Layer::Relu(_) => (EvalLayer::Relu, false),
                Layer::MaxPool2d(p) => (EvalLayer::MaxPool { size: p.size() }, false),
                Layer::Flatten(_) => (EvalLayer::Flatten, false),
                Layer::Dropout(_) => unreachable!("evaluation has no dropout"),
            };
            out.push(linear);
            if relu {
                out.push(EvalLayer::Relu);
            }
        }
        out
    }
}

impl Plan {
    pub(crate) fn new(input: Shape, layers: &[Layer], precision: Precision) -> Self {
        let mut steps: Vec<Step> = Vec::with_capacity(layers.len());
        for layer in &fold_batch_norms(layers) {
            let last = steps.last_mut();
            match (layer, last) {
                (Layer::Flatten(_), _) => {}
                (Layer::Conv2d(l), _) => steps.push(Step::Conv {
                    layer: l.clone(),
                    pool: false,
                }),
                (Layer::Dense(l), _) => steps.push(Step::Dense(l.clone())),
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
        net.plans
            .iter()
            .flatten()
            .next()
            .expect("predicted")
            .steps
            .len()
    }

    #[test]
    fn eval_layers_fold_batch_norms_where_a_linear_layer_comes_right_before() {
        let specs = [
            conv(4, 1, false, false),
            BN,
            LayerSpec::Relu,
            POOL,
            conv(4, 0, true, true),
            BN,
            LayerSpec::Dropout { rate: 0.5 },
            LayerSpec::Dense {
                units: 3,
                relu: false,
            },
        ];
        let net = random_network(Shape::new(8, 8, 1), &specs, 5);
        let layers = net.eval_layers();
        let kinds: Vec<&str> = layers
            .iter()
            .map(|l| match l {
                EvalLayer::Conv { .. } => "conv",
                EvalLayer::Dense { .. } => "dense",
                EvalLayer::Affine { .. } => "affine",
                EvalLayer::Relu => "relu",
                EvalLayer::MaxPool { .. } => "pool",
                EvalLayer::Flatten => "flatten",
            })
            .collect();
        // The second batch norm follows a fused ReLU, so it stays a per-channel map.
        assert_eq!(
            kinds,
            ["conv", "relu", "pool", "conv", "relu", "affine", "dense"]
        );
        let EvalLayer::Conv { weight, bias, .. } = &layers[0] else {
            unreachable!()
        };
        // Folded: a scale per output channel on the weights, a shift as the bias.
        let raw = net.params().next().unwrap();
        let (scale, shift) = match &net.layers[1] {
            Layer::BatchNorm(bn) => bn.eval_affine(),
            _ => unreachable!(),
        };
        for (i, (w, r)) in weight.iter().zip(&raw.value).enumerate() {
            assert!((w - r * scale[i % 4]).abs() < 1e-6);
        }
        assert_eq!(bias, &shift);
    }

    #[test]
    fn each_setting_resolves_to_an_arithmetic_this_cpu_has() {
        let bf16 = crate::fastconv::avx512_bf16();
        for batch in [1, INTEL_F32_BATCH - 1, INTEL_F32_BATCH, 1000] {
            assert_eq!(Precision::F32.resolve(batch), Precision::F32);
            let want = if bf16 {
                Precision::Bf16
            } else {
                Precision::F32
            };
            assert_eq!(Precision::Bf16.resolve(batch), want);
            let (auto, why) = Precision::Auto.choose(batch);
            assert_ne!(auto, Precision::Auto, "{why}");
            assert!(bf16 || auto == Precision::F32);
            // bf16 reads one image faster on every CPU measured that has it.
            if batch == 1 {
                assert_eq!(auto, want, "{why}");
            }
        }
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
    }

    #[test]
    fn folded_layers_compute_what_the_plain_layers_do() {
        let fast = crate::convolutions_skip_im2col();
        // The default CNN's shape: batch norms and ReLUs fold, and so do both pools with
        // AVX-512 or AVX2; dropout goes.
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
