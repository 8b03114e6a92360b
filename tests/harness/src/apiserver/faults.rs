//! What tests inject: failures, delays, RBAC denials, partitions; and the request log.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The next `count` requests whose path contains `path` (and, if set, use `method`)
/// are answered with `status` and a `Status` body instead of being served.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FailRule {
    pub path: String,
    #[serde(default)]
    pub method: Option<String>,
    pub status: u16,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub message: Option<String>,
    /// Sent as `Retry-After` (seconds), e.g. with 429.
    #[serde(default)]
    pub retry_after: Option<u32>,
}

/// Requests whose path contains `path` wait `millis` before being served
/// (the next `count` of them, or all when `count` is absent).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DelayRule {
    pub path: String,
    #[serde(default)]
    pub method: Option<String>,
    pub millis: u64,
    #[serde(default)]
    pub count: Option<u32>,
}

/// Denies `verb` ("*" for all) on `resource` (plural, "*" for all) in `group` ("" is core;
/// absent matches every group), in `namespace` (absent: everywhere, cluster scope included).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DenyRule {
    pub verb: String,
    pub resource: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

fn one() -> u32 {
    1
}

impl DenyRule {
    pub fn matches(
        &self,
        verb: &str,
        resource: &str,
        group: &str,
        namespace: Option<&str>,
    ) -> bool {
        (self.verb == "*" || self.verb == verb)
            && (self.resource == "*" || self.resource == resource)
            && self.group.as_deref().is_none_or(|g| g == group)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| namespace == Some(ns))
    }
}

fn method_matches(rule: Option<&str>, method: &str) -> bool {
    rule.is_none_or(|m| m.eq_ignore_ascii_case(method))
}

/// One served request, as `/_fake/requests` reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub accept: String,
    pub user: String,
    pub status: u16,
    pub watch: bool,
}

/// The bounded log of served requests (oldest dropped first).
pub struct RequestLog {
    capacity: usize,
    next_seq: u64,
    records: VecDeque<RequestRecord>,
}

impl RequestLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next_seq: 1,
            records: VecDeque::new(),
        }
    }

    pub fn push(&mut self, mut record: RequestRecord) {
        record.seq = self.next_seq;
        self.next_seq += 1;
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub fn since(&self, seq: u64) -> Vec<RequestRecord> {
        self.records
            .iter()
            .filter(|r| r.seq > seq)
            .cloned()
            .collect()
    }

    pub fn clear(&mut self) {
        self.records.clear();
    }
}

#[derive(Default)]
pub struct Faults {
    pub fail: Vec<FailRule>,
    pub delay: Vec<DelayRule>,
    pub deny: Vec<DenyRule>,
}

impl Faults {
    /// Takes one use of the first failure rule matching this request.
    pub fn take_failure(&mut self, method: &str, path: &str) -> Option<FailRule> {
        let idx = self
            .fail
            .iter()
            .position(|r| path.contains(&r.path) && method_matches(r.method.as_deref(), method))?;
        let rule = self.fail[idx].clone();
        self.fail[idx].count -= 1;
        if self.fail[idx].count == 0 {
            self.fail.remove(idx);
        }
        Some(rule)
    }

    /// The delay to apply to this request, taking one use of a counted rule.
    pub fn take_delay(&mut self, method: &str, path: &str) -> Option<Duration> {
        let idx = self
            .delay
            .iter()
            .position(|r| path.contains(&r.path) && method_matches(r.method.as_deref(), method))?;
        let millis = self.delay[idx].millis;
        if let Some(count) = self.delay[idx].count.as_mut() {
            *count -= 1;
            if *count == 0 {
                self.delay.remove(idx);
            }
        }
        Some(Duration::from_millis(millis))
    }

    pub fn denied(&self, verb: &str, resource: &str, group: &str, namespace: Option<&str>) -> bool {
        self.deny
            .iter()
            .any(|r| r.matches(verb, resource, group, namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rules_are_used_up() {
        let mut faults = Faults::default();
        faults.fail.push(FailRule {
            path: "/events".into(),
            method: Some("GET".into()),
            status: 500,
            count: 2,
            message: None,
            retry_after: None,
        });
        assert!(faults.take_failure("POST", "/api/v1/events").is_none());
        assert!(faults.take_failure("get", "/api/v1/events").is_some());
        assert!(faults.take_failure("GET", "/api/v1/events").is_some());
        assert!(faults.take_failure("GET", "/api/v1/events").is_none());
    }

    #[test]
    fn deny_rules_scope_by_namespace_and_group() {
        let rule = DenyRule {
            verb: "watch".into(),
            resource: "events".into(),
            group: Some(String::new()),
            namespace: Some("prod".into()),
        };
        assert!(rule.matches("watch", "events", "", Some("prod")));
        assert!(!rule.matches("watch", "events", "", None));
        assert!(!rule.matches("watch", "events", "events.k8s.io", Some("prod")));
        assert!(!rule.matches("list", "events", "", Some("prod")));
    }
}
