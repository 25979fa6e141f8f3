//! Creating a task: prepare (choose the model, check the request, read the images, quote,
//! budget, rate limit) -> journal (durable before anything is sent) -> submit (retry only what
//! surely did not reach the provider) -> wait. An idempotency key returns its task instead of
//! creating another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CallCtx, Core, Quote};
use crate::catalog::{self, ModelSpec};
use crate::error::{Category, Error, Result};
use crate::journal::{Inserted, NewTask, TaskRow};
use crate::media::{self, ImageInput};
use crate::model::{CreateRequest, ProviderId, Task, now_ms};
use crate::providers::registry::{self, Declared};
use crate::providers::{Acceptance, ProviderError, Submission, Webhook};
use crate::validate;

/// Create attempts when the provider surely refused for a passing reason (429, refused connection).
pub(super) const CREATE_ATTEMPTS: u32 = 3;

/// A request that passed every check before the journal: where it goes and what it sends.
struct Prepared {
    provider: ProviderId,
    spec: &'static ModelSpec,
    image: Option<ImageInput>,
    end_image: Option<ImageInput>,
    references: Vec<crate::refs::Reference>,
    quote: Quote,
}

/// A create's inputs read and checked, and its quote (`Core::inspect`).
struct Inspected {
    image: Option<ImageInput>,
    end_image: Option<ImageInput>,
    references: Vec<crate::refs::Reference>,
    quote: Quote,
}

/// What the journal made of a new create.
enum Journaled {
    /// A new task, to be submitted.
    New {
        id: String,
        webhook: Option<Webhook>,
    },
    /// Another process took the idempotency key first: its task.
    Existing(Box<Task>),
}

impl Core {
    pub async fn create(&self, req: CreateRequest, ctx: CallCtx) -> Result<Task> {
        let (provider, spec) = self.choose(&req)?;
        validate::check(&req, spec)?;
        let req = owned_key(req, &ctx.caller);
        let wait = req.wait_seconds.unwrap_or(0).min(self.cfg.max_wait_seconds);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(wait as u64);

        let _key = self.lock_key(req.idempotency_key.as_deref()).await;
        if let Some(task) = self.existing_for_key(&req).await? {
            return self.finish_wait(task, wait, started, &ctx).await;
        }
        let prepared = self.prepare(&req, provider, spec, &ctx, deadline).await?;
        let (id, webhook) = match self.journal_task(&req, &prepared, &ctx.caller).await? {
            Journaled::New { id, webhook } => (id, webhook),
            Journaled::Existing(task) => return self.finish_wait(*task, wait, started, &ctx).await,
        };
        self.watcher.hold_submit(&id).await;
        let sub = Submission {
            task_id: &id,
            req: &req,
            spec,
            image: prepared.image.as_ref(),
            end_image: prepared.end_image.as_ref(),
            references: &prepared.references,
            webhook: webhook.as_ref(),
        };
        self.submit(&sub, provider, &ctx).await?;
        self.watcher.watch(&id);
        let task = self.task(&id).await?;
        self.finish_wait(task, wait, started, &ctx).await
    }

    /// The provider and model of a request, refused when the provider has no key.
    fn choose(&self, req: &CreateRequest) -> Result<(ProviderId, &'static ModelSpec)> {
        let t2v = req.image.is_none();
        let provider = self.pick_provider(req.provider, t2v)?;
        // References without a model: the provider's first model that takes them, if any (else
        // the usual default, which `validate` then refuses naming the models that do).
        let by_refs = crate::catalog::models()
            .iter()
            .find(|m| m.provider == provider && m.references.is_some() && m.retired_on.is_none());
        let spec = match by_refs {
            Some(m) if req.model.is_none() && !req.references.is_empty() => m,
            _ => self.pick_model(provider, req.model.as_deref(), t2v)?,
        };
        self.cfg.check_retired(spec)?;
        if !self.cfg.is_configured(provider) {
            let var = provider.key_env().unwrap_or_default();
            return Err(Error::new(
                Category::Auth,
                format!(
                    "{provider} has no API key: set {var} (or [providers.{provider}].api_key){}",
                    registry::keyless()
                        .map(|d| format!(", or use provider \"{}\" for a free preview", d.id))
                        .unwrap_or_default()
                ),
            ));
        }
        Ok((provider, spec))
    }

