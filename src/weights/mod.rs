//! Stage 1 of the data flow: bytes → named tensors and metadata.
//!
//! Two file formats: GGUF ([`gguf`]) and Hugging Face safetensors folders ([`folder`] knows
//! their files, [`hf`] their tensors: float or MLX-quantized, [`affine`]). Both hand the model tensors under llama.cpp's names
//! (`blk.0.attn_q.weight` …) through [`TensorSource`], each in the form its matmul runs fastest.

pub mod affine;
pub mod fingerprint;
pub mod folder;
pub mod gguf;
pub mod hf;
pub mod manifest;
#[cfg(not(target_arch = "wasm32"))]
pub mod mapped;
pub mod safetensors;
pub mod tiny;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

pub use folder::ModelFolder;
pub use gguf::{Gguf, TensorData};
pub use hf::HfModel;

use crate::error::{Error, Result};
use crate::kernels::WeightType;

/// One tensor as the model receives it.
#[derive(Debug)]
pub enum WeightTensor {
    /// Blocks of a type Wick's own kernels run (on the CPU), read in place where the file allows.
    Blocks {
        /// The block type.
        ty: WeightType,
        /// The blocks, row-major.
        data: TensorData,
        /// Shape in elements, outermost first.
        dims: Vec<usize>,
    },
    /// A GGML-quantized tensor for Candle's kernels (other types, or a GPU).
    Candle(QTensor),
    /// Plain f32 values.
    Float(Tensor),
}

impl WeightTensor {
    /// Shape in elements, outermost first.
    pub fn dims(&self) -> &[usize] {
        match self {
            Self::Blocks { dims, .. } => dims,
            Self::Candle(q) => q.shape().dims(),
            Self::Float(t) => t.dims(),
        }
    }

    /// The values as an f32 tensor (norm weights, biases, small tables).
    pub fn to_f32(&self, device: &Device) -> Result<Tensor> {
        match self {
            Self::Float(t) => Ok(t.clone()),
            Self::Candle(q) => Ok(q.dequantize(device)?.to_dtype(DType::F32)?),
            Self::Blocks { ty, data, dims } => {
                let n = dims
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| {
                        Error::Corrupt(format!(
                            "a tensor of shape {dims:?} is too large to address"
                        ))
                    })?;
                let mut out = vec![0f32; n];
                ty.dequantize_row(data, &mut out);
                Ok(Tensor::from_vec(out, dims.as_slice(), device)?)
            }
        }
    }
}

/// A file (or folder) that holds a model's tensors under llama.cpp's names.
pub trait TensorSource {
    /// Whether the tensor is present.
    fn contains(&self, name: &str) -> bool;
    /// Loads one tensor for `device`.
    fn load(&self, name: &str, device: &Device) -> Result<WeightTensor>;
}

/// Any source with every quantized tensor dequantized to f32 at load: the exact arithmetic of
/// the weights, for comparing backends (each device's quantized kernels round activations
/// their own way).
pub struct Dequantized<'a>(pub &'a dyn TensorSource);

impl TensorSource for Dequantized<'_> {
    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    fn load(&self, name: &str, device: &Device) -> Result<WeightTensor> {
        match self.0.load(name, device)? {
            WeightTensor::Float(t) => Ok(WeightTensor::Float(t)),
            other => Ok(WeightTensor::Float(other.to_f32(device)?)),
        }
    }
}

/// The block type Wick's own kernels run for a GGML type, if any (rows must be whole blocks): the
/// tensor then loads as [`WeightTensor::Blocks`].
pub fn blocks_type(dtype: GgmlDType, row: usize, device: &Device) -> Option<WeightType> {
    device
        .is_cpu()
        .then(|| WeightType::from_ggml(dtype, row))
        .flatten()
}

impl TensorSource for Gguf<'_> {
    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn load(&self, name: &str, device: &Device) -> Result<WeightTensor> {
        let (info, _) = self.tensor_bytes(name)?;
        let row = info.dims.last().copied().unwrap_or(0);
        if let Some(ty) = blocks_type(info.dtype, row, device) {
            let dims = info.dims.clone();
            return Ok(WeightTensor::Blocks {
                ty,
                data: self.tensor_data(name)?.1,
                dims,
            });
        }
        let t = self.tensor(name, device)?;
        match t.dtype() {
            // Float weights stay f32: Candle's f16 matmul would round the activations too.
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => Ok(WeightTensor::Float(
                t.dequantize(device)?.to_dtype(DType::F32)?,
            )),
            // Candle has no matmul kernel for Q8_1 weights (it is an activation-only type).
            GgmlDType::Q8_1 => Err(Error::UnsupportedQuantization {
                name: name.to_string(),
                ggml_type: "Q8_1".into(),
            }),
            // Candle's CUDA kernels gave non-finite logits on rows of 64 (seen on an H100,
            // not every run): narrow matrices run as f32 off the CPU.
            _ if !device.is_cpu() && row < 256 => Ok(WeightTensor::Float(
                t.dequantize(device)?.to_dtype(DType::F32)?,
            )),
            _ => Ok(WeightTensor::Candle(t)),
        }
    }
}
