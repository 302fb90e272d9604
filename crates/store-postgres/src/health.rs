//! Driver errors mapped onto [`StoreError`], and the faults in effect ([`PgHealth`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use peers_store::{Health, StoreError};

/// What kind of fault a driver error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The server cannot be reached (refused, closed, shutting down, out of connections,
    /// pool timeout, bad credentials, no such database).
    Unavailable,
    /// SQLSTATE class 53 (insufficient resources: disk full, out of memory, a configured
    /// limit) or 58030 (I/O error).
    Full,
    Closed,
    Other,
}

fn fault(e: &sqlx::Error) -> Fault {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => Fault::Unavailable,
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => Fault::Closed,
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // 53300 (too many connections) refuses a connection, not a write.
            Some("53300") => Fault::Unavailable,
            Some(c) if c.starts_with("53") || c == "58030" => Fault::Full,
            // Class 08 (connection exception), 57P01-57P03 (admin/crash shutdown, cannot
            // connect now).
            // Class 28 (bad credentials) and 3D000 (no such database): reachable in
            // principle, but not this data.
            Some(c)
                if c.starts_with("08")
                    || c.starts_with("28")
                    || matches!(c, "57P01" | "57P02" | "57P03" | "3D000") =>
            {
                Fault::Unavailable
            }
            _ => Fault::Other,
        },
        _ => Fault::Other,
    }
}

/// The faults of one store handle: kept current by every call, answered by
/// [`peers_store::Store::health`].
pub(crate) struct PgHealth {
    /// The URL without its password.
    location: String,
    /// Since when writes fail for lack of resources (epoch ms); 0: they do not.
    full_since: AtomicI64,
    /// Since when the server cannot be reached; 0: it can.
    unavailable_since: AtomicI64,
    /// Spells of failing writes (class 53 / 58030) that ended, `(from_ms, to_ms)`.
    recovered: Mutex<Vec<(i64, i64)>>,
}

impl PgHealth {
    pub(crate) fn new(location: String) -> PgHealth {
        PgHealth {
            location,
            full_since: AtomicI64::new(0),
            unavailable_since: AtomicI64::new(0),
            recovered: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    pub(crate) fn now(&self) -> Health {
        let get = |a: &AtomicI64| match a.load(Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        };
        Health {
            lost_since: None,
            full_since: get(&self.full_since),
            unavailable_since: get(&self.unavailable_since),
        }
    }

    /// The error for a failed call, remembering what it says about the server.
    pub(crate) fn classify(&self, e: sqlx::Error) -> StoreError {
        let detail = e.to_string();
        match fault(&e) {
            Fault::Unavailable => {
                if since(&self.unavailable_since) {
                    tracing::error!(db = %self.location, detail, "cannot reach the database");
                }
                StoreError::Unavailable {
                    location: self.location.clone(),
                    detail,
                }
            }
            Fault::Full => {
                self.reachable();
                if since(&self.full_since) {
                    tracing::error!(
                        db = %self.location,
                        detail,
                        "storage_full: the database refuses writes (insufficient resources or \
                         I/O error); answering 507 until a write succeeds again"
                    );
                }
                StoreError::Full {
                    location: self.location.clone(),
                    detail,
                }
            }
            Fault::Closed => StoreError::Closed,
            Fault::Other => {
                self.reachable();
                StoreError::Internal(detail)
            }
        }
    }

    /// A call reached the server.
    pub(crate) fn reachable(&self) {
        if self.unavailable_since.swap(0, Ordering::SeqCst) != 0 {
            tracing::info!(db = %self.location, "the database can be reached again");
        }
    }

    /// A write committed: the server is reachable and takes writes.
    pub(crate) fn written(&self) {
        self.reachable();
        let since = self.full_since.swap(0, Ordering::SeqCst);
        if since != 0 {
            tracing::info!(db = %self.location, "storage recovered: the database takes writes again");
            self.recovered
                .lock()
                .expect("health lock")
                .push((since, peers_core::now_ms()));
        }
    }

    pub(crate) fn take_recovered(&self) -> Vec<(i64, i64)> {
        std::mem::take(&mut *self.recovered.lock().expect("health lock"))
    }

    pub(crate) fn put_back_recovered(&self, spells: Vec<(i64, i64)>) {
        self.recovered.lock().expect("health lock").extend(spells);
    }
}

/// Sets a "since" stamp to now unless set; whether this call set it.
fn since(a: &AtomicI64) -> bool {
    a.compare_exchange(0, peers_core::now_ms(), Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}
