//! The watcher: one background component that follows every open task to its end. It polls on an
//! adaptive schedule (the provider's eta when given; fast first, then slower; bounded in total),
//! records what it learns in the journal, downloads results (temp file + rename, sha256), and
//! tells whoever waits through one broadcast channel. Waiting calls never poll on their own; they
//! subscribe, and may `wake` a task to have it polled now. On start, `recover` resumes every open
//! task and every unfinished download from the journal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore, broadcast};

use crate::config::Config;
use crate::error::{Category, Error};
use crate::journal::{Download, Journal, State, TaskRow, Update};
use crate::model::{Status, Task, now_ms};
use crate::providers::Snapshot;
use crate::providers::registry::Declared;
use crate::providers::runtime::Providers;

/// Download attempts before giving up (each with backoff; an expired URL is re-fetched).
const DOWNLOAD_ATTEMPTS: u32 = 5;
/// Consecutive permanent poll failures (auth, not found) before a task is failed.
const PERMANENT_POLL_FAILURES: u32 = 3;
/// Backoff of journal writes that must land (a provider id accepted upstream): first and longest.
const RECORD_FIRST_RETRY: Duration = Duration::from_millis(200);
const RECORD_MAX_RETRY: Duration = Duration::from_secs(30);
/// A `submitting` task never leased and older than this was cut off by a process that died (a
/// submit lasts minutes at most; a leased one is settled when its lease lapses).
const SUBMIT_CUT_OFF_MS: i64 = 10 * 60 * 1000;
/// How often a download held by another process is looked at again.
const CLAIM_RETRY: Duration = Duration::from_secs(1);
/// Polls in flight at once, across all tasks.
const MAX_CONCURRENT_POLLS: usize = 32;
/// Contact-sheet decoder children at once (each decodes a whole video).
const MAX_CONCURRENT_SHEETS: usize = 2;

struct Inner {
    journal: Journal,
    providers: Arc<Providers>,
    cfg: Arc<Config>,
    http: crate::providers::http::HttpClient,
    tx: broadcast::Sender<Task>,
    active: Mutex<HashMap<String, Arc<Notify>>>,
    polls: Semaphore,
    sheets: Semaphore,
    /// This process among the others on the journal (servers on one data dir, replicas on one
    /// database): the owner name of the leases it holds.
    owner: String,
    /// The lease and news loops run (started by the first `watch` or by `recover`).
    loops: std::sync::Once,
    /// Take over other processes' tasks when their leases lapse (servers do; one-shot commands
    /// watch only the task they touch).
    takes_over: std::sync::atomic::AtomicBool,
}

/// Every watcher of this process, so that its leases can be handed back when the process exits
/// (`release_all`).
static LIVE: Mutex<Vec<std::sync::Weak<Inner>>> = Mutex::new(Vec::new());

#[derive(Clone)]
pub struct Watcher {
    inner: Arc<Inner>,
}