    /// Everything before the journal: images read and checked, price within the budget (and
    /// approved when `confirm_above_usd` asks for it), a rate
    /// slot taken (waiting for one at most until `deadline`).
    async fn prepare(
        &self,
        req: &CreateRequest,
        provider: ProviderId,
        spec: &'static ModelSpec,
        ctx: &CallCtx,
        deadline: Instant,
    ) -> Result<Prepared> {
        let Inspected {
            image,
            end_image,
            references,
            quote,
        } = self.inspect(req, provider, spec, ctx).await?;
        self.check_budget(&quote, req).await?;
        self.confirm_spend(&quote, req, spec, ctx).await?;
        self.limiters
            .admit_owner(&ctx.caller.owner, deadline)
            .await?;
        self.limiters.admit(provider, deadline).await?;
        Ok(Prepared {
            provider,
            spec,
            image,
            end_image,
            references,
            quote,
        })
    }

    /// The checks of a create that need no journal, no budget and no network to the provider:
    /// the images read and checked for `spec`, the provider's preflight, the quote.
    async fn inspect(
        &self,
        req: &CreateRequest,
        provider: ProviderId,
        spec: &'static ModelSpec,
        ctx: &CallCtx,
    ) -> Result<Inspected> {
        let allowed = self.allowed_dirs(ctx);
        let image = match &req.image {
            Some(i) => Some(
                media::resolve_async(i, "image", spec, allowed.clone(), catalog::models()).await?,
            ),
            None => None,
        };
        let end_image = match &req.end_image {
            Some(e) => Some(
                media::resolve_async(e, "end_image", spec, allowed.clone(), catalog::models())
                    .await?,
            ),
            None => None,
        };
        let references = crate::refs::resolve(req, spec, &allowed).await?;
        (provider.decl().preflight)(req, image.as_ref())?;
        let quote = self.quote(spec, req);
        Ok(Inspected {
            image,
            end_image,
            references,
            quote,
        })
    }

    /// Everything `create` checks before the journal, without sending or writing anything: the
    /// provider and model, the request rules, the images, the preflight and the per-task caps.
    /// The quote of the create, for callers that plan many (batches check the daily budget on
    /// their total).
    pub async fn vet(&self, req: &CreateRequest, ctx: &CallCtx) -> Result<Quote> {
        let (provider, spec) = self.choose(req)?;
        validate::check(req, spec)?;
        let quote = self.inspect(req, provider, spec, ctx).await?.quote;
        self.check_task_caps(&quote, req)?;
        Ok(quote)
    }

    /// Write the task to the journal before anything is sent.
    async fn journal_task(
        &self,
        req: &CreateRequest,
        p: &Prepared,
        caller: &super::Principal,
    ) -> Result<Journaled> {
        let id = new_task_id();
        let webhook = self.webhook_for(p.provider, &id);
        let fingerprint = req.fingerprint();
        let new = NewTask {
            id: id.clone(),
            provider: p.provider,
            model: p.spec.model.clone(),
            request: self
                .journal_request(req, p.image.as_ref(), p.end_image.as_ref(), &p.references)
                .await?,
            fingerprint: fingerprint.clone(),
            idempotency_key: req.idempotency_key.clone(),
            estimated_cost: p.quote.usd,
            webhook_secret: webhook.as_ref().map(|w| w.secret.clone()),
            daily_budget: self.cfg.budget.daily_usd.map(super::pricing::daily_budget),
            created_at: now_ms(),
            owner: caller.owner.clone(),
            // The operator answers to `daily_usd`; each OAuth subject to its own share too.
            owner_budget: self
                .cfg
                .budget
                .per_user_daily_usd
                .filter(|_| !caller.owner.is_empty())
                .map(super::pricing::daily_budget),
        };
        Ok(match self.journal.insert(new).await? {
            Inserted::New => Journaled::New { id, webhook },
            Inserted::Existing(row) => Journaled::Existing(Box::new(dedup(&row, &fingerprint)?)),
        })
    }

