//! Performance targets (`bench-report/targets.toml`) and their evaluation.
//!
//! Each `[[target]]` names a group, optionally the rows (`params`) it covers,
//! and exactly one criterion on the main sheaf implementation:
//! `min_ratio_vs_best_peer`, `min_ratio_vs_peer` (with `peer`), `max_ms`,
//! `min_ratio_vs_self` (with `baseline_param`) or `min_throughput_m`.

use std::fs;
use std::path::Path;

use serde::Deserialize;

use crate::model::{Dataset, Group, Metric};
use crate::render_md::{format_ratio, format_value};
use crate::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    #[serde(default)]
    target: Vec<RawTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    group: String,
    #[serde(default)]
    params: Vec<String>,
    min_ratio_vs_best_peer: Option<f64>,
    min_ratio_vs_peer: Option<f64>,
    peer: Option<String>,
    max_ms: Option<f64>,
    min_ratio_vs_self: Option<f64>,
    baseline_param: Option<String>,
    min_throughput_m: Option<f64>,
    issue: Option<String>,
    note: Option<String>,
}

/// One performance goal for one group.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    /// The criterion group, e.g. `table/zipf`.
    pub group: String,
    /// Rows covered; empty means every row of the group.
    pub params: Vec<String>,
    /// What must hold.
    pub criterion: Criterion,
    /// Tracking issue, e.g. `#2`.
    pub issue: Option<String>,
    /// Free text.
    pub note: Option<String>,
}

/// What a target requires of the main sheaf implementation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Criterion {
    /// Figure at least this many times the best peer's.
    MinRatioVsBestPeer(f64),
    /// Figure at least `ratio` times the named peer's.
    MinRatioVsPeer { ratio: f64, peer: String },
    /// Median time per iteration at most this many milliseconds.
    MaxMs(f64),
    /// Figure at least `ratio` times its own figure at `baseline`.
    MinRatioVsSelf { ratio: f64, baseline: String },
    /// Throughput at least this many million items (or bytes) per second.
    MinThroughputM(f64),
}

/// A target checked against one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Outcome {
    /// Holds, with the measured value.
    Met(f64),
    /// Fails, with the measured value.
    NotMet(f64),
    /// A figure it needs was not measured.
    NoData,
}

/// A target checked against every row it covers in one dataset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluation {
    /// `(param, outcome)` per covered row.
    pub rows: Vec<(String, Outcome)>,
}

/// Whether a target holds for one input, over all the rows it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every measured row meets the target.
    Met,
    /// Some row misses it.
    NotMet,
    /// Nothing to judge.
    NoData,
}

impl Evaluation {
    /// Not met if any row fails, no data if no row was measured, else met.
    pub fn status(&self) -> Status {
        let outcomes = || self.rows.iter().map(|(_, o)| o);
        if outcomes().any(|o| matches!(o, Outcome::NotMet(_))) {
            Status::NotMet
        } else if outcomes().all(|o| *o == Outcome::NoData) {
            Status::NoData
        } else {
            Status::Met
        }
    }
}

impl Criterion {
    /// Compact form shown next to a row: `≥1.5×`, `≤10 ms`, `≥1.8× vs 1`, `≥150 M/s`.
    pub fn short(&self) -> String {
        match self {
            Criterion::MinRatioVsBestPeer(r) => format!("≥{r}×"),
            Criterion::MinRatioVsPeer { ratio, peer } => format!("≥{ratio}× {peer}"),
            Criterion::MaxMs(ms) => format!("≤{ms} ms"),
            Criterion::MinRatioVsSelf { ratio, baseline } => format!("≥{ratio}× vs {baseline}"),
            Criterion::MinThroughputM(m) => format!("≥{m} M/s"),
        }
    }

    /// Sentence form for the summary table.
    pub fn describe(&self) -> String {
        match self {
            Criterion::MinRatioVsBestPeer(r) => format!("sheaf ≥{r}× best peer"),
            Criterion::MinRatioVsPeer { ratio, peer } => format!("sheaf ≥{ratio}× {peer}"),
            Criterion::MaxMs(ms) => format!("sheaf median ≤{ms} ms per iteration"),
            Criterion::MinRatioVsSelf { ratio, baseline } => {
                format!("sheaf ≥{ratio}× sheaf at {baseline}")
            }
            Criterion::MinThroughputM(m) => format!("sheaf ≥{m} M/s"),
        }
    }

