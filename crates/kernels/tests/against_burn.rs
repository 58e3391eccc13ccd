//! `triplet_kernels::conv2d` against Burn's own flex convolution (`Conv2d::forward`): outputs
//! and the gradients of the input, weight and bias, on random shapes (batch 1 and odd, 1 and 3
//! input channels, non-square and odd sizes down to 1×1, every kernel and stride the backbones
//! use), within 1e-4 of the largest value; finite differences on small cases; and proof that the
//! fast path is the one taken.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

/// `(batch, cin, cout, [h, w], kernel, stride, padding, bias)`.
type Case = (usize, usize, usize, [usize; 2], usize, usize, usize, bool);

const CASES: &[Case] = &[
    (1, 1, 4, [1, 1], 3, 1, 1, true),
    (1, 3, 8, [5, 7], 3, 1, 1, true),
    (3, 1, 16, [28, 28], 3, 1, 1, true),
    (2, 8, 16, [9, 8], 3, 2, 1, false),
    (5, 16, 4, [14, 14], 3, 2, 1, true),
    (1, 3, 8, [2, 3], 1, 1, 0, false),
    (3, 16, 8, [7, 7], 1, 1, 0, true),
    (2, 8, 16, [7, 9], 1, 2, 0, false),
    (1, 3, 16, [23, 17], 7, 2, 3, false),
    (3, 3, 8, [1, 1], 7, 2, 3, true),
    (1, 16, 16, [4, 4], 3, 1, 1, false),
    (7, 32, 32, [14, 14], 3, 1, 1, true),
];

fn conv(device: &Device, (_, cin, cout, _, k, s, p, bias): Case) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(bias)
        .init(device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// The larger of two, NaN when either is (`f32::max` drops a NaN: `m.max(NaN) == m`, so a
/// NaN in a kernel's output would pass every `< tolerance` check).
fn nan_max(m: f32, v: f32) -> f32 {
    if m.is_nan() || v.is_nan() {
        f32::NAN
    } else {
        m.max(v)
    }
}

/// Largest difference relative to the largest |reference|; NaN when any value is NaN.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-12f32, |m, v| nan_max(m, v.abs()));
    got.iter()
        .zip(want)
        .fold(0f32, |m, (g, w)| nan_max(m, (g - w).abs()))
        / scale
}

#[test]
fn a_nan_is_never_within_tolerance() {
    assert!(rel_err(&[1.0, f32::NAN], &[1.0, 2.0]).is_nan());
    assert!(rel_err(&[1.0, 2.0], &[f32::NAN, 2.0]).is_nan());
    assert!(rel_err(&[1.0, 2.0], &[1.0, 2.5]) > 0.1);
    assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
}

/// Output, and the input, weight and bias gradients of `Σ y·r`, by `forward`.
fn run(
    conv: &Conv2d,
    x: &Tensor<4>,
    r: &Tensor<4>,
    forward: impl Fn(&Conv2d, Tensor<4>) -> Tensor<4>,
) -> [Vec<f32>; 4] {
    let x = x.clone().require_grad();
    let y = forward(conv, x.clone());
    let grads = (y.clone() * r.clone()).sum().backward();
    let bias = conv
        .bias
        .as_ref()
        .map(|b| values(b.grad(&grads).expect("a bias gradient")))
        .unwrap_or_default();
    [
        values(y),
        values(x.grad(&grads).expect("an input gradient")),
        values(conv.weight.grad(&grads).expect("a weight gradient")),
        bias,
    ]
}

