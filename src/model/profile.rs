//! Where a forward pass spends its time, stage by stage (`wick bench --profile`).
//!
//! Off by default: then a [`span`] costs one relaxed atomic load. When [`set_enabled`], each
//! stage's wall time on the calling thread (the one leading the thread team, so a parallel
//! matmul counts once, start to finish) and its number of calls add up in global counters until
//! [`take`] reads and clears them. The counters are kept apart per phase — a forward of several
//! tokens is a prefill chunk, one of a single token a decode step ([`forward`]) — so a caller
//! that cannot stop between the two (the browser's engine) still reads both ([`take_phases`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use web_time::Instant;

/// A stage of the forward pass (and the sampling after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Token embedding lookup (and learned positions).
    Embed,
    /// Every norm: before attention and feed-forward, q/k norms, post norms, the final norm.
    Norm,
    /// The q, k and v projections.
    QkvMatmul,
    /// Rotary embeddings of q and k, and q's rescaling.
    Rope,
    /// Writing the chunk's keys and values into the KV cache.
    KvCache,
    /// Scores, softmax and the weighted sum of values.
    Attention,
    /// Attention's output projection.
    OutMatmul,
    /// The feed-forward's gate and up projections (or its one input projection).
    GateUpMatmul,
    /// The feed-forward's activation and gating product.
    Activation,
    /// The feed-forward's down projection.
    DownMatmul,
    /// The residual additions.
    Residual,
    /// The output head over the vocabulary (and its softcap).
    LmHead,
    /// Picking the next token from the logits.
    Sampling,
}

impl Stage {
    /// Every stage, in the order the data meets them.
    pub const ALL: [Stage; 13] = [
        Stage::Embed,
        Stage::Norm,
        Stage::QkvMatmul,
        Stage::Rope,
        Stage::KvCache,
        Stage::Attention,
        Stage::OutMatmul,
        Stage::GateUpMatmul,
        Stage::Activation,
        Stage::DownMatmul,
        Stage::Residual,
        Stage::LmHead,
        Stage::Sampling,
    ];

    /// A short label for tables.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Embed => "embedding",
            Stage::Norm => "norms",
            Stage::QkvMatmul => "matmul q/k/v",
            Stage::Rope => "rope",
            Stage::KvCache => "KV cache write",
            Stage::Attention => "attention",
            Stage::OutMatmul => "matmul attention out",
            Stage::GateUpMatmul => "matmul gate/up",
            Stage::Activation => "activation × up",
            Stage::DownMatmul => "matmul down",
            Stage::Residual => "residual adds",
            Stage::LmHead => "lm_head",
            Stage::Sampling => "sampling",
        }
    }
}

/// The two phases a forward can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A forward of several prompt tokens.
    Prefill,
    /// A forward of one token (and the sampling after it).
    Decode,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The phase of the latest forward: spans count there.
static PHASE: AtomicUsize = AtomicUsize::new(Phase::Decode as usize);
static NANOS: [[AtomicU64; 13]; 2] = [const { [const { AtomicU64::new(0) }; 13] }; 2];
static CALLS: [[AtomicU64; 13]; 2] = [const { [const { AtomicU64::new(0) }; 13] }; 2];
/// Per phase: whole forwards' wall time and count.
static FORWARD_NANOS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static FORWARDS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Turns the counters on or off (for the whole process).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Each stage's seconds and calls since the last `take`, in [`Stage::ALL`]'s order, both
/// phases together; clears them.
pub fn take() -> Vec<(Stage, f64, u64)> {
    let [p, d] = take_phases();
    p.stages
        .into_iter()
        .zip(d.stages)
        .map(|((s, a, n), (_, b, m))| (s, a + b, n + m))
        .collect()
}

/// What one phase counted: its forwards and their wall time, and each stage's seconds and calls
/// in [`Stage::ALL`]'s order.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseProfile {
    /// Forwards run (prefill chunks, or decode steps).
    pub forwards: u64,
    /// Their wall time, start to finish.
    pub seconds: f64,
    /// Each stage's seconds and calls.
    pub stages: Vec<(Stage, f64, u64)>,
}

