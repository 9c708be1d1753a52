//! A team of threads that stays awake for a whole forward pass.
//!
//! A decode step runs over a hundred small parallel matmuls. Handing each to rayon wakes a
//! sleeping worker every time, which in wasm (`Atomics.wait`/`notify` between Web Workers) costs
//! about as much as the matmul: 2 threads decoded barely faster than 1. Inside [`scope`], one
//! job per other pool thread spins on a shared word instead, the calling thread works too, and
//! each parallel loop ([`for_each`]) costs a few atomic operations. Outside a scope, loops go to
//! rayon as before.

use rayon::prelude::*;
use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Bits of the shared word: generation (which loop), task count, next task to claim.
const GEN_BITS: u32 = 20;
const N_BITS: u32 = 22;
const IDX_MASK: u64 = (1 << N_BITS) - 1;

/// A loop's body, type-erased: called with each task index once.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// A value alone on its cache line (the helpers spin on `state`; `done` changes per task).
#[repr(align(64))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What the caller and the helpers share.
struct Shared {
    /// `gen << 44 | n << 22 | next`: one word, so a helper reads the loop and claims a task in
    /// a single compare-and-swap that fails once the loop has moved on.
    state: Line<AtomicU64>,
    /// The current loop's body (a `Job` on the caller's stack), valid while its tasks run.
    job: AtomicPtr<()>,
    /// Tasks of the current loop finished.
    done: Line<AtomicUsize>,
    /// Set when the scope ends: the helpers return.
    closed: AtomicBool,
    /// The first panic of a task of the current loop, for the caller to raise.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Shared {
    /// Claims and runs tasks of generation `gen` until none is left.
    fn work(&self, gen: u64) {
        loop {
            let s = self.state.load(Ordering::Acquire);
            let (g, n, next) = (s >> (2 * N_BITS), (s >> N_BITS) & IDX_MASK, s & IDX_MASK);
            if g != gen || next >= n {
                return;
            }
            // Read before the claim: the pointer is the loop's own while the claim can succeed
            // (the caller replaces it only after every task of this generation is done).
            let job = self.job.load(Ordering::Acquire) as *const Job;
            if self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let _count = Finished(&self.done);
                // SAFETY: the claim succeeded, so generation `gen` is not finished and its
                // caller is still waiting in `run` with `job` alive on its stack.
                let ran = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(next as usize) }));
                // A panic goes to the caller, which raises it once every task is done.
                if let Err(payload) = ran {
                    let mut first = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                    first.get_or_insert(payload);
                }
            }
        }
    }

    /// A helper's loop: waits (spinning) for each generation and works on it.
    fn help(&self) {
        let mut seen = self.state.load(Ordering::Acquire) >> (2 * N_BITS);
        while !self.closed.load(Ordering::Acquire) {
            let gen = self.state.load(Ordering::Acquire) >> (2 * N_BITS);
            if gen == seen {
                std::hint::spin_loop();
                continue;
            }
            seen = gen;
            self.work(gen);
        }
    }

    /// Runs `job` for tasks `0..n` on the caller and the helpers; returns when all are done.
    fn run(&self, n: usize, job: Job) {
        assert!(
            (n as u64) <= IDX_MASK,
            "too many tasks for one parallel loop"
        );
        let gen = ((self.state.load(Ordering::Relaxed) >> (2 * N_BITS)) + 1) % (1 << GEN_BITS);
        self.done.store(0, Ordering::Relaxed);
        self.job
            .store(&job as *const Job as *mut (), Ordering::Relaxed);
        self.state.store(
            gen << (2 * N_BITS) | (n as u64) << N_BITS,
            Ordering::Release,
        );
        {
            // Waits for every task when dropped, even if something here unwinds: the helpers
            // may still be running tasks that read `job` from this frame.
            let _wait = Wait {
                shared: self,
                gen,
                n,
            };
            self.work(gen);
        }
        let panicked = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(payload) = panicked {
            resume_unwind(payload);
        }
    }
}

/// The end of [`Shared::run`]: claims the tasks nobody took (none are left unless the caller
/// unwinds), then waits until every claimed one is done.
struct Wait<'a> {
    shared: &'a Shared,
    gen: u64,
    n: usize,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let state = &self.shared.state;
        loop {
            let s = state.load(Ordering::Acquire);
            let next = s & IDX_MASK;
            if s >> (2 * N_BITS) != self.gen || next >= self.n as u64 {
                break;
            }
            let all = s - next + self.n as u64;
            if state
                .compare_exchange_weak(s, all, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.shared
                    .done
                    .fetch_add(self.n - next as usize, Ordering::Release);
                break;
            }
        }
        while self.shared.done.load(Ordering::Acquire) < self.n {
            std::hint::spin_loop();
        }
    }
}

