//! Journal rows and the values they hold, apart from the domain types: a `TaskRow` is read from
//! SQL (`TryFrom<&Row>`) and becomes a `Task` (`From<&TaskRow>`).

use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::error::{Category, Error, Result};
use crate::model::{ProviderId, Status, Task, Video, rfc3339};

/// A task's state in the journal: the public five plus `submitting` (written before the provider
/// is called). A refused create is `Failed` (see `TaskRow::is_refused`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum State {
    Submitting,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    /// What callers see: a task being submitted is `queued` to them.
    pub fn public(self) -> Status {
        match self {
            State::Submitting | State::Queued => Status::Queued,
            State::Running => Status::Running,
            State::Succeeded => Status::Succeeded,
            State::Failed => Status::Failed,
            State::Cancelled => Status::Cancelled,
        }
    }
}

impl From<Status> for State {
    fn from(s: Status) -> State {
        match s {
            Status::Queued => State::Queued,
            Status::Running => State::Running,
            Status::Succeeded => State::Succeeded,
            Status::Failed => State::Failed,
            Status::Cancelled => State::Cancelled,
        }
    }
}

/// Download state of a succeeded task.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum Download {
    Pending,
    Done,
    Failed,
}

/// Stored as its name.
fn to_sql_name<'a>(name: &'static str) -> ToSqlOutput<'a> {
    ToSqlOutput::Borrowed(ValueRef::Text(name.as_bytes()))
}

/// Read from its name; an unknown name names itself in the error.
fn from_sql_name<T: std::str::FromStr>(v: ValueRef<'_>, what: &str) -> FromSqlResult<T> {
    let s = v.as_str()?;
    s.parse().map_err(|_| {
        FromSqlError::Other(
            format!("unknown {what} '{s}' (written by a newer version of i2v-mcp?)").into(),
        )
    })
}

impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(to_sql_name(self.into()))
    }
}

impl FromSql for State {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<State> {
        from_sql_name(v, "task status")
    }
}

impl ToSql for Download {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(to_sql_name(self.into()))
    }
}

/// One journal row.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: String,
    pub provider: ProviderId,
    pub model: String,
    pub provider_task_id: Option<String>,
    pub status: State,
    /// The create request as journaled (images as references, see `core::journal_request`);
    /// `None` when the query did not read it.
    pub request: Option<String>,
    pub fingerprint: String,
    pub idempotency_key: Option<String>,
    pub progress: Option<u8>,
    pub eta: Option<u32>,
    pub estimated_cost: Option<f64>,
    pub video_url: Option<String>,
    pub url_expires_at: Option<i64>,
    pub local_path: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub download: Option<Download>,
    pub error: Option<Error>,
    pub note: Option<String>,
    pub webhook_secret: Option<String>,
    pub polls: u32,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// The error columns of a row, if it has an error.
fn error_of(r: &Row<'_>) -> rusqlite::Result<Option<Error>> {
    let category: Option<String> = r.get("error_category")?;
    Ok(category.map(|c| Error {
        category: Category::parse(&c).unwrap_or(Category::Internal),
        message: r
            .get::<_, Option<String>>("error_message")
            .ok()
            .flatten()
            .unwrap_or_default(),
        retryable: r
            .get::<_, Option<bool>>("error_retryable")
            .ok()
            .flatten()
            .unwrap_or(false),
        next_step: r.get("error_next_step").ok().flatten(),
    }))
}

impl TryFrom<&Row<'_>> for TaskRow {
    type Error = rusqlite::Error;
    fn try_from(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
        let provider: String = r.get("provider")?;
        let provider = provider.parse().map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown provider '{provider}' (written by a newer version of i2v-mcp?)")
                    .into(),
            )
        })?;
        let download: Option<String> = r.get("download")?;
        Ok(TaskRow {
            id: r.get("id")?,
            provider,
            model: r.get("model")?,
            provider_task_id: r.get("provider_task_id")?,
            status: r.get("status")?,
            request: match r.as_ref().column_index("request") {
                Ok(i) => r.get(i)?,
                Err(_) => None,
            },
            fingerprint: r.get("fingerprint")?,
            idempotency_key: r.get("idempotency_key")?,
            progress: r
                .get::<_, Option<i64>>("progress")?
                .map(|v| v.clamp(0, 100) as u8),
            eta: r.get::<_, Option<i64>>("eta")?.map(|v| v.max(0) as u32),
            estimated_cost: r.get("estimated_cost")?,
            video_url: r.get("video_url")?,
            url_expires_at: r.get("url_expires_at")?,
            local_path: r.get("local_path")?,
            bytes: r.get::<_, Option<i64>>("bytes")?.map(|v| v.max(0) as u64),
            sha256: r.get("sha256")?,
            download: download.and_then(|d| d.parse().ok()),
            error: error_of(r)?,
            note: r.get("note")?,
            webhook_secret: r.get("webhook_secret")?,
            polls: r.get::<_, i64>("polls")?.max(0) as u32,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            finished_at: r.get("finished_at")?,
        })
    }
}

/// A journal row this version cannot decode (a provider from a newer version, a value of the
/// wrong type): named, logged and skipped, so the other tasks keep being served.
#[derive(Debug, Clone)]
pub struct BadRow {
    pub id: String,
    pub problem: String,
}

