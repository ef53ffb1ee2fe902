//! A feed-forward stack of layers with owned activation and gradient buffers.

use crate::conv::{Pooled, Previous};
use crate::infer::{self, Plan, Precision};
use crate::layer::{Ctx, Layer, LayerSpec, Mode, Param, Shape};
use digits_rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("layer {index} ({kind}): {problem}")]
    Build {
        index: usize,
        kind: String,
        problem: String,
    },
    #[error("the network has no layers")]
    Empty,
}

#[derive(Debug, Clone)]
pub struct Network {
    input: Shape,
    specs: Vec<LayerSpec>,
    pub(crate) layers: Vec<Layer>,
    /// `acts[0]` is the input, `acts[i + 1]` the output of layer `i`.
    acts: Vec<Vec<f32>>,
    /// Gradients with respect to `acts`; `grads[0]` is only filled in gradient checks.
    pub(crate) grads: Vec<Vec<f32>>,
    batch: usize,
    /// `pooled[i]`: layer `i` is a convolution that runs the 2x2 max pool after it (layer
    /// `i + 1`) in its own passes (`Conv2d::forward_pooled`), so the full-size output
    /// between them is never stored (19 MB a batch on the reference CNN, written once and
    /// read three times).
    pub(crate) pooled: Vec<bool>,
    /// `dropped[i]`: layer `i` is a pooled convolution that also runs the dropout after its
    /// pool (layer `i + 2`) on each image's pooled outputs while they are in cache, and its
    /// mask on their gradients in its backward pass: two passes over 5 MB each way on the
    /// reference CNN, 2% of its step.
    pub(crate) dropped: Vec<bool>,
    /// The evaluation-mode layers folded for [`Network::predict`] in bf16 and in f32, each
    /// built on first use after the weights last changed.
    pub(crate) plans: [Option<Box<Plan>>; 2],
    #[cfg(test)]
    pub(crate) want_input_grad: bool,
}

