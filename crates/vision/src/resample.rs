//! Area-averaging resampling: every output pixel is the mean of exactly the input area it
//! covers, the anti-aliasing MNIST's own size normalisation used.

/// Resamples a `w x h` image to `ow x oh`.
pub fn area(src: &[f32], w: usize, h: usize, ow: usize, oh: usize) -> Vec<f32> {
    let rows = resample_axis(src, w, h, ow, true);
    resample_axis(&rows, ow, h, oh, false)
}

/// Resamples along x (`horizontal`) or y.
fn resample_axis(src: &[f32], w: usize, h: usize, out: usize, horizontal: bool) -> Vec<f32> {
    let n_in = if horizontal { w } else { h };
    let scale = n_in as f64 / out as f64;
    // Per output index: (first input index, weights) with weights summing to 1.
    let taps: Vec<(usize, Vec<f32>)> = (0..out)
        .map(|o| {
            let (a, b) = (o as f64 * scale, (o + 1) as f64 * scale);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(n_in);
            let weights = (first..last)
                .map(|i| ((b.min(i as f64 + 1.0) - a.max(i as f64)) / scale) as f32)
                .collect();
            (first, weights)
        })
        .collect();
    let (ow, oh) = if horizontal { (out, h) } else { (w, out) };
    let mut dst = vec![0f32; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            let (first, weights) = &taps[if horizontal { x } else { y }];
            dst[y * ow + x] = weights
                .iter()
                .enumerate()
                .map(|(k, wt)| {
                    let i = first + k;
                    wt * if horizontal {
                        src[y * w + i]
                    } else {
                        src[i * w + x]
                    }
                })
                .sum();
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_blocks_and_keeps_mass() {
        let src: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let d = area(&src, 4, 4, 2, 2);
        assert_eq!(d, vec![2.5, 4.5, 10.5, 12.5]);
        let odd = area(&src, 4, 4, 3, 3);
        let mass_in: f32 = src.iter().sum::<f32>() / 16.0;
        let mass_out: f32 = odd.iter().sum::<f32>() / 9.0;
        assert!((mass_in - mass_out).abs() < 1e-4);
    }

    #[test]
    fn identity_and_upscale() {
        let src = vec![0.0, 1.0, 1.0, 0.0];
        assert_eq!(area(&src, 2, 2, 2, 2), src);
        assert_eq!(area(&src, 2, 2, 4, 4)[..4], [0.0, 0.0, 1.0, 1.0]);
    }
}
