//! Our bounded queue in front of the HTTP sender, plugged into the SDK as its `Transport`.
//!
//! The SDK's built-in transport queues 30 envelopes and silently drops the rest. Here the
//! pipeline reserves a slot in the queue *before* calling `Client::capture_event` (waiting,
//! with a deadline, when the queue is full); the transport then fills that slot. So a burst
//! makes the pipeline wait instead of losing events, and memory stays bounded by the queue
//! size.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use std::io::Write;

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use sentry::protocol::EnvelopeItem;
use sentry::types::Dsn;
use sentry::{Envelope, Transport, TransportFactory, TransportOptions};
use tokio::sync::mpsc;
use tracing::warn;

use super::outcome::DropReason;
use crate::metrics::Metrics;

/// One envelope on its way to one DSN, already serialized and gzipped: a queued envelope
/// costs its compressed size (about 2 KB), not the SDK's structs (about 30 KB).
pub struct Outgoing {
    pub dsn: Arc<Dsn>,
    pub body: Bytes,
    /// The rate-limit category: "monitor" for check-ins, "error" for everything else.
    pub category: &'static str,
}

/// Relay rejects envelopes with an event item larger than this.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(bytes)
        .expect("writing to memory cannot fail");
    encoder.finish().expect("writing to memory cannot fail")
}

/// The wire form of an envelope, or why it cannot be sent.
fn encode(envelope: &Envelope) -> Result<(Bytes, &'static str), DropReason> {
    let mut raw = Vec::new();
    if envelope.to_writer(&mut raw).is_err() {
        return Err(DropReason::Rejected);
    }
    if raw.len() > MAX_ENVELOPE_BYTES {
        return Err(DropReason::TooLarge);
    }
    let category = if envelope
        .items()
        .any(|i| matches!(i, EnvelopeItem::MonitorCheckIn(_)))
    {
        "monitor"
    } else {
        "error"
    };
    Ok((Bytes::from(gzip(&raw)), category))
}

thread_local! {
    /// The slot the pipeline reserved for the envelope `capture_event` is about to produce.
    /// Set and taken on the same thread within one synchronous call.
    static RESERVED: RefCell<Option<mpsc::OwnedPermit<Outgoing>>> = const { RefCell::new(None) };
}

/// Counts envelopes accepted but not yet finished (queued, in flight or waiting for a
/// retry), so flush can wait for zero; the count is the `queue_depth` gauge.
pub struct Pending {
    count: Mutex<usize>,
    zero: Condvar,
    gauge: Gauge,
}

impl Pending {
    fn new(gauge: Gauge) -> Self {
        Self {
            count: Mutex::new(0),
            zero: Condvar::new(),
            gauge,
        }
    }

    pub fn add(&self) {
        let mut count = self.count.lock().unwrap();
        *count += 1;
        self.gauge.set(*count as i64);
    }

    pub fn done(&self) {
        let mut count = self.count.lock().unwrap();
        *count = count.saturating_sub(1);
        self.gauge.set(*count as i64);
        if *count == 0 {
            self.zero.notify_all();
        }
    }

    pub fn get(&self) -> usize {
        *self.count.lock().unwrap()
    }

    /// Blocks until nothing is pending or the timeout passes; true if drained.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap();
        while *count > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            count = self.zero.wait_timeout(count, deadline - now).unwrap().0;
        }
        true
    }
}

/// The sending side of the queue, shared by every client (main and per-object DSNs).
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    pub(crate) pending: Arc<Pending>,
    metrics: Metrics,
}

/// Why the pipeline could not queue an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue stayed full for the whole wait.
    Full,
    /// Delivery has shut down.
    Closed,
}

impl Outbox {
    pub fn new(capacity: NonZeroUsize, metrics: Metrics) -> (Self, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity.get());
        (
            Self {
                tx,
                pending: Arc::new(Pending::new(metrics.queue_depth.clone())),
                metrics,
            },
            rx,
        )
    }

    /// Waits (at most `wait`) for room, then lets `capture` produce exactly the envelope
    /// that fills it. `capture` must call the SDK synchronously.
    pub async fn send_with<F: FnOnce()>(&self, wait: Duration, capture: F) -> Result<(), Refused> {
        let permit = match tokio::time::timeout(wait, self.tx.clone().reserve_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Refused::Closed),
            Err(_) => return Err(Refused::Full),
        };
        RESERVED.with(|slot| *slot.borrow_mut() = Some(permit));
        capture();
        // If the SDK produced nothing, give the slot back.
        RESERVED.with(|slot| slot.borrow_mut().take());
        Ok(())
    }

    fn enqueue(&self, dsn: Arc<Dsn>, envelope: Envelope) {
        let reserved = RESERVED.with(|slot| slot.borrow_mut().take());
        let (body, category) = match encode(&envelope) {
            Ok(encoded) => encoded,
            Err(reason) => {
                // The reserved slot (if any) is released by dropping it.
                self.metrics.sentry_dropped.inc(reason);
                warn!(
                    reason = reason.as_str(),
                    "dropped an envelope Sentry would not accept"
                );
                return;
            }
        };
        let item = Outgoing {
            dsn,
            body,
            category,
        };
        self.pending.add();
        match reserved {
            Some(permit) => {
                permit.send(item);
            }
            // Not from the pipeline (nothing else sends today): no waiting possible here.
            None => {
                if let Err(e) = self.tx.try_send(item) {
                    self.pending.done();
                    let reason = match e {
                        mpsc::error::TrySendError::Full(_) => DropReason::QueueFull,
                        mpsc::error::TrySendError::Closed(_) => DropReason::Shutdown,
                    };
                    self.metrics.sentry_dropped.inc(reason);
                    warn!(
                        reason = reason.as_str(),
                        "dropped an envelope the pipeline did not reserve room for"
                    );
                }
            }
        }
    }
}

/// The SDK transport of one client: hands envelopes for its DSN to the shared outbox.
pub struct QueueTransport {
    dsn: Arc<Dsn>,
    outbox: Outbox,
}

impl Transport for QueueTransport {
    fn send_envelope(&self, envelope: Envelope) {
        self.outbox.enqueue(self.dsn.clone(), envelope);
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.outbox.pending.wait_drained(timeout)
    }
}

/// Creates a [`QueueTransport`] for each client's DSN.
pub struct QueueTransportFactory {
    pub outbox: Outbox,
}

impl TransportFactory for QueueTransportFactory {
    fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn Transport> {
        Arc::new(QueueTransport {
            dsn: Arc::new(options.dsn),
            outbox: self.outbox.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry::protocol::{Event, MonitorCheckIn, MonitorCheckInStatus};

    #[test]
    fn envelopes_are_queued_gzipped_and_oversized_ones_refused() {
        let event = Event {
            message: Some("web-1: Back-off restarting failed container".into()),
            ..Default::default()
        };
        let (body, category) = encode(&Envelope::from(event)).unwrap();
        assert_eq!(category, "error");
        assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic");

        let mut huge = Event::default();
        huge.extra
            .insert("blob".into(), "x".repeat(2 * MAX_ENVELOPE_BYTES).into());
        assert_eq!(
            encode(&Envelope::from(huge)).unwrap_err(),
            DropReason::TooLarge
        );

        let mut check_in = Envelope::new();
        check_in.add_item(EnvelopeItem::MonitorCheckIn(MonitorCheckIn {
            check_in_id: uuid::Uuid::nil(),
            monitor_slug: "nightly".into(),
            status: MonitorCheckInStatus::Ok,
            environment: None,
            duration: None,
            monitor_config: None,
        }));
        assert_eq!(encode(&check_in).unwrap().1, "monitor");
    }
}
