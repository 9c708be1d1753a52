//! MLX's affine quantization: `w = scale · q + bias` per group of `G` inputs, `q` of `B` bits
//! packed little-endian into u32 words along the input dimension (as `mlx_lm` writes it).
//!
//! How each (B, G) runs in Wick. Groups of 32, 64 and 128 are split into blocks of 32 that repeat
//! their group's scale and bias, so every G maps onto one per-32 block format:
//! - B = 4 → GGML `Q4_1` (`w = d·q + m`, f16 `d`, `m`): Wick's own Q4_1 kernels.
//! - B = 8 → Wick's `A8` (`w = d·q + m`, f16 `d`, `m`, unsigned bytes): its own kernels.
//!
//! Both store the scale and bias as f16, so the mapping is exact whenever the file's scales and
//! biases are f16 values (always for f16 files; for bf16 or f32 files, whenever each value is
//! representable in f16). Otherwise the tensor is dequantized to f32 at load, which is exact too
//! but takes 8 (B = 4) or 4 (B = 8) times the memory: no case is silently rounded.

use half::f16;

use crate::kernels::{self, WeightType, BLOCK};

/// Bit widths and group sizes Wick accepts.
pub const BITS: [usize; 2] = [4, 8];
/// Group sizes Wick accepts.
pub const GROUPS: [usize; 3] = [32, 64, 128];

/// A quantized matrix in MLX's layout, values already unpacked: `rows` × `cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    /// Bits per value (4 or 8).
    pub bits: usize,
    /// Inputs per scale/bias group.
    pub group: usize,
    /// Output rows.
    pub rows: usize,
    /// Inputs per row.
    pub cols: usize,
    /// One value in `0..2^bits` per weight, row-major.
    pub q: Vec<u8>,
    /// One scale per group, row-major (`rows × cols / group`).
    pub scales: Vec<f32>,
    /// One bias per group.
    pub biases: Vec<f32>,
}

impl Affine {
    /// Unpacks MLX's u32 words (little-endian bytes of `rows × cols·bits/32` words).
    pub fn unpack(
        packed: &[u8],
        bits: usize,
        group: usize,
        rows: usize,
        cols: usize,
        scales: Vec<f32>,
        biases: Vec<f32>,
    ) -> Self {
        let per_word = 32 / bits;
        let mask = (1u32 << bits) - 1;
        let mut q = Vec::with_capacity(rows * cols);
        for w in packed.chunks_exact(4) {
            let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            for j in 0..per_word {
                q.push(((word >> (j * bits)) & mask) as u8);
            }
        }
        Self {
            bits,
            group,
            rows,
            cols,
            q,
            scales,
            biases,
        }
    }

