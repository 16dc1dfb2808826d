//! Facts about the machine, toolchain and checkout a report was made on.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the report's header says about where and when it was generated.
///
/// [`Environment::detect`] fills it in from the running system; tests build
/// one by hand so that the output is reproducible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// CPU model, e.g. `AMD EPYC 7B13`.
    pub cpu: String,
    /// Number of logical CPUs.
    pub logical_cpus: usize,
    /// Total memory, e.g. `23.4 GiB`.
    pub memory: String,
    /// Distribution and kernel, e.g. `Debian GNU/Linux 12 (bookworm), kernel 6.1.0`.
    pub os: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Short commit hash, with `-dirty` when the work tree has changes.
    pub commit: String,
    /// Generation time, e.g. `2025-01-31 14:05 UTC`.
    pub date: String,
}

impl Environment {
    /// Reads `/proc`, `/etc/os-release`, `uname`, `rustc` and `git` (run in
    /// the first of `checkouts` that is inside a git work tree with a commit).
    /// Anything unavailable reads `unknown`. The date honours
    /// `SOURCE_DATE_EPOCH`.
    pub fn detect(checkouts: &[&Path]) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| field(line, "model name"))
            .unwrap_or_else(|| "unknown".into());
        let processors = cpuinfo
            .lines()
            .filter(|line| field(line, "processor").is_some())
            .count();
        let logical_cpus = if processors > 0 {
            processors
        } else {
            std::thread::available_parallelism().map_or(0, usize::from)
        };

        let memory = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| meminfo.lines().find_map(|l| field(l, "MemTotal")))
            .and_then(|total| total.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(
                || "unknown".into(),
                |kib| format!("{:.1} GiB", kib / (1024.0 * 1024.0)),
            );

        let distro = fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_owned())
                })
            })
            .unwrap_or_else(|| std::env::consts::OS.into());
        let kernel = command_output(Command::new("uname").arg("-r")).or_else(|| {
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned())
        });
        let os = match kernel {
            Some(kernel) => format!("{distro}, kernel {kernel}"),
            None => distro,
        };

        let rustc = command_output(Command::new("rustc").arg("--version"))
            .unwrap_or_else(|| "unknown".into());

        let commit = checkouts
            .iter()
            .find_map(|dir| git_commit(dir))
            .unwrap_or_else(|| "unknown (no commit)".into());

        let now = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });

        Environment {
            cpu,
            logical_cpus,
            memory,
            os,
            rustc,
            commit,
            date: format_utc(now),
        }
    }
}

/// `git rev-parse --short HEAD` in `dir`, plus `-dirty` when
/// `git status --porcelain` lists anything.
fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| command_output(Command::new("git").arg("-C").arg(dir).args(args));
    let hash = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// The value of a `key : value` line (as in `/proc/cpuinfo`), if `key` matches.
fn field(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once(':')?;
    (k.trim() == key).then(|| v.trim().to_owned())
}

/// Trimmed stdout of a command that succeeded.
fn command_output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the Unix epoch.
fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_735_689_599), "2024-12-31 23:59 UTC");
        assert_eq!(format_utc(1_709_210_096), "2024-02-29 12:34 UTC");
    }

    #[test]
    fn cpuinfo_fields() {
        assert_eq!(
            field("model name\t: AMD EPYC 7B13", "model name").as_deref(),
            Some("AMD EPYC 7B13")
        );
        assert_eq!(field("model\t\t: 1", "model name"), None);
    }
}
