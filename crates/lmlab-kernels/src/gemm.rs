//! One checked entry into the `gemm` crate: a single-threaded f32 matrix product over strided
//! views, so a transpose is only other strides. Callers run it inside their own rayon items.

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

    /// Panics unless every element of a `rows × cols` view lies inside the slice.
    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "gemm: {what} [{rows}, {cols}] reads past its {} values", self.data.len());
        }
    }
}

/// `c [m, n] (row-major) = scale · a [m, k] · b [k, n]`, or `c += …` with `accumulate`.
pub(crate) fn gemm(c: &mut [f32], (m, n, k): (usize, usize, usize), a: View, b: View, scale: f32, accumulate: bool) {
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
            gemm::Parallelism::None,
        );
    }
}
