//! Client-side create limits, per provider and per OAuth subject
//! (`[budget.per_user_rate_limit]`): exact sliding windows ("at most 10 in any 60 s"), as
//! providers state them. (A token bucket with burst n lets up to 2n-1 through in one window,
//! which would meet the provider's own limit with a 429.) The windows are counted in the journal
//! (SQLite or PostgreSQL), so every server on one data dir or database keeps to the provider's
//! limits together.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{Config, RateLimits};
use crate::error::{Category, Error, Result};
use crate::journal::{Journal, RateKey};
use crate::model::ProviderId;

/// The limiters of every configured provider, and the one every OAuth subject answers to.
pub(super) struct RateLimiters {
    limiters: BTreeMap<ProviderId, Limiter>,
    /// `[budget.per_user_rate_limit]`: each subject's own windows (the operator has none).
    per_owner: RateLimits,
    /// The journal, where the windows are counted (`None` in unit tests: in memory).
    shared: Option<Journal>,
    /// In memory only (unit tests): each owner's windows.
    owners: Mutex<BTreeMap<String, Limiter>>,
}

impl RateLimiters {
    pub(super) fn new(cfg: &Config, journal: &Journal) -> Self {
        RateLimiters {
            limiters: cfg
                .providers
                .iter()
                .map(|(id, pc)| (*id, Limiter::new(&pc.rate_limit)))
                .collect(),
            per_owner: cfg.budget.per_user_rate_limit.unwrap_or_default(),
            shared: Some(journal.clone()),
            owners: Mutex::default(),
        }
    }

    /// A slot in every window of `limiter`, or how long until one and which window says so.
    async fn try_take(
        &self,
        key: RateKey<'_>,
        limiter: &Limiter,
    ) -> Result<std::result::Result<(), (Duration, &'static str)>> {
        let Some(journal) = &self.shared else {
            return Ok(limiter.try_take(Instant::now()));
        };
        let (windows, names) = limiter.specs();
        if windows.is_empty() {
            return Ok(Ok(()));
        }
        Ok(journal
            .take_rate_slot(key, &windows)
            .await?
            .map_err(|(ms, i)| {
                let name = names.get(i).copied().unwrap_or("window");
                (Duration::from_millis(ms.max(1) as u64), name)
            }))
    }

    /// Wait for a create slot within `deadline`, or say when to retry.
    pub(super) async fn admit(&self, provider: ProviderId, deadline: Instant) -> Result<()> {
        let Some(limiter) = self.limiters.get(&provider) else {
            return Ok(());
        };
        let whose = format!("client-side rate limit for {provider}");
        self.wait_for(RateKey::Provider(provider), limiter, deadline, &whose)
            .await
    }

    /// Wait for a slot in `owner`'s own windows (`[budget.per_user_rate_limit]`) within
    /// `deadline`, or say when to retry. The operator (`""`) has no such limit.
    pub(super) async fn admit_owner(&self, owner: &str, deadline: Instant) -> Result<()> {
        if owner.is_empty() || self.per_owner == RateLimits::default() {
            return Ok(());
        }
        let whose = "your rate limit ([budget.per_user_rate_limit])";
        if self.shared.is_some() {
            let limiter = Limiter::new(&self.per_owner);
            return self
                .wait_for(RateKey::Owner(owner), &limiter, deadline, whose)
                .await;
        }
        loop {
            let taken = {
                let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
                owners
                    .entry(owner.to_string())
                    .or_insert_with(|| Limiter::new(&self.per_owner))
                    .try_take(Instant::now())
            };
            let Err((wait, window)) = taken else {
                return Ok(());
            };
            check_wait(wait, window, deadline, whose)?;
            tokio::time::sleep(wait).await;
        }
    }

    async fn wait_for(
        &self,
        key: RateKey<'_>,
        limiter: &Limiter,
        deadline: Instant,
        whose: &str,
    ) -> Result<()> {
        loop {
            let Err((wait, window)) = self.try_take(key, limiter).await? else {
                return Ok(());
            };
            check_wait(wait, window, deadline, whose)?;
            tokio::time::sleep(wait).await;
        }
    }
}

/// A `rate_limited` error when waiting `wait` for a slot would pass `deadline`.
fn check_wait(wait: Duration, window: &str, deadline: Instant, whose: &str) -> Result<()> {
    if Instant::now() + wait <= deadline {
        return Ok(());
    }
    let secs = wait.as_secs().max(1);
    Err(Error::new(
        Category::RateLimited,
        format!("{whose} (per {window}) reached: retry in {secs} s"),
    )
    .with_next_step(format!(
        "create again in {secs} s, or pass wait_seconds to let the server wait"
    )))
}

struct Limiter {
    windows: Mutex<Vec<Window>>,
}

struct Window {
    max: usize,
    period: Duration,
    name: &'static str,
    /// When the creates still inside the window were admitted, oldest first.
    log: VecDeque<Instant>,
}

