//! A bounds-checked safetensors reader and a small writer.
//!
//! The layout: an 8-byte little-endian header length, a JSON header mapping each tensor name to
//! `{dtype, shape, data_offsets}`, then the data. Every offset, shape and dtype is checked
//! against the bytes present, and tensors may not overlap, before anything is read. Errors name
//! the file and the tensor.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use half::{bf16, f16};
use serde_json::Value;

use crate::error::{Error, Result};

/// Largest header accepted: real headers are a few hundred KB even for huge models.
const MAX_HEADER: usize = 64 << 20;

/// Element types a safetensors file can hold that Wick reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Unsigned 32-bit integer (MLX's packed quantized weights).
    U32,
    /// Any other type the format allows: readable header, unusable tensor.
    Other(&'static str),
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "U32" => Self::U32,
            "F64" => Self::Other("F64"),
            "I64" => Self::Other("I64"),
            "I32" => Self::Other("I32"),
            "I16" => Self::Other("I16"),
            "U16" => Self::Other("U16"),
            "I8" => Self::Other("I8"),
            "U8" => Self::Other("U8"),
            "BOOL" => Self::Other("BOOL"),
            "U64" => Self::Other("U64"),
            "F8_E4M3" => Self::Other("F8_E4M3"),
            "F8_E5M2" => Self::Other("F8_E5M2"),
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 | Self::U32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Other("F64" | "I64" | "U64") => 8,
            Self::Other("I32") => 4,
            Self::Other("I16" | "U16") => 2,
            Self::Other(_) => 1,
        }
    }

    /// The name safetensors uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::U32 => "U32",
            Self::Other(n) => n,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Byte range within the whole file.
    pub range: Range<usize>,
}

/// Where a file's bytes are: in memory, or somewhere a range can be copied from (the browser
/// keeps a fetched file in JavaScript and hands over one tensor at a time, so wasm memory never
/// holds the whole file next to the weights made from it).
pub trait Bytes {
    /// Length of the file.
    fn len(&self) -> usize;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes in `range` (within `0..len()`).
    fn read(&self, range: Range<usize>) -> Cow<'_, [u8]>;
}

impl Bytes for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn read(&self, range: Range<usize>) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self[range])
    }
}

/// The file's bytes: a slice in memory, or a [`Bytes`] source.
#[derive(Clone, Copy)]
enum Source<'a> {
    Slice(&'a [u8]),
    Other(&'a dyn Bytes),
}

impl<'a> Source<'a> {
    fn len(&self) -> usize {
        match self {
            Self::Slice(b) => b.len(),
            Self::Other(b) => b.len(),
        }
    }

    fn read(&self, range: Range<usize>) -> Cow<'a, [u8]> {
        match self {
            Self::Slice(b) => Cow::Borrowed(&b[range]),
            Self::Other(b) => b.read(range),
        }
    }
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

/// A parsed safetensors header over the file's bytes.
#[derive(Debug)]
pub struct SafeTensors<'a> {
    /// The file's name, for messages.
    pub file: String,
    /// Every tensor by name.
    pub tensors: BTreeMap<String, TensorInfo>,
    /// The `__metadata__` strings, if any.
    pub metadata: BTreeMap<String, String>,
    bytes: Source<'a>,
}

impl<'a> SafeTensors<'a> {
    /// Parses and checks the header of `bytes`, the whole file named `file`.
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Self> {
        Self::parse_source(file, Source::Slice(bytes))
    }

    /// [`SafeTensors::parse`] over bytes that are read a tensor at a time.
    pub fn parse_from(file: &str, bytes: &'a dyn Bytes) -> Result<Self> {
        Self::parse_source(file, Source::Other(bytes))
    }

