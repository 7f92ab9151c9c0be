//! One checked entry into the `gemm` crate: an f32 matrix product over strided views, so a
//! transpose is only other strides; and the training linear layer's three products on it.
//! Attention runs it single-threaded inside its own rayon items; the linear layer on rayon.

/// A read-only matrix view: element (row, col) is `data[row * row_stride + col * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self { data, row_stride: cols, col_stride: 1 }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self { data, row_stride: 1, col_stride: cols }
    }

    /// Element (row, col).
    pub(crate) fn at(&self, row: usize, col: usize) -> f32 {
        self.data[row * self.row_stride + col * self.col_stride]
    }

    /// Panics unless every element of a `rows × cols` view lies inside the slice.
    pub(crate) fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "gemm: {what} [{rows}, {cols}] reads past its {} values", self.data.len());
        }
    }
}

/// `c [m, n] (row-major) = scale · a [m, k] · b [k, n]`, or `c += …` with `accumulate`, on
/// the calling thread.
pub(crate) fn gemm(c: &mut [f32], dims: (usize, usize, usize), a: View, b: View, scale: f32, accumulate: bool) {
    gemm_on(c, dims, a, b, scale, accumulate, gemm::Parallelism::None)
}

/// [`gemm`] spread over rayon's threads, in f32 or with bf16 inputs.
fn gemm_parallel(c: &mut [f32], dims: (usize, usize, usize), a: View, b: View, bf16: bool) {
    if bf16 {
        return crate::bf16::gemm_bf16(c, dims, a, b);
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    gemm_on(c, dims, a, b, 1.0, false, parallelism)
}

fn gemm_on(
    c: &mut [f32],
    (m, n, k): (usize, usize, usize),
    a: View,
    b: View,
    scale: f32,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert!(c.len() >= m * n, "gemm: output of {} values is smaller than [{m}, {n}]", c.len());
    a.check(m, k, "left matrix");
    b.check(k, n, "right matrix");
    if m * n == 0 {
        return;
    }
    // SAFETY: c is [m, n] row-major inside its slice (asserted); every element a and b are read
    // at lies inside their slices (checked above). gemm writes only c, which cannot alias a or
    // b (one `&mut` and two `&` borrows). With read_dst false gemm ignores c's old values, so
    // they need not be initialised to anything in particular.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The shape of a linear layer's product: `rows` inputs of `inputs` features to `outputs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    pub rows: usize,
    pub inputs: usize,
    pub outputs: usize,
}

impl LinearShape {
    fn check(&self, x: &[f32], w: &[f32]) -> Result<(), String> {
        let LinearShape { rows, inputs, outputs } = *self;
        if x.len() != rows * inputs || w.len() != outputs * inputs {
            return Err(format!(
                "linear: {} inputs and {} weights do not fit x [{rows}, {inputs}] and w [{outputs}, {inputs}]",
                x.len(),
                w.len()
            ));
        }
        Ok(())
    }
}

/// `y = x · wᵀ` for x [rows, inputs] and a weight w [outputs, inputs] (PyTorch's layout).
/// With `bf16`, both are rounded to bf16 and the products summed in f32 (mixed precision).
pub fn linear_forward(x: &[f32], w: &[f32], shape: LinearShape, bf16: bool) -> Result<Vec<f32>, String> {
    shape.check(x, w)?;
    let LinearShape { rows, inputs, outputs } = shape;
    let mut y = vec![0.0f32; rows * outputs];
    gemm_parallel(&mut y, (rows, outputs, inputs), View::rows(x, inputs), View::transposed(w, inputs), bf16);
    Ok(y)
}

/// The gradients `(dx, dw)` of `y = x · wᵀ` given `dy` [rows, outputs]:
/// `dx = dy · w` [rows, inputs] and `dw = dyᵀ · x` [outputs, inputs]; `bf16` as in
/// [`linear_forward`].
pub fn linear_backward(x: &[f32], w: &[f32], dy: &[f32], shape: LinearShape, bf16: bool) -> Result<(Vec<f32>, Vec<f32>), String> {
    shape.check(x, w)?;
    let LinearShape { rows, inputs, outputs } = shape;
    if dy.len() != rows * outputs {
        return Err(format!("linear backward: {} output gradients for [{rows}, {outputs}]", dy.len()));
    }
    let mut dx = vec![0.0f32; rows * inputs];
    gemm_parallel(&mut dx, (rows, inputs, outputs), View::rows(dy, outputs), View::rows(w, inputs), bf16);
    let mut dw = vec![0.0f32; outputs * inputs];
    gemm_parallel(&mut dw, (outputs, inputs, rows), View::transposed(dy, outputs), View::rows(x, inputs), bf16);
    Ok((dx, dw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_products_match_loops_in_f64() {
        let s = LinearShape { rows: 37, inputs: 19, outputs: 23 };
        let val = |i: usize, seed: usize| (((i * 7919 + seed * 104_729) % 1009) as f32 / 504.0) - 1.0;
        let x: Vec<f32> = (0..s.rows * s.inputs).map(|i| val(i, 1)).collect();
        let w: Vec<f32> = (0..s.outputs * s.inputs).map(|i| val(i, 2)).collect();
        let dy: Vec<f32> = (0..s.rows * s.outputs).map(|i| val(i, 3)).collect();
        let y = linear_forward(&x, &w, s, false).unwrap();
        let (dx, dw) = linear_backward(&x, &w, &dy, s, false).unwrap();
        let close = |got: f32, want: f64| assert!((got as f64 - want).abs() < 1e-4, "{got} vs {want}");
        for r in 0..s.rows {
            for o in 0..s.outputs {
                close(y[r * s.outputs + o], (0..s.inputs).map(|i| x[r * s.inputs + i] as f64 * w[o * s.inputs + i] as f64).sum());
            }
            for i in 0..s.inputs {
                close(dx[r * s.inputs + i], (0..s.outputs).map(|o| dy[r * s.outputs + o] as f64 * w[o * s.inputs + i] as f64).sum());
            }
        }
        for o in 0..s.outputs {
            for i in 0..s.inputs {
                close(dw[o * s.inputs + i], (0..s.rows).map(|r| dy[r * s.outputs + o] as f64 * x[r * s.inputs + i] as f64).sum());
            }
        }
        assert!(linear_forward(&x, &w[1..], s, false).unwrap_err().contains("do not fit"));
        // In bf16 the same products, to bf16's precision (8 bits of mantissa per input).
        let y16 = linear_forward(&x, &w, s, true).unwrap();
        let worst = y.iter().zip(&y16).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst > 0.0 && worst < 0.05, "bf16 differs from f32 by {worst}");
    }
}
