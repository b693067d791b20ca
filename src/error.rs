//! The library's one error type. Every error names where it came from: the
//! file, and where there is text the line and column, and the layer when one
//! is involved. Code deep down (a layer's setup, a Datum decoder) returns an
//! error that says what is wrong; the caller that knows where adds that with
//! [`Context`] or [`Error::in_layer`], once.
use std::fmt;
use std::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A place in a source file, 1-based; line 0 means "the file as a whole".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl Location {
    /// The file alone, with no line.
    pub fn file(file: impl Into<String>) -> Self {
        Location { file: file.into(), line: 0, col: 0 }
    }
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

/// Each variant's message is whole: it includes the inner error's, and
/// `source()` is not used, so a printer of error chains says each thing once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file that could not be read or written.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },

    /// Malformed protobuf text (prototxt).
    #[error("{loc}: {msg}")]
    Parse { loc: Location, msg: String },

    /// A binary file (caffemodel, solverstate, binaryproto, Datum, HDF5) that does not decode.
    #[error("{file}: {msg}")]
    Decode { file: String, msg: String },

    /// A value the user gave that cannot work: a layer parameter, a bottom
    /// shape, a flag. Worded for the user; the caller adds the file and layer.
    #[error("{0}")]
    Invalid(String),

    /// Something Caffe defines that caffe-tch does not do (yet), or that has no
    /// meaning here; the message names it and says what to do instead.
    #[error("{0}")]
    Unsupported(String),

    /// A problem with one layer of a net, located in its prototxt. `bottoms`
    /// lists the layer's inputs and their shapes when the shapes are the issue.
    #[error("{loc}: layer '{layer}' (type {layer_type}): {inner}{}", bottoms_suffix(.bottoms))]
    Layer {
        loc: Location,
        layer: String,
        layer_type: String,
        bottoms: Option<Vec<(String, Vec<i64>)>>,
        inner: Box<Error>,
    },

    /// A problem with a solver definition or solver state.
    #[error("{file}: {msg}")]
    Solver { file: String, msg: String },

    /// A dataset problem: a missing DB, a corrupt record, an image that does not decode.
    #[error("{0}")]
    Data(String),

    /// A command line the tool cannot take.
    #[error("{0}")]
    Usage(String),

    /// An error raised by libtorch.
    #[error("libtorch: {}", torch_message(.0))]
    Torch(tch::TchError),

    /// An inner error with what was being done when it happened.
    #[error("{context}: {inner}")]
    Context { context: String, inner: Box<Error> },
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e)
    }
}

/// libtorch's message without the C++ backtrace it appends ("Exception
/// raised from ... frame #0 ..."), which would bury the one line a user reads.
fn torch_message(e: &tch::TchError) -> String {
    libtorch_message(&e.to_string())
}

/// The text of a libtorch error, without tch's prefix and libtorch's backtrace.
pub(crate) fn libtorch_message(text: &str) -> String {
    let text = text.strip_prefix("Internal torch error: ").unwrap_or(text);
    text.split("Exception raised from").next().unwrap_or(text).trim().to_string()
}

fn bottoms_suffix(bottoms: &Option<Vec<(String, Vec<i64>)>>) -> String {
    match bottoms {
        None => String::new(),
        Some(b) if b.is_empty() => " (bottoms: none)".to_string(),
        Some(b) => {
            let list: Vec<String> = b.iter().map(|(name, shape)| format!("{name} {shape:?}")).collect();
            format!(" (bottoms: {})", list.join(", "))
        }
    }
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), error: source }
    }
    pub fn decode(file: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Decode { file: file.as_ref().display().to_string(), msg: msg.into() }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn data(msg: impl Into<String>) -> Self {
        Error::Data(msg.into())
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }
    pub fn solver(file: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Solver { file: file.as_ref().display().to_string(), msg: msg.into() }
    }

    /// Places this error in a layer of a net file.
    pub fn in_layer(self, loc: Location, layer: impl Into<String>, layer_type: impl Into<String>) -> Self {
        Error::Layer { loc, layer: layer.into(), layer_type: layer_type.into(), bottoms: None, inner: Box::new(self) }
    }

    /// Like [`Error::in_layer`], listing the layer's bottoms and their shapes.
    pub fn in_layer_with_bottoms(
        self,
        loc: Location,
        layer: impl Into<String>,
        layer_type: impl Into<String>,
        bottoms: Vec<(String, Vec<i64>)>,
    ) -> Self {
        Error::Layer {
            loc,
            layer: layer.into(),
            layer_type: layer_type.into(),
            bottoms: Some(bottoms),
            inner: Box::new(self),
        }
    }
}

/// Adds what was being done to an error, as candle's `Context` and tract's
/// `with_context` do: `read(path).context("loading the weights")?`.
pub trait Context<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::Context { context: context.to_string(), inner: Box::new(e.into()) })
    }
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context { context: context().to_string(), inner: Box::new(e.into()) })
    }
}

/// Returns early with an [`Error::Invalid`] worded by `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::Error::Invalid(format!($($arg)*))) };
}