    /// Send the journaled task. A create that surely did not reach the provider for a passing
    /// reason is sent again (at most `CREATE_ATTEMPTS` times); anything else ends the task.
    async fn submit(
        &self,
        sub: &Submission<'_>,
        provider: ProviderId,
        ctx: &CallCtx,
    ) -> Result<()> {
        let p = self.providers.get(provider)?;
        let id = sub.task_id;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match p.submit(sub).await {
                Ok(ptid) => return self.record_submitted(id, provider, &ptid).await,
                Err(pe) if pe.create_may_retry() && attempt < CREATE_ATTEMPTS => {
                    let backoff = pe
                        .retry_after
                        .unwrap_or(Duration::from_secs(1 << attempt))
                        .min(Duration::from_secs(60));
                    tracing::warn!(task = %id, error = %pe.error, ?backoff, "create refused for a passing reason; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = ctx.cancel.cancelled() => {
                            let e = pe.error.clone();
                            self.journal.fail(id, &e, now_ms()).await?;
                            return Err(e);
                        }
                    }
                }
                Err(pe) => return Err(self.submit_failed(id, provider, pe).await?),
            }
        }
    }

    /// The provider took the task: record its id. When the journal cannot, the id is paid and
    /// must not be lost: it goes to the log at once, stays in memory and is written as soon as
    /// the journal takes it; the caller learns it too.
    async fn record_submitted(&self, id: &str, provider: ProviderId, ptid: &str) -> Result<()> {
        if let Err(e) = self.journal.mark_submitted(id, ptid, now_ms()).await {
            tracing::error!(task = %id, provider = %provider, provider_task_id = %ptid, error = %e, "the provider accepted the task but the journal could not record its id; kept in memory, retrying");
            self.watcher.record_submitted(id, ptid);
            return Err(Error::internal(format!(
                "{provider} accepted the task as provider task {ptid}, but the journal could not record it ({}); it is being recorded and watched in the background as task {id}",
                e.message
            ))
            .with_next_step(format!(
                "do not create it again (it is paid): call get_task with task_id {id}; free space in the data dir if it is full; the provider dashboard lists it as {ptid}"
            )));
        }
        tracing::info!(task = %id, provider = %provider, provider_task_id = %ptid, "submitted");
        Ok(())
    }

    /// A create that failed for good: the task ends with an error that says whether anything may
    /// have been charged. Returns that error.
    async fn submit_failed(
        &self,
        id: &str,
        provider: ProviderId,
        pe: ProviderError,
    ) -> Result<Error> {
        let error = match pe.acceptance {
            Acceptance::Unknown => Error::new(
                Category::SubmitUnknown,
                format!(
                    "the create may or may not have reached {provider} ({}); it was not resubmitted, to avoid paying twice. Journal task {id}",
                    pe.error.message
                ),
            )
            .with_next_step("check the provider dashboard before creating again: the task may exist and be charged"),
            Acceptance::Rejected => {
                let mut e = pe.error;
                e.message = format!("{} (nothing was charged; journal task {id})", e.message);
                e
            }
        };
        self.journal.fail(id, &error, now_ms()).await?;
        self.watcher.publish(id).await;
        Ok(error)
    }

    /// One create at a time per idempotency key inside this process (the journal's UNIQUE key
    /// guards across processes).
    async fn lock_key(&self, key: Option<&str>) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let key = key?;
        let lock = {
            let mut locks = self.key_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(key.to_string()).or_default().clone()
        };
        Some(lock.lock_owned().await)
    }

    /// The task an idempotency key already stands for. A key whose create was refused (nothing
    /// accepted upstream, nothing charged) stands for nothing: the retry is a new attempt, which
    /// takes the key over in `Journal::insert`. A key whose outcome is unknown, or that the provider
    /// accepted, always returns its task and is never sent again.
    async fn existing_for_key(&self, req: &CreateRequest) -> Result<Option<Task>> {
        let Some(key) = &req.idempotency_key else {
            return Ok(None);
        };
        match self.journal.find_by_key(key).await? {
            Some(row) if row.is_refused() => Ok(None),
            Some(row) => Ok(Some(dedup(&row, &req.fingerprint())?)),
            None => Ok(None),
        }
    }

    /// The request as the journal keeps it: an image given inline (a data URI, up to tens of MB)
    /// is written once to `<data_dir>/inputs/<sha256>.<ext>` and the request names that file
    /// instead, so rows stay small and reading a task never loads image bytes. A restarted local
    /// render reads the file back through the same path checks as any input.
    async fn journal_request(
        &self,
        req: &CreateRequest,
        image: Option<&ImageInput>,
        end_image: Option<&ImageInput>,
        references: &[crate::refs::Reference],
    ) -> Result<String> {
        let mut req = req.clone();
        for (given, resolved) in req.references.iter_mut().zip(references) {
            if let crate::refs::Reference::Image(img) = resolved {
                *given = self.stored_input(given, img).await?;
            }
        }
        if let (Some(given), Some(resolved)) = (&req.image, image) {
            req.image = Some(self.stored_input(given, resolved).await?);
        }
        if let (Some(given), Some(resolved)) = (&req.end_image, end_image) {
            req.end_image = Some(self.stored_input(given, resolved).await?);
        }
        serde_json::to_string(&req)
            .map_err(|e| Error::internal(format!("cannot encode the request: {e}")))
    }

    /// `given` as the journal keeps it: a data URI becomes the path of its bytes under
    /// `inputs_dir`, written atomically (temp file + rename) unless already there.
    async fn stored_input(&self, given: &str, resolved: &ImageInput) -> Result<String> {
        let Some(img) = resolved.as_local() else {
            return Ok(given.to_string());
        };
        if !given.trim_start().starts_with("data:") {
            return Ok(given.to_string());
        }
        let dir = crate::journal::inputs_dir(&self.cfg.data_dir);
        let path = dir.join(format!("{}.{}", img.sha256, img.format.extension()));
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            let io = |e: std::io::Error| {
                Error::internal(format!(
                    "cannot keep the image in '{}': {e}",
                    dir.display()
                ))
                .with_next_step("free space in the data dir or set I2V_MCP_DATA_DIR to a writable directory")
            };
            tokio::fs::create_dir_all(&dir).await.map_err(io)?;
            let (target, bytes) = (path.clone(), img.bytes.clone());
            tokio::task::spawn_blocking(move || crate::files::write_atomic(&target, &bytes))
                .await
                .map_err(|e| Error::internal(format!("the image write did not finish: {e}")))?
                .map_err(io)?;
        }
        Ok(path.display().to_string())
    }
}

