//! f16 ⇄ f32 for block scales, without the `half` crate's slow portable path in wasm.

#[cfg(all(target_arch = "x86_64", target_feature = "f16c"))]
use half::f16;

/// An f16 (little-endian bytes) as f32: exact for every finite value, normal or subnormal, with
/// two integer ops and a multiply (the `half` crate's portable path is several times slower in
/// wasm, where there is no conversion instruction). Infinities and NaNs become large finite
/// numbers, which only a corrupt file holds.
#[inline(always)]
pub fn f16_to_f32_portable(lo: u8, hi: u8) -> f32 {
    let h = u32::from(u16::from_le_bytes([lo, hi]));
    // Shift exponent and mantissa into f32 position, then rebias the exponent by 2^112.
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
}

/// The f16 bits of `v` when `v` is exactly a finite f16 value (normal, subnormal or zero), else
/// `None` (infinities and NaNs too): a few integer ops (converting with the `half` crate and
/// back costs several times more in wasm, per scale of every quantized block at load).
#[inline]
pub fn f32_to_f16_exact(v: f32) -> Option<u16> {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    let mant = bits & 0x7f_ffff;
    if bits << 1 == 0 {
        return Some(sign);
    }
    match exp {
        // Normal f16: the low 13 mantissa bits must be zero.
        -14..=15 if mant & 0x1fff == 0 => {
            Some(sign | ((exp + 15) as u16) << 10 | (mant >> 13) as u16)
        }
        // Subnormal f16 (multiples of 2^-24): the implicit bit joins the mantissa.
        -24..=-15 => {
            let full = mant | 0x80_0000;
            let shift = (-1 - exp) as u32;
            (full & ((1 << shift) - 1) == 0).then_some(sign | (full >> shift) as u16)
        }
        _ => None,
    }
}

/// An f16 (little-endian bytes) as f32: the F16C instruction natively, else
/// [`f16_to_f32_portable`].
#[inline(always)]
pub fn f16_to_f32(lo: u8, hi: u8) -> f32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "f16c"))]
    return f16::from_le_bytes([lo, hi]).to_f32();
    #[cfg(not(all(target_arch = "x86_64", target_feature = "f16c")))]
    f16_to_f32_portable(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::noise;
    use half::f16;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn f16_conversion_is_exact_for_finite_values() {
        for h in 0u16..=u16::MAX {
            let want = f16::from_bits(h);
            if !want.is_finite() {
                continue;
            }
            let [lo, hi] = h.to_le_bytes();
            for got in [f16_to_f32(lo, hi), f16_to_f32_portable(lo, hi)] {
                assert_eq!(got.to_bits(), want.to_f32().to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn exact_f16_conversion_agrees_with_the_half_crate() {
        for h in 0u16..=u16::MAX {
            let v = f16::from_bits(h);
            if v.is_finite() {
                assert_eq!(f32_to_f16_exact(v.to_f32()), Some(h), "{h:#06x}");
            }
        }
        for v in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            assert_eq!(f32_to_f16_exact(v), None, "{v}");
        }
        for v in noise(5, 10_000)
            .into_iter()
            .chain([1e-8, 7e4, 1.0 + 1e-7, 3e-5, -6e-8])
        {
            let round_trip = f16::from_f32(v);
            let exact = round_trip.to_f32().to_bits() == v.to_bits();
            assert_eq!(
                f32_to_f16_exact(v),
                exact.then_some(round_trip.to_bits()),
                "{v:e}"
            );
        }
    }
}
