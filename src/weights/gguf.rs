//! A bounds-checked GGUF reader over an in-memory byte buffer.
//!
//! Candle's own reader trusts the lengths written in the file (a lying string length allocates
//! whatever it says), so Wick parses the header itself: every count and length is checked against
//! the bytes that are actually there before anything is allocated. Tensor data is not copied here;
//! [`Gguf::tensor`] builds a candle [`QTensor`] from the slice on demand.

use std::collections::BTreeMap;
use std::ops::{Deref, Range};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{ggml_file, GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// Most array items all metadata may hold together. Each item becomes a value of 32 bytes, so a
/// file of one-byte items could otherwise ask for 32 times its size; real vocabularies (tokens,
/// scores, types, merges of 262,144 tokens) hold under a million.
pub const MAX_METADATA_ITEMS: usize = 1 << 22;

/// Most bytes the metadata may span (a real model's is a few MB: its vocabulary).
pub const MAX_METADATA_BYTES: usize = 64 << 20;

/// Where one tensor lives in the file and what it holds.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Element type (quantization) of the tensor.
    pub dtype: GgmlDType,
    /// Shape in candle's order (outermost dimension first).
    pub dims: Vec<usize>,
    /// Byte range of the tensor's data within the whole file.
    pub range: std::ops::Range<usize>,
}

/// A parsed GGUF header plus a borrow of the bytes its tensors live in.
#[derive(Debug)]
pub struct Gguf<'a> {
    /// GGUF format version (1, 2 or 3).
    pub version: u32,
    /// All metadata key/value pairs.
    pub metadata: BTreeMap<String, Value>,
    /// All tensors by name.
    pub tensors: BTreeMap<String, TensorInfo>,
    bytes: &'a [u8],
    /// The buffer `bytes` lies in, when the caller shares it: tensors then point into it.
    shared: Option<SharedBytes>,
}

/// A file's bytes held for as long as any tensor uses them: a buffer read whole (the browser)
/// or a memory map of the file (the CLI), so the file is the only copy of the weights.
#[derive(Clone)]
struct SharedBytes(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl SharedBytes {
    fn bytes(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.bytes().len())
    }
}

/// The bytes of one tensor: a window on the shared file buffer, or a copy of its own.
#[derive(Debug, Clone)]
pub struct TensorData {
    buf: SharedBytes,
    range: Range<usize>,
}

impl Deref for TensorData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf.bytes()[self.range.clone()]
    }
}

impl TensorData {
    /// Bytes of their own: a tensor converted or repacked at load.
    pub fn owned(bytes: Vec<u8>) -> Self {
        let range = 0..bytes.len();
        Self {
            buf: SharedBytes(Arc::new(bytes)),
            range,
        }
    }

    /// The sub-window `range` (relative to these bytes) sharing the same buffer, if it fits.
    pub fn slice(&self, range: Range<usize>) -> Option<Self> {
        if range.start > range.end || range.end > self.range.len() {
            return None;
        }
        let start = self.range.start + range.start;
        Some(Self {
            buf: self.buf.clone(),
            range: start..start + range.len(),
        })
    }
}

