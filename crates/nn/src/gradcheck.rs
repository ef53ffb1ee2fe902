//! Every layer's backward pass against central finite differences, through small networks.

use crate::{LayerSpec, Mode, Network, Shape};
use digits_rng::Rng;

/// Loss = sum(logits * r) for a fixed random r, so dL/dlogits = r.
fn loss(net: &mut Network, x: &[f32], batch: usize, r: &[f32]) -> f64 {
    net.input_mut(batch).copy_from_slice(x);
    let y = net.forward(Mode::Train, 7);
    y.iter()
        .zip(r)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum()
}

/// `smooth`: the network has no ReLU or max-pool, so no probe may be skipped as a kink.
fn check_with(input: Shape, specs: &[LayerSpec], batch: usize, smooth: bool) {
    let mut net = Network::new(input, specs, 3).unwrap();
    net.want_input_grad = true;
    let mut rng = Rng::new(11);
    // Inputs away from zero and from each other keep ReLU and max-pool kinks out of reach of the
    // finite-difference steps.
    let x: Vec<f32> = (0..batch * input.len())
        .map(|_| rng.range(0.2, 1.0) * if rng.uniform() < 0.5 { -1.0 } else { 1.0 })
        .collect();
    net.input_mut(batch).copy_from_slice(&x);
    let out = net.forward(Mode::Train, 7).len();
    let r: Vec<f32> = (0..out).map(|_| rng.normal()).collect();
    net.backward(&r);
    let dx = net.input_grad().to_vec();
    let grads: Vec<Vec<f32>> = net.params().map(|p| p.grad.clone()).collect();
    let eps = 1e-2f32;
    let base = loss(&mut net.clone(), &x, batch, &r);
    let (mut checked, mut kinks) = (0, 0);
    // A step that crosses a ReLU or max-pool kink shows up as unequal one-sided slopes; such
    // probes say nothing about the backward pass and are skipped (and counted).
    let mut close = |up: f64, down: f64, ana: f32, what: &str| {
        let (right, left) = ((up - base) / eps as f64, (base - down) / eps as f64);
        let num = (up - down) / (2.0 * eps as f64);
        let tol = 2e-2 * (num.abs().max(ana.abs() as f64)).max(0.05);
        if !smooth && (right - left).abs() > tol {
            kinks += 1;
            return;
        }
        checked += 1;
        assert!(
            (num - ana as f64).abs() < tol,
            "{specs:?} {what}: numeric {num} vs analytic {ana}"
        );
    };
    for i in (0..x.len()).step_by((x.len() / 40).max(1)) {
        let mut xp = x.clone();
        xp[i] += eps;
        let up = loss(&mut net.clone(), &xp, batch, &r);
        xp[i] -= 2.0 * eps;
        let down = loss(&mut net.clone(), &xp, batch, &r);
        close(up, down, dx[i], &format!("input {i}"));
    }
    for (pi, grad) in grads.iter().enumerate() {
        let len = net.params().nth(pi).unwrap().value.len();
        if !net.params().nth(pi).unwrap().trainable {
            continue;
        }
        for j in (0..len).step_by((len / 25).max(1)) {
            let probe = |delta: f32| {
                let mut n = net.clone();
                n.params_mut().nth(pi).unwrap().value[j] += delta;
                loss(&mut n, &x, batch, &r)
            };
            let name = net.params().nth(pi).unwrap().name.clone();
            close(
                probe(eps),
                probe(-eps),
                grad[j],
                &format!("param {name} [{j}]"),
            );
        }
    }
    assert!(
        checked > 10 * kinks.max(1),
        "{specs:?}: only {checked} probes checked, {kinks} hit kinks"
    );
}

fn check(input: Shape, specs: &[LayerSpec], batch: usize) {
    check_with(input, specs, batch, false)
}

#[test]
fn conv_same_padding_stride_bias_relu() {
    let specs = [
        LayerSpec::Conv2d {
            filters: 3,
            kernel: 3,
            stride: 1,
            padding: 1,
            bias: true,
            relu: true,
        },
        LayerSpec::Conv2d {
            filters: 4,
            kernel: 3,
            stride: 2,
            padding: 0,
            bias: true,
            relu: false,
        },
    ];
    check(Shape::new(7, 7, 2), &specs, 3);
}

