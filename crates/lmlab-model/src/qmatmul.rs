//! Q4_1 and Q8_0 weights as a candle custom op: the layer-facing side of the quantized
//! matmul kernels in `lmlab-kernels` (which hold the arithmetic, its SIMD and its tests).

use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use lmlab_kernels::{HugePageBuffer, QuantKind, BLOCK};

/// Where a matrix's blocks live: a buffer of its own, or a range of one huge-page buffer that
/// holds every matrix of a model ([`pack_into_huge_pages`]).
#[derive(Clone)]
enum Blocks {
    Own(Arc<Vec<u8>>),
    Packed(Arc<HugePageBuffer>, Range<usize>),
}

impl std::ops::Deref for Blocks {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Blocks::Own(v) => v,
            Blocks::Packed(buf, range) => &buf[range.clone()],
        }
    }
}

/// `y = x Wᵀ` for Q4_1 or Q8_0 weights W [n, k].
#[derive(Clone)]
pub struct QuantMatmul {
    kind: QuantKind,
    /// ggml's blocks, row after row.
    weights: Blocks,
    n: usize,
    k: usize,
}

impl QuantMatmul {
    /// A kernel for `dtype` (Q4_1 or Q8_0) weights [n, k] given as ggml's raw blocks, or None
    /// for other types.
    pub fn new(dtype: GgmlDType, ggml: &[u8], n: usize, k: usize) -> Result<Option<Self>> {
        let kind = match dtype {
            GgmlDType::Q4_1 => QuantKind::Q4_1,
            GgmlDType::Q8_0 => QuantKind::Q8_0,
            _ => return Ok(None),
        };
        if !k.is_multiple_of(BLOCK) || ggml.len() != n * k / BLOCK * kind.block_bytes() {
            candle_core::bail!("{dtype:?} weights of {} bytes do not hold a [{n}, {k}] matrix", ggml.len());
        }
        Ok(Some(Self { kind, weights: Blocks::Own(Arc::new(ggml.to_vec())), n, k }))
    }

    /// The rows of `self` then the rows of `other` as one matrix (one activation quantization
    /// and one dispatch instead of two), or None when their types or widths differ.
    pub fn concat_rows(&self, other: &QuantMatmul) -> Option<QuantMatmul> {
        if self.kind != other.kind || self.k != other.k {
            return None;
        }
        let mut weights = Vec::with_capacity(self.weights.len() + other.weights.len());
        weights.extend_from_slice(&self.weights);
        weights.extend_from_slice(&other.weights);
        Some(QuantMatmul { kind: self.kind, weights: Blocks::Own(Arc::new(weights)), n: self.n + other.n, k: self.k })
    }

    pub fn shape(&self) -> Shape {
        Shape::from((self.n, self.k))
    }

    /// The blocks as a candle tensor (a copy).
    pub fn to_qtensor(&self) -> Result<QTensor> {
        let dtype = match self.kind {
            QuantKind::Q4_1 => GgmlDType::Q4_1,
            QuantKind::Q8_0 => GgmlDType::Q8_0,
        };
        let storage = QStorage::from_data(std::borrow::Cow::Borrowed(&self.weights[..]), &candle_core::Device::Cpu, dtype)?;
        QTensor::new(storage, (self.n, self.k))
    }

    /// The product for `m` rows of `x` (row-major [m, k]) into `dst` [m, n].
    pub fn matmul(&self, x: &[f32], m: usize, dst: &mut [f32]) {
        lmlab_kernels::quant_matmul(self.kind, &self.weights, (self.n, self.k), x, m, dst);
    }
}