/// A cursor that refuses to read past the end of the buffer.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    version: u32,
    /// Metadata array items read so far (see [`MAX_METADATA_ITEMS`]).
    items: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated {
                what: what.to_string(),
                start: self.pos as u64,
                end: self.pos as u64 + n as u64,
                len: self.bytes.len() as u64,
            }),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count or length: 32-bit in GGUF v1, 64-bit later.
    fn len(&mut self, what: &str) -> Result<usize> {
        let n = if self.version == 1 {
            u64::from(self.u32(what)?)
        } else {
            self.u64(what)?
        };
        usize::try_from(n).map_err(|_| Error::Corrupt(format!("{what}: length {n} is absurd")))
    }

    /// A count of items each at least `min_item` bytes long, checked against what is left.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize> {
        let n = self.len(what)?;
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(Error::Corrupt(format!(
                "{what} is {n}, more than the {} bytes left in the file can hold",
                self.remaining()
            )));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        if n > MAX_METADATA_BYTES {
            return Err(Error::Corrupt(format!(
                "{what}: a string of {n} bytes, more than the {} MB any model's metadata needs",
                MAX_METADATA_BYTES >> 20
            )));
        }
        let raw = self.take(n, what)?;
        // Some writers add trailing NULs; strings are meant to be UTF-8 but are not always.
        let raw = match raw.iter().rposition(|&b| b != 0) {
            Some(last) => &raw[..=last],
            None => &raw[..0],
        };
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    fn value(&mut self, ty: u32, what: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(self.array::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Error::Corrupt(format!("{what}: bool byte {b}"))),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth > 2 {
                    return Err(Error::Corrupt(format!("{what}: arrays nested too deeply")));
                }
                let item_ty = self.u32(what)?;
                let min_item = match item_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => return Err(Error::Corrupt(format!("{what}: unknown value type {t}"))),
                };
                let n = self.count(what, min_item)?;
                self.items = self.items.saturating_add(n);
                if self.items > MAX_METADATA_ITEMS {
                    return Err(Error::Corrupt(format!(
                        "metadata arrays hold more than {MAX_METADATA_ITEMS} items (`{what}` alone has {n}): more than any model's vocabulary"
                    )));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item_ty, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            t => return Err(Error::Corrupt(format!("{what}: unknown value type {t}"))),
        })
    }
}

/// Maps a GGML type id to candle's type; `None` for types candle cannot hold.
fn ggml_dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

