//! The queue in front of the destinations: the pipeline reserves a place (waiting, with a
//! deadline, while delivery is full), fills it with the encoded envelope, and the
//! destination's lane sends it. One lane per destination, at most
//! `SENTRY_K8S_DESTINATIONS` of them besides the main DSN (an idle one is retired to make
//! room).
//!
//! When the shared budget is full, a destination that is not delivering (failing or
//! rate-limited) never holds up one that is: a delivering destination's envelope takes the
//! place of the oldest envelope of a stalled one, and a stalled destination's new envelope
//! takes the place of its own oldest while any other destination is delivering (both
//! counted as `destination_backlog`). The pipeline waits for room — backpressure, up to
//! `SENTRY_K8S_QUEUE_TIMEOUT` — only when every destination holding places is delivering,
//! or none is (Sentry itself is down: the cluster keeps the events meanwhile, and they are
//! read again once there is room).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lru::LruCache;
use sentry::types::Dsn;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::budget::Budget;
use super::http::Transports;
use super::lane::{self, Claim, Done, Fate, Lane, Outgoing};
use super::outcome::DropReason;
use super::rate_limit::Category;

/// Why a place could not be reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every place stayed taken by destinations that are delivering, for the whole wait.
    Full,
    /// Delivery has shut down.
    Closed,
    /// `SENTRY_K8S_DESTINATIONS` destinations all have envelopes pending.
    TooManyDestinations,
}

impl Refused {
    pub fn reason(self) -> DropReason {
        match self {
            Refused::Full => DropReason::QueueFull,
            Refused::Closed => DropReason::Shutdown,
            Refused::TooManyDestinations => DropReason::TooManyDestinations,
        }
    }
}

/// A lane and its sender task (aborted when the lane is retired or delivery shuts down).
struct Served {
    lane: Arc<Lane>,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Lanes {
    main: Served,
    others: LruCache<String, Served>,
    told_too_many: bool,
}

pub struct Queue {
    shared: lane::Shared,
    transports: Transports,
    lanes: Mutex<Lanes>,
    closed: AtomicBool,
}

impl Queue {
    pub fn new(
        main: &Dsn,
        transports: Transports,
        shared: lane::Shared,
        destinations: NonZeroUsize,
    ) -> Self {
        let main = serve(Arc::new(main.clone()), &transports, &shared);
        Self {
            lanes: Mutex::new(Lanes {
                main,
                others: crate::bounded::lru(destinations),
                told_too_many: false,
            }),
            shared,
            transports,
            closed: AtomicBool::new(false),
        }
    }

    /// A claim on the lane of `dsn` (`None`: the main DSN), created if needed; claimed
    /// under the lock that decides retirement, so a claimed lane is never retired.
    fn lane(&self, dsn: Option<&Dsn>) -> Result<Claim, Refused> {
        let mut lanes = self.lanes.lock().unwrap();
        let Some(dsn) = dsn.filter(|d| **d != *lanes.main.lane.dsn) else {
            return Ok(Claim::new(lanes.main.lane.clone()));
        };
        let key = dsn.to_string();
        if let Some(served) = lanes.others.get(&key) {
            return Ok(Claim::new(served.lane.clone()));
        }
        if lanes.others.len() == lanes.others.cap().get() {
            let idle = lanes
                .others
                .iter()
                .rev()
                .find(|(_, served)| served.lane.is_idle())
                .map(|(key, _)| key.clone());
            match idle {
                Some(idle) => {
                    lanes.others.pop(&idle);
                }
                None => {
                    if !lanes.told_too_many {
                        lanes.told_too_many = true;
                        warn!(
                            destinations = lanes.others.cap().get(),
                            "every destination (SENTRY_K8S_DESTINATIONS) has envelopes pending; events for another are dropped (counted as too_many_destinations)"
                        );
                    }
                    return Err(Refused::TooManyDestinations);
                }
            }
        }
        let served = serve(Arc::new(dsn.clone()), &self.transports, &self.shared);
        let claim = Claim::new(served.lane.clone());
        info!(destination = %served.lane.name, "sending to a per-object DSN");
        lanes.others.put(key, served);
        Ok(claim)
    }

    /// Takes a place in the budget for an envelope to `lane`; when the budget is full, a
    /// stalled destination gives way (see the module's rule).
    fn take_place(&self, lane: &Arc<Lane>) -> bool {
        if self.shared.budget.try_take() {
            return true;
        }
        let now = Instant::now();
        let victim = {
            let lanes = self.lanes.lock().unwrap();
            let all: Vec<&Arc<Lane>> = std::iter::once(&lanes.main.lane)
                .chain(lanes.others.iter().map(|(_, served)| &served.lane))
                .collect();
            if lane.is_stalled(now) {
                let others_deliver = all
                    .iter()
                    .any(|other| !Arc::ptr_eq(other, lane) && !other.is_stalled(now));
                others_deliver.then(|| lane.clone())
            } else {
                all.into_iter()
                    .filter(|other| other.is_stalled(now))
                    .filter_map(|other| Some((other.oldest()?, other.clone())))
                    .min_by_key(|(oldest, _)| *oldest)
                    .map(|(_, other)| other)
            }
        };
        let Some(item) = victim.and_then(|victim| victim.give_way()) else {
            return false;
        };
        self.shared
            .finish(item, Fate::Dropped(DropReason::DestinationBacklog));
        self.shared.budget.try_take()
    }

