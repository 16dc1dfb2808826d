//! The report's data model: benchmarks grouped into tables.
//!
//! A criterion group `<suite>/<workload>` becomes one [`Group`]: rows are the
//! parameter values (usually thread counts), columns the implementations
//! (`sheaf` first, then its variants, then the peers).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Name shown for a benchmark that has no `function_id`.
pub(crate) const UNNAMED: &str = "(unnamed)";

/// One benchmark as criterion recorded it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measurement {
    /// `group_id`, e.g. `table/hot5`.
    pub group: String,
    /// `function_id`: the implementation, e.g. `sheaf` or `dashmap`.
    pub function: Option<String>,
    /// `value_str`: the parameter, e.g. `2` or `1p1c`.
    pub param: Option<String>,
    /// Work done per iteration, when the bench declared it.
    pub throughput: Option<Throughput>,
    /// Median time per iteration; every figure in the report derives from it.
    pub median: Estimate,
}

/// A point estimate in nanoseconds per iteration and its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    /// E.g. 0.95.
    pub confidence_level: f64,
}

/// criterion's declared throughput per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throughput {
    Bytes(u64),
    BytesDecimal(u64),
    Elements(u64),
}

impl Throughput {
    fn metric(self) -> Metric {
        match self {
            Throughput::Bytes(_) => Metric::Bytes,
            Throughput::BytesDecimal(_) => Metric::BytesDecimal,
            Throughput::Elements(_) => Metric::Elements,
        }
    }

    fn count(self) -> u64 {
        match self {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => n,
        }
    }
}

/// What a group's cells show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    /// Items per second (every benchmark of the group declared `Elements`).
    Elements,
    /// Bytes per second, binary units.
    Bytes,
    /// Bytes per second, decimal units.
    BytesDecimal,
    /// Time per iteration (no or mixed throughput declarations).
    Time,
}

impl Metric {
    /// Whether a larger figure is better (throughput) or worse (time).
    pub fn higher_is_better(self) -> bool {
        self != Metric::Time
    }

    /// How many times better figure `a` is than figure `b`.
    pub fn advantage(self, a: f64, b: f64) -> f64 {
        if self.higher_is_better() {
            a / b
        } else {
            b / a
        }
    }

    /// Divisor from items (or bytes) per second, and its compact unit.
    /// `None` for [`Metric::Time`].
    pub fn throughput_scale(self) -> Option<Scale> {
        match self {
            Metric::Elements => Some(Scale::new(1e6, "M/s")),
            Metric::Bytes => Some(Scale::new(1024.0 * 1024.0, "MiB/s")),
            Metric::BytesDecimal => Some(Scale::new(1e6, "MB/s")),
            Metric::Time => None,
        }
    }
}

/// How raw figures are divided for display, and the resulting unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    pub divisor: f64,
    pub unit: &'static str,
}

impl Scale {
    const fn new(divisor: f64, unit: &'static str) -> Self {
        Scale { divisor, unit }
    }

    /// The time unit that keeps `min_ns` at or above 1.
    pub fn for_time(min_ns: f64) -> Self {
        if min_ns >= 1e9 {
            Scale::new(1e9, "s")
        } else if min_ns >= 1e6 {
            Scale::new(1e6, "ms")
        } else if min_ns >= 1e3 {
            Scale::new(1e3, "µs")
        } else {
            Scale::new(1.0, "ns")
        }
    }
}

/// A median and its confidence interval in the group's metric: items (or
/// bytes) per second for throughput, nanoseconds per iteration for time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Figure {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Figure {
    /// Half the width of the confidence interval.
    pub fn half_width(self) -> f64 {
        (self.upper - self.lower) / 2.0
    }

    /// The figure divided by `scale`.
    pub fn scaled(self, scale: Scale) -> Figure {
        Figure {
            value: self.value / scale.divisor,
            lower: self.lower / scale.divisor,
            upper: self.upper / scale.divisor,
        }
    }
}

impl Measurement {
    /// The implementation's name.
    pub fn implementation(&self) -> &str {
        self.function.as_deref().unwrap_or(UNNAMED)
    }

    /// The median in `metric`: throughput is `count / median time`, so its
    /// interval comes from the time interval's opposite bounds.
    pub fn figure(&self, metric: Metric) -> Figure {
        let m = &self.median;
        match self.throughput {
            Some(t) if metric != Metric::Time => {
                let work = t.count() as f64 * 1e9;
                Figure {
                    value: work / m.point,
                    lower: work / m.upper,
                    upper: work / m.lower,
                }
            }
            _ => Figure {
                value: m.point,
                lower: m.lower,
                upper: m.upper,
            },
        }
    }
}

