//! Linear layers whose weight is either a dense tensor (trainable, any dtype) or a quantized
//! GGUF block tensor (inference only, multiplied by lmlab's Q4_1/Q8_0 kernels or candle's
//! quantized matmul for the other block types), and
//! [`WeightSource`], which builds the model from either freshly initialised variables or
//! weights loaded from a file.
//!
//! The model code asks the source for each tensor by its lmlab name; it does not know whether
//! the answer came from a `VarBuilder`, a safetensors checkpoint in another naming scheme, or
//! a GGUF file.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::ops;
use crate::qmatmul::QuantMatmul;

/// A block-quantized weight and the kernel that multiplies by it. Each variant holds the
/// blocks once: a quantized model takes the memory of its file, not twice that.
#[derive(Clone)]
pub enum QuantWeight {
    /// candle's quantized matmul.
    Candle(Arc<QTensor>, QMatMul),
    /// lmlab's Q4_1 / Q8_0 kernels (see [`crate::qmatmul`] for why).
    Lmlab(QuantMatmul),
}

impl QuantWeight {
    /// The blocks as a candle tensor (a copy for lmlab's kernels): for dequantizing and moving
    /// to another device, not for the forward pass.
    pub fn qtensor(&self) -> Result<Arc<QTensor>> {
        match self {
            QuantWeight::Candle(q, _) => Ok(q.clone()),
            QuantWeight::Lmlab(k) => Ok(Arc::new(k.to_qtensor()?)),
        }
    }
}

/// A weight [out, in].
#[derive(Clone)]
pub enum Weight {
    Dense(Tensor),
    /// Block-quantized rows; no gradient flows through it.
    Quantized(QuantWeight),
}

impl Weight {
    pub fn quantized(q: QTensor) -> Result<Self> {
        let q = Arc::new(q);
        // F32/F16 "quantized" tensors are dequantized by candle into a plain matmul.
        let mm = QMatMul::from_arc(q.clone())?;
        Ok(match mm {
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => Weight::Dense(t.to_dtype(DType::F32)?),
            QMatMul::QTensor(_) => {
                let own = match (q.device().is_cpu(), q.shape().dims2()) {
                    (true, Ok((n, k))) => QuantMatmul::new(q.dtype(), &q.data()?, n, k)?,
                    _ => None,
                };
                match own {
                    Some(kernel) => Weight::Quantized(QuantWeight::Lmlab(kernel)),
                    None => Weight::Quantized(QuantWeight::Candle(q, mm)),
                }
            }
        })
    }

    /// The weight as a dense tensor (a dequantized copy for quantized weights).
    pub fn dense(&self, dev: &Device) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => Ok(t.clone()),
            Weight::Quantized(q) => q.qtensor()?.dequantize(dev),
        }
    }

    pub fn shape(&self) -> Shape {
        match self {
            Weight::Dense(t) => t.shape().clone(),
            Weight::Quantized(QuantWeight::Candle(q, _)) => q.shape().clone(),
            Weight::Quantized(QuantWeight::Lmlab(k)) => k.shape(),
        }
    }
}

