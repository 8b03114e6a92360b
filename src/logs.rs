//! The last lines a crashed container wrote (`SENTRY_K8S_CONTAINER_LOGS`): read from
//! `pods/{name}/log` for the instance that ended — `previous=true` when it is the
//! pod's `lastState` — scrubbed, bounded, and attached to its report.
//!
//! A read that fails (RBAC, no previous instance any more, the pod gone, a timeout)
//! leaves the report without lines; the outcome is returned for the metrics, and a
//! missing permission is logged once. Nothing here logs what a container wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use tracing::{debug, warn};

use crate::event::KubeEvent;
use crate::labels::label_enum;
use crate::limits::truncate;
use crate::scrub::Scrubber;

/// A read taking longer than this is abandoned (the report goes without lines). Short: the
/// report waits for it, and reports are sent in order, so the ones behind it wait too. The
/// kubelet answers a tail in milliseconds when it answers at all.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes asked for per line wanted (`limitBytes`): what one read may hold in memory.
const BYTES_PER_LINE: usize = 4096;
/// The most bytes one read asks for, whatever the number of lines.
const MAX_READ_BYTES: usize = 1 << 20;
/// A line longer than this is cut (a JSON blob, a minified stack).
pub const MAX_LINE_CHARS: usize = 1024;
/// What the lines of one report may add up to; the oldest go first.
pub const MAX_LOG_CHARS: usize = 16 * 1024;

label_enum! {
    /// How reading a crashed container's lines went (`sentry_k8s_container_logs_total{outcome}`).
    pub enum LogOutcome {
        /// Lines were attached.
        Attached = "attached",
        /// The container wrote nothing.
        Empty = "empty",
        /// RBAC: `get pods/log` is not granted.
        Forbidden = "forbidden",
        /// The pod is gone.
        NotFound = "not_found",
        /// The kubelet has no such instance any more (it restarted again, or never ran).
        Unavailable = "unavailable",
        /// A timeout, a 5xx, a broken connection.
        Error = "error",
    }
}

/// The lines attached to a report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerLog {
    /// Oldest first, scrubbed.
    pub lines: Vec<String>,
    /// Whether these are the previous instance's lines.
    pub previous: bool,
    /// Older lines (or the end of long ones) were left out to stay within bounds.
    pub truncated: bool,
    /// How many secrets were replaced with `[Filtered]`.
    pub scrubbed: usize,
}

/// Reads the lines of terminated containers.
pub struct LogReader {
    client: kube::Client,
    lines: usize,
    scrubber: Arc<Scrubber>,
    warned_forbidden: AtomicBool,
}

impl LogReader {
    /// Reads up to `lines` lines per crash; `lines` is at least 1.
    pub fn new(client: kube::Client, lines: usize, scrubber: Arc<Scrubber>) -> Self {
        Self {
            client,
            lines: lines.max(1),
            scrubber,
            warned_forbidden: AtomicBool::new(false),
        }
    }

    /// The last lines of the instance whose termination `event` is; `None` (with why) if
    /// they cannot be read. Events other than terminations have none.
    pub async fn read(&self, event: &KubeEvent) -> (Option<ContainerLog>, Option<LogOutcome>) {
        let (Some(termination), Some(container)) =
            (event.termination.as_ref(), event.involved.container())
        else {
            return (None, None);
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &event.involved.namespace);
        let params = LogParams {
            container: Some(container.to_string()),
            previous: termination.previous,
            tail_lines: Some(self.lines as i64),
            limit_bytes: Some((self.lines * BYTES_PER_LINE).min(MAX_READ_BYTES) as i64),
            ..Default::default()
        };
        let read = tokio::time::timeout(READ_TIMEOUT, api.logs(&event.involved.name, &params));
        let outcome = match read.await {
            Ok(Ok(text)) => return self.attach(&text, termination.previous),
            Err(_) => LogOutcome::Error,
            Ok(Err(kube::Error::Api(status))) => match status.code {
                403 => {
                    if !self.warned_forbidden.swap(true, Ordering::Relaxed) {
                        warn!(
                            "cannot read container logs ({}); crash reports go without them. \
                             Grant get on pods/log, or set SENTRY_K8S_CONTAINER_LOGS=0 (logged once)",
                            status.message
                        );
                    }
                    LogOutcome::Forbidden
                }
                404 => LogOutcome::NotFound,
                400 => LogOutcome::Unavailable,
                _ => LogOutcome::Error,
            },
            Ok(Err(_)) => LogOutcome::Error,
        };
        debug!(
            namespace = %event.involved.namespace,
            pod = %event.involved.name,
            container,
            outcome = outcome.as_str(),
            "no container log lines for the report"
        );
        (None, Some(outcome))
    }

    fn attach(&self, text: &str, previous: bool) -> (Option<ContainerLog>, Option<LogOutcome>) {
        let log = bounded(text, self.lines, &self.scrubber, previous);
        if log.lines.is_empty() {
            return (None, Some(LogOutcome::Empty));
        }
        (Some(log), Some(LogOutcome::Attached))
    }
}

/// The last `lines` lines of `text`, scrubbed, each within [`MAX_LINE_CHARS`] and all
/// within [`MAX_LOG_CHARS`] (the oldest are dropped first).
pub fn bounded(text: &str, lines: usize, scrubber: &Scrubber, previous: bool) -> ContainerLog {
    let (text, scrubbed) = scrubber.scrub(text);
    let all: Vec<&str> = text.lines().collect();
    let mut truncated = all.len() > lines;
    let mut kept: Vec<String> = Vec::new();
    let mut total = 0;
    for line in all.iter().rev().take(lines) {
        let line = truncate(line, MAX_LINE_CHARS);
        truncated |= matches!(line, std::borrow::Cow::Owned(_));
        let chars = line.chars().count();
        if total + chars > MAX_LOG_CHARS {
            truncated = true;
            break;
        }
        total += chars;
        kept.push(line.into_owned());
    }
    kept.reverse();
    ContainerLog {
        lines: kept,
        previous,
        truncated,
        scrubbed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_within_bounds_scrubbed() {
        let scrubber = Scrubber::new(&[]);
        let log = bounded("a\nb\npassword=x\nd\n", 2, &scrubber, true);
        assert_eq!(log.lines, ["password=[Filtered]", "d"]);
        assert_eq!((log.truncated, log.scrubbed, log.previous), (true, 1, true));

        let long = format!("{}\nlast\n", "é".repeat(MAX_LINE_CHARS * 2));
        let log = bounded(&long, 10, &scrubber, false);
        assert_eq!(log.lines[0].chars().count(), MAX_LINE_CHARS);
        assert_eq!(log.lines[1], "last");
        assert!(log.truncated);

        let many = format!("{}\n", "x".repeat(MAX_LINE_CHARS));
        let log = bounded(&many.repeat(100), 100, &scrubber, false);
        let total: usize = log.lines.iter().map(|l| l.chars().count()).sum();
        assert!(total <= MAX_LOG_CHARS && log.truncated);
        assert_eq!(log.lines.len(), MAX_LOG_CHARS / MAX_LINE_CHARS);

        let log = bounded("", 10, &scrubber, false);
        assert!(log.lines.is_empty() && !log.truncated);
    }
}