    /// Packs the values into MLX's u32 words.
    pub fn pack(&self) -> Vec<u32> {
        let per_word = 32 / self.bits;
        self.q
            .chunks_exact(per_word)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u32, |w, (j, &v)| w | (u32::from(v) << (j * self.bits)))
            })
            .collect()
    }

    /// Quantizes `w` (`rows` × `cols`): per group, scale = (max − min) / (2^B − 1) and
    /// bias = min, both rounded to f16 first so the stored values are the ones quantized against.
    pub fn quantize(w: &[f32], rows: usize, cols: usize, bits: usize, group: usize) -> Self {
        let levels = ((1u32 << bits) - 1) as f32;
        let mut q = Vec::with_capacity(w.len());
        let (mut scales, mut biases) = (Vec::new(), Vec::new());
        for g in w.chunks_exact(group) {
            let (lo, hi) = g
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let bias = f16::from_f32(lo).to_f32();
            let mut scale = f16::from_f32((hi - bias) / levels).to_f32();
            if scale <= 0.0 || !scale.is_finite() {
                scale = 0.0;
            }
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            q.extend(
                g.iter()
                    .map(|&v| ((v - bias) * inv).round().clamp(0.0, levels) as u8),
            );
            scales.push(scale);
            biases.push(bias);
        }
        Self {
            bits,
            group,
            rows,
            cols,
            q,
            scales,
            biases,
        }
    }

    /// The weights as f32, `scale · q + bias`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.q
            .chunks_exact(self.group)
            .zip(self.scales.iter().zip(&self.biases))
            .flat_map(|(g, (&s, &b))| g.iter().map(move |&v| s * f32::from(v) + b))
            .collect()
    }

    /// The same weights as blocks for Wick's kernels, or `None` when that would round a scale
    /// or bias (not f16-representable) or the shape does not split into blocks of 32.
    pub fn to_blocks(&self) -> Option<(WeightType, Vec<u8>)> {
        if !self.cols.is_multiple_of(self.group) {
            return None;
        }
        let blocks = self.q.len() / BLOCK;
        let headers = Headers::from_f32(&self.scales, &self.biases)?;
        blocks_with(self.bits, self.group, &headers, blocks, |b, out| {
            let q = &self.q[b * BLOCK..(b + 1) * BLOCK];
            match self.bits {
                // GGML's nibble order: byte i holds value i (low) and value i + 16 (high).
                4 => (0..16).for_each(|i| out[i] = q[i] | (q[i + 16] << 4)),
                _ => out.copy_from_slice(q),
            }
        })
    }

    /// [`Affine::unpack`] then [`Affine::to_blocks`] in one pass over the packed words, without
    /// the unpacked values in between (the browser's load time), the scales and biases already
    /// as block [`Headers`]: the same bytes, or `None` in the same cases.
    pub fn blocks_from_packed(
        packed: &[u8],
        bits: usize,
        group: usize,
        headers: &Headers,
    ) -> Option<(WeightType, Vec<u8>)> {
        let per_block = BLOCK * bits / 8;
        if !packed.len().is_multiple_of(per_block) {
            return None;
        }
        blocks_with(bits, group, headers, packed.len() / per_block, |b, out| {
            let q = &packed[b * per_block..(b + 1) * per_block];
            match bits {
                // Packed byte j holds values 2j (low nibble) and 2j + 1 (high); GGML's byte i
                // holds values i (low) and i + 16 (high).
                4 => {
                    let word = |i: usize| u32::from_le_bytes([q[i], q[i + 1], q[i + 2], q[i + 3]]);
                    for (half, i) in [0, 4].into_iter().enumerate() {
                        let v = spread_nibbles(word(i)) | spread_nibbles(word(i + 8)) << 4;
                        out[8 * half..8 * half + 8].copy_from_slice(&v.to_le_bytes());
                    }
                }
                // Little-endian words: the bytes are the values in order.
                _ => out.copy_from_slice(q),
            }
        })
    }

    /// MLX 4/32 or 8/32 exactly equal to GGML blocks of `Q4_1` or `Q8_0` (`rows` × `cols`),
    /// or `None` for other types or a `Q8_0` scale too large for its bias (−128·d) in f16.
    pub fn from_blocks(ty: WeightType, data: &[u8], rows: usize, cols: usize) -> Option<Self> {
        if !matches!(ty, WeightType::Q4_1 | WeightType::Q8_0 | WeightType::A8) {
            return None;
        }
        let blocks = rows.checked_mul(cols)? / BLOCK;
        let bb = ty.block_bytes();
        if data.len() != blocks.checked_mul(bb)? {
            return None;
        }
        let mut a = Self {
            bits: if ty == WeightType::Q4_1 { 4 } else { 8 },
            group: BLOCK,
            rows,
            cols,
            q: Vec::with_capacity(rows * cols),
            scales: Vec::with_capacity(blocks),
            biases: Vec::with_capacity(blocks),
        };
        for b in data.chunks_exact(bb) {
            let d = kernels::f16_to_f32(b[0], b[1]);
            match ty {
                WeightType::Q4_1 => {
                    a.scales.push(d);
                    a.biases.push(kernels::f16_to_f32(b[2], b[3]));
                    a.q.extend(b[4..20].iter().map(|v| v & 15));
                    a.q.extend(b[4..20].iter().map(|v| v >> 4));
                }
                WeightType::Q8_0 => {
                    let bias = -128.0 * d;
                    if !f16::from_f32(bias).is_finite() {
                        return None;
                    }
                    a.scales.push(d);
                    a.biases.push(bias);
                    a.q.extend(b[2..34].iter().map(|&v| (v as i8 as i16 + 128) as u8));
                }
                WeightType::A8 => {
                    a.scales.push(d);
                    a.biases.push(kernels::f16_to_f32(b[2], b[3]));
                    a.q.extend_from_slice(&b[4..36]);
                }
                WeightType::Q5_0 | WeightType::Q4K | WeightType::Q6K => return None,
            }
        }
        Some(a)
    }
}

