//! Waiting and progress: a call that waits on a task hears of every change the watcher
//! publishes, reports strictly increasing progress with a heartbeat, and returns when the task
//! settles, the deadline passes or the call is cancelled (the task itself goes on).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::UnboundedSender;

use super::{CallCtx, Core};
use crate::error::{Category, Result};
use crate::journal::{Download, TaskRow, Update};
use crate::model::{Status, Task, now_ms};

/// How long a `get_task` without `wait_seconds` waits for its refresh poll.
const REFRESH_WAIT: Duration = Duration::from_secs(10);
/// Longest silence between progress notifications while a call waits.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// One progress report for a waiting caller: `progress` strictly increases, out of 100.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub message: String,
}

/// Turns task states into strictly increasing progress values with useful messages.
struct Reporter {
    tx: Option<UnboundedSender<Progress>>,
    last: f64,
    last_sent: Instant,
    last_message: String,
}

impl Reporter {
    fn new(tx: Option<UnboundedSender<Progress>>) -> Self {
        Reporter {
            tx,
            last: 0.0,
            last_sent: Instant::now(),
            last_message: String::new(),
        }
    }

    fn stage(task: &Task) -> (f64, String) {
        match task.status {
            Status::Queued => (2.0, "queued".to_string()),
            Status::Running => {
                let p = task.progress_percent.unwrap_or(0) as f64;
                let mut msg = match task.progress_percent {
                    Some(p) => format!("running {p}%"),
                    None => "running".to_string(),
                };
                if let Some(eta) = task.eta_seconds {
                    msg.push_str(&format!(" (eta {eta} s)"));
                }
                (5.0 + p * 0.85, msg)
            }
            Status::Succeeded if task.download_pending => (92.0, "downloading".to_string()),
            s => (100.0, s.as_str().to_string()),
        }
    }

    /// Report if something changed, or if `force` (a heartbeat).
    fn report(&mut self, task: &Task, force: bool) {
        let Some(tx) = &self.tx else { return };
        let (base, message) = Reporter::stage(task);
        let settled = task.is_settled();
        if !force && !settled && message == self.last_message && base <= self.last {
            return;
        }
        if settled && self.last >= 100.0 {
            return;
        }
        // Strictly increasing: never repeat or go back; below 100 until the task settles.
        let mut value = base.max(self.last + 0.01);
        if !settled {
            value = value.min(99.9_f64.max(self.last + 0.001));
        } else {
            value = 100.0_f64.max(self.last + 0.01);
        }
        self.last = value;
        self.last_sent = Instant::now();
        self.last_message = message.clone();
        let _ = tx.send(Progress {
            progress: (value * 1000.0).round() / 1000.0,
            message,
        });
    }
}

/// Counts a waiting call for as long as it lives.
struct WaitGuard<'a>(&'a AtomicUsize);

