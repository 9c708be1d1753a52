//! A model folder's tokenizer and chat template, parsed on another of rayon's threads while the
//! model is built on this one (each takes about a tenth of a second in the browser).

use std::sync::mpsc;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use crate::weights::safetensors::Bytes;
use crate::weights::ModelFolder;

/// A tokenizer and the folder's chat template, if it has one.
pub(super) type Parsed = (Tokenizer, Option<String>);

/// Parses `folder`'s tokenizer and template.
fn parse(folder: &ModelFolder) -> Result<Parsed> {
    Ok((Tokenizer::from_folder(folder)?, folder.chat_template()?))
}

/// The parse, under way or done.
pub(super) enum Parsing {
    /// Parsed here, on the caller's thread.
    Ready(Box<Result<Parsed>>),
    /// Running on a pool thread, to be received.
    Beside(mpsc::Receiver<Result<Parsed>>),
}

impl Parsing {
    /// Starts parsing `folder`'s tokenizer: on a pool thread when rayon has one to spare (not
    /// from inside the pool, whose threads may all be waiting; not in a wasm build without
    /// threads, where rayon runs spawned work only on the caller's thread), else at [`Self::wait`].
    pub(super) fn start(folder: &ModelFolder) -> Self {
        let spare = cfg!(any(not(target_arch = "wasm32"), feature = "threads"))
            && rayon::current_thread_index().is_none();
        if !spare {
            return Self::Ready(Box::new(parse(folder)));
        }
        let files = folder.small_files();
        let (tx, rx) = mpsc::channel();
        rayon::spawn(move || {
            // A panic drops the sender, which `wait` reports; the receiver is gone only if the
            // build failed first, and its error is the one told.
            let parsed = std::panic::catch_unwind(|| {
                let sources: Vec<(String, &dyn Bytes)> = files
                    .iter()
                    .map(|(n, b)| (n.clone(), b as &dyn Bytes))
                    .collect();
                parse(&ModelFolder::new(&sources))
            });
            if let Ok(parsed) = parsed {
                let _ = tx.send(parsed);
            }
        });
        Self::Beside(rx)
    }

    /// The parsed tokenizer and template.
    pub(super) fn wait(self) -> Result<Parsed> {
        match self {
            Self::Ready(r) => *r,
            Self::Beside(rx) => rx
                .recv()
                .map_err(|_| Error::Tokenizer("the tokenizer's parse stopped unfinished".into()))?,
        }
    }
}
