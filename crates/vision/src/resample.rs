//! Area-averaging resampling: every output pixel is the mean of exactly the input area it
//! covers, the anti-aliasing MNIST's own size normalisation used.

/// Resamples a `w x h` image to `ow x oh`. Rows first: that pass is whole rows scaled and
/// added (vectorised), and it leaves the per-pixel horizontal pass only `oh` rows.
#[inline(always)]
pub fn area(src: &[f32], w: usize, h: usize, ow: usize, oh: usize) -> Vec<f32> {
    let rows = resample_axis(src, w, h, oh, false);
    resample_axis(&rows, w, oh, ow, true)
}

/// Per output index along one axis: the first input index and the weights (summing to 1) of the
/// input pixels it covers.
pub(crate) fn taps(n_in: usize, out: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = n_in as f64 / out as f64;
    (0..out)
        .map(|o| {
            let (a, b) = (o as f64 * scale, (o + 1) as f64 * scale);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(n_in);
            let weights = (first..last)
                .map(|i| ((b.min(i as f64 + 1.0) - a.max(i as f64)) / scale) as f32)
                .collect();
            (first, weights)
        })
        .collect()
}

/// Resamples along x (`horizontal`) or y. Along y whole rows are scaled and added, which keeps
/// the inner loop contiguous.
#[inline(always)]
fn resample_axis(src: &[f32], w: usize, h: usize, out: usize, horizontal: bool) -> Vec<f32> {
    if horizontal {
        let taps = taps(w, out);
        let mut dst = vec![0f32; out * h];
        for (src_row, dst_row) in src.chunks_exact(w).zip(dst.chunks_exact_mut(out)) {
            for (d, (first, weights)) in dst_row.iter_mut().zip(&taps) {
                *d = weights
                    .iter()
                    .zip(&src_row[*first..])
                    .map(|(wt, v)| wt * v)
                    .sum();
            }
        }
        dst
    } else {
        let taps = taps(h, out);
        let mut dst = vec![0f32; w * out];
        for (dst_row, (first, weights)) in dst.chunks_exact_mut(w).zip(&taps) {
            for (k, wt) in weights.iter().enumerate() {
                let src_row = &src[(first + k) * w..(first + k + 1) * w];
                dst_row
                    .iter_mut()
                    .zip(src_row)
                    .for_each(|(d, v)| *d += wt * v);
            }
        }
        dst
    }
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