#[test]
fn dense_relu_and_flatten() {
    let specs = [
        LayerSpec::Flatten,
        LayerSpec::Dense {
            units: 6,
            relu: true,
        },
        LayerSpec::Dense {
            units: 4,
            relu: false,
        },
    ];
    check(Shape::new(2, 3, 2), &specs, 4);
}

#[test]
fn relu_and_maxpool() {
    let specs = [
        LayerSpec::Conv2d {
            filters: 3,
            kernel: 2,
            stride: 1,
            padding: 0,
            bias: true,
            relu: false,
        },
        LayerSpec::Relu,
        LayerSpec::MaxPool2d { size: 2 },
        LayerSpec::Dense {
            units: 3,
            relu: false,
        },
    ];
    check(Shape::new(5, 5, 1), &specs, 2);
}

/// A Winograd convolution (wide enough for its fast backward pass) with the max pool after
/// it folded into its passes, where the CPU has AVX-512 or AVX2.
fn folded_pool_specs() -> [LayerSpec; 3] {
    [
        LayerSpec::Conv2d {
            filters: 32,
            kernel: 3,
            stride: 1,
            padding: 1,
            bias: true,
            relu: true,
        },
        LayerSpec::MaxPool2d { size: 2 },
        LayerSpec::Dense {
            units: 3,
            relu: false,
        },
    ]
}

/// One training step of `net`, wanting its input gradient, on three fixed random images and
/// output gradients: its logits, and its parameters' gradients followed by its input's.
fn one_step(net: &mut Network) -> (Vec<f32>, Vec<f32>) {
    let (input, batch) = (net.input_shape(), 3);
    net.want_input_grad = true;
    let mut rng = Rng::new(4);
    let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.normal()).collect();
    let r: Vec<f32> = (0..batch * net.output_len())
        .map(|_| rng.normal())
        .collect();
    net.input_mut(batch).copy_from_slice(&x);
    let logits = net.forward(Mode::Train, 1).to_vec();
    net.backward(&r);
    let grads = net.params().flat_map(|p| p.grad.clone());
    (logits, grads.chain(net.input_grad().to_vec()).collect())
}

/// The folded passes against the plain convolution and pool layers (each checked above and
/// against the definition): same logits, same gradients.
#[test]
fn a_folded_pool_trains_like_the_plain_layers() {
    let input = Shape::new(8, 6, 32);
    let mut folded = Network::new(input, &folded_pool_specs(), 3).unwrap();
    assert_eq!(folded.pooled[0], crate::convolutions_skip_im2col());
    let mut plain = folded.clone();
    plain.pooled.iter_mut().for_each(|p| *p = false);
    let (folded, plain) = (one_step(&mut folded), one_step(&mut plain));
    assert!(folded.1.iter().any(|&g| g != 0.0));
    for (a, b) in folded
        .0
        .iter()
        .zip(&plain.0)
        .chain(folded.1.iter().zip(&plain.1))
    {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "folded {a} vs plain {b}"
        );
    }
}

/// The dropout after a folded pool, run inside the convolution's passes, gives the values of
/// the dropout layer on its own, bit for bit. (Fails with the mask left out of either pass.)
#[test]
fn a_dropout_after_a_folded_pool_trains_like_the_layer() {
    let [conv, pool, dense] = folded_pool_specs();
    let specs = [conv, pool, LayerSpec::Dropout { rate: 0.5 }, dense];
    let mut folded = Network::new(Shape::new(8, 6, 32), &specs, 3).unwrap();
    assert_eq!(folded.dropped[0], crate::convolutions_skip_im2col());
    let mut alone = folded.clone();
    alone.dropped.iter_mut().for_each(|d| *d = false);
    let (folded, alone) = (one_step(&mut folded), one_step(&mut alone));
    assert!(folded.1.iter().any(|&g| g != 0.0));
    assert_eq!(folded, alone);
}

#[test]
fn batchnorm_conv_and_dense() {
    // The default network's block without its ReLU.
    let [conv, norm, _] = LayerSpec::norm_block(3);
    let specs = [
        conv,
        norm,
        LayerSpec::Dense {
            units: 5,
            relu: false,
        },
        LayerSpec::BatchNorm {
            momentum: 0.1,
            eps: 1e-5,
        },
        LayerSpec::Dense {
            units: 3,
            relu: false,
        },
    ];
    check_with(Shape::new(4, 4, 2), &specs, 5, true);
}

