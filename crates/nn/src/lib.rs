//! A purpose-built CPU neural-network core for 28x28 digit classifiers.
//!
//! Why our own: on the reference CNN the Rust frameworks measured here train 2-8x slower than
//! Keras, losing the time in their convolution paths and per-op allocations (see the README).
//! This core keeps every activation in NHWC layout so a convolution is one im2col plus one GEMM
//! (`gemm` crate, AVX-512 kernels) — or, for stride-1 layers on AVX-512 or AVX2, Winograd or a
//! direct register-blocked kernel with no im2col at all (`fastconv`, over `simd`'s vectors) —
//! fuses bias and ReLU into the GEMM's output pass, stores the max-pool argmax instead of
//! searching again, and owns every buffer so a training step allocates nothing once the first
//! batch has sized them.
//! Predictions run a folded copy of the layers (`infer`), in bfloat16 products where the CPU
//! has them ([`Precision`]).
//!
//! Threads: a layer's batch is cut into runs of images that depend only on the batch size,
//! taken by whichever of the pool's threads is free (`parallel`), each thread on its own
//! scratch; gradients are summed per run, in run order, and dense layers split their backward
//! pass by inputs. A training step therefore gives the same values, bit for bit, at every
//! thread count, and is reproducible from the seed.

mod conv;
mod fastconv;
mod gemv;
mod infer;
mod layer;
mod loss;
mod network;
mod norm;
mod optim;
mod parallel;
mod pool;
mod schedule;
mod simd;

pub use infer::{precision, set_precision, EvalLayer, Precision};
pub use layer::{Layer, LayerSpec, Mode, Param, Shape};
pub use loss::{softmax_cross_entropy, softmax_in_place, SoftTargets};
pub use network::{Network, NetworkError};
pub use optim::{Optimizer, OptimizerConfig};
pub use schedule::Schedule;

/// Whether this CPU runs stride-1 convolutions without im2col (AVX-512 or AVX2, the `fastconv`
/// module). Without it every convolution is an im2col copy and a `gemm` product, which
/// allocates its packing space per call: what a caller measuring speed or memory has measured
/// depends on it.
pub fn convolutions_skip_im2col() -> bool {
    simd::Isa::detect().is_some()
}

#[cfg(test)]
mod gradcheck;