/// Adds one to a counter when dropped.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

thread_local! {
    /// The team the current thread leads, if any.
    static TEAM: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

/// Clears the thread's team and lets the helpers go, also when `f` panics.
struct Close<'a>(&'a Shared);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        TEAM.with(|t| t.set(std::ptr::null()));
        self.0.closed.store(true, Ordering::Release);
    }
}

/// Runs `f` with the other threads of the current rayon pool kept awake as a team, so the
/// parallel loops inside (matmuls, attention) start without waking anyone. Call it from a
/// thread of the pool (the helpers are jobs on the others); nested calls run `f` directly.
pub fn scope<R>(f: impl FnOnce() -> R) -> R {
    let helpers = rayon::current_num_threads().saturating_sub(1);
    if helpers == 0 || TEAM.with(|t| !t.get().is_null()) {
        return f();
    }
    let shared = Shared {
        state: Line(AtomicU64::new(0)),
        job: AtomicPtr::new(std::ptr::null_mut()),
        done: Line(AtomicUsize::new(0)),
        closed: AtomicBool::new(false),
        panic: Mutex::new(None),
    };
    rayon::in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| shared.help());
        }
        TEAM.with(|t| t.set(&shared));
        let _close = Close(&shared);
        f()
    })
}

/// Items handed out by index, each exactly once.
struct Slots<T>(Vec<UnsafeCell<Option<T>>>);

// SAFETY: slot `i` is only touched by the one thread that claimed task `i`.
unsafe impl<T: Send> Sync for Slots<T> {}

impl<T> Slots<T> {
    /// Takes item `i`.
    ///
    /// # Safety
    /// No other thread may touch slot `i` meanwhile.
    unsafe fn take(&self, i: usize) -> Option<T> {
        (*self.0[i].get()).take()
    }
}

/// Calls `f` on every item, in parallel: on the current team inside [`scope`], else on rayon's
/// pool.
pub fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync) {
    let team = TEAM.with(|t| t.get());
    if team.is_null() {
        items.into_par_iter().for_each(&f);
        return;
    }
    if items.len() <= 1 {
        items.into_iter().for_each(f);
        return;
    }
    let n = items.len();
    let slots = Slots(
        items
            .into_iter()
            .map(|t| UnsafeCell::new(Some(t)))
            .collect(),
    );
    let job = |i: usize| {
        // SAFETY: `run` hands out each index once (see `Slots`).
        if let Some(item) = unsafe { slots.take(i) } {
            f(item);
        }
    };
    // SAFETY: `team` is set only inside `scope`, whose `Shared` outlives this call on this thread.
    unsafe { (*team).run(n, &job) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_panicking_task_leaves_no_task_running_and_the_team_goes_on() {
        let pool = match rayon::ThreadPoolBuilder::new().num_threads(2).build() {
            Ok(p) => p,
            Err(e) => panic!("no pool: {e}"),
        };
        let after = pool.install(|| {
            scope(|| {
                let caught = std::panic::catch_unwind(|| {
                    for_each((0..64).collect(), |i: usize| {
                        if i == 3 {
                            panic!("task 3 fails");
                        }
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    })
                });
                assert!(caught.is_err());
                let mut out = vec![0usize; 10];
                for_each(out.iter_mut().enumerate().collect(), |(i, o)| *o = i + 1);
                out
            })
        });
        assert_eq!(after, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn every_item_runs_once_inside_and_outside_a_team() {
        let pool = match rayon::ThreadPoolBuilder::new().num_threads(3).build() {
            Ok(p) => p,
            Err(e) => panic!("no pool: {e}"),
        };
        for in_team in [false, true] {
            let sums: Vec<u64> = pool.install(|| {
                let body = || {
                    (0..200)
                        .map(|round| {
                            let mut out = vec![0u64; 37 + round % 5];
                            let items: Vec<(usize, &mut u64)> =
                                out.iter_mut().enumerate().collect();
                            for_each(items, |(i, o)| *o += (i * i) as u64 + 1);
                            out.iter().sum()
                        })
                        .collect()
                };
                if in_team {
                    scope(body)
                } else {
                    body()
                }
            });
            for (round, s) in sums.iter().enumerate() {
                let n = (37 + round % 5) as u64;
                assert_eq!(*s, (0..n).map(|i| i * i + 1).sum::<u64>(), "round {round}");
            }
        }
    }
}