impl Watcher {
    pub fn new(
        journal: Journal,
        providers: Arc<Providers>,
        cfg: Arc<Config>,
        http: crate::providers::http::HttpClient,
    ) -> Watcher {
        let (tx, _) = broadcast::channel(4096);
        Watcher {
            inner: Arc::new(Inner {
                journal,
                providers,
                cfg,
                http,
                tx,
                active: Mutex::new(HashMap::new()),
                polls: Semaphore::new(MAX_CONCURRENT_POLLS),
                sheets: Semaphore::new(MAX_CONCURRENT_SHEETS),
                owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
                loops: std::sync::Once::new(),
                takes_over: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Every task change, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<Task> {
        self.inner.tx.subscribe()
    }

    /// Announce the current state of a task to every subscriber.
    pub async fn publish(&self, id: &str) {
        self.inner.publish(id).await;
    }

    /// Follow a task until it settles. Idempotent.
    pub fn watch(&self, id: &str) {
        let notify = {
            let mut active = self.inner.active();
            if active.contains_key(id) {
                return;
            }
            let n = Arc::new(Notify::new());
            active.insert(id.to_string(), n.clone());
            n
        };
        self.start_loops();
        let inner = self.inner.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if !inner.lease(&id).await {
                // Another process watches it: ask it to poll now, and hear of it by `listen`.
                inner.active().remove(&id);
                let _ = inner.journal.wake_elsewhere(&id).await;
                return;
            }
            inner.clone().run(&id, notify).await;
            // Deregister, then look once more: work that arrived meanwhile gets a new loop.
            inner.active().remove(&id);
            if let Ok(Some(row)) = inner.journal.get(&id).await
                && row.needs_work()
            {
                Watcher { inner }.watch(&id);
            }
        });
    }

    /// Lease task `id` while this process submits it, so that if the process dies mid-create
    /// another settles the task once the lease lapses.
    pub async fn hold_submit(&self, id: &str) {
        self.start_loops();
        self.inner.lease(id).await;
    }

    /// Poll a watched task now (a waiting caller wants fresh news, or a webhook arrived).
    /// Returns false if the task is not being watched.
    pub fn wake(&self, id: &str) -> bool {
        match self.inner.active().get(id) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// The provider accepted task `id` as `ptid` but the journal could not record it (a full
    /// disk). The journal keeps the id in memory meanwhile; this retries the write with backoff until
    /// it lands, logging each failure with both ids, then watches the task as usual.
    pub fn record_submitted(&self, id: &str, ptid: &str) {
        let watcher = self.clone();
        let (id, ptid) = (id.to_string(), ptid.to_string());
        tokio::spawn(async move {
            let mut delay = RECORD_FIRST_RETRY;
            loop {
                tokio::time::sleep(jitter(delay)).await;
                match watcher
                    .inner
                    .journal
                    .mark_submitted(&id, &ptid, now_ms())
                    .await
                {
                    Ok(_) => {
                        tracing::warn!(task = %id, provider_task_id = %ptid, "provider task id recorded in the journal at last");
                        watcher.watch(&id);
                        watcher.publish(&id).await;
                        return;
                    }
                    Err(e) => {
                        tracing::error!(task = %id, provider_task_id = %ptid, error = %e, retry_in = ?delay, "the journal still cannot record the provider's task id; kept in memory, retrying");
                        delay = (delay * 2).min(RECORD_MAX_RETRY);
                    }
                }
            }
        });
    }

    pub fn is_watching(&self, id: &str) -> bool {
        self.inner.active().contains_key(id)
    }

    /// Renew this process's leases, and hear other processes' changes (waiters are told at
    /// once), wake requests and hand-backs; with `takes_over`, also take over tasks whose lease
    /// lapsed and settle submits a dead process cut off. Once per watcher.
    fn start_loops(&self) {
        self.inner.loops.call_once(|| {
            live().push(Arc::downgrade(&self.inner));
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(leases(weak.clone(), self.inner.cfg.poll.lease));
            tokio::spawn(listen(weak, self.inner.journal.clone()));
        });
    }

    /// Resume after a restart, and from then on share the journal's open tasks with the other
    /// processes on it (servers call this; one-shot commands do not). A task still `submitting`
    /// whose process is gone was cut off between the journal write and the provider's answer:
    /// whether the provider took it is unknown, so it is never resubmitted. One whose process
    /// still holds its lease is another server's create in flight, and is left alone.
    pub fn recover(&self) -> Result<usize, Error> {
        self.inner
            .takes_over
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let now = now_ms();
        for id in self
            .inner
            .journal
            .cut_off_submits_blocking(now, now - SUBMIT_CUT_OFF_MS)?
        {
            self.inner.journal.fail_blocking(&id, &cut_off(), now)?;
        }
        self.start_loops();
        let rows = self.inner.journal.unfinished_blocking()?;
        let mut resumed = 0;
        for row in rows.iter().filter(|r| !r.is_submitting()) {
            self.watch(&row.id);
            resumed += 1;
        }
        if resumed > 0 {
            tracing::info!(
                resumed,
                "resuming open tasks (those another server watches stay with it)"
            );
        }
        Ok(resumed)
    }

    /// Hand back this watcher's leases: the process is exiting, and another process on the
    /// journal takes its tasks over now.
    pub async fn release(&self) {
        match self
            .inner
            .journal
            .release(&self.inner.owner, now_ms())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "handed the task leases back"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand the task leases back; they lapse by themselves")
            }
        }
    }
}

fn live() -> std::sync::MutexGuard<'static, Vec<std::sync::Weak<Inner>>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hand back the leases of every watcher of this process (at exit): bounded, so a journal that
/// does not answer cannot hold the exit up.
pub async fn release_all() {
    let watchers: Vec<Watcher> = live()
        .drain(..)
        .filter_map(|w| w.upgrade())
        .map(|inner| Watcher { inner })
        .collect();
    let all = futures::future::join_all(watchers.iter().map(Watcher::release));
    if tokio::time::timeout(Duration::from_secs(3), all)
        .await
        .is_err()
    {
        tracing::warn!("handing the task leases back took too long; they lapse by themselves");
    }
}

/// Remove temp files (`.<name>.part`) a crash left behind in `dirs`: downloads, renders and kept
/// inputs are written to one and renamed into place, so a temp file not modified for
/// `older_than` belongs to no live writer. Returns how many were removed.
pub fn clean_stale_temp_files(dirs: &[PathBuf], older_than: Duration) -> usize {
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with('.') && name.ends_with(".part")) {
                continue;
            }
            let stale = entry
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > older_than);
            if stale {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a stale temp file")
                    }
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed temp files left by an earlier crash");
    }
    removed
}

