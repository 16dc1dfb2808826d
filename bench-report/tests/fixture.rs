//! Runs the generator on `fixtures/criterion` and checks the page against
//! figures computed by hand from the fixture's JSON.
//!
//! Fixture medians (ns per iteration) and their 95% intervals (±1% unless noted):
//!
//! - `table/hot5`, 1,000,000 items per iteration:
//!   threads 1: sheaf 10 ms (100 M/s), sheaf-fast 8 ms (125), dashmap 20 ms
//!   ±2% (50), scc 12.5 ms (80); threads 2: sheaf 6.25 ms (160), dashmap 12.5 ms
//!   (80), scc 5 ms (200). An older `base/` sample of sheaf at 99 ms is ignored.
//! - `ring/blocking`, 100,000 items: 1p1c sheaf 2 ms (50 M/s), kanal 4 ms (25);
//!   2p2c sheaf 2.5 ms (40), kanal 2 ms (50).
//! - `aggregator/seed`, no parameter, no throughput: sheaf 7.5 ms in
//!   [7.40, 7.64], mutex-hashmap 15 ms in [14.7, 15.3].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bench_report::{run, Environment, Error, Input, Options, Report, Status};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn environment() -> Environment {
    Environment {
        cpu: "Test CPU @ 2.00GHz".into(),
        logical_cpus: 2,
        memory: "4.0 GiB".into(),
        os: "Test OS, kernel 6.1.0".into(),
        rustc: "rustc 1.80.0 (test)".into(),
        commit: "abc1234-dirty".into(),
        date: "2025-01-02 03:04 UTC".into(),
    }
}

fn options(dir: &Path, inputs: Vec<Input>) -> Options {
    Options {
        inputs,
        out: dir.join("BENCHMARKS.md"),
        svg_dir: dir.join("docs").join("bench"),
        targets: Some(fixture("targets.toml")),
        commands: vec![
            "cargo bench --bench table".into(),
            "cargo run -p bench-report".into(),
        ],
        check: true,
        environment: Some(environment()),
    }
}

fn this_machine() -> Input {
    Input {
        dir: fixture("criterion"),
        label: "this machine".into(),
    }
}

fn generate(opts: &Options) -> (Report, String) {
    let report = run(opts).expect("report generated");
    let markdown = fs::read_to_string(&report.markdown).expect("markdown written");
    (report, markdown)
}

/// Asserts that `lines` occur in `markdown` consecutively, in order.
#[track_caller]
fn assert_block(markdown: &str, lines: &[&str]) {
    let expected = lines.join("\n");
    assert!(
        markdown.contains(&format!("{expected}\n")),
        "expected block:\n{expected}\n\nin:\n{markdown}"
    );
}