#[test]
fn dropout_uses_the_same_mask_forward_and_backward() {
    let specs = [
        LayerSpec::Dense {
            units: 8,
            relu: false,
        },
        LayerSpec::Dropout { rate: 0.5 },
        LayerSpec::Dense {
            units: 3,
            relu: false,
        },
    ];
    check(Shape::flat(5), &specs, 3);
}

#[test]
fn threads_do_not_change_the_results() {
    let specs = [
        LayerSpec::Conv2d {
            filters: 4,
            kernel: 3,
            stride: 1,
            padding: 1,
            bias: true,
            relu: true,
        },
        LayerSpec::MaxPool2d { size: 2 },
        LayerSpec::Dropout { rate: 0.3 },
        LayerSpec::Dense {
            units: 3,
            relu: false,
        },
    ];
    threads_agree(Shape::new(6, 6, 1), &specs);
    // Winograd with the pool and a dropout folded in, and a dense layer of more than one
    // block of inputs.
    let [conv, pool, dense] = folded_pool_specs();
    let specs = [conv, pool, LayerSpec::Dropout { rate: 0.3 }, dense];
    threads_agree(Shape::new(6, 6, 32), &specs);
    // The default network's block: batch norm between the convolution and its ReLU.
    let block = LayerSpec::norm_block(16);
    let head = [
        LayerSpec::MaxPool2d { size: 2 },
        LayerSpec::Dense {
            units: 3,
            relu: false,
        },
    ];
    let specs = [&block[..], &block, &head].concat();
    threads_agree(Shape::new(8, 8, 1), &specs);
}

fn threads_agree(input: Shape, specs: &[LayerSpec]) {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut net = Network::new(input, specs, 1).unwrap();
            let mut rng = Rng::new(2);
            net.input_mut(20).iter_mut().for_each(|v| *v = rng.normal());
            let y = net.forward(Mode::Train, 5).to_vec();
            net.backward(&y);
            (
                y,
                net.params()
                    .flat_map(|p| p.grad.clone())
                    .collect::<Vec<f32>>(),
            )
        })
    };
    let (y1, g1) = run(1);
    let (y1b, g1b) = run(1);
    assert_eq!(
        (&y1, &g1),
        (&y1b, &g1b),
        "one thread must be bit-reproducible"
    );
    let (y3, g3) = run(3);
    assert_eq!(
        (&y1, &g1),
        (&y3, &g3),
        "three threads must give one thread's values"
    );
}

/// The first layer's backward pass inside the second's (image by image, its output gradients
/// never stored) gives the gradients of the two passes one after the other. (Fails with the
/// first layer's ReLU mask or its bias gradient left out of the inner pass.)
#[test]
fn the_first_layer_trains_inside_the_second() {
    let conv = |padding| LayerSpec::Conv2d {
        filters: 32,
        kernel: 3,
        stride: 1,
        padding,
        bias: true,
        relu: true,
    };
    let specs = [
        conv(0),
        conv(1),
        LayerSpec::MaxPool2d { size: 2 },
        LayerSpec::Dense {
            units: 3,
            relu: false,
        },
    ];
    let input = Shape::new(10, 10, 1);
    let mut rng = Rng::new(6);
    let batch = 7;
    let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.normal()).collect();
    let run = |separate: bool| {
        let mut net = Network::new(input, &specs, 2).unwrap();
        // Wanting the input gradient runs the first layer's pass on its own.
        net.want_input_grad = separate;
        net.input_mut(batch).copy_from_slice(&x);
        let y = net.forward(Mode::Train, 3).to_vec();
        net.grads[1].fill(f32::NAN);
        net.backward(&y);
        let stored = net.grads[1].iter().any(|g| !g.is_nan());
        let grads: Vec<Vec<f32>> = net.params().map(|p| p.grad.clone()).collect();
        (grads, stored)
    };
    let ((inside, stored_inside), (separate, stored_separate)) = (run(false), run(true));
    // With its input gradient the first layer runs through im2col: equal up to rounding.
    for (a, b) in inside.concat().iter().zip(&separate.concat()) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} against {b}");
    }
    assert!(stored_separate);
    // Only the fast convolutions run the first layer inside the second.
    assert_eq!(stored_inside, !crate::convolutions_skip_im2col());
}
