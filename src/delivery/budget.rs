//! The bound on everything delivery holds: envelopes (`SENTRY_K8S_QUEUE_SIZE`) and their
//! bytes (`SENTRY_K8S_QUEUE_BYTES`), shared by every destination. An envelope holds its
//! place from the reservation until it is sent or dropped; the pipeline waits for room.

use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

#[derive(Default)]
struct Held {
    count: usize,
    bytes: usize,
}

pub struct Budget {
    held: Mutex<Held>,
    max_count: usize,
    max_bytes: usize,
    /// Signalled whenever something is released.
    released: Notify,
    depth: Gauge,
}

impl Budget {
    /// `depth` mirrors the count (the `queue_depth` metric).
    pub fn new(max_count: usize, max_bytes: usize, depth: Gauge) -> Self {
        Self {
            held: Mutex::new(Held::default()),
            max_count,
            max_bytes,
            released: Notify::new(),
            depth,
        }
    }

    /// Takes a place if there is room: fewer envelopes than the count bound and fewer bytes
    /// than the byte bound (the last envelope may pass the byte bound by its own size).
    pub fn try_take(&self) -> bool {
        let mut held = self.held.lock().unwrap();
        if held.count >= self.max_count || held.bytes >= self.max_bytes {
            return false;
        }
        held.count += 1;
        self.depth.set(held.count as i64);
        true
    }

    /// Charges a taken place with its envelope's size.
    pub fn charge(&self, bytes: usize) {
        self.held.lock().unwrap().bytes += bytes;
    }

    /// Gives a place back (sent, dropped, or never filled) with the bytes it was charged.
    pub fn release(&self, bytes: usize) {
        let mut held = self.held.lock().unwrap();
        held.count = held.count.saturating_sub(1);
        held.bytes = held.bytes.saturating_sub(bytes);
        self.depth.set(held.count as i64);
        drop(held);
        self.released.notify_waiters();
    }

    /// Wakes whoever waits for room to look again: something other than a release may make
    /// room (a destination starting to fail can now give way).
    pub fn recheck(&self) {
        self.released.notify_waiters();
    }

    /// Envelopes held: queued, in flight, or waiting for a retry.
    pub fn count(&self) -> usize {
        self.held.lock().unwrap().count
    }

    pub fn bytes(&self) -> usize {
        self.held.lock().unwrap().bytes
    }

    /// Waits until `ready` holds (checked now and after every release), at most `limit`.
    pub async fn wait_until(&self, limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut released = pin!(self.released.notified());
            released.as_mut().enable();
            if ready() {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_and_bytes_both_bound_and_waiters_wake_on_release() {
        let budget = std::sync::Arc::new(Budget::new(2, 100, Gauge::default()));
        assert!(budget.try_take());
        budget.charge(150);
        assert!(!budget.try_take(), "the bytes are over the bound");
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move {
                budget
                    .wait_until(Duration::from_secs(10), || budget.try_take())
                    .await
            }
        });
        budget.release(150);
        assert!(
            waiter.await.unwrap(),
            "the release made room for the waiter"
        );
        assert!(budget.try_take());
        assert!(!budget.try_take(), "two of two places are held");
        assert_eq!((budget.count(), budget.bytes()), (2, 0));
        assert!(
            !budget
                .wait_until(Duration::from_millis(20), || budget.try_take())
                .await
        );
    }
}