/// Idempotency keys are per owner: an OAuth subject's key is stored behind a fixed-length digest
/// of its owner, so two users' equal keys never meet, and the UNIQUE column keeps guarding each.
/// The operator's keys stay as given (journals from before tenancy keep working).
fn owned_key(mut req: CreateRequest, caller: &super::Principal) -> CreateRequest {
    if let Some(key) = &req.idempotency_key
        && !caller.owner.is_empty()
    {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(&Sha256::digest(caller.owner.as_bytes())[..12]);
        req.idempotency_key = Some(format!("u:{digest}:{key}"));
    }
    req
}

/// The task of a journal row an idempotency key found, if the request is the same one.
fn dedup(row: &TaskRow, fingerprint: &str) -> Result<Task> {
    if row.fingerprint != fingerprint {
        return Err(Error::invalid_input(format!(
            "idempotency_key was already used for a different request (task {}): use a new key for a new request, or resend the same arguments to get that task",
            row.id
        )));
    }
    let mut task = row.to_task();
    task.deduplicated = true;
    Ok(task)
}

/// Time-ordered, unguessable task ids.
fn new_task_id() -> String {
    format!("tsk_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_unique_and_ordered_by_time() {
        let a = new_task_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_task_id();
        assert!(a.starts_with("tsk_") && a.len() == 36, "{a}");
        assert!(a < b, "{a} !< {b}");
    }
}
