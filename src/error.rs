//! The library's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in maxprune, with what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("reading", "writing", "creating directory", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file's content is not what its format requires.
    #[error("{path}: {what}: expected {expected}, found {found}")]
    Format {
        /// The file (or stream name) concerned.
        path: String,
        /// The field or part that is wrong.
        what: String,
        /// What the format requires.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A JSON or TOML document could not be parsed or does not match its schema.
    #[error("{path}: cannot parse")]
    Parse {
        /// The file concerned.
        path: String,
        /// The parser's error (it names line and column).
        #[source]
        source: BoxError,
    },
    /// An architecture spec, plan or config is inconsistent.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What is invalid ("spec", "plan", "config", ...).
        what: &'static str,
        /// What is wrong, naming the layer or field.
        message: String,
    },
    /// A dataset could not be found in any of the places looked in.
    #[error(
        "dataset '{name}' not found; looked in:\n{}\nget it with `maxprune fetch {name}`{}",
        .searched.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n"),
        if .name == "fashion-mnist" { " or `apt-get install dataset-fashion-mnist`" } else { "" }
    )]
    DatasetNotFound {
        /// The dataset's name.
        name: String,
        /// Every directory that was searched, in order.
        searched: Vec<PathBuf>,
    },
    /// A download failed or delivered the wrong bytes.
    #[error("download {url}: {message}")]
    Download {
        /// The address fetched.
        url: String,
        /// What went wrong.
        message: String,
        /// The transport's error, when it reported one.
        #[source]
        source: Option<BoxError>,
    },
    /// An output already holds earlier work, which is never overwritten by accident.
    #[error("{} already holds {holds}", .path.display())]
    Occupied {
        /// The output directory.
        path: PathBuf,
        /// What it holds ("a run (spec.json)", "a schedule", ...).
        holds: &'static str,
        /// Whether the work there can be continued (resumed) rather than only replaced.
        resumable: bool,
    },
    /// Training diverged.
    #[error("training diverged at epoch {epoch}, step {step}: loss is {loss}; the last good checkpoint is kept")]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// The non-finite loss.
        loss: f32,
    },
}

/// An underlying error kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Parse`] of `path`, keeping the parser's error as the source.
    pub fn parse(path: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Parse {
            path: path.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Invalid`] with a formatted message.
    pub fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            message: message.into(),
        }
    }
}

/// `error` and its sources, joined by `": "` (as the CLI prints them).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
