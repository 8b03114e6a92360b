//! Scrubbing what containers wrote — log lines and termination messages — before it
//! leaves the cluster: built-in rules for the usual secrets, plus the operator's
//! `SENTRY_K8S_SCRUB_PATTERNS`. Every match becomes `[Filtered]` (Sentry's own mark);
//! the built-in rules keep the key (`password=[Filtered]`) so the line still reads.

use std::borrow::Cow;

use regex::{Captures, Regex};

/// What a match is replaced with.
pub const FILTERED: &str = "[Filtered]";

/// The built-in rules: a pattern and its replacement.
const BUILT_IN: &[(&str, &str)] = &[
    // `password=…`, `"api_key": "…"`, `DB_PASSWORD: …`, `client_secret=…`.
    (
        r#"(?i)(?P<key>\b[\w.-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)[\w.-]*)(?P<sep>["']?\s*[:=]\s*["']?)[^\s"',;&]+"#,
        "${key}${sep}[Filtered]",
    ),
    // `Authorization: Bearer …`, `Basic …`.
    (
        r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
        "${scheme} [Filtered]",
    ),
    // Credentials in URLs (`postgres://user:pass@db`, a DSN's key).
    (
        r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@]+@",
        "${scheme}[Filtered]@",
    ),
    // JSON Web Tokens.
    (
        r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+",
        "[Filtered]",
    ),
    // AWS access key IDs, GitHub and Slack tokens.
    (
        r"\b(?:(?:AKIA|ASIA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[abprs]-[A-Za-z0-9-]{10,})\b",
        "[Filtered]",
    ),
    // Private keys, to their end (or the end of the text).
    (
        r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\z)",
        "[Filtered]",
    ),
];

struct Rule {
    pattern: Regex,
    replacement: &'static str,
}

/// The rules, compiled once.
pub struct Scrubber {
    rules: Vec<Rule>,
}

impl Scrubber {
    /// The built-in rules and then `extra` (matched whole).
    pub fn new(extra: &[Regex]) -> Self {
        let built_in = BUILT_IN.iter().map(|(pattern, replacement)| Rule {
            pattern: Regex::new(pattern).expect("the built-in patterns are valid"),
            replacement,
        });
        let extra = extra.iter().map(|pattern| Rule {
            pattern: pattern.clone(),
            replacement: FILTERED,
        });
        Self {
            rules: built_in.chain(extra).collect(),
        }
    }

    /// `text` with every match replaced, and how many there were.
    pub fn scrub<'a>(&self, text: &'a str) -> (Cow<'a, str>, usize) {
        let mut out = Cow::Borrowed(text);
        let mut matches = 0;
        for rule in &self.rules {
            let replaced = rule.pattern.replace_all(&out, |caps: &Captures<'_>| {
                matches += 1;
                let mut expanded = String::new();
                caps.expand(rule.replacement, &mut expanded);
                expanded
            });
            if let Cow::Owned(changed) = replaced {
                out = Cow::Owned(changed);
            }
        }
        (out, matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(text: &str) -> String {
        Scrubber::new(&[]).scrub(text).0.into_owned()
    }

    #[test]
    fn the_usual_secrets_are_filtered_and_their_keys_kept() {
        for (line, expected) in [
            (
                "connecting with password=hunter2 to db",
                "connecting with password=[Filtered] to db",
            ),
            (
                r#"{"api_key": "sk_live_abc123", "user": "ann"}"#,
                r#"{"api_key": "[Filtered]", "user": "ann"}"#,
            ),
            ("DB_PASSWORD: s3cr3t", "DB_PASSWORD: [Filtered]"),
            (
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG",
                "AWS_SECRET_ACCESS_KEY=[Filtered]",
            ),
            (
                "Authorization: Bearer abcdef0123456789.x",
                "Authorization: Bearer [Filtered]",
            ),
            (
                "dial postgres://app:pa55@db.shop:5432/orders",
                "dial postgres://[Filtered]@db.shop:5432/orders",
            ),
            (
                "sentry https://0123abcd@o1.ingest.sentry.io/2",
                "sentry https://[Filtered]@o1.ingest.sentry.io/2",
            ),
            ("key AKIAIOSFODNN7EXAMPLE used", "key [Filtered] used"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_x end",
                "jwt [Filtered] end",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\nnext",
                "[Filtered]\nnext",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIE (cut by tailLines)",
                "[Filtered]",
            ),
        ] {
            assert_eq!(scrub(line), expected, "{line}");
        }
    }

    #[test]
    fn ordinary_lines_are_untouched_and_borrowed() {
        let scrubber = Scrubber::new(&[]);
        for line in [
            "GET /healthz 200 1.2ms",
            "token expired, refreshing",
            "panic: runtime error: index out of range [3] with length 3",
            "Killed process 4242 (java) total-vm:4194304kB",
        ] {
            let (out, n) = scrubber.scrub(line);
            assert!(matches!(out, Cow::Borrowed(_)), "{line}");
            assert_eq!(n, 0);
        }
    }

    #[test]
    fn the_operators_patterns_add_to_the_built_in_ones_and_matches_are_counted() {
        let extra = [Regex::new(r"\b\d{3}-\d{2}-\d{4}\b").unwrap()];
        let (out, n) =
            Scrubber::new(&extra).scrub("ssn 123-45-6789 and password=x and 987-65-4321");
        assert_eq!(out, "ssn [Filtered] and password=[Filtered] and [Filtered]");
        assert_eq!(n, 3);
    }
}
