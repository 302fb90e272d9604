//! [`StoreError`]: what a store call can fail with, in terms the broker answers clients in.

/// Why a store call failed. Nothing here names a database library: each backend maps its
/// driver's errors onto these, and the broker maps these onto HTTP answers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The data the broker opened is gone: the SQLite file was deleted or replaced under the
    /// running broker. Whatever is written now would land where nobody can read it again;
    /// only a restart opens the store again.
    #[error("the database {location} is gone or was replaced under the running broker")]
    Lost { location: String },
    /// Writes fail for lack of space or I/O errors (SQLite's `SQLITE_FULL`/`SQLITE_IOERR`,
    /// PostgreSQL's class 53 and `58030`). Recovers by itself once a write succeeds.
    #[error("cannot write the database {location}: disk full or I/O error: {detail}")]
    Full { location: String, detail: String },
    /// The database cannot be reached (a PostgreSQL server down or refusing connections).
    #[error("cannot reach the database {location}: {detail}")]
    Unavailable { location: String, detail: String },
    /// The store was closed, or its writer stopped.
    #[error("the store is closed")]
    Closed,
    /// The stored data or the schema is not what this version expects (a failed migration,
    /// a newer schema).
    #[error("the database schema cannot be used: {0}")]
    Schema(String),
    /// The caller's query cannot be read (bad full-text search syntax); the text says why
    /// and is for the caller.
    #[error("{0}")]
    BadQuery(String),
    /// Anything else; the text is for the log, not for clients.
    #[error("store error: {0}")]
    Internal(String),
}
