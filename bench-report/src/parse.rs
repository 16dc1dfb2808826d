//! Reading criterion 0.5's output directory.
//!
//! For every benchmark criterion writes
//! `<dir>/<group>/<function>/<value>/new/{benchmark,estimates}.json`
//! (levels absent when the id has no function or value, names sanitized).
//! The directory names are lossy, so the real ids come from
//! `benchmark.json`; only the `new/` sample is read (`base/` and `change/`
//! hold older runs). Of the estimates only the median is used: it is what
//! every figure and ratio of the report derives from, being robust to the
//! outliers that skew the mean on a busy machine.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::{Estimate, Measurement, Throughput};
use crate::Error;

#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<ThroughputJson>,
}

/// criterion's `Throughput` enum, serialized externally tagged.
#[derive(Deserialize)]
enum ThroughputJson {
    Bytes(u64),
    BytesDecimal(u64),
    Elements(u64),
}

#[derive(Deserialize)]
struct EstimatesJson {
    median: EstimateJson,
}

#[derive(Deserialize)]
struct EstimateJson {
    point_estimate: f64,
    confidence_interval: IntervalJson,
}

#[derive(Deserialize)]
struct IntervalJson {
    confidence_level: f64,
    lower_bound: f64,
    upper_bound: f64,
}

impl From<EstimateJson> for Estimate {
    fn from(e: EstimateJson) -> Self {
        Estimate {
            point: e.point_estimate,
            lower: e.confidence_interval.lower_bound,
            upper: e.confidence_interval.upper_bound,
            confidence_level: e.confidence_interval.confidence_level,
        }
    }
}

/// Every benchmark under `dir`, in path order. A missing `dir` holds none.
pub(crate) fn read_criterion_dir(dir: &Path) -> Result<Vec<Measurement>, Error> {
    let mut files = Vec::new();
    if dir.exists() {
        find_benchmark_files(dir, &mut files)?;
    }
    files.sort();
    files.iter().map(|file| read_benchmark(file)).collect()
}

/// Collects every `new/benchmark.json` below `dir`.
fn find_benchmark_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if file_type.is_dir() {
            if entry.file_name() == "new" {
                let candidate = path.join("benchmark.json");
                if candidate.is_file() {
                    out.push(candidate);
                }
            } else {
                find_benchmark_files(&path, out)?;
            }
        }
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Error> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

fn read_benchmark(benchmark_json: &Path) -> Result<Measurement, Error> {
    let bench: BenchmarkJson = read_json(benchmark_json)?;
    let estimates: EstimatesJson = read_json(&benchmark_json.with_file_name("estimates.json"))?;
    Ok(Measurement {
        group: bench.group_id,
        function: bench.function_id,
        param: bench.value_str,
        throughput: bench.throughput.map(|t| match t {
            ThroughputJson::Bytes(n) => Throughput::Bytes(n),
            ThroughputJson::BytesDecimal(n) => Throughput::BytesDecimal(n),
            ThroughputJson::Elements(n) => Throughput::Elements(n),
        }),
        median: estimates.median.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dir_has_no_benchmarks() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-dir");
        assert!(read_criterion_dir(&dir).unwrap().is_empty());
    }

    #[test]
    fn malformed_json_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("g").join("f").join("new");
        fs::create_dir_all(&new).unwrap();
        fs::write(new.join("benchmark.json"), r#"{"group_id": 5}"#).unwrap();
        match read_criterion_dir(tmp.path()) {
            Err(Error::Json { path, .. }) => assert_eq!(path, new.join("benchmark.json")),
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn reads_ids_throughput_and_median() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/criterion");
        let all = read_criterion_dir(&dir).unwrap();
        assert_eq!(all.len(), 13);
        let seed = all
            .iter()
            .find(|m| m.group == "aggregator/seed" && m.implementation() == "sheaf")
            .unwrap();
        assert_eq!(seed.param, None);
        assert_eq!(seed.throughput, None);
        assert_eq!(seed.median.point, 7_500_000.0);
        assert_eq!(seed.median.confidence_level, 0.95);
        let ring = all
            .iter()
            .find(|m| m.group == "ring/blocking" && m.param.as_deref() == Some("2p2c"))
            .unwrap();
        assert_eq!(ring.throughput, Some(Throughput::Elements(100_000)));
    }
}