#[test]
fn matches_burns_convolution_and_its_gradients() {
    assert!(
        triplet_kernels::fast_path_compiled(),
        "triplet-kernels/flex is off: the comparison would be Burn against itself"
    );
    let device = Device::flex().autodiff();
    device.seed(7);
    for &case in CASES {
        let (n, cin, cout, [h, w], k, s, p, _) = case;
        let conv = conv(&device, case);
        let x = Tensor::<4>::random([n, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
        let [oh, ow] = [(h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1];
        let r = Tensor::<4>::random([n, cout, oh, ow], Distribution::Normal(0.0, 1.0), &device);
        let before = triplet_kernels::fast_calls();
        let fast = run(&conv, &x, &r, triplet_kernels::conv2d);
        assert_eq!(
            triplet_kernels::fast_calls(),
            before + 1,
            "{case:?}: fast path"
        );
        let burn = run(&conv, &x, &r, |c, x| c.forward(x));
        for (what, (g, b)) in ["output", "dx", "dw", "db"]
            .iter()
            .zip(fast.iter().zip(&burn))
        {
            let e = rel_err(g, b);
            assert!(e < 1e-4, "{case:?} {what}: relative error {e}");
        }
    }
}

/// Central differences of `Σ y·r` in f64 arithmetic on the f32 forward, against the backward.
#[test]
fn gradients_match_finite_differences() {
    let device = Device::flex().autodiff();
    device.seed(11);
    for case in [
        (2, 2, 3, [5, 4], 3, 1, 1, true),
        (1, 3, 2, [7, 6], 3, 2, 1, true),
    ] {
        let (n, cin, cout, [h, w], k, s, p, _) = case;
        let conv = conv(&device, case);
        let x = Tensor::<4>::random([n, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
        let [oh, ow] = [(h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1];
        let r = Tensor::<4>::random([n, cout, oh, ow], Distribution::Normal(0.0, 1.0), &device);
        let [_, dx, dw, _] = run(&conv, &x, &r, triplet_kernels::conv2d);
        let objective = |conv: &Conv2d, x: &Tensor<4>| -> f64 {
            let y = triplet_kernels::conv2d(conv, x.clone());
            values(y * r.clone()).iter().map(|&v| f64::from(v)).sum()
        };
        let conv_plain = conv.valid();
        let eps = 1e-2f32;
        let xs = values(x.clone());
        for i in (0..xs.len()).step_by(7) {
            let at = |d: f32| {
                let mut v = xs.clone();
                v[i] += d;
                let t = Tensor::<4>::from_data(TensorData::new(v, [n, cin, h, w]), &device);
                objective(&conv_plain, &t.inner())
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
            let analytic = f64::from(dx[i]);
            assert!(
                (numeric - analytic).abs() < 2e-2 * analytic.abs().max(1.0),
                "dx[{i}]: {numeric} vs {analytic}"
            );
        }
        let ws = values(conv.weight.val());
        let wshape = conv.weight.dims();
        for i in (0..ws.len()).step_by(5) {
            let at = |d: f32| {
                let mut v = ws.clone();
                v[i] += d;
                let mut c = conv_plain.clone();
                c.weight = Param::from_tensor(Tensor::from_data(
                    TensorData::new(v, wshape),
                    &device.clone().inner(),
                ));
                objective(&c, &x.clone().inner())
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
            let analytic = f64::from(dw[i]);
            assert!(
                (numeric - analytic).abs() < 2e-2 * analytic.abs().max(1.0),
                "dw[{i}]: {numeric} vs {analytic}"
            );
        }
    }
}

/// Dilation, groups and other float types take Burn's path (and still give its values).
#[test]
fn other_convolutions_take_burns_path() {
    let device = Device::flex();
    let x = Tensor::<4>::random([2, 4, 9, 9], Distribution::Normal(0.0, 1.0), &device);
    for conv in [
        Conv2dConfig::new([4, 4], [3, 3])
            .with_dilation([2, 2])
            .init(&device),
        Conv2dConfig::new([4, 4], [3, 3])
            .with_groups(2)
            .init(&device),
        // "Same" at stride 2 may be asymmetric.
        Conv2dConfig::new([4, 4], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Same)
            .init(&device),
    ] {
        let before = triplet_kernels::fast_calls();
        let got = values(triplet_kernels::conv2d(&conv, x.clone()));
        assert_eq!(triplet_kernels::fast_calls(), before, "Burn's path");
        assert_eq!(got, values(conv.forward(x.clone())));
    }
}

/// `triplet_kernels::batch_norm` and `batch_norm_relu` in training against Burn's
/// `BatchNorm::forward` (and `relu` after it): output, running statistics, and the input, γ and
/// β gradients, on odd shapes (β about 0, so the ReLU cuts about half of each plane).
#[test]
fn batch_norm_matches_burns() {
    use burn::nn::BatchNormConfig;
    use burn::tensor::activation::relu;
    let device = Device::flex().autodiff();
    device.seed(3);
    for ([n, c, h, w], fused) in [
        ([1, 3, 5, 7], false),
        ([4, 8, 1, 1], false),
        ([3, 16, 14, 14], false),
        ([5, 2, 9, 4], false),
        ([1, 3, 5, 7], true),
        ([4, 8, 1, 1], true),
        ([3, 16, 14, 14], true),
        ([5, 2, 9, 4], true),
        ([2, 5, 33, 1], true),
    ] {
        let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.5, 2.0), &device);
        let r = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.3), &device);
        let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.3), &device);
        let mut results = Vec::new();
        for fast in [true, false] {
            let mut bn = BatchNormConfig::new(c).init(&device);
            bn.gamma = Param::from_tensor(gamma.clone());
            bn.beta = Param::from_tensor(beta.clone());
            let x = x.clone().require_grad();
            let y = match (fast, fused) {
                (true, false) => triplet_kernels::batch_norm(&bn, x.clone()),
                (true, true) => triplet_kernels::batch_norm_relu(&bn, x.clone()),
                (false, false) => bn.forward(x.clone()),
                (false, true) => relu(bn.forward(x.clone())),
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            results.push([
                values(y),
                values(x.grad(&grads).unwrap()),
                values(bn.gamma.grad(&grads).unwrap()),
                values(bn.beta.grad(&grads).unwrap()),
                values(bn.running_mean.value_sync()),
                values(bn.running_var.value_sync()),
            ]);
        }
        for (i, what) in [
            "output",
            "dx",
            "dgamma",
            "dbeta",
            "running mean",
            "running var",
        ]
        .iter()
        .enumerate()
        {
            let e = rel_err(&results[0][i], &results[1][i]);
            assert!(
                e < 1e-4,
                "{n}×{c}×{h}×{w} relu {fused} {what}: relative error {e}"
            );
        }
        if fused {
            let zeros = results[0][0].iter().filter(|v| **v == 0.0).count();
            assert!(
                zeros > 0 && zeros < results[0][0].len(),
                "the ReLU cuts some"
            );
        }
    }
}

/// `batch_norm_relu`'s fused ReLU keeps a NaN as Burn's does (a `max` would turn it into 0),
/// in inference and in training, and its backward lets the gradient through where Burn's
/// `relu_backward` does; the calls are counted.
#[test]
fn batch_norm_relu_keeps_nan_and_takes_the_fused_path() {
    use burn::nn::BatchNormConfig;
    use burn::tensor::activation::relu;
    for device in [Device::flex(), Device::flex().autodiff()] {
        let bn = BatchNormConfig::new(2).init(&device);
        let mut v: Vec<f32> = (0..2 * 2 * 3 * 3)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        v[4] = f32::NAN;
        let x = Tensor::<4>::from_data(TensorData::new(v, [2, 2, 3, 3]), &device);
        let before = triplet_kernels::fast_calls_by_op();
        let got = values(triplet_kernels::batch_norm_relu(&bn, x.clone()));
        let after = triplet_kernels::fast_calls_by_op();
        assert_eq!(after.batch_norm_relus, before.batch_norm_relus + 1);
        assert_eq!(after.batch_norms, before.batch_norms + 1);
        let want = values(relu(bn.forward(x)));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Training normalises with the batch's statistics, rounded otherwise than Burn's.
            assert!(
                (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{i}: {g} vs {w} on {device:?}"
            );
        }
        assert!(got[4].is_nan());
    }
}

/// `triplet_kernels::batch_norm` in inference (a device without autodiff) against Burn's
/// `BatchNorm::forward`, with running statistics that are not 0 and 1.
#[test]
fn batch_norm_inference_matches_burns() {
    use burn::module::RunningState;
    use burn::nn::BatchNormConfig;
    let device = Device::flex();
    device.seed(4);
    for [n, c, h, w] in [[1, 3, 5, 7], [4, 8, 1, 1], [3, 16, 14, 14]] {
        let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.5, 2.0), &device);
        let mut bn = BatchNormConfig::new(c).init(&device);
        bn.gamma = Param::from_tensor(Tensor::random([c], Distribution::Normal(1.0, 0.3), &device));
        bn.beta = Param::from_tensor(Tensor::random([c], Distribution::Normal(0.0, 0.3), &device));
        bn.running_mean =
            RunningState::new(Tensor::random([c], Distribution::Normal(0.4, 1.0), &device));
        bn.running_var = RunningState::new(Tensor::random(
            [c],
            Distribution::Uniform(0.2, 3.0),
            &device,
        ));
        let got = values(triplet_kernels::batch_norm(&bn, x.clone()));
        let want = values(bn.forward(x));
        let e = rel_err(&got, &want);
        assert!(e < 1e-5, "{n}×{c}×{h}×{w}: relative error {e}");
    }
}

/// `triplet_kernels::max_pool2d` against Burn's `MaxPool2d::forward` on flex: outputs and the
/// input gradient (exactly: the same winner per window, ties included), for the backbones'
/// poolings (2×2 / 2, ResNet's 3×3 / 2 with padding 1) and others, on odd sizes; in training
/// and in inference; and Burn's path for what the kernel does not cover.
#[test]
fn max_pool_matches_burns() {
    use burn::nn::pool::MaxPool2dConfig;
    let device = Device::flex().autodiff();
    device.seed(6);
    // (shape, kernel, stride, padding)
    let cases = [
        ([3, 4, 28, 28], 2, 2, 0),
        ([1, 1, 7, 7], 2, 2, 0),
        ([2, 3, 5, 8], 2, 2, 0),
        ([2, 8, 56, 56], 3, 2, 1),
        ([1, 2, 9, 7], 3, 2, 1),
        ([3, 2, 1, 1], 3, 2, 1),
        ([2, 2, 6, 5], 3, 1, 1),
    ];
    for (shape, k, s, p) in cases {
        let pool = MaxPool2dConfig::new([k, k])
            .with_strides([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .init();
        // Rounded values: many ties inside windows; ReLU-like zeros.
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 2.0), &device)
            .round()
            .clamp_min(0.0);
        // The upstream gradient, the same for both paths. Drawn from a formula, not the device's
        // seeded generator: tests run in parallel threads that share it, so a draw between
        // `seed` and `random` (another test's) gave the two paths different gradients.
        let out_dims = pool.forward(x.clone().inner()).dims();
        let count: usize = out_dims.iter().product();
        let r_values: Vec<f32> = (0..count)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 2.0)
            .collect();
        let mut results = Vec::new();
        for fast in [true, false] {
            let x = x.clone().require_grad();
            let before = triplet_kernels::fast_calls_by_op().max_pools;
            let y = if fast {
                triplet_kernels::max_pool2d(&pool, x.clone())
            } else {
                pool.forward(x.clone())
            };
            if fast {
                let calls = triplet_kernels::fast_calls_by_op().max_pools;
                assert_eq!(calls, before + 1, "the fast path");
            }
            let r = Tensor::<4>::from_data(TensorData::new(r_values.clone(), y.dims()), &device);
            let grads = (y.clone() * r).sum().backward();
            results.push((values(y), values(x.grad(&grads).unwrap())));
        }
        assert_eq!(
            results[0].0, results[1].0,
            "{shape:?} k{k} s{s} p{p}: output"
        );
        let e = rel_err(&results[0].1, &results[1].1);
        assert!(e < 1e-6, "{shape:?} k{k} s{s} p{p}: dx relative error {e}");
        // Inference, without autodiff.
        let plain = x.clone().inner();
        assert_eq!(
            values(triplet_kernels::max_pool2d(&pool, plain.clone())),
            values(pool.forward(plain)),
            "{shape:?} inference"
        );
    }
    // Dilation and ceil mode take Burn's path.
    let x = Tensor::<4>::random([1, 2, 9, 9], Distribution::Normal(0.0, 1.0), &device);
    for pool in [
        MaxPool2dConfig::new([2, 2]).with_dilation([2, 2]).init(),
        MaxPool2dConfig::new([2, 2]).with_ceil_mode(true).init(),
    ] {
        let before = triplet_kernels::fast_calls_by_op();
        let got = values(triplet_kernels::max_pool2d(&pool, x.clone()));
        assert_eq!(triplet_kernels::fast_calls_by_op(), before, "Burn's path");
        assert_eq!(got, values(pool.forward(x.clone())));
    }
}
