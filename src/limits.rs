//! Sentry's size limits, and cutting text to them. At the bottom of the crate: the event
//! builder and the breadcrumb trail both cut to these limits.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Sentry truncates longer messages; we cut first, on a character boundary, and say so.
pub const MAX_MESSAGE_CHARS: usize = 8192;
/// Sentry's limit for tag values (longer ones are dropped by ingestion).
pub const MAX_TAG_VALUE_CHARS: usize = 200;
/// Sentry's limit for tag keys.
pub const MAX_TAG_KEY_CHARS: usize = 200;
/// Breadcrumb messages are cut here: enough to read, bounded in memory and in the event.
pub const MAX_CRUMB_MESSAGE_CHARS: usize = 512;
/// Every string in a context (names, reasons, components) is cut here.
pub const MAX_CONTEXT_STRING_CHARS: usize = 1024;
/// Sentry's limit for the culprit.
pub const MAX_CULPRIT_CHARS: usize = 200;
/// Each part of a fingerprint is cut here (a reason can be any length).
pub const MAX_FINGERPRINT_PART_CHARS: usize = 200;
/// Sentry keeps an event's own timestamp only within this much in the past...
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// ...and this much in the future; outside, it takes the time of receipt.
pub const MAX_AHEAD: Duration = Duration::from_secs(60);

/// Cuts to at most `max` characters (at least 1), marking the cut with an ellipsis.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    let max = max.max(1);
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let cut = text
                .char_indices()
                .nth(max - 1)
                .map_or(text.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &text[..cut]))
        }
    }
}

/// A valid tag value: one line, no control characters, not empty, within the limit.
pub fn tag_value(raw: &str) -> Option<String> {
    // Almost every value already is one: a single copy.
    let clean = |c: char| !c.is_control() && !c.is_whitespace();
    if raw.len() <= MAX_TAG_VALUE_CHARS
        && raw.starts_with(clean)
        && raw.ends_with(clean)
        && !raw.chars().any(char::is_control)
    {
        return Some(raw.to_owned());
    }
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| truncate(trimmed, MAX_TAG_VALUE_CHARS).into_owned())
}

/// A valid tag key: letters, digits, `_`, `.`, `:` and `-` (anything else becomes `_`),
/// within the limit; none when nothing is left.
pub fn tag_key(raw: &str) -> Option<String> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-');
    if !raw.is_empty() && raw.len() <= MAX_TAG_KEY_CHARS && raw.bytes().all(valid) {
        return Some(raw.to_owned());
    }
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_TAG_KEY_CHARS)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// The time Sentry is told an occurrence happened: its own time when Sentry would keep it
/// (not older than [`MAX_AGE`], not more than [`MAX_AHEAD`] in the future, never before
/// 1970), else `now`; and whether it was replaced.
pub fn event_time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> (DateTime<Utc>, bool) {
    let earliest = (now - MAX_AGE).max(DateTime::UNIX_EPOCH);
    match at {
        Some(at) if at >= earliest && at <= now + MAX_AHEAD => (at, false),
        Some(_) => (now, true),
        None => (now, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_characters_and_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abc", 0), "…");
        assert_eq!(tag_value(" a\nb "), Some("a b".into()));
        assert_eq!(tag_value("\n\t"), None);
        assert_eq!(tag_value("nœud 7 (zone b)"), Some("nœud 7 (zone b)".into()));
        assert_eq!(
            tag_value("a\u{85}b"),
            Some("a b".into()),
            "a control inside"
        );
        assert_eq!(tag_value(""), None);
        assert_eq!(tag_key("pod_name").as_deref(), Some("pod_name"));
        assert_eq!(tag_key("").as_deref(), None);
        assert_eq!(
            tag_value(&"x".repeat(500)).unwrap().chars().count(),
            MAX_TAG_VALUE_CHARS
        );
        assert_eq!(tag_key("my kind_name").as_deref(), Some("my_kind_name"));
        assert_eq!(tag_key(&"k".repeat(500)).unwrap().len(), MAX_TAG_KEY_CHARS);
        assert_eq!(tag_key(" "), None);
    }

    #[test]
    fn times_sentry_would_not_keep_become_the_time_of_receipt() {
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        let t = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(
            event_time(t("2026-11-29T11:00:00Z"), now),
            (t("2026-11-29T11:00:00Z").unwrap(), false)
        );
        assert_eq!(event_time(t("1969-12-31T23:59:59Z"), now), (now, true));
        assert_eq!(event_time(t("2026-10-01T00:00:00Z"), now), (now, true));
        assert!(
            !event_time(t("2026-11-29T12:00:30Z"), now).1,
            "30 s ahead is kept"
        );
        assert_eq!(event_time(t("9999-01-01T00:00:00Z"), now), (now, true));
        assert_eq!(event_time(None, now), (now, false));
    }
}
