//! One error type for the whole crate. Every variant carries enough context (a file, a
//! tensor name, a limit) that the message alone tells the user what went wrong.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while touching a file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Input that does not follow its format: a truncated file, a bad header, a wrong magic.
    #[error("{what}: {msg}")]
    Format { what: String, msg: String },
    /// Valid input that this runtime does not handle (a tensor type, an architecture).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Shapes that do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A tensor the model needs is absent from the checkpoint.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// The prompt (plus what must be generated) does not fit the model's context window.
    #[error("prompt of {tokens} tokens does not fit the context window of {limit} tokens")]
    ContextOverflow { tokens: usize, limit: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    /// A shard's bytes do not hash to what the manifest promises.
    #[error("{file}: sha256 mismatch (expected {expected}, got {actual})")]
    Hash { file: String, expected: String, actual: String },
    #[error("{0}")]
    Invalid(String),
    /// No usable GPU, a GPU limit the model exceeds, or a GPU failure (device lost, out of
    /// memory, a shader or validation error). The CPU path is unaffected.
    #[error("gpu: {0}")]
    Gpu(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A format error about `what` (a file name, a section of a file).
    pub fn format(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Format { what: what.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::format("json", e.to_string())
    }
}
