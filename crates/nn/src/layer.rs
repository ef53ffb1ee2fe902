//! Layer descriptions, parameters and the per-layer dispatch.

use crate::conv::{Conv2d, Dense};
use crate::norm::BatchNorm;
use crate::pool::{Dropout, MaxPool2d, Relu};
use serde::{Deserialize, Serialize};

/// Per-sample shape of an activation, stored NHWC (a flat vector is `1 x 1 x len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Shape { h, w, c }
    }

    pub const fn flat(len: usize) -> Self {
        Shape { h: 1, w: 1, c: len }
    }

    pub const fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Training uses batch statistics and dropout; evaluation uses running statistics and no dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A named tensor of the model: trainable weights, or state such as BatchNorm's running mean.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
    /// Updated by the optimiser (false for running statistics).
    pub trainable: bool,
    /// Takes weight decay (weights do; biases and normalisation parameters do not).
    pub decay: bool,
}

impl Param {
    pub(crate) fn new(
        name: String,
        shape: Vec<usize>,
        value: Vec<f32>,
        trainable: bool,
        decay: bool,
    ) -> Self {
        let n = value.len();
        debug_assert_eq!(n, shape.iter().product::<usize>());
        Param {
            name,
            shape,
            value,
            grad: if trainable { vec![0.0; n] } else { Vec::new() },
            trainable,
            decay,
        }
    }
}

/// What a layer is, as stored in model files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    /// Square kernel; `relu` fuses the activation into the output pass.
    Conv2d {
        filters: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        relu: bool,
    },
    /// Fully connected; flattens its input.
    Dense {
        units: usize,
        relu: bool,
    },
    Relu,
    /// Non-overlapping max pooling (stride = size).
    MaxPool2d {
        size: usize,
    },
    /// Inverted dropout: scales kept activations by 1 / (1 - rate) while training.
    Dropout {
        rate: f32,
    },
    /// Per-channel batch normalisation.
    BatchNorm {
        momentum: f32,
        eps: f32,
    },
    Flatten,
}

impl LayerSpec {
    /// A padded 3x3 convolution without bias, batch norm (which makes a bias redundant), ReLU.
    pub fn norm_block(filters: usize) -> [LayerSpec; 3] {
        Self::conv_norm_relu(filters, 1)
    }

    /// [`LayerSpec::norm_block`] without padding: the map loses a pixel at each edge.
    pub fn unpadded_norm_block(filters: usize) -> [LayerSpec; 3] {
        Self::conv_norm_relu(filters, 0)
    }

    fn conv_norm_relu(filters: usize, padding: usize) -> [LayerSpec; 3] {
        [
            LayerSpec::Conv2d {
                filters,
                kernel: 3,
                stride: 1,
                padding,
                bias: false,
                relu: false,
            },
            LayerSpec::BatchNorm {
                momentum: 0.1,
                eps: 1e-5,
            },
            LayerSpec::Relu,
        ]
    }
}

/// Per-step facts every layer may need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub mode: Mode,
    /// Seeds this step's dropout masks.
    pub seed: u64,
    /// Index of the layer in its network (separates the dropout streams of different layers).
    pub index: usize,
    /// Threads of the rayon pool the layer runs on.
    pub groups: usize,
}

#[derive(Debug, Clone)]
pub enum Layer {
    Conv2d(Conv2d),
    Dense(Dense),
    Relu(Relu),
    MaxPool2d(MaxPool2d),
    Dropout(Dropout),
    BatchNorm(BatchNorm),
    Flatten(Shape),
}

impl Layer {
    pub(crate) fn build(
        spec: &LayerSpec,
        input: Shape,
        name: &str,
        rng: &mut digits_rng::Rng,
    ) -> Result<Self, String> {
        Ok(match *spec {
            LayerSpec::Conv2d {
                filters,
                kernel,
                stride,
                padding,
                bias,
                relu,
            } => Layer::Conv2d(Conv2d::new(
                input, filters, kernel, stride, padding, bias, relu, name, rng,
            )?),
            LayerSpec::Dense { units, relu } => {
                Layer::Dense(Dense::new(input.len(), units, relu, name, rng)?)
            }
            LayerSpec::Relu => Layer::Relu(Relu { shape: input }),
            LayerSpec::MaxPool2d { size } => Layer::MaxPool2d(MaxPool2d::new(input, size)?),
            LayerSpec::Dropout { rate } => Layer::Dropout(Dropout::new(input, rate)?),
            LayerSpec::BatchNorm { momentum, eps } => {
                Layer::BatchNorm(BatchNorm::new(input, momentum, eps, name))
            }
            LayerSpec::Flatten => Layer::Flatten(Shape::flat(input.len())),
        })
    }

    pub fn output_shape(&self) -> Shape {
        match self {
            Layer::Conv2d(l) => l.output(),
            Layer::Dense(l) => Shape::flat(l.units()),
            Layer::Relu(l) => l.shape,
            Layer::MaxPool2d(l) => l.output,
            Layer::Dropout(l) => l.shape,
            Layer::BatchNorm(l) => l.shape,
            Layer::Flatten(s) => *s,
        }
    }

    pub(crate) fn forward(&mut self, x: &[f32], y: &mut [f32], batch: usize, ctx: Ctx) {
        match self {
            Layer::Conv2d(l) => l.forward(x, y, batch),
            Layer::Dense(l) => l.forward(x, y, batch),
            Layer::Relu(_) => crate::pool::relu_forward(x, y),
            Layer::MaxPool2d(l) => l.forward(x, y, batch, ctx.groups, ctx.mode == Mode::Train),
            Layer::Dropout(l) => l.forward(x, y, batch, ctx),
            Layer::BatchNorm(l) => l.forward(x, y, batch, ctx.mode),
            Layer::Flatten(_) => y.copy_from_slice(x),
        }
    }

    /// `dy` may be overwritten (fused activations mask it in place); `dx` is `None` for the first
    /// layer, whose input gradient nobody needs.
    pub(crate) fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        batch: usize,
    ) {
        match self {
            Layer::Conv2d(l) => {
                l.backward(None, x, y, dy, dx, batch, None);
            }
            Layer::Dense(l) => l.backward(x, y, dy, dx, batch),
            Layer::Relu(_) => {
                if let Some(dx) = dx {
                    crate::pool::relu_backward(y, dy, dx)
                }
            }
            Layer::MaxPool2d(l) => {
                if let Some(dx) = dx {
                    l.backward(dy, dx, batch)
                }
            }
            Layer::Dropout(l) => {
                if let Some(dx) = dx {
                    l.backward(dy, dx)
                }
            }
            Layer::BatchNorm(l) => l.backward(x, dy, dx, batch),
            Layer::Flatten(_) => {
                if let Some(dx) = dx {
                    dx.copy_from_slice(dy)
                }
            }
        }
    }

    pub fn params(&self) -> Vec<&Param> {
        match self {
            Layer::Conv2d(l) => l.core.params(),
            Layer::Dense(l) => l.core.params(),
            Layer::BatchNorm(l) => vec![&l.gamma, &l.beta, &l.running_mean, &l.running_var],
            _ => Vec::new(),
        }
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        match self {
            Layer::Conv2d(l) => l.params_mut(),
            Layer::Dense(l) => l.params_mut(),
            Layer::BatchNorm(l) => vec![
                &mut l.gamma,
                &mut l.beta,
                &mut l.running_mean,
                &mut l.running_var,
            ],
            _ => Vec::new(),
        }
    }
}