impl Limiter {
    fn new(l: &RateLimits) -> Limiter {
        let windows = [
            (l.per_10_seconds, 10, "10 s"),
            (l.per_minute, 60, "minute"),
            (l.per_hour, 3600, "hour"),
            (l.per_day, 86_400, "day"),
        ]
        .into_iter()
        .filter_map(|(n, secs, name)| {
            n.filter(|n| *n > 0).map(|n| Window {
                max: n as usize,
                period: Duration::from_secs(secs),
                name,
                log: VecDeque::new(),
            })
        })
        .collect();
        Limiter {
            windows: Mutex::new(windows),
        }
    }

    /// The windows as `(max, period ms)`, and their names.
    fn specs(&self) -> (Vec<(i64, i64)>, Vec<&'static str>) {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .iter()
            .map(|w| ((w.max as i64, w.period.as_millis() as i64), w.name))
            .unzip()
    }

    /// Take a slot in every window at `now`, or say how long until all of them admit one (and
    /// which window is the reason). Nothing is taken unless every window admits.
    fn try_take(&self, now: Instant) -> std::result::Result<(), (Duration, &'static str)> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait: Option<(Duration, &'static str)> = None;
        for w in windows.iter_mut() {
            while w
                .log
                .front()
                .is_some_and(|t| now.duration_since(*t) >= w.period)
            {
                w.log.pop_front();
            }
            if w.log.len() >= w.max
                && let Some(oldest) = w.log.front()
            {
                let d = (*oldest + w.period).saturating_duration_since(now);
                if wait.is_none_or(|(cur, _)| d > cur) {
                    wait = Some((d, w.name));
                }
            }
        }
        match wait {
            Some(w) => Err(w),
            None => {
                for w in windows.iter_mut() {
                    w.log.push_back(now);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_windows_are_exact_and_take_nothing_when_refusing() {
        let l = Limiter::new(&RateLimits {
            per_minute: Some(2),
            per_hour: Some(3),
            ..RateLimits::default()
        });
        let t0 = Instant::now();
        assert!(l.try_take(t0).is_ok());
        assert!(l.try_take(t0 + Duration::from_secs(1)).is_ok());
        // Third in the same minute: refused until the first leaves the window.
        let (wait, window) = l.try_take(t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!((wait, window), (Duration::from_secs(58), "minute"));
        // Refusals took no hour slot: after the minute, one more fits, then the hour is full.
        assert!(l.try_take(t0 + Duration::from_secs(61)).is_ok());
        let (_, window) = l.try_take(t0 + Duration::from_secs(200)).unwrap_err();
        assert_eq!(window, "hour");
    }

    #[test]
    fn a_zero_or_missing_limit_admits_everything() {
        let l = Limiter::new(&RateLimits {
            per_minute: Some(0),
            ..RateLimits::default()
        });
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(l.try_take(t0 + Duration::from_millis(i)).is_ok());
        }
    }

    #[tokio::test]
    async fn admit_refuses_past_the_deadline_with_a_retry_hint() {
        let p = ProviderId::ALL[0];
        let one_per_10s = RateLimits {
            per_10_seconds: Some(1),
            ..RateLimits::default()
        };
        let r = RateLimiters {
            limiters: [(p, Limiter::new(&one_per_10s))].into_iter().collect(),
            per_owner: RateLimits::default(),
            shared: None,
            owners: Mutex::default(),
        };
        r.admit(p, Instant::now()).await.unwrap();
        // The next slot is 10 s away: a 2 s deadline is refused at once, with a retry hint.
        let started = Instant::now();
        let e = r
            .admit(p, started + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "it waited");
        assert_eq!(e.category, Category::RateLimited);
        assert!(
            e.message.contains("(per 10 s) reached: retry in"),
            "{}",
            e.message
        );
        assert!(e.next_step.unwrap().contains("wait_seconds"));
        // A provider without limits is always admitted.
        let other = ProviderId::ALL[1];
        r.admit(other, Instant::now()).await.unwrap();
    }

    #[tokio::test]
    async fn each_subject_has_its_own_windows_and_the_operator_none() {
        let r = RateLimiters {
            limiters: BTreeMap::new(),
            per_owner: RateLimits {
                per_minute: Some(2),
                ..RateLimits::default()
            },
            shared: None,
            owners: Mutex::default(),
        };
        let now = Instant::now;
        r.admit_owner("iss#alice", now()).await.unwrap();
        r.admit_owner("iss#alice", now()).await.unwrap();
        let e = r.admit_owner("iss#alice", now()).await.unwrap_err();
        assert_eq!(e.category, Category::RateLimited);
        assert!(
            e.message
                .starts_with("your rate limit ([budget.per_user_rate_limit]) (per minute)"),
            "{}",
            e.message
        );
        // Bob's windows are his own; the operator is never held.
        r.admit_owner("iss#bob", now()).await.unwrap();
        for _ in 0..10 {
            r.admit_owner("", now()).await.unwrap();
        }
    }
}
