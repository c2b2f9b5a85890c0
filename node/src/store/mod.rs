//! Storage over sqlx: SQLite (embedded default) or Postgres, chosen by the database URL.
//!
//! Queries go through sqlx's `Any` driver so one set of SQL serves both; the schema differs
//! only in type names, so each dialect has its own migration folder. Ids are UUID text,
//! times are Unix milliseconds, flags 0/1. Placeholders are `$1, $2, …` (both dialects
//! accept them).

mod accounts;
mod channel_log;
mod channels;
mod committer;
mod meetings;

use std::str::FromStr;
use std::time::Duration;

use actors::ports::StoreError;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use tracing::info;
use uuid::Uuid;

pub use accounts::{CompanyRow, DeviceToken, NewUser, UserRow};
pub use channels::{AttachmentRow, ChannelRow, HistoryQuery, Unread};
pub use meetings::{MeetingRow, NewMeeting};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database: a pool and the dialect behind it. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Group commit of message appends (see `committer`).
    committer: committer::Committer,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database url (use sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("cannot connect to the database: {0}")]
    Connect(sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Db {
    /// Connects, creating a SQLite file (and its folder) if needed, and applies migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, OpenError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(OpenError::UnsupportedUrl(url.to_owned()));
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { max_connections.min(8) } else { max_connections })
            .acquire_timeout(Duration::from_secs(5));
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;")
                        .await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await.map_err(OpenError::Connect)?;
        if backend == Backend::Sqlite {
            pool.execute("PRAGMA journal_mode = WAL;").await.map_err(OpenError::Connect)?;
        }
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        info!(backend = ?backend, "database ready");
        let committer = committer::Committer::start(pool.clone());
        Ok(Self { pool, backend, committer })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(classify)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Makes sure the folder of a SQLite file exists and that the file is created if missing.
fn prepare_sqlite_url(url: &str) -> Result<String, OpenError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if !path.is_empty() && path != ":memory:" {
        if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| OpenError::Folder { path: parent.display().to_string(), source })?;
        }
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Decides what a failed statement means for the caller: certainly not applied
/// (`Unavailable`), a constraint that held (`Conflict`), or maybe applied (`Unknown`).
pub fn classify(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        // A reference to a row that is gone (a deleted user's token), or text the database
        // cannot keep (Postgres refuses NUL: SQLSTATE 22021): retrying cannot help.
        sqlx::Error::Database(db) if db.is_foreign_key_violation() || db.code().as_deref() == Some("22021") => {
            StoreError::Rejected(db.message().to_owned())
        }
        // The server rejected the statement: the transaction did not commit.
        sqlx::Error::Database(_) => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Unknown(err.to_string()),
    }
}

pub(crate) fn uuid_col(row: &AnyRow, column: &str) -> Result<Uuid, sqlx::Error> {
    let text: String = row.try_get(column)?;
    Uuid::from_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

pub(crate) fn opt_uuid_col(row: &AnyRow, column: &str) -> Result<Option<Uuid>, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| Uuid::from_str(&t).map_err(|err| sqlx::Error::Decode(Box::new(err)))).transpose()
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}
