//! `cargo run -p bench-report --release -- [options]`: regenerates
//! BENCHMARKS.md and docs/bench/*.svg from criterion's output.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use bench_report::{repo_root, run, Input, Options, Status, DEFAULT_LABEL};

const USAGE: &str = "\
Regenerates BENCHMARKS.md and its SVG plots from criterion's output.

Usage: bench-report [OPTIONS]

Options:
  --input DIR       criterion output directory; repeatable
                    (default: <repo>/target/criterion)
  --label LABEL     label of the preceding --input (default: \"this machine\"
                    for the first input, the directory for later ones);
                    a machine.txt in the input directory describes its machine
  --out PATH        markdown file to write (default: <repo>/BENCHMARKS.md)
  --svg-dir DIR     where the plots go (default: <repo>/docs/bench)
  --targets FILE    targets file (default: <repo>/bench-report/targets.toml)
  --command TEXT    command line shown in the header; repeatable
  --check           fail when an input holds no benchmark (for CI)
  -h, --help        print this help
";

/// Parsed command line, or a request for help.
enum Parsed {
    Run(Box<Options>),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let root = repo_root();
    let mut opts = Options::new(&root);
    let mut inputs: Vec<(PathBuf, Option<String>)> = Vec::new();
    let mut commands = Vec::new();

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument is not UTF-8: {a:?}"))?;
        let (flag, inline): (String, Option<String>) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<OsString, String> {
            inline
                .clone()
                .map(OsString::from)
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let text = |v: OsString, name: &str| {
            v.into_string()
                .map_err(|_| format!("{name} value is not UTF-8"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--input" => inputs.push((value("--input")?.into(), None)),
            "--label" => {
                let label = text(value("--label")?, "--label")?;
                match inputs.last_mut() {
                    Some((_, slot @ None)) => *slot = Some(label),
                    Some(_) => return Err("--label given twice for one --input".into()),
                    None => return Err("--label must follow an --input".into()),
                }
            }
            "--out" => opts.out = value("--out")?.into(),
            "--svg-dir" => opts.svg_dir = value("--svg-dir")?.into(),
            "--targets" => opts.targets = Some(value("--targets")?.into()),
            "--command" => commands.push(text(value("--command")?, "--command")?),
            "--check" if inline.is_none() => opts.check = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }

    if !inputs.is_empty() {
        opts.inputs = inputs
            .into_iter()
            .enumerate()
            .map(|(i, (dir, label))| {
                let label = label.unwrap_or_else(|| {
                    if i == 0 {
                        DEFAULT_LABEL.to_owned()
                    } else {
                        dir.display().to_string()
                    }
                });
                Input { dir, label }
            })
            .collect();
    }
    if !commands.is_empty() {
        opts.commands = commands;
    }
    Ok(Parsed::Run(Box::new(opts)))
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(opts)) => opts,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("bench-report: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(report) => {
            println!(
                "bench-report: wrote {} ({} benchmarks, {} plots in {}); targets: {} met, {} not met, {} no data",
                report.markdown.display(),
                report.benchmarks,
                report.plots.len(),
                opts.svg_dir.display(),
                report.count(Status::Met),
                report.count(Status::NotMet),
                report.count(Status::NoData),
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench-report: {error}");
            ExitCode::FAILURE
        }
    }
}