    /// A measured value in the criterion's terms: `1.62×`, `7.50 ms`, `162 M/s`.
    pub fn format_measured(&self, value: f64) -> String {
        match self {
            Criterion::MinRatioVsBestPeer(_)
            | Criterion::MinRatioVsPeer { .. }
            | Criterion::MinRatioVsSelf { .. } => format_ratio(value),
            Criterion::MaxMs(_) => format!("{} ms", format_value(value)),
            Criterion::MinThroughputM(_) => format!("{} M/s", format_value(value)),
        }
    }
}

impl Target {
    /// Parses and validates a targets file.
    pub fn load(path: &Path) -> Result<Vec<Target>, Error> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|message| Error::Targets {
            path: path.to_owned(),
            message,
        })
    }

    fn parse(text: &str) -> Result<Vec<Target>, String> {
        let file: TargetsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.target
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                let context = format!("target #{} ({})", i + 1, raw.group);
                Target::from_raw(raw).map_err(|e| format!("{context}: {e}"))
            })
            .collect()
    }

    fn from_raw(raw: RawTarget) -> Result<Target, String> {
        let mut criteria = Vec::new();
        if let Some(r) = raw.min_ratio_vs_best_peer {
            criteria.push(Criterion::MinRatioVsBestPeer(positive(r)?));
        }
        if let Some((ratio, peer)) = paired(
            (raw.min_ratio_vs_peer, "min_ratio_vs_peer"),
            (raw.peer, "peer"),
        )? {
            criteria.push(Criterion::MinRatioVsPeer { ratio, peer });
        }
        if let Some(ms) = raw.max_ms {
            criteria.push(Criterion::MaxMs(positive(ms)?));
        }
        if let Some((ratio, baseline)) = paired(
            (raw.min_ratio_vs_self, "min_ratio_vs_self"),
            (raw.baseline_param, "baseline_param"),
        )? {
            criteria.push(Criterion::MinRatioVsSelf { ratio, baseline });
        }
        if let Some(m) = raw.min_throughput_m {
            criteria.push(Criterion::MinThroughputM(positive(m)?));
        }
        if criteria.len() != 1 {
            return Err(
                "give exactly one of min_ratio_vs_best_peer, min_ratio_vs_peer, \
                 max_ms, min_ratio_vs_self, min_throughput_m (use one [[target]] per criterion)"
                    .into(),
            );
        }
        Ok(Target {
            group: raw.group,
            params: raw.params,
            criterion: criteria.remove(0),
            issue: raw.issue,
            note: raw.note,
        })
    }

    /// Whether the row with parameter `param` is covered.
    pub fn covers(&self, param: &str) -> bool {
        self.params.is_empty() || self.params.iter().any(|p| p == param)
    }

    /// Checks the target against `row` of `group`.
    pub fn evaluate_row(&self, group: &Group, row: usize) -> Outcome {
        self.measure(group, row)
            .map_or(Outcome::NoData, |(value, met)| {
                if met {
                    Outcome::Met(value)
                } else {
                    Outcome::NotMet(value)
                }
            })
    }

    /// The measured value and whether it meets the criterion.
    fn measure(&self, group: &Group, row: usize) -> Option<(f64, bool)> {
        let sheaf = group.main_sheaf()?;
        match &self.criterion {
            Criterion::MinRatioVsBestPeer(min) => {
                let own = group.figure(row, sheaf)?;
                let (_, peer) = group.best_peer(row)?;
                let ratio = group.metric.advantage(own.value, peer.value);
                Some((ratio, ratio >= *min))
            }
            Criterion::MinRatioVsPeer { ratio: min, peer } => {
                let own = group.figure(row, sheaf)?;
                let col = group.implementations.iter().position(|i| i == peer)?;
                let theirs = group.figure(row, col)?;
                let ratio = group.metric.advantage(own.value, theirs.value);
                Some((ratio, ratio >= *min))
            }
            Criterion::MaxMs(max) => {
                let ms = group.median_ns(row, sheaf)? / 1e6;
                Some((ms, ms <= *max))
            }
            Criterion::MinRatioVsSelf { ratio, baseline } => {
                let own = group.figure(row, sheaf)?;
                let base = group.figure(group.row(baseline)?, sheaf)?;
                let r = group.metric.advantage(own.value, base.value);
                Some((r, r >= *ratio))
            }
            Criterion::MinThroughputM(min) => {
                if group.metric == Metric::Time {
                    return None;
                }
                let m = group.figure(row, sheaf)?.value / 1e6;
                Some((m, m >= *min))
            }
        }
    }

    /// Checks the target against every row it covers in `dataset`; a listed
    /// parameter that was not measured counts as no data.
    pub fn evaluate(&self, dataset: &Dataset) -> Evaluation {
        let group = dataset.group(&self.group);
        let rows = match group {
            None if self.params.is_empty() => vec![(String::new(), Outcome::NoData)],
            None => self
                .params
                .iter()
                .map(|p| (p.clone(), Outcome::NoData))
                .collect(),
            Some(group) if self.params.is_empty() => group
                .params
                .iter()
                .enumerate()
                .map(|(row, p)| (p.clone(), self.evaluate_row(group, row)))
                .collect(),
            Some(group) => self
                .params
                .iter()
                .map(|p| {
                    let outcome = group
                        .row(p)
                        .map_or(Outcome::NoData, |row| self.evaluate_row(group, row));
                    (p.clone(), outcome)
                })
                .collect(),
        };
        Evaluation { rows }
    }
}

