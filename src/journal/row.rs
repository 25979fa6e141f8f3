//! Journal rows and the values they hold, apart from the domain types: a `TaskRow` is read from
//! SQL through `Cols` (one impl per backend) and becomes a `Task` (`From<&TaskRow>`).

use rusqlite::Row;
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

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

impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(to_sql_name(self.into()))
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
    /// Seconds the provider billed, when its poll answer said.
    pub billed_seconds: Option<f64>,
    /// Who created it: `""` for the operator (the static token, stdio, the CLI, and every task
    /// from before tenancy), else `<issuer>#<sub>` of an OAuth subject.
    pub owner: String,
}

/// Reads one column of a journal row by name, whatever the backend: `Err` says what is wrong
/// with the value, in words a log reader understands.
pub(super) trait Cols {
    fn text(&self, name: &str) -> std::result::Result<Option<String>, String>;
    fn int(&self, name: &str) -> std::result::Result<Option<i64>, String>;
    fn real(&self, name: &str) -> std::result::Result<Option<f64>, String>;
    fn flag(&self, name: &str) -> std::result::Result<Option<bool>, String>;
    /// Whether the query read this column.
    fn has(&self, name: &str) -> bool;
}

type ColResult<T> = std::result::Result<T, String>;

fn required<T>(v: Option<T>, name: &str) -> ColResult<T> {
    v.ok_or_else(|| format!("column {name} is empty"))
}

/// A stored name read back; an unknown one names itself in the error.
fn named<T: std::str::FromStr>(s: String, what: &str) -> ColResult<T> {
    s.parse()
        .map_err(|_| format!("unknown {what} '{s}' (written by a newer version of i2v-mcp?)"))
}

/// The error columns of a row, if it has an error.
fn error_of(r: &impl Cols) -> ColResult<Option<Error>> {
    let category = r.text("error_category")?;
    Ok(category.map(|c| Error {
        category: Category::parse(&c).unwrap_or(Category::Internal),
        message: r.text("error_message").ok().flatten().unwrap_or_default(),
        retryable: r.flag("error_retryable").ok().flatten().unwrap_or(false),
        next_step: r.text("error_next_step").ok().flatten(),
    }))
}