    fn parse_source(file: &str, bytes: Source<'a>) -> Result<Self> {
        let fail = |problem: String| Error::File {
            file: file.to_string(),
            problem,
        };
        let first = bytes.read(0..bytes.len().min(8));
        let len_bytes: [u8; 8] =
            first
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    fail(format!(
                        "{} bytes is too short for a safetensors file",
                        bytes.len()
                    ))
                })?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER as u64 || header_len + 8 > bytes.len() as u64 {
            return Err(fail(format!(
                "header length {header_len} does not fit the file's {} bytes (not safetensors, or truncated)",
                bytes.len()
            )));
        }
        let data_start = 8 + header_len as usize;
        let header: BTreeMap<String, Value> = serde_json::from_slice(&bytes.read(8..data_start))
            .map_err(|e| fail(format!("header is not a JSON object: {e}")))?;
        let data_len = bytes.len() - data_start;
        let mut tensors = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                if let Value::Object(m) = v {
                    for (k, v) in m {
                        if let Value::String(s) = v {
                            metadata.insert(k, s);
                        }
                    }
                }
                continue;
            }
            let info =
                tensor_info(&v, data_start, data_len).map_err(|problem| Error::FileTensor {
                    file: file.to_string(),
                    name: name.clone(),
                    problem,
                })?;
            tensors.insert(name, info);
        }
        // Empty tensors own no bytes: left in, one could sit between two that overlap.
        let mut spans: Vec<(&String, &TensorInfo)> = tensors
            .iter()
            .filter(|(_, t)| !t.range.is_empty())
            .collect();
        spans.sort_by_key(|(_, t)| (t.range.start, t.range.end));
        for pair in spans.windows(2) {
            let ((a, ta), (b, tb)) = (pair[0], pair[1]);
            if tb.range.start < ta.range.end {
                return Err(Error::FileTensor {
                    file: file.to_string(),
                    name: b.clone(),
                    problem: format!("its bytes overlap those of `{a}`"),
                });
            }
        }
        Ok(Self {
            file: file.to_string(),
            tensors,
            metadata,
            bytes,
        })
    }

    /// Adds the file's identity to `f` (see [`super::fingerprint`]): every tensor's name,
    /// type, shape and samples of its bytes.
    pub fn fingerprint_into(&self, f: &mut super::fingerprint::Fingerprint) {
        f.add(self.file.as_bytes());
        for (name, t) in &self.tensors {
            f.add(format!("{name} {:?} {:?}", t.dtype, t.shape).as_bytes());
            f.add_tensor(t.range.clone(), |r| self.bytes.read(r));
        }
    }

    /// A tensor's description, or an error naming the file and the tensor.
    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| self.tensor_error(name, "is missing"))
    }

    /// A tensor's raw bytes.
    pub fn bytes(&self, name: &str) -> Result<Cow<'a, [u8]>> {
        let info = self.info(name)?;
        Ok(self.bytes.read(info.range.clone()))
    }

    /// A float tensor (F32, F16 or BF16) as f32 values, with its shape.
    pub fn f32s(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self.info(name)?;
        let raw = self.bytes.read(info.range.clone());
        let values = match info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            // The fast exact conversion; infinities and NaNs through `half`.
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| match b[1] & 0x7c {
                    0x7c => f16::from_le_bytes([b[0], b[1]]).to_f32(),
                    _ => crate::kernels::f16_to_f32(b[0], b[1]),
                })
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(self.tensor_error(
                    name,
                    &format!("has dtype {}, a float type was expected", other.name()),
                ))
            }
        };
        Ok((values, info.shape.clone()))
    }

    /// A U32 tensor's values, with its shape.
    pub fn u32s(&self, name: &str) -> Result<(Cow<'a, [u8]>, Vec<usize>)> {
        let info = self.info(name)?;
        if info.dtype != Dtype::U32 {
            return Err(self.tensor_error(
                name,
                &format!("has dtype {}, U32 was expected", info.dtype.name()),
            ));
        }
        Ok((self.bytes.read(info.range.clone()), info.shape.clone()))
    }

    /// An error about tensor `name` of this file.
    pub fn tensor_error(&self, name: &str, problem: &str) -> Error {
        Error::FileTensor {
            file: self.file.clone(),
            name: name.to_string(),
            problem: problem.to_string(),
        }
    }
}

/// Reads and checks one header entry against the data section's length.
fn tensor_info(
    v: &Value,
    data_start: usize,
    data_len: usize,
) -> std::result::Result<TensorInfo, String> {
    let dtype_name = v
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or("has no dtype string")?;
    let dtype =
        Dtype::parse(dtype_name).ok_or_else(|| format!("has unknown dtype {dtype_name}"))?;
    let shape = v
        .get("shape")
        .and_then(Value::as_array)
        .ok_or("has no shape array")?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or("has a shape entry that is not a non-negative integer")?;
    if shape.len() > 8 {
        return Err(format!("has {} dimensions", shape.len()));
    }
    let offsets = v
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or("has no data_offsets pair")?;
    let (begin, end) = match (offsets[0].as_u64(), offsets[1].as_u64()) {
        (Some(b), Some(e)) if b <= e => (b, e),
        _ => return Err("has data_offsets that are not an increasing pair of integers".into()),
    };
    if end > data_len as u64 {
        return Err(format!(
            "data_offsets {begin}..{end} lie outside the data section of {data_len} bytes (truncated file?)"
        ));
    }
    let elems = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("has a shape whose element count overflows")?;
    let want = elems
        .checked_mul(dtype.size())
        .ok_or("has a shape whose byte size overflows")?;
    if want as u64 != end - begin {
        return Err(format!(
            "shape {shape:?} of {} needs {want} bytes, data_offsets give {}",
            dtype.name(),
            end - begin
        ));
    }
    let start = data_start + begin as usize;
    Ok(TensorInfo {
        dtype,
        shape,
        range: start..data_start + end as usize,
    })
}

