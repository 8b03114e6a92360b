//! One way to stop: a cancellation token, and the one deadline it sets. Watches stop when
//! it is triggered; the pipeline drains and delivery flushes until the deadline
//! (`SENTRY_K8S_SHUTDOWN_TIMEOUT` after the trigger); whatever is left then is counted.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Cheap to clone; every task that must stop holds one.
#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
    deadline: Arc<OnceLock<Instant>>,
    budget: Duration,
}

impl Shutdown {
    /// `budget`: from the trigger to the deadline.
    pub fn new(budget: Duration) -> Self {
        Self {
            token: CancellationToken::new(),
            deadline: Arc::new(OnceLock::new()),
            budget,
        }
    }

    /// Starts the shutdown (the first call sets the deadline; later ones change nothing).
    pub fn trigger(&self) {
        self.deadline.get_or_init(|| Instant::now() + self.budget);
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the shutdown is triggered.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// Resolves when the deadline passes (never before the trigger).
    pub async fn deadline(&self) {
        self.token.cancelled().await;
        if let Some(deadline) = self.deadline.get() {
            tokio::time::sleep_until(*deadline).await;
        }
    }

    /// Time left until the deadline (the whole budget before the trigger).
    pub fn remaining(&self) -> Duration {
        match self.deadline.get() {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => self.budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_trigger_sets_one_deadline() {
        let budget = Duration::from_millis(300);
        let shutdown = Shutdown::new(budget);
        assert!(!shutdown.is_triggered());
        assert_eq!(shutdown.remaining(), budget);
        let waiting = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.deadline().await;
                Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no deadline before the trigger");
        let start = Instant::now();
        shutdown.trigger();
        shutdown.trigger();
        assert!(shutdown.remaining() <= budget);
        let passed = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(
            passed - start >= budget,
            "the deadline is the budget after the trigger"
        );
        assert_eq!(shutdown.remaining(), Duration::ZERO);
        shutdown.triggered().await;
    }
}