/// Whether `name` is sheaf or one of its variants (`sheaf-fast`, ...).
pub(crate) fn is_sheaf(name: &str) -> bool {
    name.starts_with("sheaf")
}

/// Total thread count of a parameter: `8` is 8, `2p2c` is 2 + 2.
pub(crate) fn thread_count(param: &str) -> Option<u32> {
    if param.bytes().all(|b| b.is_ascii_digit()) {
        return param.parse().ok();
    }
    let (producers, rest) = param.split_once('p')?;
    let consumers = rest.strip_suffix('c')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(producers) || !all_digits(consumers) {
        return None;
    }
    producers
        .parse::<u32>()
        .ok()?
        .checked_add(consumers.parse().ok()?)
}

/// Sort key for parameters: none first, then by leading number, then text.
fn param_key(param: &str) -> (u8, u64, &str) {
    if param.is_empty() {
        return (0, 0, "");
    }
    let rest = param.trim_start_matches(|c: char| c.is_ascii_digit());
    match param[..param.len() - rest.len()].parse() {
        Ok(n) => (1, n, rest),
        Err(_) => (2, 0, param),
    }
}

/// Sort key for implementations: `sheaf`, its variants, then the peers.
fn implementation_key(name: &str) -> (u8, &str) {
    let rank = match name {
        "sheaf" => 0,
        n if is_sheaf(n) => 1,
        _ => 2,
    };
    (rank, name)
}

/// File-name-safe form of an id: anything but `[A-Za-z0-9._-]` becomes `_`.
pub(crate) fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One criterion group as a table.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// `group_id`, e.g. `table/hot5`.
    pub id: String,
    /// The part before the first `/` (`table`).
    pub suite: String,
    /// Row labels in display order; `""` stands for "no parameter".
    pub params: Vec<String>,
    /// Column labels in display order.
    pub implementations: Vec<String>,
    /// What the cells show.
    pub metric: Metric,
    cells: BTreeMap<(usize, usize), Measurement>,
}

impl Group {
    fn new(id: String, measurements: Vec<Measurement>) -> Self {
        let suite = id.split('/').next().unwrap_or_default().to_owned();
        let mut params: Vec<String> = measurements
            .iter()
            .map(|m| m.param.clone().unwrap_or_default())
            .collect();
        params.sort_by(|a, b| param_key(a).cmp(&param_key(b)));
        params.dedup();
        let mut implementations: Vec<String> = measurements
            .iter()
            .map(|m| m.implementation().to_owned())
            .collect();
        implementations.sort_by(|a, b| implementation_key(a).cmp(&implementation_key(b)));
        implementations.dedup();

        let mut metrics = measurements
            .iter()
            .map(|m| m.throughput.map(Throughput::metric));
        let first = metrics.next().flatten();
        let metric = match first {
            Some(metric) if metrics.all(|m| m == Some(metric)) => metric,
            _ => Metric::Time,
        };

        let cells = measurements
            .into_iter()
            .map(|m| {
                let row = params
                    .iter()
                    .position(|p| *p == m.param.as_deref().unwrap_or_default());
                let col = implementations.iter().position(|i| i == m.implementation());
                let key = (
                    row.expect("param listed"),
                    col.expect("implementation listed"),
                );
                (key, m)
            })
            .collect();
        Group {
            id,
            suite,
            params,
            implementations,
            metric,
            cells,
        }
    }

    /// The figure at `row`, `col`, if that benchmark ran.
    pub fn figure(&self, row: usize, col: usize) -> Option<Figure> {
        self.cells.get(&(row, col)).map(|m| m.figure(self.metric))
    }

    /// The median time per iteration in ns at `row`, `col`.
    pub fn median_ns(&self, row: usize, col: usize) -> Option<f64> {
        self.cells.get(&(row, col)).map(|m| m.median.point)
    }

    /// The row of parameter `param`.
    pub fn row(&self, param: &str) -> Option<usize> {
        self.params.iter().position(|p| p == param)
    }

    /// The column compared against peers: `sheaf`, else the first variant.
    pub fn main_sheaf(&self) -> Option<usize> {
        self.implementations.iter().position(|i| is_sheaf(i))
    }