/// Builds a safetensors file from named tensors (`dtype`, `shape`, little-endian bytes).
#[derive(Debug, Default)]
pub struct Writer {
    tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
    metadata: BTreeMap<String, String>,
}

impl Writer {
    /// Adds a tensor; its byte length must match the shape.
    pub fn add(&mut self, name: &str, dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) {
        debug_assert_eq!(shape.iter().product::<usize>() * dtype.size(), data.len());
        self.tensors.insert(name.to_string(), (dtype, shape, data));
    }

    /// Adds f32 values stored as f16.
    pub fn add_f16(&mut self, name: &str, shape: Vec<usize>, values: &[f32]) {
        let data = values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        self.add(name, Dtype::F16, shape, data);
    }

    /// Adds f32 values.
    pub fn add_f32(&mut self, name: &str, shape: Vec<usize>, values: &[f32]) {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add(name, Dtype::F32, shape, data);
    }

    /// Adds u32 values.
    pub fn add_u32(&mut self, name: &str, shape: Vec<usize>, values: &[u32]) {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add(name, Dtype::U32, shape, data);
    }

    /// Sets a `__metadata__` entry.
    pub fn metadata(&mut self, key: &str, value: &str) {
        self.metadata.insert(key.to_string(), value.to_string());
    }

    /// The file's bytes: header (padded to 8 bytes) then data in name order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        if !self.metadata.is_empty() {
            header.insert("__metadata__".into(), serde_json::json!(self.metadata));
        }
        let mut offset = 0usize;
        for (name, (dtype, shape, data)) in &self.tensors {
            header.insert(
                name.clone(),
                serde_json::json!({
                    "dtype": dtype.name(),
                    "shape": shape,
                    "data_offsets": [offset, offset + data.len()],
                }),
            );
            offset += data.len();
        }
        let mut json = Value::Object(header).to_string().into_bytes();
        while !json.len().is_multiple_of(8) {
            json.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + json.len() + offset);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for (_, _, data) in self.tensors.values() {
            out.extend_from_slice(data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample() -> Vec<u8> {
        let mut w = Writer::default();
        w.add_f32("a", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        w.add_f16("b", vec![2], &[0.5, -1.5]);
        w.add_u32("c", vec![1], &[0xdead_beef]);
        w.to_bytes()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let st = SafeTensors::parse("x.safetensors", &bytes).unwrap();
        assert_eq!(
            st.f32s("a").unwrap(),
            (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![2, 3])
        );
        assert_eq!(st.f32s("b").unwrap().0, vec![0.5, -1.5]);
        assert_eq!(&*st.u32s("c").unwrap().0, &0xdead_beefu32.to_le_bytes());
        let err = st.f32s("c").unwrap_err().to_string();
        assert!(
            err.contains("x.safetensors") && err.contains("`c`"),
            "{err}"
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(
                SafeTensors::parse("t", &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    fn with_header(json: &str, data: usize) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out.extend(std::iter::repeat_n(0u8, data));
        out
    }

    #[test]
    fn bad_headers_are_named_errors() {
        let cases = [
            ("not json", "not a JSON object"),
            (
                r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                "outside",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                "needs 12 bytes",
            ),
            (
                r#"{"w":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}"#,
                "unknown dtype",
            ),
            (
                r#"{"v":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#,
                "overlap",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"c":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                "overlap",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[65536,65536,65536,65536],"data_offsets":[0,8]}}"#,
                "overflows",
            ),
        ];
        for (json, want) in cases {
            let bytes = with_header(json, 8);
            let err = SafeTensors::parse("m.safetensors", &bytes)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want) && err.contains("m.safetensors"),
                "{json}: {err}"
            );
        }
        let huge = u64::MAX.to_le_bytes();
        assert!(SafeTensors::parse("h", &huge).is_err());
    }
}
