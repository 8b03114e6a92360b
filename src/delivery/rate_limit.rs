//! Sentry's rate-limit answers: `X-Sentry-Rate-Limits` (per category) and `Retry-After`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What Sentry asks for when a 429 carries neither header.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Until when each data category (or everything) may not be sent, for one DSN.
#[derive(Debug, Default, Clone)]
pub struct RateLimits {
    all: Option<Instant>,
    categories: HashMap<String, Instant>,
}

fn later(current: Option<Instant>, until: Instant) -> Instant {
    current.map_or(until, |c| c.max(until))
}

/// `Retry-After`: delay-seconds (an HTTP date is read as the default).
fn parse_retry_after(value: &str) -> Duration {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

impl RateLimits {
    /// Applies the headers of a response. `X-Sentry-Rate-Limits` wins over `Retry-After`;
    /// a 429 with neither blocks everything for [`DEFAULT_RETRY_AFTER`].
    pub fn update(
        &mut self,
        status: u16,
        retry_after: Option<&str>,
        rate_limits: Option<&str>,
        now: Instant,
    ) {
        if let Some(header) = rate_limits.filter(|h| !h.trim().is_empty()) {
            for limit in header.split(',') {
                let mut parts = limit.trim().split(':');
                let secs = parts.next().and_then(|s| s.trim().parse::<f64>().ok());
                let Some(secs) = secs.filter(|s| s.is_finite() && *s >= 0.0) else {
                    continue;
                };
                let until = now + Duration::from_secs_f64(secs);
                let categories = parts.next().unwrap_or("");
                if categories.trim().is_empty() {
                    self.all = Some(later(self.all, until));
                } else {
                    for category in categories
                        .split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                    {
                        let current = self.categories.get(category).copied();
                        self.categories
                            .insert(category.to_string(), later(current, until));
                    }
                }
            }
        } else if status == 429 {
            let wait = retry_after.map_or(DEFAULT_RETRY_AFTER, parse_retry_after);
            self.all = Some(later(self.all, now + wait));
        }
    }

    /// How long `category` must still wait, if at all.
    pub fn blocked_for(&self, category: &str, now: Instant) -> Option<Duration> {
        let until = self
            .all
            .into_iter()
            .chain(self.categories.get(category).copied())
            .max()?;
        (until > now).then(|| until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_header_limits_named_categories_only() {
        let now = Instant::now();
        let mut limits = RateLimits::default();
        limits.update(
            429,
            Some("5"),
            Some("60:error;transaction:organization, 10:attachment:project"),
            now,
        );
        assert_eq!(
            limits.blocked_for("error", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            limits.blocked_for("attachment", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(limits.blocked_for("session", now), None);
        assert_eq!(
            limits.blocked_for("error", now + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn retry_after_or_the_default_blocks_everything_on_429() {
        let now = Instant::now();
        let mut limits = RateLimits::default();
        limits.update(429, Some("7"), None, now);
        assert_eq!(
            limits.blocked_for("error", now),
            Some(Duration::from_secs(7))
        );
        let mut limits = RateLimits::default();
        limits.update(429, None, None, now);
        assert_eq!(
            limits.blocked_for("anything", now),
            Some(DEFAULT_RETRY_AFTER)
        );
        let mut limits = RateLimits::default();
        limits.update(200, Some("7"), None, now);
        assert_eq!(limits.blocked_for("error", now), None);
        limits.update(200, None, Some("30::organization"), now);
        assert_eq!(
            limits.blocked_for("error", now),
            Some(Duration::from_secs(30))
        );
    }
}