/// Moves the blocks of every matrix in `mats` into one buffer of transparent huge pages (each
/// matrix at a cache-line boundary). A decode step streams all of a model's weights once; on
/// 2 MiB pages that costs a few dozen TLB misses instead of tens of thousands
/// ([`HugePageBuffer`]). Clones made before share nothing with the packed copies, so pack
/// before handing the matrices out.
pub(crate) fn pack_into_huge_pages(mats: &mut [&mut QuantMatmul]) {
    const ALIGN: usize = 64;
    if mats.is_empty() {
        return;
    }
    let mut ranges = Vec::with_capacity(mats.len());
    let mut end = 0usize;
    for m in mats.iter() {
        let start = end.next_multiple_of(ALIGN);
        end = start + m.weights.len();
        ranges.push(start..end);
    }
    let mut buffer = HugePageBuffer::zeroed(end);
    for (m, range) in mats.iter().zip(&ranges) {
        buffer[range.clone()].copy_from_slice(&m.weights);
    }
    let buffer = Arc::new(buffer);
    for (m, range) in mats.iter_mut().zip(ranges) {
        m.weights = Blocks::Packed(buffer.clone(), range);
    }
}

impl CustomOp1 for QuantMatmul {
    fn name(&self) -> &'static str {
        "lmlab-quant-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("quantized matmul needs f32 input") };
        let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("quantized matmul needs contiguous input") };
        let mut dims = layout.dims().to_vec();
        if dims.last() != Some(&self.k) {
            candle_core::bail!("quantized matmul: input {dims:?} does not end in {}", self.k);
        }
        let m = (end - start) / self.k;
        let mut dst = vec![0.0f32; m * self.n];
        self.matmul(&data[start..end], m, &mut dst);
        *dims.last_mut().unwrap() = self.n;
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn reads_candles_blocks_and_multiplies_like_candles_dequantized_weights() {
        let dev = Device::Cpu;
        let (m, n, k) = (5, 70, 96);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let mm = QuantMatmul::new(dtype, &q.data().unwrap(), n, k).unwrap().unwrap();
            assert_eq!(mm.to_qtensor().unwrap().data().unwrap(), q.data().unwrap(), "the blocks round-trip");
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let got = x.apply_op1_no_bwd(&mm).unwrap();
            let want = x.matmul(&q.dequantize(&dev).unwrap().t().unwrap()).unwrap();
            let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            // The kernel multiplies 8-bit activations (as ggml does), candle's reference the f32
            // ones: about 1/127 of each |x| per term, a few percent of the largest output. The
            // exact arithmetic is tested in lmlab-kernels; this checks the block layout.
            assert!(diff < 0.05 * scale, "{dtype:?}: {diff} against outputs up to {scale}");
        }
        assert!(QuantMatmul::new(GgmlDType::Q8_0, &[0; 10], 1, 32).is_err(), "a short buffer is refused");
    }

    #[test]
    fn packed_matrices_multiply_as_before() {
        let dev = Device::Cpu;
        let mut mats: Vec<QuantMatmul> = [(GgmlDType::Q4_1, 70, 96), (GgmlDType::Q8_0, 33, 64), (GgmlDType::Q4_1, 5, 32)]
            .into_iter()
            .map(|(dtype, n, k)| {
                let q = QTensor::quantize(&Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap(), dtype).unwrap();
                QuantMatmul::new(dtype, &q.data().unwrap(), n, k).unwrap().unwrap()
            })
            .collect();
        let x: Vec<f32> = (0..2 * 96).map(|i| ((i * 37) % 17) as f32 - 8.0).collect();
        let product = |m: &QuantMatmul| {
            let mut y = vec![0.0f32; 2 * m.n];
            m.matmul(&x[..2 * m.k], 2, &mut y);
            y
        };
        let before: Vec<Vec<f32>> = mats.iter().map(product).collect();
        let blocks: Vec<Vec<u8>> = mats.iter().map(|m| m.weights.to_vec()).collect();
        pack_into_huge_pages(&mut mats.iter_mut().collect::<Vec<_>>());
        for (i, m) in mats.iter().enumerate() {
            assert!(matches!(m.weights, Blocks::Packed(..)));
            assert_eq!(&m.weights[..], &blocks[i][..], "matrix {i}'s blocks");
            assert_eq!(m.weights.as_ptr() as usize % 64, 0);
            assert_eq!(product(m), before[i], "matrix {i}'s product");
        }
    }
}
