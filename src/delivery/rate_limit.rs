//! Sentry's rate-limit answers, read the way its SDK developer documentation says:
//! `X-Sentry-Rate-Limits` first (`retry_after:categories:scope:…`, categories separated by
//! `;`, an empty list meaning every category); without it, a 429's `Retry-After` (seconds or
//! an HTTP date); without that, 60 seconds. A 429 always backs off at least the categories
//! of the envelope it answered, whatever the header names.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// What Sentry asks for when a 429 carries neither header.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The longest wait any header can impose (a day); a larger value is read as this.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The data category of an envelope, as rate limits name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// Error events.
    Error,
    /// Crons check-ins.
    Monitor,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Error => "error",
            Category::Monitor => "monitor",
        }
    }

    pub const ALL: [Category; 2] = [Category::Error, Category::Monitor];
}

/// The headers of one response that rate limiting reads.
#[derive(Clone, Debug, Default)]
pub struct Answer<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub rate_limits: Option<&'a str>,
}

/// Until when each category (or everything) may not be sent, for one destination.
#[derive(Debug, Default, Clone)]
pub struct RateLimits {
    all: Option<Instant>,
    categories: HashMap<&'static str, Instant>,
}

fn later(current: Option<Instant>, until: Instant) -> Instant {
    current.map_or(until, |c| c.max(until))
}

fn seconds(value: &str) -> Option<Duration> {
    let secs = value.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
}

/// `Retry-After`: delay-seconds or an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(wait) = seconds(value) {
        return Some(wait);
    }
    let date = DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let wait = (date.with_timezone(&Utc) - now)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_WAIT))
}

impl RateLimits {
    /// Applies one response to an envelope of `category`.
    pub fn update(
        &mut self,
        answer: &Answer<'_>,
        category: Category,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        let mut covers_own = false;
        if let Some(header) = answer.rate_limits.filter(|h| !h.trim().is_empty()) {
            for limit in header.split(',') {
                let mut parts = limit.trim().split(':');
                let Some(wait) = parts.next().and_then(seconds) else {
                    continue;
                };
                let until = now + wait;
                let categories = parts.next().unwrap_or("").trim();
                if categories.is_empty() {
                    self.all = Some(later(self.all, until));
                    covers_own = true;
                    continue;
                }
                for name in categories.split(';').map(str::trim) {
                    let Some(known) = Category::ALL.iter().find(|c| c.as_str() == name) else {
                        continue;
                    };
                    covers_own |= *known == category;
                    let current = self.categories.get(known.as_str()).copied();
                    self.categories
                        .insert(known.as_str(), later(current, until));
                }
            }
        }
        if answer.status == 429 && !covers_own {
            let wait = answer
                .retry_after
                .and_then(|v| parse_retry_after(v, wall))
                .unwrap_or(DEFAULT_RETRY_AFTER);
            let current = self.categories.get(category.as_str()).copied();
            self.categories
                .insert(category.as_str(), later(current, now + wait));
        }
    }

    /// How long `category` must still wait, if at all.
    pub fn blocked_for(&self, category: Category, now: Instant) -> Option<Duration> {
        let until = self
            .all
            .into_iter()
            .chain(self.categories.get(category.as_str()).copied())
            .max()?;
        (until > now).then(|| until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer<'a>(
        status: u16,
        retry_after: Option<&'a str>,
        rate_limits: Option<&'a str>,
    ) -> Answer<'a> {
        Answer {
            status,
            retry_after,
            rate_limits,
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_rate_limit_header_limits_the_categories_it_names() {
        let (now, wall) = (Instant::now(), Utc::now());
        let mut limits = RateLimits::default();
        limits.update(
            &answer(
                429,
                Some("5"),
                Some("60:error;transaction:organization, 10:monitor:project"),
            ),
            Category::Error,
            now,
            wall,
        );
        assert_eq!(limits.blocked_for(Category::Error, now), Some(60 * SECOND));
        assert_eq!(
            limits.blocked_for(Category::Monitor, now),
            Some(10 * SECOND)
        );
        assert_eq!(limits.blocked_for(Category::Error, now + 61 * SECOND), None);
    }

    #[test]
    fn an_empty_category_list_limits_everything_even_on_a_200() {
        let (now, wall) = (Instant::now(), Utc::now());
        let mut limits = RateLimits::default();
        limits.update(
            &answer(200, None, Some("30::organization")),
            Category::Monitor,
            now,
            wall,
        );
        assert_eq!(limits.blocked_for(Category::Error, now), Some(30 * SECOND));
        assert_eq!(
            limits.blocked_for(Category::Monitor, now),
            Some(30 * SECOND)
        );
    }

    #[test]
    fn a_429_naming_other_categories_still_backs_off_the_envelopes_own() {
        let (now, wall) = (Instant::now(), Utc::now());
        let mut limits = RateLimits::default();
        limits.update(
            &answer(429, Some("7"), Some("60:transaction")),
            Category::Error,
            now,
            wall,
        );
        assert_eq!(limits.blocked_for(Category::Error, now), Some(7 * SECOND));
        assert_eq!(
            limits.blocked_for(Category::Monitor, now),
            None,
            "check-ins go on"
        );
        let mut limits = RateLimits::default();
        limits.update(
            &answer(429, None, Some("60:transaction")),
            Category::Error,
            now,
            wall,
        );
        assert_eq!(
            limits.blocked_for(Category::Error, now),
            Some(DEFAULT_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date_and_defaults_to_a_minute() {
        let (now, wall) = (Instant::now(), Utc::now());
        let date = (wall + chrono::Duration::seconds(90))
            .to_rfc2822()
            .replace("+0000", "GMT");
        let mut limits = RateLimits::default();
        limits.update(
            &answer(429, Some(&date), None),
            Category::Monitor,
            now,
            wall,
        );
        let wait = limits.blocked_for(Category::Monitor, now).unwrap();
        assert!(
            wait > 88 * SECOND && wait <= 90 * SECOND,
            "{wait:?} from {date}"
        );
        assert_eq!(limits.blocked_for(Category::Error, now), None);
        let mut limits = RateLimits::default();
        limits.update(&answer(429, Some("soon"), None), Category::Error, now, wall);
        assert_eq!(
            limits.blocked_for(Category::Error, now),
            Some(DEFAULT_RETRY_AFTER)
        );
        let mut limits = RateLimits::default();
        limits.update(&answer(200, Some("7"), None), Category::Error, now, wall);
        assert_eq!(
            limits.blocked_for(Category::Error, now),
            None,
            "only a 429 reads Retry-After"
        );
        assert_eq!(parse_retry_after("1e30", wall), Some(MAX_WAIT));
    }
}
