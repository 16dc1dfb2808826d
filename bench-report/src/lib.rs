//! Regenerates `BENCHMARKS.md` and its SVG plots from criterion's output.
//!
//! [`run`] reads one or more criterion 0.5 output directories
//! (`target/criterion` by default), groups the benchmarks into one table per
//! criterion group (`<suite>/<workload>`: rows are parameters such as thread
//! counts, columns implementations with `sheaf` first), compares sheaf with
//! its peers, checks the targets of `bench-report/targets.toml`, draws one SVG
//! per group and writes the markdown page that embeds them.
//!
//! The binary (`cargo run -p bench-report --release -- --help`) is a thin
//! command-line wrapper around [`run`].

#![deny(missing_docs)]

mod error;
mod machine;
mod model;
mod parse;
mod plot;
mod render_md;
mod targets;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

pub use error::Error;
pub use machine::Environment;
pub use targets::Status;

use model::{sanitize, Dataset};
use render_md::{Page, Section};
use targets::Target;

/// Label of the default input.
pub const DEFAULT_LABEL: &str = "this machine";

/// Commands shown in the header when none are given.
pub const DEFAULT_COMMANDS: [&str; 2] = [
    "cargo bench --bench table --bench ring --bench aggregator --bench writer",
    "cargo run -p bench-report --release",
];

/// One criterion output directory and the label its results appear under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The directory criterion wrote into (`target/criterion`).
    pub dir: PathBuf,
    /// Section heading, e.g. `this machine` or `ci (4 vCPU)`. A `machine.txt`
    /// inside `dir` is printed verbatim under it.
    pub label: String,
}

/// What [`run`] reads and writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Inputs, each with its own results section.
    pub inputs: Vec<Input>,
    /// The markdown file to write.
    pub out: PathBuf,
    /// Directory for the SVG plots; linked relative to `out`'s directory.
    pub svg_dir: PathBuf,
    /// Targets file; `None` for no targets.
    pub targets: Option<PathBuf>,
    /// Command lines shown in the header.
    pub commands: Vec<String>,
    /// Fail with [`Error::NoBenchmarks`] when an input holds no benchmark.
    pub check: bool,
    /// Header facts; `None` detects them ([`Environment::detect`]).
    pub environment: Option<Environment>,
}

impl Options {
    /// The defaults for a checkout at `repo_root`: `target/criterion` (or
    /// `$CARGO_TARGET_DIR/criterion`) labelled [`DEFAULT_LABEL`],
    /// `BENCHMARKS.md`, `docs/bench/`, `bench-report/targets.toml` and
    /// [`DEFAULT_COMMANDS`].
    pub fn new(repo_root: &Path) -> Self {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo_root.join("target"), PathBuf::from);
        Options {
            inputs: vec![Input {
                dir: target_dir.join("criterion"),
                label: DEFAULT_LABEL.to_owned(),
            }],
            out: repo_root.join("BENCHMARKS.md"),
            svg_dir: repo_root.join("docs").join("bench"),
            targets: Some(repo_root.join("bench-report").join("targets.toml")),
            commands: DEFAULT_COMMANDS.iter().map(|c| c.to_string()).collect(),
            check: false,
            environment: None,
        }
    }
}

