//! How events group into Sentry issues: the reference agent's message rules (the kubelet's
//! aggregation prefix, its five message patterns) and the fingerprint built from them.

/// The kubelet's prefix on aggregated messages.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// The message without the aggregation prefix, and whether it had one.
pub fn strip_combined(message: &str) -> (&str, bool) {
    match message.strip_prefix(COMBINED_PREFIX) {
        Some(rest) => (rest, true),
        None => (message, false),
    }
}

/// One of the reference agent's message patterns, with the key it groups by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub id: &'static str,
    pub key: String,
}

/// `^Memory cgroup out of memory: Killed process (\d+) \(([^)]+)\)` → the process name.
fn oom_killed(message: &str) -> Option<String> {
    let rest = message.strip_prefix("Memory cgroup out of memory: Killed process ")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = rest[digits..].strip_prefix(" (")?;
    let end = rest.find(')')?;
    (end > 0).then(|| rest[..end].to_string())
}

/// `^0/\d+ nodes are available:`
fn nodes_unavailable(message: &str) -> bool {
    message
        .strip_prefix("0/")
        .map(|rest| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with(" nodes are available:")
        })
        .unwrap_or(false)
}

/// `(?i)^Exec lifecycle hook .* for Container "([^"]+)"` → the container.
fn lifecycle_hook(message: &str) -> Option<String> {
    let head = message.get(..19)?;
    if !head.eq_ignore_ascii_case("exec lifecycle hook") {
        return None;
    }
    let lower = message.to_ascii_lowercase();
    let at = lower.find(" for container \"")?;
    let rest = &message[at + " for container \"".len()..];
    let end = rest.find('"')?;
    (end > 0).then(|| rest[..end].to_string())
}

/// The first reference pattern the (prefix-stripped) message matches.
pub fn message_pattern(message: &str) -> Option<Pattern> {
    if let Some(process) = oom_killed(message) {
        return Some(Pattern {
            id: "oom-killed-process",
            key: process,
        });
    }
    if message.starts_with("Readiness probe failed:") {
        return Some(Pattern {
            id: "readiness-probe-failed",
            key: String::new(),
        });
    }
    if nodes_unavailable(message) {
        return Some(Pattern {
            id: "nodes-unavailable",
            key: String::new(),
        });
    }
    if message.starts_with("Liveness probe failed:") {
        return Some(Pattern {
            id: "liveness-probe-failed",
            key: String::new(),
        });
    }
    lifecycle_hook(message).map(|container| Pattern {
        id: "lifecycle-hook-failed",
        key: container,
    })
}

/// The grouping scope of an event: what it is about, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    pub cluster: Option<&'a str>,
    pub namespace: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub reason: &'a str,
    pub container: Option<&'a str>,
}

/// `[cluster?, namespace, kind, name, reason, container?]`, then the pattern's id and key.
pub fn fingerprint(scope: &Scope<'_>, message: &str) -> Vec<String> {
    let mut parts = Vec::with_capacity(8);
    if let Some(cluster) = scope.cluster {
        parts.push(cluster.to_string());
    }
    parts.extend([scope.namespace, scope.kind, scope.name, scope.reason].map(str::to_string));
    if let Some(container) = scope.container {
        parts.push(format!("container:{container}"));
    }
    if let Some(pattern) = message_pattern(strip_combined(message).0) {
        parts.push(pattern.id.to_string());
        if !pattern.key.is_empty() {
            parts.push(pattern.key);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_reference_patterns_and_their_keys() {
        let oom =
            message_pattern("Memory cgroup out of memory: Killed process 4242 (java) total-vm:1GB")
                .unwrap();
        assert_eq!((oom.id, oom.key.as_str()), ("oom-killed-process", "java"));
        assert_eq!(
            message_pattern("Readiness probe failed: HTTP probe failed with statuscode: 503")
                .unwrap()
                .id,
            "readiness-probe-failed"
        );
        assert_eq!(
            message_pattern(
                "Liveness probe failed: Get \"http://10.0.0.1:8080/healthz\": dial tcp"
            )
            .unwrap()
            .id,
            "liveness-probe-failed"
        );
        assert_eq!(
            message_pattern(
                "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available"
            )
            .unwrap()
            .id,
            "nodes-unavailable"
        );
        let hook = message_pattern("Exec lifecycle hook ([/bin/sh -c sleep 5]) for Container \"app\" in Pod \"web-1_shop(uid)\" failed").unwrap();
        assert_eq!(
            (hook.id, hook.key.as_str()),
            ("lifecycle-hook-failed", "app")
        );
        assert!(message_pattern("exec LIFECYCLE hook x for container \"db\" failed").is_some());
        assert!(message_pattern("Memory cgroup out of memory: Killed process (java)").is_none());
        assert!(message_pattern("10/3 nodes are available:").is_none());
        assert!(message_pattern("Back-off restarting failed container").is_none());
    }

    #[test]
    fn fingerprints_scope_by_object_and_reason_not_message_text() {
        let scope = Scope {
            cluster: None,
            namespace: "shop",
            kind: "Pod",
            name: "web-1",
            reason: "BackOff",
            container: Some("app"),
        };
        let a = fingerprint(
            &scope,
            "Back-off restarting failed container app in pod web-1_shop(0a1b)",
        );
        let b = fingerprint(
            &scope,
            "(combined from similar events): Back-off restarting failed container app in pod web-1_shop(9z8y)",
        );
        assert_eq!(a, b);
        assert_eq!(a, ["shop", "Pod", "web-1", "BackOff", "container:app"]);
        let with_cluster = Scope {
            cluster: Some("eu-1"),
            ..scope.clone()
        };
        assert_eq!(fingerprint(&with_cluster, "x")[0], "eu-1");
        let oom = fingerprint(
            &Scope {
                reason: "OOMKilling",
                ..scope
            },
            "Memory cgroup out of memory: Killed process 1 (nginx)",
        );
        assert_eq!(&oom[5..], ["oom-killed-process", "nginx"]);
        assert_eq!(
            strip_combined("(combined from similar events): x"),
            ("x", true)
        );
    }
}
