//! Helpers shared by the bench targets.

/// Thread counts to run: `SHEAF_BENCH_THREADS=1,2,4,8,16` overrides the
/// default (used for thread-scaling runs on larger machines).
pub fn thread_counts(default: &[usize]) -> Vec<usize> {
    std::env::var("SHEAF_BENCH_THREADS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|t| t.trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}
