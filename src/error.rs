//! The library's error type. Every error names where it came from: the file,
//! and where there is text the line and column, and the layer when one is involved.
use std::fmt;
use std::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A place in a source file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}", self.file),
            (l, 0) => write!(f, "{}:{}", self.file, l),
            (l, c) => write!(f, "{}:{}:{}", self.file, l, c),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed protobuf text (prototxt).
    #[error("{loc}: {msg}")]
    Parse { loc: Location, msg: String },

    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A binary file (caffemodel, solverstate, binaryproto, Datum) that does not decode.
    #[error("{file}: {msg}")]
    Decode { file: String, msg: String },

    /// A problem with one layer of a net: bad parameters, shapes, unknown type.
    #[error("{loc}: layer '{layer}' (type {layer_type}): {msg}")]
    Layer { loc: Location, layer: String, layer_type: String, msg: String },

    /// A problem with a solver definition.
    #[error("{file}: {msg}")]
    Solver { file: String, msg: String },

    /// A dataset problem: missing DB, corrupt record.
    #[error("{msg}")]
    Data { msg: String },

    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),

    /// Anything else, already worded for the user.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
    pub fn decode(file: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Decode { file: file.as_ref().display().to_string(), msg: msg.into() }
    }
    pub fn msg(msg: impl Into<String>) -> Self {
        Error::Msg(msg.into())
    }
}