    /// Columns of the implementations that are not sheaf.
    pub fn peers(&self) -> impl Iterator<Item = usize> + '_ {
        self.implementations
            .iter()
            .enumerate()
            .filter(|(_, name)| !is_sheaf(name))
            .map(|(col, _)| col)
    }

    /// The best peer at `row`: highest throughput or lowest time.
    pub fn best_peer(&self, row: usize) -> Option<(usize, Figure)> {
        self.peers()
            .filter_map(|col| Some((col, self.figure(row, col)?)))
            .max_by(|(_, a), (_, b)| {
                let ord = a.value.total_cmp(&b.value);
                if self.metric.higher_is_better() {
                    ord
                } else {
                    ord.reverse()
                }
            })
    }

    /// Thread counts of the rows when every parameter is one (`8`, `2p2c`),
    /// there are at least two and they increase: such groups are plotted as
    /// lines and listed under thread scaling.
    pub fn thread_counts(&self) -> Option<Vec<u32>> {
        let counts = self
            .params
            .iter()
            .map(|p| thread_count(p))
            .collect::<Option<Vec<u32>>>()?;
        (counts.len() >= 2 && counts.windows(2).all(|w| w[0] < w[1])).then_some(counts)
    }

    /// Whether every parameter looks like a thread count (for the row header).
    pub fn params_are_threads(&self) -> bool {
        self.params.iter().all(|p| thread_count(p).is_some())
    }

    /// Display scale for the cells.
    pub fn scale(&self) -> Scale {
        self.metric.throughput_scale().unwrap_or_else(|| {
            let min = self
                .cells
                .values()
                .map(|m| m.median.point)
                .fold(f64::INFINITY, f64::min);
            Scale::for_time(min)
        })
    }

    /// The confidence level of the intervals (criterion's default is 0.95).
    pub fn confidence_level(&self) -> f64 {
        self.cells
            .values()
            .next()
            .map_or(0.95, |m| m.median.confidence_level)
    }

    /// Items (or bytes) per iteration when all benchmarks declare the same.
    pub fn work_per_iteration(&self) -> Option<u64> {
        let mut counts = self
            .cells
            .values()
            .map(|m| m.throughput.map(Throughput::count));
        let first = counts.next()??;
        counts.all(|c| c == Some(first)).then_some(first)
    }
}

/// Everything read from one criterion directory.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    /// The label given with `--label`.
    pub label: String,
    /// The criterion directory.
    pub source: PathBuf,
    /// `machine.txt` from the directory, verbatim.
    pub machine_txt: Option<String>,
    /// Groups ordered by id.
    pub groups: Vec<Group>,
    /// Number of benchmarks read.
    pub benchmarks: usize,
}

impl Dataset {
    /// Groups `measurements` by criterion group.
    pub fn new(
        label: String,
        source: PathBuf,
        machine_txt: Option<String>,
        measurements: Vec<Measurement>,
    ) -> Self {
        let benchmarks = measurements.len();
        let mut by_group: BTreeMap<String, Vec<Measurement>> = BTreeMap::new();
        for m in measurements {
            by_group.entry(m.group.clone()).or_default().push(m);
        }
        let groups = by_group
            .into_iter()
            .map(|(id, ms)| Group::new(id, ms))
            .collect();
        Dataset {
            label,
            source,
            machine_txt,
            groups,
            benchmarks,
        }
    }

    /// The group with id `id`.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// Groups by suite, both in id order.
    pub fn suites(&self) -> Vec<(&str, Vec<&Group>)> {
        let mut suites: Vec<(&str, Vec<&Group>)> = Vec::new();
        for group in &self.groups {
            match suites.last_mut() {
                Some((suite, groups)) if *suite == group.suite => groups.push(group),
                _ => suites.push((&group.suite, vec![group])),
            }
        }
        suites
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_parse() {
        assert_eq!(thread_count("8"), Some(8));
        assert_eq!(thread_count("2p2c"), Some(4));
        assert_eq!(thread_count("1p3c"), Some(4));
        assert_eq!(thread_count("seed"), None);
        assert_eq!(thread_count("p2c"), None);
        assert_eq!(thread_count(""), None);
    }

    #[test]
    fn params_sort_numerically() {
        let mut params = vec!["16", "2", "", "8", "1", "x", "4p4c", "1p1c"];
        params.sort_by(|a, b| param_key(a).cmp(&param_key(b)));
        assert_eq!(params, ["", "1", "1p1c", "2", "4p4c", "8", "16", "x"]);
    }

    #[test]
    fn sheaf_sorts_first() {
        let mut names = vec!["dashmap", "sheaf-fast", "scc", "sheaf"];
        names.sort_by(|a, b| implementation_key(a).cmp(&implementation_key(b)));
        assert_eq!(names, ["sheaf", "sheaf-fast", "dashmap", "scc"]);
    }

    #[test]
    fn sanitize_ids() {
        assert_eq!(sanitize("writer/throughput-64B"), "writer_throughput-64B");
    }
}
