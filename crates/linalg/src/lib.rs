//! Safe wrappers over the `gemm` crate's strided f32 matrix product.

use gemm::Parallelism;

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major `rows x cols`.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `c[m x n] = a[m x k] * b[k x n]` (row-major `c`), or `c += a * b` when `accumulate`.
pub fn matmul(m: usize, n: usize, k: usize, c: &mut [f32], a: View, b: View, accumulate: bool) {
    assert!(c.len() >= m * n, "gemm output too small");
    assert!(a.fits(m, k) && b.fits(k, n), "gemm operand too small");
    // SAFETY: `c` holds the `m x n` result, borrowed mutably so it cannot alias `a` or `b`.
    unsafe { product(m, n, k, (c.as_mut_ptr(), n), a, b, accumulate) }
}

/// [`matmul`] (without accumulating) as tasks, each for a block of `block` columns of `c`, to
/// run in any order on any thread. For products whose `b` is wide and `a` short, as a dense
/// layer's input gradient `[batch x units] x [units x inputs]`: cutting `a`'s rows between
/// threads instead made each of them pack all of `b` (two halves of the reference CNN's
/// 128 x 128 x 9216 product took 16% longer than the whole, eighths 76%; column blocks of
/// 1024 take the same time as the whole).
pub fn column_blocks<'a>(
    m: usize,
    n: usize,
    k: usize,
    c: &'a mut [f32],
    a: View<'a>,
    b: View<'a>,
    block: usize,
) -> Vec<ColumnBlock<'a>> {
    assert!(c.len() >= m * n, "gemm output too small");
    assert!(a.fits(m, k) && b.fits(k, n), "gemm operand too small");
    assert!(block > 0, "empty column blocks");
    let out = c.as_mut_ptr();
    (0..n.div_ceil(block))
        .map(|i| {
            let (first, width) = (i * block, block.min(n - i * block));
            ColumnBlock {
                shape: (m, width, k, n),
                c: out.wrapping_add(first),
                a,
                b: View {
                    data: &b.data[first * b.cs..],
                    ..b
                },
                output: std::marker::PhantomData,
            }
        })
        .collect()
}

/// One task of [`column_blocks`]: `width` columns of the `m x n` output.
pub struct ColumnBlock<'a> {
    /// `m`, `width`, `k`, and the output's row length `n`.
    shape: (usize, usize, usize, usize),
    c: *mut f32,
    a: View<'a>,
    b: View<'a>,
    /// The whole output, borrowed mutably while any block exists.
    output: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: each block writes columns that no other block touches (see `run`).
unsafe impl Send for ColumnBlock<'_> {}

impl ColumnBlock<'_> {
    pub fn run(self) {
        let (m, width, k, n) = self.shape;
        // SAFETY: the block writes its own `width` columns of the `m x n` output only, which
        // no other block touches, and the output stays borrowed mutably while any block
        // exists, so nothing else reads or writes it meanwhile.
        unsafe { product(m, width, k, (self.c, n), self.a, self.b, false) }
    }
}

/// `c = a * b` into the `m x n` output at `c` whose rows are `c_rs` apart.
///
/// # Safety
/// `c` must be valid for writes of `m` rows of `n` values `c_rs` apart, and not alias `a` or
/// `b`; `a` and `b` must hold `m x k` and `k x n` values.
unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    (c, c_rs): (*mut f32, usize),
    a: View,
    b: View,
    accumulate: bool,
) {
    debug_assert!(a.fits(m, k) && b.fits(k, n));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                std::ptr::write_bytes(c.add(row * c_rs), 0, n);
            }
        }
        return;
    }
    // SAFETY: the caller's contract keeps every index the product touches inside the buffers.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_blocks_give_the_whole_product() {
        let (m, n, k) = (3, 10, 4);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.7).cos()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32).sin()).collect(); // n x k
        let mut whole = vec![0.0; m * n];
        matmul(
            m,
            n,
            k,
            &mut whole,
            View::rows(&a, k),
            View::transposed(&w, k),
            false,
        );
        for block in [1, 3, 4, 10, 16] {
            let mut c = vec![f32::NAN; m * n];
            let b = View::transposed(&w, k);
            let mut blocks = column_blocks(m, n, k, &mut c, View::rows(&a, k), b, block);
            // Any order.
            blocks.reverse();
            blocks.into_iter().for_each(ColumnBlock::run);
            assert_eq!(c, whole, "blocks of {block}");
        }
    }

    #[test]
    fn matches_naive_product_with_transposes() {
        let (m, n, k) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32).sin()).collect(); // n x k
        let mut c = vec![1.0; m * n];
        matmul(
            m,
            n,
            k,
            &mut c,
            View::rows(&a, k),
            View::transposed(&bt, k),
            true,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-4);
            }
        }
    }
}
