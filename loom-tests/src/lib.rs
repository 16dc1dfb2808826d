//! Shared helpers for the loom models in `tests/` (run them with
//! `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests`).

/// `loom::model` at the environment's preemption bound (`LOOM_MAX_PREEMPTIONS`),
/// or 2 when it is unset, so a bare `cargo test` never runs unbounded.
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}
