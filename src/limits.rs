//! Sentry's size limits, and cutting text to them. At the bottom of the crate: the event
//! builder and the breadcrumb trail both cut to these limits.

use std::borrow::Cow;

/// Sentry truncates longer messages; we cut first, on a character boundary, and say so.
pub const MAX_MESSAGE_CHARS: usize = 8192;
/// Sentry's limit for tag values (longer ones are dropped by ingestion).
pub const MAX_TAG_VALUE_CHARS: usize = 200;
/// Sentry's limit for tag keys.
pub const MAX_TAG_KEY_CHARS: usize = 200;
/// Breadcrumb messages are cut here: enough to read, bounded in memory and in the event.
pub const MAX_CRUMB_MESSAGE_CHARS: usize = 512;

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
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| truncate(trimmed, MAX_TAG_VALUE_CHARS).into_owned())
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
        assert_eq!(
            tag_value(&"x".repeat(500)).unwrap().chars().count(),
            MAX_TAG_VALUE_CHARS
        );
    }
}