/// A ratio and the setting it needs (`min_ratio_vs_self` + `baseline_param`):
/// both or neither.
fn paired(
    (ratio, ratio_key): (Option<f64>, &str),
    (with, with_key): (Option<String>, &str),
) -> Result<Option<(f64, String)>, String> {
    match (ratio, with) {
        (Some(ratio), Some(with)) => Ok(Some((positive(ratio)?, with))),
        (Some(_), None) => Err(format!("{ratio_key} needs {with_key}")),
        (None, Some(_)) => Err(format!("{with_key} without {ratio_key}")),
        (None, None) => Ok(None),
    }
}

fn positive(x: f64) -> Result<f64, String> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(format!("{x} is not a positive number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let targets = Target::parse(
            r##"
            [[target]]
            group = "table/zipf"
            params = ["1", "2"]
            min_ratio_vs_best_peer = 1.5
            issue = "#2"

            [[target]]
            group = "aggregator/seed"
            max_ms = 10

            [[target]]
            group = "aggregator/hot5"
            params = ["2"]
            min_ratio_vs_self = 1.8
            baseline_param = "1"

            [[target]]
            group = "ring/batch64"
            min_throughput_m = 150

            [[target]]
            group = "ring/blocking"
            min_ratio_vs_peer = 1.2
            peer = "kanal"
            "##,
        )
        .unwrap();
        let criteria: Vec<String> = targets.iter().map(|t| t.criterion.short()).collect();
        assert_eq!(
            criteria,
            ["≥1.5×", "≤10 ms", "≥1.8× vs 1", "≥150 M/s", "≥1.2× kanal"]
        );
        assert_eq!(targets[0].issue.as_deref(), Some("#2"));
        assert!(targets[1].covers("anything"));
        assert!(!targets[0].covers("8"));
    }

    #[test]
    fn rejects_ambiguous_targets() {
        let two = "[[target]]\ngroup = \"g\"\nmax_ms = 1\nmin_throughput_m = 2\n";
        assert!(Target::parse(two).unwrap_err().contains("exactly one"));
        let none = "[[target]]\ngroup = \"g\"\n";
        assert!(Target::parse(none).unwrap_err().contains("exactly one"));
        let no_base = "[[target]]\ngroup = \"g\"\nmin_ratio_vs_self = 2\n";
        assert!(Target::parse(no_base)
            .unwrap_err()
            .contains("baseline_param"));
        let no_peer = "[[target]]\ngroup = \"g\"\nmin_ratio_vs_peer = 2\n";
        assert!(Target::parse(no_peer).unwrap_err().contains("needs peer"));
        let typo = "[[target]]\ngroup = \"g\"\nmax_msec = 1\n";
        assert!(Target::parse(typo).unwrap_err().contains("max_msec"));
        let negative = "[[target]]\ngroup = \"g\"\nmax_ms = -1\n";
        assert!(Target::parse(negative).unwrap_err().contains("positive"));
    }

    #[test]
    fn shipped_targets_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("targets.toml");
        let targets = Target::load(&path).unwrap();
        assert!(targets.len() >= 13, "{} targets", targets.len());
    }
}