impl Affine {
    /// MLX 4/32 equal to GGML `Q4_K` blocks (`rows` × `cols`) up to the f16 rounding of each
    /// group's scale and bias: a `Q4_K` super-block of 256 is eight groups of 32 four-bit values
    /// with a 6-bit scale and minimum each, times the block's f16 `d` and `dmin`. `None` if the
    /// bytes do not fit the shape.
    pub fn from_q4k(data: &[u8], rows: usize, cols: usize) -> Option<Self> {
        const SUPER: usize = 256;
        const BYTES: usize = 144;
        let n = rows.checked_mul(cols)?;
        if !cols.is_multiple_of(SUPER) || Some(data.len()) != (n / SUPER).checked_mul(BYTES) {
            return None;
        }
        let groups = rows * cols / BLOCK;
        let mut a = Self {
            bits: 4,
            group: BLOCK,
            rows,
            cols,
            q: Vec::with_capacity(rows * cols),
            scales: Vec::with_capacity(groups),
            biases: Vec::with_capacity(groups),
        };
        for b in data.chunks_exact(BYTES) {
            let (d, dmin) = (
                kernels::f16_to_f32(b[0], b[1]),
                kernels::f16_to_f32(b[2], b[3]),
            );
            let (sc, qs) = (&b[4..16], &b[16..BYTES]);
            // The 6-bit scale and minimum of group `j` (llama.cpp's packing of 8 pairs in 12 bytes).
            let scale_min = |j: usize| -> (u8, u8) {
                match j < 4 {
                    true => (sc[j] & 63, sc[j + 4] & 63),
                    false => (
                        (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4),
                        (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
                    ),
                }
            };
            // Each 32 bytes of `qs` hold two groups: low nibbles, then high nibbles.
            for (pair, q) in qs.chunks_exact(32).enumerate() {
                for (half, shift) in [(0, 0), (1, 4)] {
                    let (s, m) = scale_min(2 * pair + half);
                    a.scales.push(d * f32::from(s));
                    a.biases.push(-dmin * f32::from(m));
                    a.q.extend(q.iter().map(|v| (v >> shift) & 15));
                }
            }
        }
        Some(a)
    }
}

/// The eight nibbles of `x`, lowest first, one per byte (low half) of the result.
fn spread_nibbles(x: u32) -> u64 {
    let mut y = u64::from(x);
    y = (y | y << 16) & 0x0000_ffff_0000_ffff;
    y = (y | y << 8) & 0x00ff_00ff_00ff_00ff;
    (y | y << 4) & 0x0f0f_0f0f_0f0f_0f0f
}

/// Each group's scale and bias as a block stores them: f16 bits, little-endian, scale first.
#[derive(Debug, Clone, PartialEq)]
pub struct Headers(Vec<[u8; 4]>);

impl Headers {
    /// From f32 values, or `None` when one is not an f16 value (f16 would round it).
    pub fn from_f32(scales: &[f32], biases: &[f32]) -> Option<Self> {
        if scales.len() != biases.len() {
            return None;
        }
        let header = |(&s, &b): (&f32, &f32)| {
            let [s0, s1] = kernels::f32_to_f16_exact(s)?.to_le_bytes();
            let [b0, b1] = kernels::f32_to_f16_exact(b)?.to_le_bytes();
            Some([s0, s1, b0, b1])
        };
        scales
            .iter()
            .zip(biases)
            .map(header)
            .collect::<Option<_>>()
            .map(Self)
    }