impl<'a> Gguf<'a> {
    /// Parses the header of a GGUF file held in `bytes`; tensor data stays where it is.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 4 || &bytes[..4] != MAGIC {
            let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
            return Err(Error::NotGguf(format!(
                "it starts with bytes [{}] instead of \"GGUF\"",
                head.join(" ")
            )));
        }
        let mut r = Reader {
            bytes,
            pos: 4,
            version: 3,
            items: 0,
        };
        let version = r.u32("GGUF version")?;
        if !(1..=3).contains(&version) {
            return Err(Error::NotGguf(format!(
                "unsupported GGUF version {version}"
            )));
        }
        r.version = version;
        // A tensor record is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        let n_tensors = r.count("tensor count", 24)?;
        // A metadata record is at least 8 (key len) + 4 (type) + 1 (value) bytes.
        let n_kv = r.count("metadata count", 13)?;

        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32(&key)?;
            let value = r.value(ty, &key, 0)?;
            if r.pos > MAX_METADATA_BYTES {
                return Err(Error::Corrupt(format!(
                    "metadata runs past {} MB (at `{key}`): more than any model's vocabulary needs",
                    MAX_METADATA_BYTES >> 20
                )));
            }
            metadata.insert(key, value);
        }

        let mut raw_tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32(&name)? as usize;
            if n_dims == 0 || n_dims > 4 {
                return Err(Error::Tensor {
                    name,
                    problem: format!("has {n_dims} dimensions (GGUF allows 1 to 4)"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = if version == 1 {
                    u64::from(r.u32(&name)?)
                } else {
                    r.u64(&name)?
                };
                dims.push(usize::try_from(d).unwrap_or(usize::MAX));
            }
            dims.reverse();
            let type_id = r.u32(&name)?;
            let offset = r.u64(&name)?;
            raw_tensors.push((name, dims, type_id, offset));
        }

        let alignment = match metadata.get("general.alignment") {
            Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => u64::from(*a),
            Some(_) => {
                return Err(Error::Corrupt(
                    "general.alignment is not a power of two".into(),
                ))
            }
            None => DEFAULT_ALIGNMENT,
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;

        let mut tensors = BTreeMap::new();
        for (name, dims, type_id, offset) in raw_tensors {
            let Some(dtype) = ggml_dtype(type_id) else {
                return Err(Error::UnsupportedQuantization {
                    name,
                    ggml_type: format!("id {type_id}"),
                });
            };
            let elems = dims
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&e| e > 0);
            let Some(elems) = elems else {
                return Err(Error::Tensor {
                    name,
                    problem: format!("shape {dims:?} is empty or absurdly large"),
                });
            };
            if !elems.is_multiple_of(dtype.block_size()) {
                return Err(Error::Tensor {
                    name,
                    problem: format!(
                        "{elems} elements is not a multiple of the {dtype:?} block size {}",
                        dtype.block_size()
                    ),
                });
            }
            // Elements that fit in a usize can still need more bytes than that (4 per F32 element).
            let Some(size) = (elems / dtype.block_size()).checked_mul(dtype.type_size()) else {
                return Err(Error::Tensor {
                    name,
                    problem: format!(
                        "{dtype:?} shape {dims:?} needs more bytes than can be addressed"
                    ),
                });
            };
            let size = size as u64;
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(size));
            match (start, end) {
                (Some(start), Some(end)) if end <= bytes.len() as u64 => {
                    let range = start as usize..end as usize;
                    if tensors.contains_key(&name) {
                        return Err(Error::Tensor {
                            name,
                            problem: "appears twice".into(),
                        });
                    }
                    tensors.insert(name, TensorInfo { dtype, dims, range });
                }
                _ => {
                    return Err(Error::Truncated {
                        what: format!("tensor `{name}`"),
                        start: data_start.saturating_add(offset),
                        end: data_start.saturating_add(offset).saturating_add(size),
                        len: bytes.len() as u64,
                    })
                }
            }
        }
        // Shared bytes would let a small file name the same megabytes a thousand times, and each
        // tensor loaded is a copy. Every range is non-empty, so checking neighbours suffices.
        let mut spans: Vec<(&String, &Range<usize>)> =
            tensors.iter().map(|(n, t)| (n, &t.range)).collect();
        spans.sort_by_key(|(_, r)| (r.start, r.end));
        for pair in spans.windows(2) {
            let ((a, ra), (b, rb)) = (pair[0], pair[1]);
            if rb.start < ra.end {
                return Err(Error::Tensor {
                    name: b.clone(),
                    problem: format!("its data overlaps that of `{a}`"),
                });
            }
        }
        Ok(Self {
            version,
            metadata,
            tensors,
            bytes,
            shared: None,
        })
    }

    /// The file's identity for KV snapshots (see [`super::fingerprint`]): samples of its header
    /// (metadata, vocabulary, tensor table) and of every tensor.
    pub fn fingerprint(&self) -> [u8; 32] {
        let data_start = self.tensors.values().map(|t| t.range.start).min();
        let mut f = super::fingerprint::Fingerprint::new("gguf");
        f.add_sampled(&self.bytes[..data_start.unwrap_or(self.bytes.len())]);
        for t in self.tensors.values() {
            f.add_tensor(t.range.clone(), |r| {
                std::borrow::Cow::Borrowed(&self.bytes[r])
            });
        }
        f.finish()
    }

    /// Parses a file held in a shared buffer; [`Gguf::tensor_data`] then copies nothing, so the
    /// file's bytes are the only copy of the weights that use it.
    pub fn parse_shared<T: AsRef<[u8]> + Send + Sync + 'static>(file: &'a Arc<T>) -> Result<Self> {
        let mut g = Self::parse((**file).as_ref())?;
        g.shared = Some(SharedBytes(file.clone()));
        Ok(g)
    }

    /// A tensor's bytes, shared with the file buffer when it was parsed with `parse_shared`.
    pub fn tensor_data(&self, name: &str) -> Result<(&TensorInfo, TensorData)> {
        let (info, raw) = self.tensor_bytes(name)?;
        let data = match &self.shared {
            Some(buf) => TensorData {
                buf: buf.clone(),
                range: info.range.clone(),
            },
            None => TensorData {
                buf: SharedBytes(Arc::new(raw.to_vec())),
                range: 0..raw.len(),
            },
        };
        Ok((info, data))
    }

    /// The raw bytes of a tensor as stored in the file.
    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorInfo, &'a [u8])> {
        let info = self.tensors.get(name).ok_or_else(|| Error::Tensor {
            name: name.to_string(),
            problem: "is missing from the file".into(),
        })?;
        Ok((info, &self.bytes[info.range.clone()]))
    }

    /// Copies a tensor out of the file into a candle [`QTensor`] on `device`.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let (info, raw) = self.tensor_bytes(name)?;
        qtensor(info.dtype, raw, &info.dims, device)
    }

    /// A metadata value, or a readable error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata
            .get(key)
            .ok_or_else(|| Error::Metadata(format!("key `{key}` is missing")))
    }

    /// An unsigned integer metadata value of any width.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = match self.get(key)? {
            Value::U8(v) => u64::from(*v),
            Value::U16(v) => u64::from(*v),
            Value::U32(v) => u64::from(*v),
            Value::U64(v) => *v,
            Value::I8(v) if *v >= 0 => *v as u64,
            Value::I16(v) if *v >= 0 => *v as u64,
            Value::I32(v) if *v >= 0 => *v as u64,
            Value::I64(v) if *v >= 0 => *v as u64,
            other => {
                return Err(Error::Metadata(format!(
                    "`{key}` should be a non-negative integer, found {other:?}"
                )))
            }
        };
        usize::try_from(v).map_err(|_| Error::Metadata(format!("`{key}` = {v} is absurd")))
    }

    /// A floating-point metadata value.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match self.get(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            other => Err(Error::Metadata(format!(
                "`{key}` should be a float, found {other:?}"
            ))),
        }
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(Error::Metadata(format!(
                "`{key}` should be a string, found {:?}",
                other.value_type()
            ))),
        }
    }

    /// A boolean metadata value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.get(key)? {
            Value::Bool(b) => Ok(*b),
            other => Err(Error::Metadata(format!(
                "`{key}` should be a bool, found {:?}",
                other.value_type()
            ))),
        }
    }

    /// An array metadata value.
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        match self.get(key)? {
            Value::Array(a) => Ok(a),
            other => Err(Error::Metadata(format!(
                "`{key}` should be an array, found {:?}",
                other.value_type()
            ))),
        }
    }
}

