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
