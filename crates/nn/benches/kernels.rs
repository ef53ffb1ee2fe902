//! The network core's kernels on the default CNN's shapes: `cargo bench -p digits-nn`.
//! Whole-model figures (and the peers) are in `digits bench` and bench/peers.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use digits_nn::{LayerSpec, Mode, Network, Shape};
use std::hint::black_box;

fn conv(filters: usize) -> LayerSpec {
    LayerSpec::Conv2d {
        filters,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: false,
        relu: true,
    }
}

/// One layer (or a short stack) on `batch` images: forward in evaluation mode, and a training
/// step's forward and backward.
fn bench_layers(c: &mut Criterion, name: &str, input: Shape, specs: &[LayerSpec]) {
    let mut group = c.benchmark_group(name);
    for batch in [1usize, 128] {
        let mut net = Network::new(input, specs, 1).expect("valid layers");
        let x: Vec<f32> = (0..batch * input.len())
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect();
        let out = batch * net.output_len();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("forward", batch), &batch, |b, &n| {
            b.iter(|| black_box(net.predict(&x, n)[0]))
        });
        let dy = vec![1e-3f32; out];
        group.bench_with_input(BenchmarkId::new("train_step", batch), &batch, |b, &n| {
            b.iter(|| {
                net.input_mut(n).copy_from_slice(&x);
                net.forward(Mode::Train, 1);
                net.backward(&dy);
            })
        });
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    // The default CNN's widest convolution: 28x28, 32 -> 32 channels (14.5 MFLOP per image).
    bench_layers(
        c,
        "conv3x3_28x28_32to32",
        Shape::new(28, 28, 32),
        &[conv(32)],
    );
    bench_layers(
        c,
        "batchnorm_28x28x32",
        Shape::new(28, 28, 32),
        &[LayerSpec::BatchNorm {
            momentum: 0.1,
            eps: 1e-5,
        }],
    );
    bench_layers(
        c,
        "maxpool2_28x28x32",
        Shape::new(28, 28, 32),
        &[LayerSpec::MaxPool2d { size: 2 }],
    );
    bench_layers(
        c,
        "dense_3136to128",
        Shape::new(7, 7, 64),
        &[LayerSpec::Dense {
            units: 128,
            relu: true,
        }],
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = kernels
}
criterion_main!(benches);