/// Builds a [`QTensor`] from raw GGML bytes, copying them into storage with the right alignment.
pub fn qtensor(dtype: GgmlDType, raw: &[u8], dims: &[usize], device: &Device) -> Result<QTensor> {
    let elems = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let expected = elems.and_then(|e| (e / dtype.block_size()).checked_mul(dtype.type_size()));
    let (Some(elems), Some(expected)) = (elems, expected) else {
        return Err(Error::Corrupt(format!(
            "{dtype:?} tensor of shape {dims:?} is too large to address"
        )));
    };
    if raw.len() != expected || !elems.is_multiple_of(dtype.block_size()) {
        return Err(Error::Corrupt(format!(
            "{dtype:?} tensor of shape {dims:?} needs {expected} bytes, got {}",
            raw.len()
        )));
    }
    // Candle reinterprets the bytes as blocks in place, so they must be aligned for the block type.
    if (raw.as_ptr() as usize).is_multiple_of(8) {
        Ok(ggml_file::qtensor_from_ggml(
            dtype,
            raw,
            dims.to_vec(),
            device,
        )?)
    } else {
        let mut aligned = vec![0u64; raw.len().div_ceil(8)];
        let dst = bytemuck_bytes_mut(&mut aligned);
        dst[..raw.len()].copy_from_slice(raw);
        Ok(ggml_file::qtensor_from_ggml(
            dtype,
            &dst[..raw.len()],
            dims.to_vec(),
            device,
        )?)
    }
}

