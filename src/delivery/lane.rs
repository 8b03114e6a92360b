//! One destination (a DSN): its queue per rate-limit category, its rate limits, its backoff
//! and its sender. A dead, slow or rate-limited destination only delays its own envelopes;
//! check-ins and events are limited independently.
//!
//! Retries: 429 waits for the limit Sentry named; 5xx and network errors back off
//! exponentially (0.5 s doubling to 60 s, with jitter); 413 and other 4xx drop the envelope
//! (counted). An envelope that has waited longer than `SENTRY_K8S_DELIVERY_MAX_AGE` for a
//! destination that keeps failing is dropped (counted), with one log line per destination
//! and failure episode.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use sentry::types::Dsn;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::budget::Budget;
use super::http::{Reply, Transport};
use super::outcome::{DropReason, RetryReason};
use super::rate_limit::{Answer, Category, RateLimits};
use crate::metrics::Metrics;
use crate::redact::describe_dsn;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest a waiting sender sleeps before looking at its queue again.
const RECHECK: Duration = Duration::from_secs(10);

/// What became of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Sent,
    Dropped(DropReason),
}

/// Called once with an envelope's fate. Never called for an envelope abandoned at
/// shutdown: it was not delivered.
pub type Done = Box<dyn FnOnce(Fate) + Send + Sync>;

/// One envelope on its way.
pub struct Outgoing {
    pub body: Bytes,
    pub category: Category,
    pub queued_at: Instant,
    pub done: Option<Done>,
}

impl Outgoing {
    fn finish(mut self, fate: Fate) {
        if let Some(done) = self.done.take() {
            done(fate);
        }
    }
}

#[derive(Default)]
struct State {
    /// One FIFO per category, oldest first.
    queues: [VecDeque<Outgoing>; 2],
    limits: RateLimits,
    backoff_until: Option<Instant>,
    next_backoff: Option<Duration>,
    /// Since when every attempt has failed (None: the last one succeeded).
    failing_since: Option<Instant>,
    /// This failure episode has been logged about (drops by age or to make room).
    told: bool,
    in_flight: usize,
}

fn slot(category: Category) -> usize {
    match category {
        Category::Error => 0,
        Category::Monitor => 1,
    }
}

/// What the sender should do next.
enum Next {
    Send(Outgoing),
    Wait(Instant),
    Idle,
}

/// One destination and its queue.
pub struct Lane {
    pub dsn: Arc<Dsn>,
    /// The DSN without its key, for logs.
    pub name: String,
    state: Mutex<State>,
    wake: Notify,
    /// Reservations for this destination not filled yet (see [`Claim`]).
    claims: AtomicUsize,
}

/// A reservation's hold on its lane, from before it waits for room until its envelope is
/// queued: the lane is not idle meanwhile, so it is never retired under a place about to
/// be filled (the envelope would sit in a lane nobody sends, holding its place for good).
pub struct Claim(Arc<Lane>);

impl Claim {
    pub fn new(lane: Arc<Lane>) -> Self {
        lane.claims.fetch_add(1, Ordering::SeqCst);
        Self(lane)
    }