impl TaskRow {
    /// Decode a row from its columns.
    fn from_cols(r: &impl Cols) -> ColResult<TaskRow> {
        let provider = named(required(r.text("provider")?, "provider")?, "provider")?;
        let status = named(required(r.text("status")?, "status")?, "task status")?;
        Ok(TaskRow {
            id: required(r.text("id")?, "id")?,
            provider,
            model: required(r.text("model")?, "model")?,
            provider_task_id: r.text("provider_task_id")?,
            status,
            request: if r.has("request") {
                r.text("request")?
            } else {
                None
            },
            fingerprint: required(r.text("fingerprint")?, "fingerprint")?,
            idempotency_key: r.text("idempotency_key")?,
            progress: r.int("progress")?.map(|v| v.clamp(0, 100) as u8),
            eta: r.int("eta")?.map(|v| v.max(0) as u32),
            estimated_cost: r.real("estimated_cost")?,
            video_url: r.text("video_url")?,
            url_expires_at: r.int("url_expires_at")?,
            local_path: r.text("local_path")?,
            bytes: r.int("bytes")?.map(|v| v.max(0) as u64),
            sha256: r.text("sha256")?,
            download: r.text("download")?.and_then(|d| d.parse().ok()),
            error: error_of(r)?,
            note: r.text("note")?,
            webhook_secret: r.text("webhook_secret")?,
            polls: r.int("polls")?.unwrap_or(0).max(0) as u32,
            created_at: required(r.int("created_at")?, "created_at")?,
            updated_at: required(r.int("updated_at")?, "updated_at")?,
            finished_at: r.int("finished_at")?,
            billed_seconds: r.real("billed_seconds")?,
            owner: if r.has("owner") {
                r.text("owner")?.unwrap_or_default()
            } else {
                String::new()
            },
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
/// How long until every rate window `(max, period ms)` admits one more create at `now`, and which
/// window is the reason, given each window's max-th newest slot still inside it (`nths`, by the
/// backend's query); `None`: all admit.
pub(super) fn rate_wait(
    windows: &[(i64, i64)],
    nths: &[Option<i64>],
    now: i64,
) -> Option<(i64, usize)> {
    let mut wait: Option<(i64, usize)> = None;
    for (i, ((_, period), nth)) in windows.iter().zip(nths).enumerate() {
        if let Some(at) = nth {
            let d = at + period - now;
            if wait.is_none_or(|(cur, _)| d > cur) {
                wait = Some((d, i));
            }
        }
    }
    wait
}

pub(super) fn decode_cols(r: &impl Cols) -> std::result::Result<TaskRow, BadRow> {
    TaskRow::from_cols(r).map_err(|problem| BadRow {
        id: r
            .text("id")
            .ok()
            .flatten()
            .unwrap_or_else(|| "(unreadable id)".into()),
        problem,
    })
}

/// SQLite's rows, read by column name.
impl Cols for Row<'_> {
    fn text(&self, name: &str) -> ColResult<Option<String>> {
        self.get(name).map_err(|e| sqlite_problem(name, &e))
    }
    fn int(&self, name: &str) -> ColResult<Option<i64>> {
        self.get(name).map_err(|e| sqlite_problem(name, &e))
    }
    fn real(&self, name: &str) -> ColResult<Option<f64>> {
        self.get(name).map_err(|e| sqlite_problem(name, &e))
    }
    fn flag(&self, name: &str) -> ColResult<Option<bool>> {
        self.get(name).map_err(|e| sqlite_problem(name, &e))
    }
    fn has(&self, name: &str) -> bool {
        self.as_ref().column_index(name).is_ok()
    }
}

fn sqlite_problem(name: &str, e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => inner.to_string(),
        rusqlite::Error::InvalidColumnType(_, _, ty) => {
            format!("column {name} holds a {ty} value this version cannot read")
        }
        other => other.to_string(),
    }
}

/// Decode one SQLite row, or say which row cannot be decoded and why.
pub(super) fn decode(r: &Row<'_>) -> rusqlite::Result<std::result::Result<TaskRow, BadRow>> {
    Ok(decode_cols(r))
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
            billed_seconds: row.billed_seconds,
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
    pub billed_seconds: Option<f64>,
}

/// What applying an `Update` writes: the row's next values, and whether a reader sees a change.
pub(super) struct Applied {
    pub status: State,
    pub progress: Option<u8>,
    pub eta: Option<u32>,
    pub video_url: Option<String>,
    pub expires: Option<i64>,
    pub download: Option<Download>,
    pub category: Option<&'static str>,
    pub message: Option<String>,
    pub retryable: Option<bool>,
    pub next_step: Option<String>,
    pub terminal: bool,
    pub changed: bool,
    pub billed_seconds: Option<f64>,
}

impl Update {
    /// The row after this poll result, or `None` if the row may not move. Open tasks move freely
    /// between queued and running and into a terminal state; a task we stopped watching on timeout
    /// may still turn out to have succeeded (the provider finished late): that one transition out
    /// of `failed` is allowed, so a paid video is never lost.
    pub(super) fn plan(&self, row: &TaskRow) -> Option<Applied> {
        let u = self;
        let late_success = row.status == State::Failed
            && row
                .error
                .as_ref()
                .is_some_and(|e| e.category == Category::Timeout)
            && u.status == Some(Status::Succeeded);
        if !(matches!(row.status, State::Queued | State::Running) || late_success) {
            return None;
        }
        let status = u.status.unwrap_or_else(|| row.public_status());
        let terminal = status.is_terminal();
        let progress = u.progress.or(row.progress);
        let eta = if terminal { None } else { u.eta };
        let video_url = u.video_url.clone().or(row.video_url.clone());
        let download = if status == Status::Succeeded && row.download != Some(Download::Done) {
            Some(Download::Pending)
        } else {
            row.download
        };
        let error = match (&u.error, status) {
            (Some(e), _) => Some(e),
            (None, Status::Succeeded) => None,
            (None, _) => row.error.as_ref(),
        };
        let category = error.map(|e| e.category.as_str());
        let billed_seconds = u.billed_seconds.or(row.billed_seconds);
        let changed = status != row.public_status()
            || progress != row.progress
            || eta != row.eta
            || video_url != row.video_url
            || category != row.error.as_ref().map(|e| e.category.as_str())
            || billed_seconds != row.billed_seconds;
        Some(Applied {
            status: State::from(status),
            progress,
            eta,
            video_url,
            expires: u.url_expires_at.or(row.url_expires_at),
            download,
            category,
            message: error.map(|e| e.message.clone()),
            retryable: error.map(|e| e.retryable),
            next_step: error.and_then(|e| e.next_step.clone()),
            terminal,
            changed,
            billed_seconds,
        })
    }
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
    /// Checked in the insert's own transaction, so creates at the same moment (in one process or
    /// on several replicas) cannot pass it together.
    pub daily_budget: Option<DailyBudget>,
    /// Who creates it (see `TaskRow::owner`).
    pub owner: String,
    /// `[budget].per_user_daily_usd`: today's spend of `owner` alone, checked like `daily_budget`.
    pub owner_budget: Option<DailyBudget>,
}

/// `[budget].daily_usd` and the start of today.
#[derive(Debug, Clone, Copy)]
pub struct DailyBudget {
    pub since_ms: i64,
    pub limit_usd: f64,
}

impl DailyBudget {
    /// A `budget` error when `cost` on top of `spent` goes over the limit.
    /// Like `check`, for one user's share (`[budget].per_user_daily_usd`).
    pub fn check_user(&self, spent: f64, cost: f64) -> Result<()> {
        if spent + cost > self.limit_usd + 1e-9 {
            return Err(Error::budget(format!(
                "this ${cost} task would bring your spend today to ${:.2}, over the per-user budget ${} ([budget].per_user_daily_usd): wait until 00:00 UTC or ask the operator",
                spent + cost,
                self.limit_usd
            )));
        }
        Ok(())
    }

    pub fn check(&self, spent: f64, cost: f64) -> Result<()> {
        if spent + cost > self.limit_usd + 1e-9 {
            return Err(Error::budget(format!(
                "this ${cost} task would bring today's spend to ${:.2}, over [budget].daily_usd ${}: wait until 00:00 UTC or raise the budget",
                spent + cost,
                self.limit_usd
            )));
        }
        Ok(())
    }
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
    /// Only this owner's tasks; `None`: everyone's.
    pub owner: Option<String>,
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