#[test]
fn fixture_report_has_hand_computed_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let (report, md) = generate(&options(tmp.path(), vec![this_machine()]));

    assert_eq!(report.benchmarks, 13, "base/ samples must be ignored");
    assert_eq!(report.markdown, tmp.path().join("BENCHMARKS.md"));

    // Header: machine facts and commands.
    assert!(md.starts_with("# Benchmarks\n"));
    assert_block(
        &md,
        &[
            "- **CPU:** Test CPU @ 2.00GHz",
            "- **Logical CPUs:** 2",
            "- **Memory:** 4.0 GiB",
            "- **OS:** Test OS, kernel 6.1.0",
            "- **Toolchain:** rustc 1.80.0 (test)",
            "- **Commit:** `abc1234-dirty`",
            "- **Date:** 2025-01-02 03:04 UTC",
        ],
    );
    assert_block(
        &md,
        &[
            "```sh",
            "cargo bench --bench table",
            "cargo run -p bench-report",
            "```",
        ],
    );
    assert!(md.contains("## How to read"));

    // Target summary, near the top: before any result.
    let summary = md.find("## Targets").unwrap();
    assert!(summary < md.find("## Results").unwrap());
    assert_block(
        &md,
        &[
            "- **this machine:** 5 met, 2 not met, 1 no data",
            "",
            "| Target | Issue | Group | Rows | Criterion | this machine |",
            "|---|---|---|---|---|---|",
            "| hot5 1 and 2 threads | #7 | table/hot5 | 1, 2 | sheaf ≥1.2× best peer | **not met** (2: 0.80×) |",
            "| hot5 scales | – | table/hot5 | 2 | sheaf ≥1.5× sheaf at 1 | met |",
            "| – | – | table/hot5 | 2 | sheaf ≥150 M/s | met |",
            "| blocking ring | – | ring/blocking | 1p1c, 2p2c | sheaf ≥1.5× best peer | **not met** (2p2c: 0.80×) |",
            "| seed under 10 ms | – | aggregator/seed | all | sheaf median ≤10 ms per iteration | met |",
            "| seed vs peers | – | aggregator/seed | all | sheaf ≥1.5× best peer | met |",
            "| batch64 (not in the fixture) | – | ring/batch64 | 1p1c | sheaf ≥150 M/s | no data |",
            // 4.0 ms / 2.0 ms against the named peer only.
            "| blocking ring vs kanal | – | ring/blocking | 1p1c | sheaf ≥1.5× kanal | met |",
        ],
    );
    assert_eq!(report.count(Status::Met), 5);
    assert_eq!(report.count(Status::NotMet), 2);
    assert_eq!(report.count(Status::NoData), 1);

    // table/hot5: 100/50 = 2.00×, 100/80 = 1.25×; 160/80 = 2.00×, 160/200 = 0.80×.
    // sheaf-fast is a sheaf variant: a column, but not compared. Thread 2 has no
    // sheaf-fast run. 160/100 = 1.60× over one thread.
    assert_block(
        &md,
        &[
            "### table",
            "",
            "#### table/hot5",
            "",
            "Throughput in M items/s (1,000,000 items per iteration) ± half-width of the 95% \
             confidence interval; higher is better. Ratios are sheaf ÷ peer.",
            "",
            "| threads | sheaf | sheaf-fast | dashmap | scc | sheaf / dashmap | sheaf / scc | vs best peer | targets |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
            "| 1 | 100 ±1 | 125 ±1 | 50.0 ±1.0 | 80.0 ±0.8 | 2.00× | 1.25× | 1.25× (scc) | target ≥1.2×: met (1.25×) |",
            "| 2 | 160 ±2 | – | 80.0 ±0.8 | 200 ±2 | 2.00× | 0.80× | 0.80× (scc) | target ≥1.2×: **not met** (0.80×)<br>target ≥1.5× vs 1: met (1.60×)<br>target ≥150 M/s: met (160 M/s) |",
            "",
            "![table/hot5](docs/bench/table_hot5.svg)",
        ],
    );

    // ring/blocking: 50/25 = 2.00× (met), 40/50 = 0.80× (not met).
    assert_block(
        &md,
        &[
            "| threads | sheaf | kanal | sheaf / kanal | vs best peer | targets |",
            "|---|---:|---:|---:|---:|---|",
            "| 1p1c | 50.0 ±0.5 | 25.0 ±0.3 | 2.00× | 2.00× (kanal) | target ≥1.5×: met (2.00×)<br>target ≥1.5× kanal: met (2.00×) |",
            "| 2p2c | 40.0 ±0.4 | 50.0 ±0.5 | 0.80× | 0.80× (kanal) | target ≥1.5×: **not met** (0.80×) |",
        ],
    );

    // aggregator/seed: times in ms, ratio = peer time / sheaf time = 15 / 7.5.
    assert_block(
        &md,
        &[
            "Median time per iteration in ms ± half-width of the 95% confidence interval; \
             lower is better. Ratios are peer time ÷ sheaf time.",
            "",
            "|  | sheaf | mutex-hashmap | sheaf / mutex-hashmap | vs best peer | targets |",
            "|---|---:|---:|---:|---:|---|",
            "| – | 7.50 ±0.12 | 15.0 ±0.3 | 2.00× | 2.00× (mutex-hashmap) | target ≤10 ms: met (7.50 ms)<br>target ≥1.5×: met (2.00×) |",
        ],
    );

    // Thread scaling: both thread-count groups, each relative to its first row.
    let scaling = &md[md.find("## Thread scaling").expect("scaling section")..];
    assert_block(
        scaling,
        &[
            "| implementation | 1p1c | 2p2c |",
            "|---|---:|---:|",
            "| sheaf | 50.0 (1.00×) | 40.0 (0.80×) |",
            "| kanal | 25.0 (1.00×) | 50.0 (2.00×) |",
        ],
    );
    assert_block(scaling, &["| scc | 80.0 (1.00×) | 200 (2.50×) |"]);
    assert!(!scaling.contains("aggregator/seed"));

    // Plots: one per group, linked relative to the markdown.
    let names: Vec<String> = report
        .plots
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["aggregator_seed.svg", "ring_blocking.svg", "table_hot5.svg"]
    );
    for (path, name) in report.plots.iter().zip(&names) {
        assert_eq!(path.parent().unwrap(), tmp.path().join("docs/bench"));
        let svg = fs::read_to_string(path).unwrap();
        assert!(svg.starts_with("<svg"), "{name}: {}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"), "{name}");
        let group = name.trim_end_matches(".svg").replacen('_', "/", 1);
        assert!(md.contains(&format!("![{group}](docs/bench/{name})")));
        assert!(svg.contains(&group), "{name} has its title");
    }
    // Thread counts are drawn as lines, single-parameter groups as bars.
    let ring = fs::read_to_string(&report.plots[1]).unwrap();
    assert!(ring.contains("threads (producers + consumers, log scale)"));
    assert!(ring.contains("1p1c") && ring.contains("2p2c") && ring.contains("kanal"));
    let seed = fs::read_to_string(&report.plots[0]).unwrap();
    assert!(!seed.contains("log scale"));
    assert!(seed.contains("mutex-hashmap") && seed.contains("ms per iteration"));
}