    /// Reserves a place for an envelope of `category` to `dsn` (`None`: the main DSN),
    /// waiting at most `wait` for room.
    pub async fn reserve(
        &self,
        dsn: Option<&Dsn>,
        category: Category,
        wait: Duration,
    ) -> Result<Reservation, Refused> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Refused::Closed);
        }
        let claim = self.lane(dsn)?;
        let taken = self
            .shared
            .budget
            .wait_until(wait, || {
                self.closed.load(Ordering::Relaxed) || self.take_place(claim.lane())
            })
            .await;
        if self.closed.load(Ordering::Relaxed) {
            if taken {
                // Taken just as delivery closed: give it back.
                self.shared.budget.release(0);
            }
            return Err(Refused::Closed);
        }
        if !taken {
            return Err(Refused::Full);
        }
        Ok(Reservation {
            claim,
            budget: self.shared.budget.clone(),
            category,
            filled: false,
        })
    }

    /// Waits until nothing is held or `timeout` passes, then stops every sender; returns
    /// how many envelopes were left (counted as dropped at shutdown).
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        let budget = self.shared.budget.clone();
        budget.wait_until(timeout, || budget.count() == 0).await;
        self.closed.store(true, Ordering::Relaxed);
        {
            let mut lanes = self.lanes.lock().unwrap();
            lanes.main.task.abort();
            lanes.others.clear();
        }
        let left = budget.count();
        self.shared
            .metrics
            .sentry_dropped
            .add(DropReason::Shutdown, left);
        left
    }
}

fn serve(dsn: Arc<Dsn>, transports: &Transports, shared: &lane::Shared) -> Served {
    let lane = Arc::new(Lane::new(dsn));
    let transport = Arc::new(transports.for_dsn(&lane.dsn));
    if let Some(proxy) = transport.via() {
        info!(destination = %lane.name, proxy, "sending through a proxy");
    }
    let task = tokio::spawn(lane::serve(lane.clone(), transport, shared.clone()));
    Served { lane, task }
}

/// A place in the queue, held for one envelope to one destination; given back if dropped
/// unfilled (the event could not be encoded). Its claim keeps the lane from being retired
/// until the envelope is queued in it.
pub struct Reservation {
    claim: Claim,
    budget: Arc<Budget>,
    category: Category,
    filled: bool,
}

impl Reservation {
    /// Queues the envelope in the place; `done` is told its fate once it leaves delivery.
    pub fn fill(mut self, body: Bytes, done: Option<Done>) {
        self.filled = true;
        self.budget.charge(body.len());
        self.claim.lane().push(Outgoing {
            body,
            category: self.category,
            queued_at: Instant::now(),
            done,
        });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.filled {
            self.budget.release(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::envelope::{Encoder, of_event};
    use crate::delivery::http::ProxyVars;
    use crate::metrics::Metrics;
    use harness::SentrySink;
    use prometheus_client::metrics::gauge::Gauge;
    use tokio::sync::Semaphore;

    /// A queue of `places` places in front of `sink`'s project 1, serving at most
    /// `destinations` other DSNs.
    fn queue(sink: &SentrySink, places: usize, destinations: usize) -> Arc<Queue> {
        let shared = lane::Shared {
            budget: Arc::new(Budget::new(places, 1 << 20, Gauge::default())),
            sends: Arc::new(Semaphore::new(1)),
            metrics: Metrics::new(),
            max_age: Duration::from_secs(3600),
        };
        let transports =
            Transports::new(false, &ProxyVars::default(), Duration::from_secs(10)).unwrap();
        let main: Dsn = sink.dsn().parse().unwrap();
        Arc::new(Queue::new(
            &main,
            transports,
            shared,
            NonZeroUsize::new(destinations).unwrap(),
        ))
    }

    fn envelope() -> Bytes {
        let event = sentry::protocol::Event {
            message: Some("waited for room".into()),
            ..Default::default()
        };
        Encoder::new().encode(&of_event(event)).unwrap()
    }

    /// A destination whose envelope waits for room has an envelope pending: it is not
    /// retired to admit another (its reservation would be filled into a lane nobody sends).
    #[tokio::test]
    async fn a_destination_waiting_for_room_is_not_retired_for_another() {
        let sink = SentrySink::start().await.unwrap();
        let a: Dsn = sink.add_project("21", "akey").parse().unwrap();
        let b: Dsn = sink.add_project("22", "bkey").parse().unwrap();
        let queue = queue(&sink, 1, 1);
        // The only place is held (for the main DSN, not yet filled)...
        let held = queue
            .reserve(None, Category::Error, Duration::ZERO)
            .await
            .unwrap();
        // ...so an envelope for A waits for room,
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move {
                queue
                    .reserve(Some(&a), Category::Error, Duration::from_secs(20))
                    .await
            }
        });
        while queue.lanes.lock().unwrap().others.is_empty() {
            tokio::task::yield_now().await;
        }
        // while one for B arrives: every destination (A) has an envelope pending.
        let refused = queue
            .reserve(Some(&b), Category::Error, Duration::ZERO)
            .await;
        assert_eq!(refused.err(), Some(Refused::TooManyDestinations));
        drop(held);
        let reservation = waiting.await.unwrap().unwrap();
        reservation.fill(envelope(), None);
        let events = sink
            .wait_for_events(1, Duration::from_secs(20))
            .await
            .expect("A's envelope is sent");
        assert_eq!(events[0].project, "21");
        let budget = queue.shared.budget.clone();
        budget
            .wait_until(Duration::from_secs(20), || budget.count() == 0)
            .await;
        assert_eq!(budget.count(), 0, "its place is given back");
    }
}