    /// From the raw little-endian bytes of f16 scales and biases: copied, exact by construction.
    pub fn from_f16_bytes(scales: &[u8], biases: &[u8]) -> Option<Self> {
        if scales.len() != biases.len() || !scales.len().is_multiple_of(2) {
            return None;
        }
        let pairs = scales.chunks_exact(2).zip(biases.chunks_exact(2));
        Some(Self(pairs.map(|(s, b)| [s[0], s[1], b[0], b[1]]).collect()))
    }
}

/// `blocks` blocks for Wick's kernels (`Q4_1` for 4 bits, `A8` for 8): each block's group
/// header, then the values `payload(block, out)` writes. `None` when the group does not split
/// into blocks of 32 or the counts disagree.
fn blocks_with(
    bits: usize,
    group: usize,
    headers: &Headers,
    blocks: usize,
    mut payload: impl FnMut(usize, &mut [u8]),
) -> Option<(WeightType, Vec<u8>)> {
    if !group.is_multiple_of(BLOCK) || Some(blocks) != headers.0.len().checked_mul(group / BLOCK) {
        return None;
    }
    let ty = match bits {
        4 => WeightType::Q4_1,
        8 => WeightType::A8,
        _ => return None,
    };
    let per_group = group / BLOCK;
    let mut out = vec![0u8; blocks * ty.block_bytes()];
    for (b, block) in out.chunks_exact_mut(ty.block_bytes()).enumerate() {
        let (header, values) = block.split_at_mut(4);
        header.copy_from_slice(&headers.0[b / per_group]);
        payload(b, values);
    }
    Some((ty, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{noise, random_blocks};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn pack_unpack_round_trip() {
        for bits in BITS {
            let a = Affine::quantize(&noise(1, 4 * 128), 4, 128, bits, 64);
            let bytes: Vec<u8> = a.pack().iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(bytes.len(), 4 * 128 * bits / 8);
            let b = Affine::unpack(&bytes, bits, 64, 4, 128, a.scales.clone(), a.biases.clone());
            assert_eq!(a, b);
        }
    }

    /// Q4_K blocks (Candle's quantizer on noise) read as MLX 4/32 dequantize to what Candle's
    /// own Q4_K dequantizer gives, up to the f16 rounding of each group's scale and bias.
    #[test]
    fn q4k_blocks_read_as_4_bit_groups_of_32() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let (rows, cols) = (3, 512);
        let w = noise(7, rows * cols);
        let t = candle_core::Tensor::from_vec(w, (rows, cols), &candle_core::Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q4K).unwrap();
        let want: Vec<f32> = q
            .dequantize(&candle_core::Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let a = Affine::from_q4k(&q.data().unwrap(), rows, cols).expect("fits the shape");
        assert_eq!((a.bits, a.group, a.q.len()), (4, 32, rows * cols));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = a
            .dequantize()
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d <= 2e-3 * scale, "off by {d} (largest weight {scale})");
        assert!(Affine::from_q4k(&q.data().unwrap(), rows, cols + 256).is_none());
    }

    #[test]
    fn first_input_is_in_the_lowest_bits() {
        let mut a = Affine::quantize(&[0.0; 32], 1, 32, 4, 32);
        a.q[0] = 0xa;
        a.q[1] = 0x3;
        assert_eq!(a.pack()[0], 0x3a);
    }

    #[test]
    fn blocks_dequantize_to_the_formula_exactly() {
        for bits in BITS {
            for group in GROUPS {
                let a = Affine::quantize(&noise(group as u64, 3 * 256), 3, 256, bits, group);
                let (ty, blocks) = a.to_blocks().expect("f16 scales map exactly");
                let packed: Vec<u8> = a.pack().iter().flat_map(|w| w.to_le_bytes()).collect();
                let headers = Headers::from_f32(&a.scales, &a.biases).expect("f16 values");
                let direct = Affine::blocks_from_packed(&packed, bits, group, &headers);
                assert_eq!(direct, Some((ty, blocks.clone())), "B={bits} G={group}");
                // The same headers straight from f16 bytes, as an f16 file holds them.
                let f16s = |v: &[f32]| -> Vec<u8> {
                    v.iter()
                        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                        .collect()
                };
                let raw = Headers::from_f16_bytes(&f16s(&a.scales), &f16s(&a.biases));
                assert_eq!(raw.as_ref(), Some(&headers), "B={bits} G={group}");
                let mut got = vec![0f32; 3 * 256];
                ty.dequantize_row(&blocks, &mut got);
                assert_eq!(got, a.dequantize(), "B={bits} G={group}");
                let err = a
                    .dequantize()
                    .iter()
                    .zip(noise(group as u64, 3 * 256))
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    err < if bits == 4 { 0.07 } else { 0.005 },
                    "B={bits} G={group}: {err}"
                );
            }
        }
    }

    #[test]
    fn inexact_scales_are_refused() {
        let mut a = Affine::quantize(&noise(3, 64), 1, 64, 4, 32);
        a.scales[1] = 0.1f32; // not an f16 value
        assert!(a.to_blocks().is_none());
    }

    #[test]
    fn ggml_blocks_convert_losslessly() {
        for ty in [WeightType::Q4_1, WeightType::Q8_0, WeightType::A8] {
            let data = random_blocks(ty, 5, 8);
            let a = Affine::from_blocks(ty, &data, 2, 128).expect("converts");
            let mut want = vec![0f32; 256];
            ty.dequantize_row(&data, &mut want);
            assert_eq!(a.dequantize(), want, "{ty:?}");
        }
    }
}