#[test]
fn plot_links_are_relative_to_the_markdown() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), vec![this_machine()]);
    opts.out = tmp.path().join("book").join("BENCHMARKS.md");
    let (_, md) = generate(&opts);
    assert!(md.contains("![table/hot5](../docs/bench/table_hot5.svg)"));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn every_input_gets_its_own_section() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let other = out.join("ci-criterion");
    copy_dir(
        &fixture("criterion").join("ring_blocking"),
        &other.join("ring_blocking"),
    );
    fs::write(other.join("machine.txt"), "CI runner: 4 vCPU, 16 GiB\n").unwrap();
    let opts = options(
        &out,
        vec![
            this_machine(),
            Input {
                dir: other,
                label: "ci runner".into(),
            },
        ],
    );
    let (report, md) = generate(&opts);

    assert_eq!(report.benchmarks, 13 + 4);
    assert!(md.contains("## Results: this machine\n"));
    assert_block(
        &md,
        &[
            "## Results: ci runner",
            "",
            "Criterion output: `ci-criterion`, 4 benchmarks in 1 group. Machine:",
            "",
            "```text",
            "CI runner: 4 vCPU, 16 GiB",
            "```",
        ],
    );
    assert!(md.contains("| Target | Issue | Group | Rows | Criterion | this machine | ci runner |"));
    assert!(md.contains(
        "| blocking ring | – | ring/blocking | 1p1c, 2p2c | sheaf ≥1.5× best peer \
         | **not met** (2p2c: 0.80×) | **not met** (2p2c: 0.80×) |"
    ));
    assert!(md
        .contains("| hot5 scales | – | table/hot5 | 2 | sheaf ≥1.5× sheaf at 1 | met | no data |"));
    assert!(md.contains("### ring/blocking (ci runner)"));
    assert!(md.contains("![ring/blocking](docs/bench/ci_runner__ring_blocking.svg)"));
    assert!(out
        .join("docs/bench/ci_runner__ring_blocking.svg")
        .is_file());
    assert!(out.join("docs/bench/ring_blocking.svg").is_file());
}

#[test]
fn empty_input_fails_check_but_renders_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("criterion");
    fs::create_dir(&empty).unwrap();
    let input = Input {
        dir: empty.clone(),
        label: "this machine".into(),
    };
    let mut opts = options(tmp.path(), vec![input]);

    match run(&opts) {
        Err(Error::NoBenchmarks { input }) => assert_eq!(input, empty),
        other => panic!("expected NoBenchmarks, got {other:?}"),
    }
    assert!(!tmp.path().join("BENCHMARKS.md").exists());

    opts.check = false;
    let (report, md) = generate(&opts);
    assert_eq!(report.benchmarks, 0);
    assert!(report.plots.is_empty());
    assert!(md.contains("No criterion output found"));
    assert!(md.contains("- **this machine:** 0 met, 0 not met, 8 no data"));
}

#[test]
fn shipped_targets_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), vec![this_machine()]);
    opts.targets = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("targets.toml"));
    let (report, md) = generate(&opts);
    // table/hot5 1 and 2 at ≥1.2×: thread 2 misses; aggregator/seed meets both.
    assert!(md.contains(
        "| 5 hot keys, 1 and 2 threads: ≥1.2× best peer | #2 | table/hot5 | 1, 2 \
         | sheaf ≥1.2× best peer | **not met** (2: 0.80×) |"
    ));
    assert!(md.contains("| Zipf keys, 1 and 2 threads: ≥1.5× best peer | #2 | table/zipf |"));
    // ring/blocking is judged against crossbeam-channel (1p1c, 2p2c) and
    // kanal (4p4c), rows the fixture lacks: no data, not a pass.
    assert!(md.contains("| sheaf ≥1.5× crossbeam-channel | no data |"));
    assert_eq!(report.count(Status::Met), 2);
    assert_eq!(report.count(Status::NotMet), 1);
    assert_eq!(report.count(Status::NoData), report.targets.len() - 3);
}

#[test]
fn command_line() {
    let exe = env!("CARGO_BIN_EXE_bench-report");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("B.md");
    let output = Command::new(exe)
        .arg("--input")
        .arg(fixture("criterion"))
        .args(["--label", "laptop"])
        .arg("--out")
        .arg(&out)
        .arg(format!("--svg-dir={}", tmp.path().join("svg").display()))
        .arg("--targets")
        .arg(fixture("targets.toml"))
        .args(["--command", "make bench", "--check"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("13 benchmarks, 3 plots"));
    let md = fs::read_to_string(&out).unwrap();
    assert!(md.contains("## Results: laptop"));
    assert!(md.contains("```sh\nmake bench\n```"));
    assert!(md.contains("![table/hot5](svg/table_hot5.svg)"));

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let output = Command::new(exe)
        .arg("--input")
        .arg(&empty)
        .arg("--out")
        .arg(tmp.path().join("C.md"))
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no criterion benchmark found"));

    let output = Command::new(exe).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = Command::new(exe).arg("--label").arg("x").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
