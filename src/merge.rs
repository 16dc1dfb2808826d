//! How an [`Aggregator`](crate::Aggregator) combines values: the [`Merge`]
//! trait and ready merges.
//!
//! ```
//! use sheaf::merge::{Count, Max, Merge, Sum};
//!
//! let mut acc = Sum.lift(2u64);
//! Sum.merge(&mut acc, 3);
//! assert_eq!(acc, 5);
//!
//! // Count ignores the values and counts adds.
//! let mut n = Count.lift(99u64);
//! Count.merge(&mut n, Count.lift(7));
//! assert_eq!(n, 2);
//!
//! let mut hi = Max.lift(1.5f64);
//! Max.merge(&mut hi, 0.5);
//! assert_eq!(hi, 1.5);
//! ```

use std::ops::AddAssign;

/// Combines values of one key.
///
/// An added value is first [`lift`](Merge::lift)ed into an aggregate, then
/// [`merge`](Merge::merge)d into the aggregate already held. `merge` also
/// folds partial aggregates together (per-core partials, retained entries),
/// so it must accept aggregates on both sides.
pub trait Merge<V>: Send + Sync + 'static {
    /// Folds `other` into `acc`.
    fn merge(&self, acc: &mut V, other: V);

    /// Turns one added value into an aggregate (identity by default;
    /// [`Count`] turns every value into 1).
    fn lift(&self, value: V) -> V {
        value
    }

    /// `false` promises that [`lift`](Merge::lift) is the identity, so the
    /// aggregator skips calling it on every add. `true` (the default) is
    /// always correct.
    fn lifts(&self) -> bool {
        true
    }

    /// `true` when `merge` is commutative and associative, so partial
    /// aggregates may be folded in any order: the aggregator then combines
    /// per core, which is what makes hot keys scale. `false` by default.
    fn is_commutative(&self) -> bool {
        false
    }
}

/// Adds values (`+=`). Commutative.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum;

impl<V: AddAssign + Send + Sync + 'static> Merge<V> for Sum {
    #[inline]
    fn merge(&self, acc: &mut V, other: V) {
        *acc += other;
    }

    fn lifts(&self) -> bool {
        false
    }

    fn is_commutative(&self) -> bool {
        true
    }
}

/// Keeps the smallest value. Commutative.
#[derive(Debug, Clone, Copy, Default)]
pub struct Min;

impl<V: PartialOrd + Send + Sync + 'static> Merge<V> for Min {
    #[inline]
    fn merge(&self, acc: &mut V, other: V) {
        if other < *acc {
            *acc = other;
        }
    }

    fn lifts(&self) -> bool {
        false
    }

    fn is_commutative(&self) -> bool {
        true
    }
}

/// Keeps the largest value. Commutative.
#[derive(Debug, Clone, Copy, Default)]
pub struct Max;

impl<V: PartialOrd + Send + Sync + 'static> Merge<V> for Max {
    #[inline]
    fn merge(&self, acc: &mut V, other: V) {
        if other > *acc {
            *acc = other;
        }
    }

    fn lifts(&self) -> bool {
        false
    }

    fn is_commutative(&self) -> bool {
        true
    }
}

/// Keeps the value added last. Not commutative: an aggregator using it does
/// not combine per core, so the order of adds is the order of the table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Last;

impl<V: Send + Sync + 'static> Merge<V> for Last {
    #[inline]
    fn merge(&self, acc: &mut V, other: V) {
        *acc = other;
    }

    fn lifts(&self) -> bool {
        false
    }
}

/// Counts adds, ignoring the values added. Commutative.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

macro_rules! count_for {
    ($($t:ty),*) => {$(
        impl Merge<$t> for Count {
            #[inline]
            fn merge(&self, acc: &mut $t, other: $t) {
                *acc += other;
            }

            #[inline]
            fn lift(&self, _value: $t) -> $t {
                1
            }

            fn is_commutative(&self) -> bool {
                true
            }
        }
    )*};
}

count_for!(u32, u64, u128, usize, i64);

/// A closure used as a [`Merge`]; `commutative` is what the builder was told.
pub(crate) struct FnMerge<F> {
    pub(crate) f: F,
    pub(crate) commutative: bool,
}

impl<V, F: Fn(&mut V, V) + Send + Sync + 'static> Merge<V> for FnMerge<F> {
    #[inline]
    fn merge(&self, acc: &mut V, other: V) {
        (self.f)(acc, other)
    }

    fn lifts(&self) -> bool {
        false
    }

    fn is_commutative(&self) -> bool {
        self.commutative
    }
}