/// Views a `u64` buffer as bytes (always sound: u8 has no alignment or validity requirement).
fn bytemuck_bytes_mut(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: the pointer and length cover exactly the u64 buffer, and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 8) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;

    /// A GGUF with only the given metadata (and no tensors), written by candle's writer.
    fn header(metadata: &[(&str, Value)]) -> Vec<u8> {
        let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let mut out = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut out, &md, &[]).unwrap();
        out.into_inner()
    }

    fn sample() -> Vec<u8> {
        header(&[
            ("u8", Value::U8(7)),
            ("u64", Value::U64(1 << 30)),
            ("i32", Value::I32(12)),
            ("neg", Value::I32(-1)),
            ("f32", Value::F32(0.5)),
            ("f64", Value::F64(0.25)),
            ("s", Value::String("hi".into())),
            ("b", Value::Bool(true)),
            ("a", Value::Array(vec![Value::U32(1), Value::U32(2)])),
        ])
    }

    /// The message of a metadata error, failing the test on anything else.
    fn metadata_err<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Metadata(m)) => m,
            other => panic!("expected a metadata error, got {other:?}"),
        }
    }

    #[test]
    fn getters_read_their_types() {
        let bytes = sample();
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.version, 2);
        assert!(g.tensors.is_empty());
        assert_eq!(g.get_usize("u8").unwrap(), 7);
        assert_eq!(g.get_usize("u64").unwrap(), 1 << 30);
        assert_eq!(g.get_usize("i32").unwrap(), 12);
        assert_eq!(g.get_f32("f32").unwrap(), 0.5);
        assert_eq!(g.get_f32("f64").unwrap(), 0.25);
        assert_eq!(g.get_str("s").unwrap(), "hi");
        assert!(g.get_bool("b").unwrap());
        assert_eq!(g.get_array("a").unwrap().len(), 2);
    }

    #[test]
    fn getters_name_the_key_and_the_wrong_type() {
        let bytes = sample();
        let g = Gguf::parse(&bytes).unwrap();
        let cases = [
            (
                metadata_err(g.get_usize("s")),
                "`s` should be a non-negative integer",
            ),
            (
                metadata_err(g.get_usize("neg")),
                "`neg` should be a non-negative integer",
            ),
            (
                metadata_err(g.get_usize("f32")),
                "`f32` should be a non-negative integer",
            ),
            (metadata_err(g.get_f32("u8")), "`u8` should be a float"),
            (metadata_err(g.get_str("b")), "`b` should be a string"),
            (metadata_err(g.get_bool("s")), "`s` should be a bool"),
            (metadata_err(g.get_array("i32")), "`i32` should be an array"),
            (metadata_err(g.get_str("nope")), "key `nope` is missing"),
            (metadata_err(g.get_usize("nope")), "key `nope` is missing"),
        ];
        for (msg, want) in cases {
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn bad_alignment_and_nul_padded_strings() {
        let bytes = header(&[("general.alignment", Value::U32(24))]);
        assert!(matches!(Gguf::parse(&bytes), Err(Error::Corrupt(m)) if m.contains("alignment")));
        let bytes = header(&[("s", Value::String("ab\0\0".into()))]);
        assert_eq!(Gguf::parse(&bytes).unwrap().get_str("s").unwrap(), "ab");
    }

    #[test]
    fn unaligned_tensor_bytes_are_copied_before_use() {
        let q = QTensor::quantize(
            &candle_core::Tensor::arange(0f32, 64.0, &Device::Cpu).unwrap(),
            GgmlDType::Q8_0,
        )
        .unwrap();
        let raw = q.data().unwrap();
        let mut shifted = vec![0u8; raw.len() + 1];
        shifted[1..].copy_from_slice(&raw);
        let t = qtensor(GgmlDType::Q8_0, &shifted[1..], &[64], &Device::Cpu).unwrap();
        let back: Vec<f32> = t.dequantize(&Device::Cpu).unwrap().to_vec1().unwrap();
        assert!((back[63] - 63.0).abs() < 0.5, "{}", back[63]);
        assert!(matches!(
            qtensor(GgmlDType::Q8_0, &shifted[1..10], &[64], &Device::Cpu),
            Err(Error::Corrupt(_))
        ));
    }
}
