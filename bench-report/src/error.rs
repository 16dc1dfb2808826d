//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can stop a report from being generated.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing a file failed.
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A criterion JSON file did not have the expected shape.
    Json {
        /// The offending file.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The targets file is not valid TOML or describes an impossible target.
    Targets {
        /// The targets file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// plotters could not draw a chart.
    Plot {
        /// The SVG being drawn.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// `--check` was given and an input holds no benchmark.
    NoBenchmarks {
        /// The criterion directory that was empty or missing.
        input: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Json { path, source } => {
                write!(f, "{}: not criterion output: {source}", path.display())
            }
            Error::Targets { path, message } => write!(f, "{}: {message}", path.display()),
            Error::Plot { path, message } => {
                write!(f, "{}: cannot draw plot: {message}", path.display())
            }
            Error::NoBenchmarks { input } => write!(
                f,
                "{}: no criterion benchmark found (expected */new/benchmark.json)",
                input.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}