/// `y = x Wᵀ + b`.
#[derive(Clone)]
pub struct Linear {
    pub(crate) w: Weight,
    pub(crate) b: Option<Tensor>,
    /// LoRA adapters on row blocks of the output, sorted by their first row (see [`crate::lora`]).
    pub(crate) lora: Vec<crate::lora::Adapter>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.w {
            Weight::Dense(w) if !self.lora.is_empty() => {
                ops::linear(x, w, self.b.as_ref())? + crate::lora::delta(&self.lora, x, w.dim(0)?)?
            }
            Weight::Dense(w) => ops::linear(x, w, self.b.as_ref()),
            Weight::Quantized(q) => {
                let x = x.contiguous()?;
                let y = match q {
                    QuantWeight::Candle(_, mm) => mm.forward(&x)?,
                    QuantWeight::Lmlab(k) => x.apply_op1_no_bwd(k)?,
                };
                match &self.b {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

/// `a` and `b` stacked into one layer (outputs of `a`, then of `b`) when both are unbiased and
/// quantized for lmlab's kernels with the same type: inference then quantizes the shared input
/// once and dispatches one matmul. None otherwise.
pub fn stack_quantized(a: &Linear, b: &Linear) -> Option<Linear> {
    match (&a.w, &b.w, &a.b, &b.b) {
        (Weight::Quantized(QuantWeight::Lmlab(x)), Weight::Quantized(QuantWeight::Lmlab(y)), None, None) => {
            Some(Linear { w: Weight::Quantized(QuantWeight::Lmlab(x.concat_rows(y)?)), b: None, lora: Vec::new() })
        }
        _ => None,
    }
}

/// Where the model's tensors come from.
#[derive(Clone)]
pub enum WeightSource<'a> {
    /// Variables created (or looked up) through a candle `VarBuilder`: training and lmlab
    /// checkpoints.
    Vars(VarBuilder<'a>),
    /// Weights already loaded under their lmlab names (GGUF, foreign safetensors).
    Loaded { weights: Arc<HashMap<String, Weight>>, prefix: String, dtype: DType, device: Device },
}

impl<'a> WeightSource<'a> {
    pub fn loaded(weights: HashMap<String, Weight>, dtype: DType, device: &Device) -> Self {
        WeightSource::Loaded { weights: Arc::new(weights), prefix: String::new(), dtype, device: device.clone() }
    }

    pub fn pp(&self, name: impl ToString) -> Self {
        match self {
            WeightSource::Vars(vb) => WeightSource::Vars(vb.pp(name)),
            WeightSource::Loaded { weights, prefix, dtype, device } => WeightSource::Loaded {
                weights: weights.clone(),
                prefix: if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{}", name.to_string()) },
                dtype: *dtype,
                device: device.clone(),
            },
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            WeightSource::Vars(vb) => vb.dtype(),
            WeightSource::Loaded { dtype, .. } => *dtype,
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            WeightSource::Vars(vb) => vb.device(),
            WeightSource::Loaded { device, .. } => device,
        }
    }

    /// The weight `name` as stored (quantized weights stay quantized), shape-checked.
    pub fn weight(&self, shape: impl Into<Shape>, name: &str, init: Init) -> Result<Weight> {
        let shape = shape.into();
        match self {
            WeightSource::Vars(vb) => Ok(Weight::Dense(vb.get_with_hints(shape, name, init)?)),
            WeightSource::Loaded { weights, prefix, dtype, .. } => {
                let full = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
                let w = weights.get(&full).ok_or_else(|| candle_core::Error::Msg(format!("the model file has no tensor {full}")))?;
                if w.shape() != shape {
                    candle_core::bail!("tensor {full} has shape {:?}, the config expects {:?}", w.shape().dims(), shape.dims());
                }
                Ok(match w {
                    Weight::Dense(t) => Weight::Dense(t.to_dtype(*dtype)?),
                    q => q.clone(),
                })
            }
        }
    }

    /// The tensor `name`, dense (dequantized if stored quantized).
    pub fn tensor(&self, shape: impl Into<Shape>, name: &str, init: Init) -> Result<Tensor> {
        let dtype = self.dtype();
        self.weight(shape, name, init)?.dense(self.device())?.to_dtype(dtype)
    }

    /// A linear layer `prefix.weight` [out, in] with optional `prefix.bias`.
    pub fn linear(&self, out_dim: usize, in_dim: usize, std: f64, bias: bool) -> Result<Linear> {
        let w = self.weight((out_dim, in_dim), "weight", Init::Randn { mean: 0.0, stdev: std })?;
        let b = if bias { Some(self.tensor(out_dim, "bias", Init::Const(0.0))?) } else { None };
        Ok(Linear { w, b, lora: Vec::new() })
    }
}
