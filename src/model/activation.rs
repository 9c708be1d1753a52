//! The feed-forward's activations on plain f32 rows: SiLU and GELU's tanh form through
//! [`kernels::exp`]'s vectorized `exp`, in loops the compiler vectorizes per activation, so
//! native and wasm agree to the bit.

use candle_core::Tensor;

use super::config::Activation;
use super::layers::in_chunks;
use crate::error::Result;
use crate::kernels;

/// SiLU, `x · σ(x)`.
#[inline(always)]
fn silu(v: f32) -> f32 {
    v / (1.0 + kernels::exp::exp(-v))
}

/// GELU with erf (`libm`, so native and wasm agree to the bit).
#[inline(always)]
fn gelu_erf(v: f32) -> f32 {
    0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation `½x(1 + tanh y)`, tanh through one `exp`.
#[inline(always)]
fn gelu_tanh(v: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let y = C * v * (1.0 + 0.044715 * v * v);
    // 1 + tanh y = 2 − 2 / (1 + e²ʸ), which rounds to 0 where tanh y rounds to −1, as the
    // references' `tanhf` does (the exact x · σ(2y) moved Gemma's quantized logits further).
    0.5 * v * (2.0 - 2.0 / (1.0 + kernels::exp::exp(2.0 * y)))
}

#[inline(always)]
fn relu(v: f32) -> f32 {
    v.max(0.0)
}

/// `x ← f(x)` for each value, a loop the compiler vectorizes for each `f`.
#[inline(always)]
fn map(x: &mut [f32], f: impl Fn(f32) -> f32) {
    x.iter_mut().for_each(|v| *v = f(*v));
}

/// `g ← f(g) · u` for each value.
#[inline(always)]
fn map_gate(g: &mut [f32], u: &[f32], f: impl Fn(f32) -> f32) {
    for (v, u) in g.iter_mut().zip(u) {
        *v = f(*v) * u;
    }
}

impl Activation {
    /// `x ← act(x)`, in place (an ungated feed-forward).
    pub(super) fn apply_in_place(self, x: &mut [f32]) {
        in_chunks(x, 16, |_, c| match self {
            Self::Silu => map(c, silu),
            Self::Gelu => map(c, gelu_erf),
            Self::GeluTanh => map(c, gelu_tanh),
            Self::Relu => map(c, relu),
        });
    }

    /// `g ← act(g) · u`, in one pass (a gated feed-forward): the values Candle's two ops gave.
    pub(super) fn gate_in_place(self, g: &mut [f32], u: &[f32]) {
        in_chunks(g, 16, |o, c| {
            let u = &u[o..];
            match self {
                Self::Silu => map_gate(c, u, silu),
                Self::Gelu => map_gate(c, u, gelu_erf),
                Self::GeluTanh => map_gate(c, u, gelu_tanh),
                Self::Relu => map_gate(c, u, relu),
            }
        });
    }

    pub(super) fn apply(self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            let mut v: Vec<f32> = x.flatten_all()?.to_vec1::<f32>()?;
            self.apply_in_place(&mut v);
            return Ok(Tensor::from_vec(v, x.shape(), x.device())?);
        }
        Ok(match self {
            Self::Silu => candle_nn::ops::silu(x)?,
            Self::Gelu => x.gelu_erf()?,
            Self::GeluTanh => x.gelu()?,
            Self::Relu => x.relu()?,
        })
    }
}