/// Prefill's and decode's counts since the last `take`, in that order; clears them.
pub fn take_phases() -> [PhaseProfile; 2] {
    [Phase::Prefill, Phase::Decode].map(|p| {
        let p = p as usize;
        let stages = Stage::ALL
            .iter()
            .map(|&s| {
                let ns = NANOS[p][s as usize].swap(0, Ordering::Relaxed);
                let calls = CALLS[p][s as usize].swap(0, Ordering::Relaxed);
                (s, ns as f64 * 1e-9, calls)
            })
            .collect();
        PhaseProfile {
            forwards: FORWARDS[p].swap(0, Ordering::Relaxed),
            seconds: FORWARD_NANOS[p].swap(0, Ordering::Relaxed) as f64 * 1e-9,
            stages,
        }
    })
}

/// Nanoseconds since `t0`.
fn nanos_since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Time spent in one stage, counted when dropped.
pub struct Span(Option<(Stage, Instant)>);

impl Drop for Span {
    fn drop(&mut self) {
        if let Some((stage, t0)) = self.0 {
            let p = PHASE.load(Ordering::Relaxed);
            NANOS[p][stage as usize].fetch_add(nanos_since(t0), Ordering::Relaxed);
            CALLS[p][stage as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A whole forward, counted to its phase when dropped.
pub struct Forward(Option<(usize, Instant)>);

impl Drop for Forward {
    fn drop(&mut self) {
        if let Some((p, t0)) = self.0 {
            FORWARD_NANOS[p].fetch_add(nanos_since(t0), Ordering::Relaxed);
            FORWARDS[p].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts a forward of `tokens` tokens: the spans until the next one count to its phase.
pub fn forward(tokens: usize) -> Forward {
    if !ENABLED.load(Ordering::Relaxed) {
        return Forward(None);
    }
    let phase = match tokens {
        1 => Phase::Decode,
        _ => Phase::Prefill,
    };
    PHASE.store(phase as usize, Ordering::Relaxed);
    Forward(Some((phase as usize, Instant::now())))
}

/// Starts timing `stage` until the returned span is dropped (nothing when profiling is off).
pub fn span(stage: Stage) -> Span {
    Span(
        ENABLED
            .load(Ordering::Relaxed)
            .then(|| (stage, Instant::now())),
    )
}

/// `f()`, its time counted to `stage`.
pub fn time<R>(stage: Stage, f: impl FnOnce() -> R) -> R {
    let _span = span(stage);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn spans_count_only_while_enabled() {
        // Other tests may run forwards meanwhile; the sampling stage is this test's alone.
        set_enabled(false);
        time(Stage::Sampling, || ());
        let off: u64 = NANOS
            .iter()
            .map(|p| p[Stage::Sampling as usize].load(Ordering::Relaxed))
            .sum();
        set_enabled(true);
        let x = time(Stage::Sampling, || (0..1000u64).sum::<u64>());
        time(Stage::Sampling, || ());
        set_enabled(false);
        let got = take();
        let sampling = got.iter().find(|s| s.0 == Stage::Sampling).map(|s| s.2);
        assert_eq!(x, 499_500);
        assert_eq!(off, 0);
        assert_eq!(sampling, Some(2));
        assert_eq!(got.len(), Stage::ALL.len());
        assert!(Stage::ALL.iter().enumerate().all(|(i, s)| *s as usize == i));

        // A forward of several tokens is prefill, one of a single token decode.
        set_enabled(true);
        for tokens in [7, 1, 1] {
            let _f = forward(tokens);
            time(Stage::Sampling, || ());
        }
        set_enabled(false);
        let [prefill, decode] = take_phases();
        let calls = |p: &PhaseProfile| p.stages[Stage::Sampling as usize].2;
        assert_eq!((calls(&prefill), calls(&decode)), (1, 2));
        assert!(prefill.forwards >= 1 && decode.forwards >= 2);
    }
}
