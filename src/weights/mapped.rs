//! A GGUF file mapped into memory (native only): the weights Wick's own kernels run are read in
//! place from the map, so the file's pages are the one copy of them, and the pages of tensors
//! copied at load (into Candle's blocks, or dequantized) are handed back to the kernel as soon as
//! they are copied, so they are not counted twice.

use std::fs::File;
use std::sync::Arc;

use candle_core::Device;
use memmap2::{Mmap, UncheckedAdvice};

use super::{Gguf, TensorSource, WeightTensor};
use crate::error::{Error, Result};

/// A read-only memory map of a whole file.
pub struct MappedFile(Mmap);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &str) -> Result<Arc<Self>> {
        let io = |source| Error::Io {
            path: path.to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every reader of a model file, Wick assumes nobody
        // truncates or rewrites the file while it runs (a rewrite would change the weights, a
        // truncation would end the process with SIGBUS).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Ok(Arc::new(Self(map)))
    }

    /// Drops this process's resident pages of `range`; later reads fault them in from the file.
    fn release(&self, range: std::ops::Range<usize>) {
        // SAFETY: the map is read-only and file-backed, so MADV_DONTNEED discards nothing that
        // cannot be read back: the bytes seen afterwards are the file's, as before. A failure
        // only leaves the pages resident.
        let _ = unsafe {
            self.0
                .unchecked_advise_range(UncheckedAdvice::DontNeed, range.start, range.len())
        };
    }
}

/// A GGUF parsed from a [`MappedFile`] as a [`TensorSource`] that releases the pages of every
/// tensor it copies.
pub struct Mapped<'a> {
    /// The parsed file (with [`Gguf::parse_shared`] on the map).
    pub gguf: &'a Gguf<'a>,
    /// The map it was parsed from.
    pub file: &'a MappedFile,
}

impl TensorSource for Mapped<'_> {
    fn contains(&self, name: &str) -> bool {
        self.gguf.contains(name)
    }

    fn load(&self, name: &str, device: &Device) -> Result<WeightTensor> {
        let t = self.gguf.load(name, device)?;
        if !matches!(t, WeightTensor::Blocks { .. }) {
            if let Some(info) = self.gguf.tensors.get(name) {
                self.file.release(info.range.clone());
            }
        }
        Ok(t)
    }
}