impl<'a> WaitGuard<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        WaitGuard(n)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Core {
    /// Tool calls waiting on a task right now.
    pub fn waiting_calls(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A task, refreshed: a download that gave up is tried again, a task we stopped watching on
    /// timeout gets one more look, and an open task is polled now. With `wait_seconds`, waits
    /// (with progress) until it settles or the wait ends.
    pub async fn get(&self, id: &str, wait_seconds: Option<u32>, ctx: CallCtx) -> Result<Task> {
        let row = self.row_as(id, &ctx.caller).await?;
        let started = Instant::now();
        let task = self.revived(&row).await?;
        if task.is_settled() {
            return Ok(task);
        }
        if !self.watcher.is_watching(id) && !row.is_submitting() {
            self.watcher.watch(id);
        }
        let wait = wait_seconds.unwrap_or(0).min(self.cfg.max_wait_seconds);
        self.watcher.wake(id);
        if wait == 0 {
            // Fresh news: wait briefly for the poll just asked for.
            return self.wait_for_change(id, started + REFRESH_WAIT, &ctx).await;
        }
        self.wait_until(id, started + Duration::from_secs(wait as u64), &ctx)
            .await
    }

    /// The task of `row`, after retrying a failed download or re-polling a timed-out task.
    async fn revived(&self, row: &TaskRow) -> Result<Task> {
        let task = row.to_task();
        let timed_out = task
            .error
            .as_ref()
            .is_some_and(|e| e.category == Category::Timeout)
            && row.provider_task_id.is_some();
        if row.download == Some(Download::Failed)
            && self.journal.retry_download(&row.id, now_ms()).await?
        {
            self.watcher.watch(&row.id);
            self.task(&row.id).await
        } else if timed_out {
            self.refresh_timed_out(row).await;
            self.task(&row.id).await
        } else {
            // The common case, a settled task: answered from the one read already made.
            Ok(task)
        }
    }

    async fn refresh_timed_out(&self, row: &TaskRow) {
        let Ok(p) = self.providers.get(row.provider) else {
            return;
        };
        if let Ok(snap) = p.poll(row).await
            && snap.status == Status::Succeeded
        {
            let update = Update {
                status: Some(Status::Succeeded),
                video_url: snap.video_url,
                url_expires_at: snap.url_expires_at,
                ..Default::default()
            };
            if self
                .journal
                .apply(&row.id, &update, now_ms())
                .await
                .unwrap_or(false)
            {
                self.watcher.watch(&row.id);
            }
        }
    }

    /// Wait (up to `wait` seconds from `started`) for a task a create just returned.
    pub(super) async fn finish_wait(
        &self,
        task: Task,
        wait: u32,
        started: Instant,
        ctx: &CallCtx,
    ) -> Result<Task> {
        let dedup = task.deduplicated;
        if wait == 0 || task.is_settled() {
            return Ok(task);
        }
        let deadline = started + Duration::from_secs(wait as u64);
        let mut t = self.wait_until(&task.task_id, deadline, ctx).await?;
        t.deduplicated = dedup;
        Ok(t)
    }

    /// Wait until the task settles or the deadline passes, reporting progress on the way. A
    /// cancelled call returns at once; the task goes on.
    async fn wait_until(&self, id: &str, deadline: Instant, ctx: &CallCtx) -> Result<Task> {
        let _counted = WaitGuard::new(&self.waiting);
        let mut rx = self.watcher.subscribe();
        let mut reporter = Reporter::new(ctx.progress.clone());
        let mut task = self.task(id).await?;
        loop {
            reporter.report(&task, false);
            let now = Instant::now();
            if task.is_settled() || now >= deadline {
                return Ok(task);
            }
            let next_beat = (reporter.last_sent + HEARTBEAT).max(now + Duration::from_millis(50));
            let wake_at = next_beat.min(deadline);
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Ok(task),
                msg = rx.recv() => match msg {
                    Ok(t) if t.task_id == id => task = t,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => task = self.task(id).await?,
                    Err(RecvError::Closed) => return Ok(task),
                },
                _ = tokio::time::sleep_until(wake_at.into()) => {
                    if Instant::now() < deadline {
                        reporter.report(&task, true);
                    }
                }
            }
        }
    }

    /// Wait for the next news of one task (a poll completing), bounded.
    async fn wait_for_change(&self, id: &str, deadline: Instant, ctx: &CallCtx) -> Result<Task> {
        let mut rx = self.watcher.subscribe();
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return self.task(id).await,
                _ = tokio::time::sleep_until(deadline.into()) => return self.task(id).await,
                msg = rx.recv() => match msg {
                    Ok(t) if t.task_id == id => return Ok(t),
                    Ok(_) => {}
                    Err(_) => return self.task(id).await,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProviderId;

    fn task(status: Status, progress: Option<u8>) -> Task {
        Task {
            task_id: "t".into(),
            provider: ProviderId::ALL[0],
            model: "m".into(),
            provider_task_id: None,
            status,
            progress_percent: progress,
            eta_seconds: None,
            estimated_cost_usd: None,
            billed_seconds: None,
            video: None,
            error: None,
            note: None,
            created_at: String::new(),
            updated_at: String::new(),
            finished_at: None,
            deduplicated: false,
            download_pending: false,
        }
    }

    #[test]
    fn progress_strictly_increases_and_ends_at_100() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut r = Reporter::new(Some(tx));
        r.report(&task(Status::Queued, None), false);
        r.report(&task(Status::Queued, None), false); // unchanged: nothing
        r.report(&task(Status::Queued, None), true); // heartbeat
        r.report(&task(Status::Running, Some(35)), false);
        r.report(&task(Status::Running, Some(20)), false); // provider went back: still increasing
        r.report(&task(Status::Succeeded, None), false);
        let mut seen = Vec::new();
        while let Ok(p) = rx.try_recv() {
            seen.push(p);
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
        for w in seen.windows(2) {
            assert!(w[1].progress > w[0].progress, "{seen:?}");
        }
        assert_eq!(seen.last().unwrap().progress, 100.0);
        assert_eq!(seen[2].message, "running 35%");
    }

    #[test]
    fn no_token_no_progress() {
        let mut r = Reporter::new(None);
        r.report(&task(Status::Running, Some(10)), true);
        assert_eq!(r.last, 0.0);
    }

    #[test]
    fn a_succeeded_task_still_downloading_stays_below_100() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut r = Reporter::new(Some(tx));
        let mut t = task(Status::Succeeded, None);
        t.download_pending = true;
        r.report(&t, false);
        let p = rx.try_recv().unwrap();
        assert_eq!((p.progress, p.message.as_str()), (92.0, "downloading"));
    }

    #[test]
    fn the_wait_counter_follows_the_guard() {
        let n = AtomicUsize::new(0);
        {
            let _a = WaitGuard::new(&n);
            let _b = WaitGuard::new(&n);
            assert_eq!(n.load(Ordering::Relaxed), 2);
        }
        assert_eq!(n.load(Ordering::Relaxed), 0);
    }
}
