//! What can happen to an envelope on its way to Sentry, as the metrics count it.

use crate::labels::label_enum;

label_enum! {
    /// Why an envelope was given up on (`sentry_k8s_sentry_dropped_total{reason}`).
    pub enum DropReason {
        /// The pipeline waited `SENTRY_K8S_QUEUE_TIMEOUT` for room and got none.
        QueueFull = "queue_full",
        /// Larger than Sentry accepts (before sending, or a 413).
        TooLarge = "too_large",
        /// The SDK could not serialise it, or Sentry refused it as invalid (4xx).
        Rejected = "rejected",
        /// Sentry refused the DSN's key (401/403).
        Unauthorized = "unauthorized",
        /// Still queued when the shutdown deadline passed.
        Shutdown = "shutdown",
        /// Waited longer than `SENTRY_K8S_DELIVERY_MAX_AGE` for a destination that kept failing.
        Undeliverable = "undeliverable",
        /// The queue was full: the oldest envelope of a destination that was not delivering
        /// (failing or rate-limited) gave way to another's.
        DestinationBacklog = "destination_backlog",
        /// `SENTRY_K8S_DESTINATIONS` destinations all had envelopes pending; one more was refused.
        TooManyDestinations = "too_many_destinations",
    }
}

label_enum! {
    /// Why a send attempt failed and will be retried (`sentry_k8s_sentry_send_failures_total`).
    pub enum RetryReason {
        /// 429, or `X-Sentry-Rate-Limits`: waits until the limit passes.
        RateLimited = "rate_limited",
        /// 5xx: exponential backoff.
        ServerError = "server_error",
        /// Connection refused, reset, timed out: exponential backoff.
        Network = "network",
    }
}