    pub fn lane(&self) -> &Arc<Lane> {
        &self.0
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.claims.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Lane {
    pub fn new(dsn: Arc<Dsn>) -> Self {
        Self {
            name: describe_dsn(&dsn),
            dsn,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            claims: AtomicUsize::new(0),
        }
    }

    pub fn push(&self, item: Outgoing) {
        self.state.lock().unwrap().queues[slot(item.category)].push_back(item);
        self.wake.notify_one();
    }

    /// Envelopes queued (not counting those in flight).
    pub fn queued(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .queues
            .iter()
            .map(VecDeque::len)
            .sum()
    }

    /// Nothing queued, nothing in flight, no reservation about to queue something.
    pub fn is_idle(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.in_flight == 0
            && state.queues.iter().all(VecDeque::is_empty)
            && self.claims.load(Ordering::SeqCst) == 0
    }

    /// Whether the destination is not delivering: failing, or every queued category
    /// rate-limited.
    pub fn is_stalled(&self, now: Instant) -> bool {
        let state = self.state.lock().unwrap();
        let limited = state.queues.iter().any(|q| !q.is_empty())
            && Category::ALL.iter().all(|c| {
                state.queues[slot(*c)].is_empty()
                    || state.limits.blocked_for(*c, now.into_std()).is_some()
            });
        state.failing_since.is_some() || limited
    }

    /// When the oldest queued envelope was queued.
    pub fn oldest(&self) -> Option<Instant> {
        let state = self.state.lock().unwrap();
        state
            .queues
            .iter()
            .filter_map(|q| q.front().map(|o| o.queued_at))
            .min()
    }

    /// Takes the oldest queued envelope out, to make room for another destination's. The
    /// first time in a failure episode, says so.
    pub fn give_way(&self) -> Option<Outgoing> {
        let mut state = self.state.lock().unwrap();
        let q = (0..state.queues.len())
            .filter(|i| !state.queues[*i].is_empty())
            .min_by_key(|i| state.queues[*i].front().map(|o| o.queued_at))?;
        let item = state.queues[q].pop_front()?;
        if !state.told {
            state.told = true;
            warn!(
                destination = %self.name,
                "the delivery queue is full and this destination is not delivering: dropping its oldest envelopes to make room for others (counted as destination_backlog)"
            );
        }
        Some(item)
    }

    /// Drops what has waited longer than `max_age` while the destination keeps failing.
    fn expire(&self, now: Instant, max_age: Duration) -> Vec<Outgoing> {
        let mut state = self.state.lock().unwrap();
        let Some(since) = state.failing_since else {
            return Vec::new();
        };
        if now.saturating_duration_since(since) < max_age {
            return Vec::new();
        }
        let mut expired = Vec::new();
        for queue in &mut state.queues {
            while queue
                .front()
                .is_some_and(|o| now.saturating_duration_since(o.queued_at) >= max_age)
            {
                expired.extend(queue.pop_front());
            }
        }
        if !expired.is_empty() && !state.told {
            state.told = true;
            warn!(
                destination = %self.name,
                failing_for = ?now.saturating_duration_since(since),
                ?max_age,
                "Sentry has not accepted anything here for longer than SENTRY_K8S_DELIVERY_MAX_AGE: dropping envelopes older than that (counted as undeliverable)"
            );
        }
        expired
    }

    fn next(&self, now: Instant) -> Next {
        let mut state = self.state.lock().unwrap();
        if let Some(until) = state.backoff_until.filter(|u| *u > now) {
            return if state.queues.iter().all(VecDeque::is_empty) {
                Next::Idle
            } else {
                Next::Wait(until.min(now + RECHECK))
            };
        }
        let mut wait: Option<Instant> = None;
        let mut ready: Option<usize> = None;
        for category in Category::ALL {
            let q = slot(category);
            let Some(front) = state.queues[q].front() else {
                continue;
            };
            match state.limits.blocked_for(category, now.into_std()) {
                Some(blocked) => {
                    let until = now + blocked;
                    wait = Some(wait.map_or(until, |w| w.min(until)));
                }
                None => {
                    let older = ready.is_none_or(|r| {
                        state.queues[r]
                            .front()
                            .is_some_and(|o| front.queued_at < o.queued_at)
                    });
                    if older {
                        ready = Some(q);
                    }
                }
            }
        }
        match (ready, wait) {
            (Some(q), _) => {
                let item = state.queues[q].pop_front().expect("non-empty");
                state.in_flight += 1;
                Next::Send(item)
            }
            // Wake at least every few seconds: envelopes may age out meanwhile.
            (None, Some(until)) => Next::Wait(until.min(now + RECHECK)),
            (None, None) => Next::Idle,
        }
    }
}

/// What a lane's sender shares with the rest of delivery.
#[derive(Clone)]
pub struct Shared {
    pub budget: Arc<Budget>,
    pub sends: Arc<Semaphore>,
    pub metrics: Metrics,
    pub max_age: Duration,
}

impl Shared {
    /// An envelope leaves delivery: its place and bytes are given back, its fate told.
    pub fn finish(&self, item: Outgoing, fate: Fate) {
        match fate {
            Fate::Sent => {
                self.metrics.sentry_sent.inc();
            }
            Fate::Dropped(reason) => self.metrics.sentry_dropped.inc(reason),
        }
        self.budget.release(item.body.len());
        item.finish(fate);
    }
}

/// A wait of `base` with jitter: between half and all of it.
fn jittered(base: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    base / 2 + base / 2 * random / 1000
}

/// How one answer is handled.
enum Verdict {
    Sent,
    Retry(RetryReason),
    Drop(DropReason),
}

fn judge(lane: &Lane, reply: &Result<Reply, String>) -> Verdict {
    let reply = match reply {
        Ok(reply) => reply,
        Err(why) => {
            warn!(destination = %lane.name, "cannot reach Sentry: {why}; retrying with backoff");
            return Verdict::Retry(RetryReason::Network);
        }
    };
    let (status, detail) = (reply.status, &reply.detail);
    match status {
        200..=299 => Verdict::Sent,
        429 => {
            debug!(destination = %lane.name, "Sentry is rate limiting (429); the envelope waits");
            Verdict::Retry(RetryReason::RateLimited)
        }
        413 => {
            warn!(destination = %lane.name, "Sentry refused an envelope as too large: {detail}");
            Verdict::Drop(DropReason::TooLarge)
        }
        401 | 403 => {
            error!(destination = %lane.name, status, "Sentry refused the DSN's key: {detail}");
            Verdict::Drop(DropReason::Unauthorized)
        }
        400..=499 => {
            error!(destination = %lane.name, status, "Sentry rejected an envelope: {detail}");
            Verdict::Drop(DropReason::Rejected)
        }
        _ => {
            warn!(destination = %lane.name, status, "Sentry failed ({detail}); retrying with backoff");
            Verdict::Retry(RetryReason::ServerError)
        }
    }
}

impl Lane {
    /// Applies an answer: limits, backoff, failure episode; the envelope is requeued first
    /// in line on a retry.
    fn settle(&self, item: Outgoing, reply: Result<Reply, String>, shared: &Shared) {
        let now = Instant::now();
        let verdict = judge(self, &reply);
        let mut state = self.state.lock().unwrap();
        state.in_flight -= 1;
        if let Ok(reply) = &reply {
            let answer = Answer {
                status: reply.status,
                retry_after: reply.retry_after.as_deref(),
                rate_limits: reply.rate_limits.as_deref(),
            };
            state
                .limits
                .update(&answer, item.category, now.into_std(), Utc::now());
        }
        match verdict {
            Verdict::Sent | Verdict::Drop(_) if reply.is_ok() => {
                // Sentry answered: the destination works.
                state.failing_since = None;
                state.told = false;
                state.next_backoff = None;
                state.backoff_until = None;
            }
            _ => {}
        }
        match verdict {
            Verdict::Sent => {
                drop(state);
                shared.finish(item, Fate::Sent);
            }
            Verdict::Drop(reason) => {
                drop(state);
                shared.finish(item, Fate::Dropped(reason));
            }
            Verdict::Retry(reason) => {
                shared.metrics.sentry_send_failures.inc(reason);
                state.failing_since.get_or_insert(now);
                if reason != RetryReason::RateLimited {
                    let base = state.next_backoff.unwrap_or(FIRST_BACKOFF);
                    state.backoff_until = Some(now + jittered(base));
                    state.next_backoff = Some((base * 2).min(MAX_BACKOFF));
                }
                state.queues[slot(item.category)].push_front(item);
                drop(state);
                // Not delivering now: a reservation waiting for room may take this one's.
                shared.budget.recheck();
            }
        }
    }
}

/// Sends the lane's envelopes until the task is aborted: up to `SENTRY_K8S_SEND_CONCURRENCY`
/// requests in flight across all lanes.
pub async fn serve(lane: Arc<Lane>, transport: Arc<Transport>, shared: Shared) {
    let mut attempts: JoinSet<(Outgoing, Result<Reply, String>)> = JoinSet::new();
    loop {
        while let Some(done) = attempts.try_join_next() {
            if let Ok((item, reply)) = done {
                lane.settle(item, reply, &shared);
            }
        }
        let now = Instant::now();
        for item in lane.expire(now, shared.max_age) {
            shared.finish(item, Fate::Dropped(DropReason::Undeliverable));
        }
        match lane.next(now) {
            Next::Send(item) => {
                let permit = shared
                    .sends
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the send semaphore is never closed");
                let transport = transport.clone();
                attempts.spawn(async move {
                    let reply = transport.post(item.body.clone()).await;
                    drop(permit);
                    (item, reply)
                });
            }
            Next::Wait(until) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = lane.wake.notified() => {}
                    Some(Ok((item, reply))) = attempts.join_next(), if !attempts.is_empty() => {
                        lane.settle(item, reply, &shared);
                    }
                }
            }
            Next::Idle => {
                tokio::select! {
                    _ = lane.wake.notified() => {}
                    Some(Ok((item, reply))) = attempts.join_next(), if !attempts.is_empty() => {
                        lane.settle(item, reply, &shared);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all_of_the_wait() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(10));
            assert!(wait >= Duration::from_secs(5) && wait <= Duration::from_secs(10));
        }
    }
}