impl Network {
    /// Builds the layers and initialises their weights from `seed`.
    pub fn new(input: Shape, specs: &[LayerSpec], seed: u64) -> Result<Self, NetworkError> {
        if specs.is_empty() {
            return Err(NetworkError::Empty);
        }
        let mut rng = Rng::derive(seed, &[0x1417]);
        let mut shape = input;
        let mut layers = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let kind = format!("{spec:?}");
            let layer =
                Layer::build(spec, shape, &format!("{index}"), &mut rng).map_err(|problem| {
                    NetworkError::Build {
                        index,
                        kind,
                        problem,
                    }
                })?;
            shape = layer.output_shape();
            layers.push(layer);
        }
        let n = layers.len() + 1;
        let pooled = (0..layers.len())
            .map(|i| match (&layers[i], layers.get(i + 1)) {
                (Layer::Conv2d(conv), Some(Layer::MaxPool2d(pool))) => {
                    conv.can_train_pooled() && pool.size() == 2
                }
                _ => false,
            })
            .collect::<Vec<bool>>();
        let dropped = (0..layers.len())
            .map(|i| pooled[i] && matches!(layers.get(i + 2), Some(Layer::Dropout(_))))
            .collect();
        Ok(Network {
            pooled,
            dropped,
            input,
            specs: specs.to_vec(),
            layers,
            acts: vec![Vec::new(); n],
            grads: vec![Vec::new(); n],
            batch: 0,
            plans: [None, None],
            #[cfg(test)]
            want_input_grad: false,
        })
    }

    pub fn input_shape(&self) -> Shape {
        self.input
    }

    pub fn specs(&self) -> &[LayerSpec] {
        &self.specs
    }

    pub fn output_len(&self) -> usize {
        self.layers.last().map_or(0, |l| l.output_shape().len())
    }

    fn shape_at(&self, i: usize) -> Shape {
        if i == 0 {
            self.input
        } else {
            self.layers[i - 1].output_shape()
        }
    }

    /// How many of the layers after layer `i` run inside its passes (a pool, and the dropout
    /// after it).
    fn folds(&self, i: usize) -> usize {
        match (self.pooled[i], self.dropped[i]) {
            (false, _) => 0,
            (true, dropped) => 1 + usize::from(dropped),
        }
    }

    /// Whether layer `i` runs inside the passes of a layer before it.
    fn folded(&self, i: usize) -> bool {
        (i > 0 && self.pooled[i - 1]) || (i > 1 && self.dropped[i - 2])
    }

    /// The input buffer for a batch of `batch` samples (NHWC), to be filled before `forward`.
    /// Sizes every buffer; with an unchanged batch size nothing is allocated.
    pub fn input_mut(&mut self, batch: usize) -> &mut [f32] {
        if batch != self.batch {
            for i in 0..self.acts.len() {
                // Nobody stores or reads the input of a layer folded into the one before.
                let skipped = self.folded(i);
                let len = if skipped {
                    0
                } else {
                    batch * self.shape_at(i).len()
                };
                self.acts[i].resize(len, 0.0);
                self.grads[i].resize(len, 0.0);
            }
            self.batch = batch;
        }
        &mut self.acts[0]
    }

    /// Runs the batch in `input_mut` through the network and returns the logits.
    /// `seed` draws this step's dropout masks. Work is split over the current rayon pool.
    pub fn forward(&mut self, mode: Mode, seed: u64) -> &[f32] {
        let groups = rayon::current_num_threads();
        let mut index = 0;
        while index < self.layers.len() {
            let folds = self.folds(index);
            let (done, rest) = self.acts.split_at_mut(index + 1);
            let ctx = Ctx {
                mode,
                seed,
                index,
                groups,
            };
            let (layer, after) = self.layers[index..]
                .split_first_mut()
                .expect("index is a layer");
            match layer {
                Layer::Conv2d(conv) if folds > 0 => {
                    let dropout = match after.get_mut(1) {
                        Some(Layer::Dropout(dropout)) if folds == 2 => dropout.start(
                            self.batch,
                            Ctx {
                                index: index + 2,
                                ..ctx
                            },
                        ),
                        _ => None,
                    };
                    conv.forward_pooled(&done[index], &mut rest[folds], self.batch, dropout);
                    index += folds;
                }
                layer => layer.forward(&done[index], &mut rest[0], self.batch, ctx),
            }
            index += 1;
        }
        &self.acts[self.layers.len()]
    }

    /// Back-propagates the gradient of the loss with respect to the logits of the last
    /// `forward`, leaving each parameter's gradient in its `grad`.
    pub fn backward(&mut self, dlogits: &[f32]) {
        let last = self.layers.len();
        let n = self.grads[last].len();
        self.grads[last].copy_from_slice(&dlogits[..n]);
        #[cfg(test)]
        let want_input_grad = self.want_input_grad;
        #[cfg(not(test))]
        let want_input_grad = false;
        for index in (0..last).rev() {
            if self.folded(index) {
                continue;
            }
            // A pooled convolution's outputs and gradients are those of the last layer folded
            // into it.
            let folds = self.folds(index);
            let out = index + 1 + folds;
            let (lo, hi) = self.grads.split_at_mut(index + 1);
            let dx = (index > 0 || want_input_grad).then_some(&mut lo[index][..]);
            let (x, batch) = (&self.acts[index], self.batch);
            let (y, dy) = (&self.acts[out], &mut hi[out - index - 1][..]);
            let (before, layers) = self.layers.split_at_mut(index);
            let (layer, after) = layers.split_first_mut().expect("index is a layer");
            let pooled = (folds > 0).then(|| Pooled {
                dropout: match after.get(1) {
                    Some(Layer::Dropout(dropout)) if folds == 2 => dropout.drawn(),
                    _ => None,
                },
            });
            match (layer, before) {
                (Layer::Conv2d(conv), [Layer::Conv2d(first)]) if !want_input_grad => {
                    let previous = Previous::of(first, &self.acts[0]);
                    if conv.backward(pooled, x, y, dy, dx, batch, previous) {
                        break;
                    }
                }
                (Layer::Conv2d(conv), _) => {
                    conv.backward(pooled, x, y, dy, dx, batch, None);
                }
                (layer, _) => layer.backward(x, y, dy, dx, batch),
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn input_grad(&self) -> &[f32] {
        &self.grads[0]
    }

    /// Logits for `batch` samples (evaluation mode), through the folded layers at the
    /// process-wide [`infer::precision`].
    pub fn predict(&mut self, inputs: &[f32], batch: usize) -> &[f32] {
        self.predict_at(inputs, batch, infer::precision())
    }

    /// [`Network::predict`] at `precision`. The same logits as [`Network::forward`] in
    /// evaluation mode, up to rounding.
    pub fn predict_at(&mut self, inputs: &[f32], batch: usize, precision: Precision) -> &[f32] {
        let n = batch * self.input.len();
        let precision = precision.resolve(batch);
        let slot = usize::from(precision == Precision::F32);
        let plan = self.plans[slot]
            .get_or_insert_with(|| Box::new(Plan::new(self.input, &self.layers, precision)));
        plan.run(&inputs[..n], batch, rayon::current_num_threads())
    }

    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(|l| l.params())
    }

    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.plans = [None, None];
        self.layers.iter_mut().flat_map(|l| l.params_mut())
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.params()
            .filter(|p| p.trainable)
            .map(|p| p.value.len())
            .sum()
    }
}