/// The repository root: the parent of this crate's manifest directory when
/// it still exists, else `git rev-parse --show-toplevel`, else `.`.
pub fn repo_root() -> PathBuf {
    let from_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if from_manifest.join("Cargo.toml").is_file() {
        return from_manifest.canonicalize().unwrap_or(from_manifest);
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What [`run`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The markdown file.
    pub markdown: PathBuf,
    /// The SVG files, one per group and input.
    pub plots: Vec<PathBuf>,
    /// Benchmarks read, over all inputs.
    pub benchmarks: usize,
    /// `(input label, target group, status)` for every target and input.
    pub targets: Vec<(String, String, Status)>,
}

impl Report {
    /// How many target checks ended in `status`.
    pub fn count(&self, status: Status) -> usize {
        self.targets.iter().filter(|(_, _, s)| *s == status).count()
    }
}

/// Reads the inputs, writes the plots and the markdown page.
pub fn run(opts: &Options) -> Result<Report, Error> {
    let targets = match &opts.targets {
        Some(path) => Target::load(path)?,
        None => Vec::new(),
    };

    let mut datasets = Vec::new();
    for input in &opts.inputs {
        let measurements = parse::read_criterion_dir(&input.dir)?;
        if opts.check && measurements.is_empty() {
            return Err(Error::NoBenchmarks {
                input: input.dir.clone(),
            });
        }
        let machine_path = input.dir.join("machine.txt");
        let machine_txt = if machine_path.is_file() {
            Some(fs::read_to_string(&machine_path).map_err(|e| Error::io(&machine_path, e))?)
        } else {
            None
        };
        datasets.push(Dataset::new(
            input.label.clone(),
            input.dir.clone(),
            machine_txt,
            measurements,
        ));
    }

    let out_dir = create_dir(opts.out.parent().unwrap_or(Path::new("")))?;
    let svg_dir = create_dir(&opts.svg_dir)?;
    let svg_link_dir = markdown_path(&relative_path(&out_dir, &svg_dir));

    let mut plots = Vec::new();
    let mut sections = Vec::new();
    for (i, dataset) in datasets.iter().enumerate() {
        let mut links = BTreeMap::new();
        for group in &dataset.groups {
            let name = if i == 0 {
                format!("{}.svg", sanitize(&group.id))
            } else {
                format!("{}__{}.svg", sanitize(&dataset.label), sanitize(&group.id))
            };
            let path = svg_dir.join(&name);
            let svg = plot::render_svg(group).map_err(|message| Error::Plot {
                path: path.clone(),
                message,
            })?;
            fs::write(&path, svg).map_err(|e| Error::io(&path, e))?;
            let link = if svg_link_dir.is_empty() {
                name
            } else {
                format!("{svg_link_dir}/{name}")
            };
            links.insert(group.id.clone(), link);
            plots.push(path);
        }
        sections.push(Section {
            dataset,
            source: display_path(&dataset.source, &out_dir),
            plots: links,
        });
    }

    let environment = match &opts.environment {
        Some(env) => env.clone(),
        None => Environment::detect(&[&out_dir, &repo_root()]),
    };
    let page = Page {
        env: &environment,
        commands: &opts.commands,
        sections: &sections,
        targets: &targets,
        targets_source: opts.targets.as_deref().map(|p| display_path(p, &out_dir)),
    };
    let markdown = render_md::render(&page);
    fs::write(&opts.out, markdown).map_err(|e| Error::io(&opts.out, e))?;

    let target_statuses = datasets
        .iter()
        .flat_map(|d| {
            targets
                .iter()
                .map(|t| (d.label.clone(), t.group.clone(), t.evaluate(d).status()))
        })
        .collect();
    Ok(Report {
        markdown: opts.out.clone(),
        plots,
        benchmarks: datasets.iter().map(|d| d.benchmarks).sum(),
        targets: target_statuses,
    })
}

/// Creates `dir` and returns its canonical form.
fn create_dir(dir: &Path) -> Result<PathBuf, Error> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    dir.canonicalize().map_err(|e| Error::io(dir, e))
}

/// The path from directory `from` to `to`, both canonical.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for component in &to[common..] {
        path.push(component);
    }
    path
}

/// A relative path with `/` separators, as markdown links want.
fn markdown_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// `path` relative to `base` when it lies inside it, else as given.
fn display_path(path: &Path, base: &Path) -> String {
    path.canonicalize()
        .ok()
        .and_then(|p| p.strip_prefix(base).ok().map(markdown_path))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let rel = |a: &str, b: &str| markdown_path(&relative_path(Path::new(a), Path::new(b)));
        assert_eq!(rel("/repo", "/repo/docs/bench"), "docs/bench");
        assert_eq!(rel("/repo/docs", "/repo/docs/bench"), "bench");
        assert_eq!(rel("/repo/a", "/repo/docs/bench"), "../docs/bench");
        assert_eq!(rel("/repo", "/repo"), "");
    }
}