impl BadRow {
    fn of(r: &Row<'_>, e: &rusqlite::Error) -> BadRow {
        let problem = match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, inner) => inner.to_string(),
            rusqlite::Error::InvalidColumnType(_, name, ty) => {
                format!("column {name} holds a {ty} value this version cannot read")
            }
            other => other.to_string(),
        };
        BadRow {
            id: r
                .get::<_, String>("id")
                .unwrap_or_else(|_| "(unreadable id)".into()),
            problem,
        }
    }

    pub fn error(&self) -> Error {
        Error::internal(format!(
            "journal row of task {} cannot be read by this version: {}; other tasks are unaffected",
            self.id, self.problem
        ))
        .with_next_step(
            "if a newer i2v-mcp wrote this task, use that version to read it; list_tasks skips it",
        )
    }
}

/// Decode one row, or say which row cannot be decoded and why.
pub(super) fn decode(r: &Row<'_>) -> rusqlite::Result<std::result::Result<TaskRow, BadRow>> {
    Ok(TaskRow::try_from(r).map_err(|e| BadRow::of(r, &e)))
}

/// A decoded single row, or the error that names what is wrong with it.
pub(super) fn checked(
    row: Option<std::result::Result<TaskRow, BadRow>>,
) -> Result<Option<TaskRow>> {
    match row {
        None => Ok(None),
        Some(Ok(row)) => Ok(Some(row)),
        Some(Err(bad)) => {
            tracing::warn!(task = %bad.id, problem = %bad.problem, "journal row cannot be decoded");
            Err(bad.error())
        }
    }
}

/// `list`'s answer: the rows, and the ones skipped because they cannot be decoded.
#[derive(Debug, Default)]
pub struct Listed {
    pub rows: Vec<TaskRow>,
    pub unreadable: Vec<BadRow>,
}

impl TaskRow {
    pub fn public_status(&self) -> Status {
        self.status.public()
    }

    pub fn is_submitting(&self) -> bool {
        self.status == State::Submitting
    }

    /// The create was refused before anything was accepted upstream (see `sqlite::REFUSED`).
    pub fn is_refused(&self) -> bool {
        self.status == State::Failed
            && self.provider_task_id.is_none()
            && self
                .error
                .as_ref()
                .is_some_and(|e| e.category != Category::SubmitUnknown)
    }

    /// Open, or succeeded with its download still to do: the watcher has work here.
    pub fn needs_work(&self) -> bool {
        matches!(self.status, State::Queued | State::Running)
            || (self.status == State::Succeeded && self.download == Some(Download::Pending))
    }

    pub fn to_task(&self) -> Task {
        Task::from(self)
    }
}

impl From<&TaskRow> for Task {
    fn from(row: &TaskRow) -> Task {
        let status = row.public_status();
        let video = if row.video_url.is_some() || row.local_path.is_some() {
            Some(Video {
                url: row.video_url.clone(),
                url_expires_at: row.url_expires_at.map(rfc3339),
                local_path: row.local_path.clone(),
                bytes: row.bytes,
                sha256: row.sha256.clone(),
            })
        } else {
            None
        };
        Task {
            task_id: row.id.clone(),
            provider: row.provider,
            model: row.model.clone(),
            provider_task_id: row.provider_task_id.clone(),
            status,
            progress_percent: if status == Status::Succeeded {
                Some(100)
            } else {
                row.progress
            },
            eta_seconds: if status.is_terminal() { None } else { row.eta },
            estimated_cost_usd: row.estimated_cost,
            video,
            error: row.error.clone(),
            note: row.note.clone(),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            finished_at: row.finished_at.map(rfc3339),
            deduplicated: false,
            download_pending: status == Status::Succeeded
                && row.download == Some(Download::Pending),
        }
    }
}

/// What the watcher learned from one poll, to be applied under a guard.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub status: Option<Status>,
    pub progress: Option<u8>,
    pub eta: Option<u32>,
    pub video_url: Option<String>,
    pub url_expires_at: Option<i64>,
    pub error: Option<Error>,
}

/// A new task, before it is submitted.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub provider: ProviderId,
    pub model: String,
    pub request: String,
    pub fingerprint: String,
    pub idempotency_key: Option<String>,
    pub estimated_cost: Option<f64>,
    pub webhook_secret: Option<String>,
    pub created_at: i64,
}

pub enum Inserted {
    New,
    /// The idempotency key was already used: here is that task's row.
    Existing(Box<TaskRow>),
}

/// Filter for `list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub provider: Option<ProviderId>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_keep_their_journal_names() {
        let names = [
            (State::Submitting, "submitting"),
            (State::Queued, "queued"),
            (State::Running, "running"),
            (State::Succeeded, "succeeded"),
            (State::Failed, "failed"),
            (State::Cancelled, "cancelled"),
        ];
        for (state, name) in names {
            assert_eq!(<&str>::from(state), name);
            assert_eq!(name.parse::<State>().unwrap(), state);
        }
        for s in Status::ALL {
            assert_eq!(<&str>::from(State::from(s)), s.as_str());
            assert_eq!(State::from(s).public(), s);
        }
        assert_eq!(State::Submitting.public(), Status::Queued);
        for (d, name) in [
            (Download::Pending, "pending"),
            (Download::Done, "done"),
            (Download::Failed, "failed"),
        ] {
            assert_eq!(<&str>::from(d), name);
        }
    }
}