/// A poll failure worth polling again after (a passing failure, or an answer that may not be
/// the provider's); other failures count towards `PERMANENT_POLL_FAILURES`.
fn poll_retryable(pe: &crate::providers::ProviderError) -> bool {
    pe.error.category.is_retryable() || pe.acceptance == crate::providers::Acceptance::Unknown
}

/// `d` scaled by a random factor in [0.9, 1.1], so many tasks do not poll in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// A task cut off between the journal write and the provider's answer.
fn cut_off() -> Error {
    Error::new(
        Category::SubmitUnknown,
        "the server stopped while this task was being submitted; whether the provider accepted it is unknown",
    )
    .with_next_step("check the provider dashboard before creating again: it may exist and be charged")
}

/// Settle the tasks a dead replica left `submitting`: whether the provider took them is unknown
/// (never resubmitted). If that replica was only slow, its late provider id still lands.
async fn settle_cut_off_submits(journal: &Journal, now: i64) {
    match journal.cut_off_submits(now, now - SUBMIT_CUT_OFF_MS).await {
        Ok(ids) => {
            for id in ids {
                tracing::warn!(task = %id, "a replica stopped while submitting this task");
                if let Err(e) = journal.fail(&id, &cut_off(), now).await {
                    tracing::warn!(task = %id, error = %e, "cannot settle a cut-off submit");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot look for cut-off submits"),
    }
}

/// Renew this process's leases every fifth of a lease; a process that takes over also settles
/// submits a dead process cut off and takes over tasks whose lease lapsed (their process died)
/// or that never had one. Ends with the watcher.
async fn leases(inner: std::sync::Weak<Inner>, lease: Duration) {
    let every = lease / 5;
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let until = now_ms() + lease.as_millis() as i64;
        if let Err(e) = inner.journal.renew(&inner.owner, until).await {
            tracing::warn!(error = %e, "cannot renew this process's task leases");
        }
        sweep(inner).await;
        tokio::time::sleep(jitter(every)).await;
    }
}

/// Settle cut-off submits and take over orphaned tasks, if this process takes over.
async fn sweep(inner: Arc<Inner>) {
    if !inner.takes_over.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let lease = inner.cfg.poll.lease.as_millis() as i64;
    let now = now_ms();
    settle_cut_off_submits(&inner.journal, now).await;
    match inner
        .journal
        .claim_orphans(&inner.owner, now + lease, now, now - lease)
        .await
    {
        Ok(ids) => {
            if !ids.is_empty() {
                tracing::info!(tasks = ids.len(), "took over tasks whose process stopped");
            }
            let watcher = Watcher { inner };
            for id in ids {
                watcher.watch(&id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot look for tasks to take over"),
    }
}

/// Other processes' news: a change is published to this process's waiters, a wake request polls
/// the task now if this process watches it, a hand-back is taken over now. Reconnects after a
/// dropped connection.
async fn listen(inner: std::sync::Weak<Inner>, journal: Journal) {
    loop {
        match journal.listen().await {
            Ok(mut events) => {
                while let Some(event) = events.recv().await {
                    let Some(inner) = inner.upgrade() else {
                        return;
                    };
                    match event {
                        crate::journal::Event::Changed(id) => inner.publish(&id).await,
                        crate::journal::Event::Wake(id) => {
                            if let Some(n) = inner.active().get(&id) {
                                n.notify_one();
                            }
                        }
                        crate::journal::Event::Released => {
                            tokio::spawn(sweep(inner));
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for other processes' changes"),
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Inner {
    /// Take or keep this process's lease on task `id`.
    async fn lease(&self, id: &str) -> bool {
        let until = now_ms() + self.cfg.poll.lease.as_millis() as i64;
        match self.journal.claim(id, &self.owner, until, now_ms()).await {
            Ok(granted) => granted,
            Err(e) => {
                tracing::warn!(task = id, error = %e, "cannot take the task's lease; watching it anyway");
                true
            }
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn publish(&self, id: &str) {
        if let Ok(Some(row)) = self.journal.get(id).await {
            // No subscriber is fine.
            let _ = self.tx.send(row.to_task());
        }
    }

    async fn run(self: Arc<Self>, id: &str, notify: Arc<Notify>) {
        let poll = self.cfg.poll;
        let mut delay = poll.first;
        let mut permanent_failures = 0;
        loop {
            let Some(row) = self.current(id).await else {
                return;
            };
            if row.status == State::Succeeded {
                match row.download {
                    Some(Download::Pending) if row.video_url.is_some() => self.download(&row).await,
                    // Made here, not downloaded (the local renderer), by a process that stopped
                    // before recording the file: make it again.
                    Some(Download::Pending) => self.remake(&row).await,
                    _ => {}
                }
                return;
            }
            if !row.needs_work() || self.gave_up(&row).await {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(jitter(self.poll_wait(&row, delay))) => {}
                _ = notify.notified() => {}
            }
            let snap = {
                let _permit = self.polls.acquire().await;
                let Ok(provider) = self.providers.get(row.provider) else {
                    return;
                };
                provider.poll(&row).await
            };
            match snap {
                Ok(snap) => {
                    permanent_failures = 0;
                    delay = next_delay(delay, &snap, &poll);
                    self.record(id, &snap).await;
                }
                Err(pe) => {
                    tracing::warn!(task = id, error = %pe.error, "poll failed");
                    if !poll_retryable(&pe) {
                        permanent_failures += 1;
                        if permanent_failures >= PERMANENT_POLL_FAILURES {
                            let _ = self.journal.fail(id, &pe.error, now_ms()).await;
                            self.publish(id).await;
                            return;
                        }
                    }
                    // Back off: at least the provider's Retry-After, growing with failures.
                    let backoff = (delay.mul_f64(poll.factor)).min(poll.max);
                    delay = pe.retry_after.map_or(backoff, |r| r.max(backoff));
                }
            }
        }
    }

    /// The task's row as the journal has it now (a failed read is retried); `None` if it is gone.
    async fn current(&self, id: &str) -> Option<TaskRow> {
        loop {
            match self.journal.get(id).await {
                Ok(row) => return row,
                Err(e) => {
                    tracing::error!(task = id, error = %e, "journal read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Past `give_up_after`, an open task is failed with `timeout` (a late success is still kept,
    /// see `Journal::apply`). True if it was given up.
    async fn gave_up(&self, row: &TaskRow) -> bool {
        // A model that may take longer (30 s Wan 3.0 videos) is watched at least its own time.
        let floor = crate::catalog::find(row.provider, &row.model).and_then(|m| m.watch_at_least);
        let give_up_after = self.cfg.poll.give_up_after.max(floor.unwrap_or_default());
        let age = Duration::from_millis((now_ms() - row.created_at).max(0) as u64);
        if age <= give_up_after {
            return false;
        }
        let e = Error::new(
            Category::Timeout,
            format!(
                "the provider did not finish within {} minutes; stopped polling",
                give_up_after.as_secs() / 60
            ),
        )
        .with_next_step("get_task checks once more; the provider dashboard shows the task too");
        let _ = self.journal.fail(&row.id, &e, now_ms()).await;
        self.publish(&row.id).await;
        true
    }

    /// How long to wait before the next poll. A provider may declare a fixed interval (an
    /// in-memory renderer: often, so progress and results reach waiting callers at once). With a
    /// webhook registered, polling is only the safety net: three times slower.
    fn poll_wait(&self, row: &TaskRow, delay: Duration) -> Duration {
        if let Some(every) = row.provider.decl().poll_interval {
            every
        } else if row.webhook_secret.is_some() {
            delay * 3
        } else {
            delay
        }
    }

    /// Store one poll's news and tell subscribers.
    async fn record(&self, id: &str, snap: &Snapshot) {
        let now = now_ms();
        let update = Update {
            status: Some(snap.status),
            progress: snap.progress,
            eta: snap.eta,
            video_url: snap.video_url.clone(),
            url_expires_at: snap.url_expires_at,
            error: snap.error.clone(),
            billed_seconds: snap.billed_seconds,
        };
        match self.journal.apply(id, &update, now).await {
            Ok(_) => {
                if let Some(file) = &snap.local_file {
                    let note = self
                        .contact_sheet(id, std::path::Path::new(&file.path))
                        .await;
                    let _ = self
                        .journal
                        .set_downloaded(
                            id,
                            &file.path,
                            file.bytes,
                            &file.sha256,
                            note.as_deref(),
                            now_ms(),
                        )
                        .await;
                }
            }
            Err(e) => tracing::error!(task = id, error = %e, "journal write failed"),
        }
        self.publish(id).await;
    }

    /// A succeeded task whose video a provider makes on this machine (no URL to download) but
    /// whose file was never recorded: poll until the provider has made it again, then record it.
    async fn remake(&self, row: &TaskRow) {
        let Ok(provider) = self.providers.get(row.provider) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + self.cfg.poll.give_up_after;
        while tokio::time::Instant::now() < deadline {
            match provider.poll(row).await {
                Ok(snap) if snap.local_file.is_some() => {
                    self.record(&row.id, &snap).await;
                    return;
                }
                Ok(snap) if snap.status == Status::Failed => break,
                Ok(_) => {}
                Err(pe) => tracing::warn!(task = %row.id, error = %pe.error, "poll failed"),
            }
            let every = row
                .provider
                .decl()
                .poll_interval
                .unwrap_or(self.cfg.poll.first);
            tokio::time::sleep(every).await;
        }
        let note = "the video was made but its file was not recorded, and making it again failed; create the task again";
        let _ = self
            .journal
            .set_download_failed(&row.id, note, now_ms())
            .await;
        self.publish(&row.id).await;
    }

    /// Download a succeeded task's video: streamed to a temp file, hashed on the way, renamed into
    /// place. Transient failures back off and retry; an expired URL is fetched again from the
    /// provider. After the last attempt the task keeps its URL and says so in its note.
    async fn download(&self, row: &TaskRow) {
        // Written once: of processes that reach here for one task (a lease taken over from one
        // that is only slow), the one holding the claim downloads, and holds it until the journal
        // says so; the others leave it to that one.
        let claim = loop {
            let claim = DownloadClaim::take(&self.cfg.output_dir, &row.id);
            // Still to download? (The holder before may have finished it.)
            match self.journal.get(&row.id).await {
                Ok(Some(now)) if now.download == Some(Download::Pending) => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(task = %row.id, error = %e, "cannot read the task before downloading");
                    return;
                }
            }
            match claim {
                Some(claim) => break claim,
                None => {
                    tracing::debug!(task = %row.id, "another process is downloading this video; waiting for it");
                    tokio::time::sleep(jitter(CLAIM_RETRY)).await;
                }
            }
        };
        let mut url = row.video_url.clone().unwrap_or_default();
        let mut last = String::new();
        let mut gone: Option<Error> = None;
        for attempt in 0..DOWNLOAD_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(jitter(Duration::from_secs(1 << attempt.min(4)))).await;
            }
            match self.fetch(&row.id, &url).await {
                Ok((path, bytes, sha)) => {
                    let note = self.contact_sheet(&row.id, &path).await;
                    let _ = self
                        .journal
                        .set_downloaded(
                            &row.id,
                            &path.display().to_string(),
                            bytes,
                            &sha,
                            note.as_deref(),
                            now_ms(),
                        )
                        .await;
                    drop(claim);
                    self.publish(&row.id).await;
                    return;
                }
                Err((e, expired)) => {
                    tracing::warn!(task = %row.id, attempt, error = %e, "download failed");
                    last = e.message;
                    if expired {
                        match self.fresh_url(row).await {
                            Fresh::Url(fresh) => url = fresh,
                            Fresh::Gone(why) => {
                                gone = Some(why);
                                break;
                            }
                            Fresh::Nothing => {}
                        }
                    }
                }
            }
        }
        let note = match gone {
            // The provider says the result no longer exists: no retry can bring it back.
            Some(why) => format!(
                "download failed ({last}) and the provider no longer has the video: {}{}",
                why.message,
                why.next_step.map(|s| format!("; {s}")).unwrap_or_default()
            ),
            None => download_failed_note(&last, row.url_expires_at, now_ms()),
        };
        let _ = self
            .journal
            .set_download_failed(&row.id, &note, now_ms())
            .await;
        drop(claim);
        self.publish(&row.id).await;
    }

    /// Make the contact sheet of a task whose video was just written to disk, before the
    /// download is recorded and the success announced: the task settles once, complete, and the
    /// call that reports it shows the sheet. Until then the journal says "download pending" with
    /// the provider's URL, so a crash meanwhile costs a fresh download, never the video. Returns
    /// the task's note when there is no sheet, saying why (the task succeeds regardless).
    async fn contact_sheet(&self, id: &str, video: &std::path::Path) -> Option<String> {
        if !self.cfg.preview.contact_sheet {
            return None;
        }
        let _permit = self.sheets.acquire().await;
        match crate::preview::make(&self.cfg.preview, video, id).await {
            Ok(_) => None,
            Err(why) => {
                tracing::warn!(task = id, reason = %why, "no contact sheet");
                Some(format!("no contact sheet: {why}"))
            }
        }
    }

    /// Ask the provider again for a result whose URL looks expired: a fresh URL, or the
    /// provider's word that the result is gone (a poll answer with an error and no URL).
    async fn fresh_url(&self, row: &TaskRow) -> Fresh {
        let Ok(provider) = self.providers.get(row.provider) else {
            return Fresh::Nothing;
        };
        let Ok(snap) = provider.poll(row).await else {
            return Fresh::Nothing;
        };
        match (snap.video_url, snap.error) {
            (Some(url), _) => {
                let _ = self
                    .journal
                    .refresh_url(&row.id, &url, snap.url_expires_at, now_ms())
                    .await;
                Fresh::Url(url)
            }
            (None, Some(why)) => Fresh::Gone(why),
            (None, None) => Fresh::Nothing,
        }
    }

    /// One download attempt. The error says whether the URL looks expired (403/404/410).
    async fn fetch(&self, id: &str, url: &str) -> Result<(PathBuf, u64, String), (Error, bool)> {
        let dir = &self.cfg.output_dir;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| write_failed(dir, e))?;
        let resp = self
            .http
            .get(url)
            .timeout(self.cfg.download_timeout)
            .send()
            .await
            .map_err(|e| {
                (
                    Error::new(Category::ProviderUnavailable, format!("download: {e}")),
                    false,
                )
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let expired = matches!(status, 403 | 404 | 410);
            return Err((
                Error::new(
                    Category::ProviderUnavailable,
                    format!("download: HTTP {status}"),
                ),
                expired,
            ));
        }
        let max = self.cfg.download_max_bytes;
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        // Unique per attempt: a CLI and a server on one journal may fetch the same task at once;
        // each writes its own temp file and the atomic renames leave one whole video.
        let tmp = dir.join(format!(
            ".{id}.{}-{:08x}.mp4.part",
            std::process::id(),
            rand::random::<u32>()
        ));
        let path = dir.join(format!("{id}.mp4"));
        let result = save(resp, &tmp, &path, max).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

/// What asking the provider again for an expired result URL found.
enum Fresh {
    Url(String),
    /// The provider says the result no longer exists, and why.
    Gone(Error),
    Nothing,
}

/// What a task whose download failed says: while its result URL lives, that get_task tries
/// again; once the provider's expiry has passed, that the output is gone (providers delete
/// results after a while, Replicate after one hour) and the task must be created again.
fn download_failed_note(last: &str, expires_at: Option<i64>, now: i64) -> String {
    match expires_at.filter(|at| *at <= now) {
        Some(at) => {
            let when = chrono::DateTime::from_timestamp_millis(at)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| at.to_string());
            format!(
                "download failed after {DOWNLOAD_ATTEMPTS} attempts ({last}); the provider deleted the output when its URL expired at {when}, so this video can no longer be fetched: create the task again"
            )
        }
        None => format!(
            "download failed after {DOWNLOAD_ATTEMPTS} attempts ({last}); the video is still at its URL until it expires; get_task tries again"
        ),
    }
}

/// Where download claims are made: a hidden dir in the output dir, which every process that may
/// download there shares (servers on one data dir, replicas sharing the dirs).
pub fn claims_dir(output_dir: &Path) -> PathBuf {
    output_dir.join(".claims")
}

/// The claim on downloading one task's video: an OS lock on `.claims/.<id>.part` in the output
/// dir (a crash or SIGKILL releases the lock; a file left so is cleaned at the next start), removed
/// when the download is recorded.
struct DownloadClaim {
    file: std::fs::File,
    path: PathBuf,
}

impl DownloadClaim {
    /// The claim, or `None` when another process holds it. A dir where no claim file can be made
    /// gives a claim all the same (with a warning): the download itself will say what is wrong.
    fn take(dir: &Path, id: &str) -> Option<DownloadClaim> {
        let dir = claims_dir(dir);
        let path = dir.join(format!(".{id}.part"));
        let _ = std::fs::create_dir_all(&dir);
        for _ in 0..3 {
            let file = match std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot make the download claim; downloading without it");
                    return std::fs::File::open(&dir).ok().map(|file| DownloadClaim {
                        file,
                        path: PathBuf::new(),
                    });
                }
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return None,
                Err(std::fs::TryLockError::Error(e)) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot lock the download claim; downloading without it");
                    return Some(DownloadClaim {
                        file,
                        path: PathBuf::new(),
                    });
                }
            }
            // Locked: but the holder before may have removed the file meanwhile, and a lock on a
            // removed file claims nothing. Same file still at the path: the claim is ours.
            if same_file(&file, &path) {
                return Some(DownloadClaim { file, path });
            }
        }
        None
    }
}

impl Drop for DownloadClaim {
    fn drop(&mut self) {
        // Removed while still locked, so no process can lock this file and think it claimed.
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

/// A download that cannot be written here: the URL is not to blame.
fn write_failed(dir: &Path, e: std::io::Error) -> (Error, bool) {
    (
        Error::internal(format!("cannot write to '{}': {e}", dir.display())),
        false,
    )
}

fn too_large(max: u64) -> (Error, bool) {
    (
        Error::invalid_input(format!(
            "download: the video is larger than the {max}-byte cap"
        )),
        false,
    )
}

/// Stream `resp` into `tmp` (at most `max` bytes), hashing on the way, then rename it to `path`.
async fn save(
    resp: reqwest::Response,
    tmp: &Path,
    path: &Path,
    max: u64,
) -> Result<(PathBuf, u64, String), (Error, bool)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |e: std::io::Error| write_failed(dir, e);
    let mut file = tokio::fs::File::create(tmp).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                Error::new(Category::ProviderUnavailable, format!("download: {e}")),
                false,
            )
        })?;
        total += chunk.len() as u64;
        if total > max {
            return Err(too_large(max));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    drop(file);
    tokio::fs::rename(tmp, path).await.map_err(io)?;
    Ok((path.to_path_buf(), total, hex::encode(hasher.finalize())))
}

/// The next poll delay: the provider's eta when it gives one (poll around when it expects to be
/// done, never faster than `first` nor slower than `max`), else grow by `factor`.
fn next_delay(current: Duration, snap: &Snapshot, poll: &crate::config::PollSchedule) -> Duration {
    if snap.status == Status::Succeeded {
        return poll.first;
    }
    match snap.eta {
        Some(eta) if eta > 0 => {
            Duration::from_secs_f64(eta as f64 * 0.5).clamp(poll.first, poll.max)
        }
        _ => current.mul_f64(poll.factor).clamp(poll.first, poll.max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PollSchedule;

    #[test]
    fn a_failed_download_past_the_expiry_says_the_output_is_gone() {
        let live = download_failed_note("download: HTTP 500", Some(2_000), 1_000);
        assert!(live.contains("get_task tries again"), "{live}");
        let none = download_failed_note("download: HTTP 500", None, 1_000);
        assert!(none.contains("get_task tries again"), "{none}");
        let gone = download_failed_note(
            "download: HTTP 404",
            Some(1_796_644_800_000),
            1_796_644_800_001,
        );
        assert!(gone.contains("deleted the output"), "{gone}");
        assert!(gone.contains("2026-12-07T12:00:00Z"), "{gone}");
        assert!(gone.contains("create the task again"), "{gone}");
    }

    #[test]
    fn delays_grow_and_follow_eta() {
        let p = PollSchedule::default();
        let s = Snapshot::new(Status::Running, "x");
        let d1 = next_delay(p.first, &s, &p);
        assert!(d1 > p.first && d1 <= p.max);
        let mut d = p.first;
        for _ in 0..50 {
            d = next_delay(d, &s, &p);
        }
        assert_eq!(d, p.max);
        let mut e = s.clone();
        e.eta = Some(8);
        assert_eq!(next_delay(p.max, &e, &p), Duration::from_secs(4));
    }
}
