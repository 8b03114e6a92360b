//! The only place that knows the Sentry event protocol: builds each event whole from our
//! own types (never through a shared Hub scope, so nothing leaks between events), within
//! Sentry's size limits.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use sentry::protocol::{ClientSdkInfo, Event, Level, Map};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::Config;
use crate::crons::slug::SlugBook;
use crate::enrich::Enrichment;
use crate::event::{KubeEvent, Termination};
use crate::gke::Gke;
use crate::grouping::{self, Scope};
use crate::limits::{
    MAX_CONTEXT_STRING_CHARS, MAX_CULPRIT_CHARS, MAX_FINGERPRINT_PART_CHARS, MAX_MESSAGE_CHARS,
    event_time, tag_key, tag_value, truncate,
};
use crate::report::Report;

/// Namespace for deterministic event ids: the same occurrence always gets the same id, so
/// Sentry discards a resend instead of storing it twice.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1c_4f0e_8a52_4b7e_9c3d_2a51_e8f4_7b19);

/// What every event gets regardless of its content.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub cluster_name: Option<String>,
    pub global_tags: BTreeMap<String, String>,
    pub hostname: String,
    pub environment: Option<String>,
    pub release: Option<String>,
    /// The GKE cluster, when the integration is on and found it.
    pub gke: Option<Arc<Gke>>,
    /// The cluster's API endpoint and version, read once at start.
    pub kubernetes: Option<ClusterInfo>,
    /// The Crons monitors' slugs, when check-ins are sent: events under a CronJob name
    /// their monitor.
    pub monitors: Option<SlugBook>,
}

/// The cluster the agent reports on, for the `kubernetes` context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub api_endpoint: String,
    pub server_version: Option<String>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            cluster_name: config.cluster_name.clone(),
            global_tags: config.global_tags.clone(),
            hostname: config.hostname(),
            environment: config.environment.clone(),
            release: config.release.clone(),
            gke: None,
            kubernetes: None,
            monitors: None,
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The deterministic id of one occurrence of an event.
pub fn event_id(event: &KubeEvent) -> uuid::Uuid {
    let at = event.occurred_at().map(rfc3339).unwrap_or_default();
    let name = format!("{}|{}|{}|{}", event.uid, event.count(), at, event.reason);
    uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
}

fn insert_tag(tags: &mut BTreeMap<String, String>, key: &str, value: &str) {
    if let (Some(key), Some(value)) = (tag_key(key), tag_value(value)) {
        tags.insert(key, value);
    }
}

/// The event's contexts, written straight to JSON as the SDK would write its
/// `Context::Other` maps — `"type":"unknown"` first, then the fields by name; nulls and
/// empty strings left out at the top of a context; every string cut to
/// [`MAX_CONTEXT_STRING_CHARS`] — without building those maps: as `serde_json` values
/// they were a third of the agent's allocations per event.
struct Contexts(Vec<u8>);

impl Contexts {
    fn new() -> Self {
        let mut out = Vec::with_capacity(2048);
        out.push(b'{');
        Self(out)
    }

    /// Opens the context `name`; contexts must be opened in the order of their names.
    fn context(&mut self, name: &str) -> Object<'_> {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        string(&mut self.0, name);
        self.0.push(b':');
        let mut object = Object::open(&mut self.0);
        object.text("type", "unknown");
        object
    }

    /// The contexts' JSON, checked (serde_json parses it once more): a slip in this writer
    /// loses the contexts of the event, logged, never the event.
    fn finish(mut self) -> Option<Box<RawValue>> {
        if self.0.len() == 1 {
            return None;
        }
        self.0.push(b'}');
        let checked = String::from_utf8(self.0)
            .map_err(|e| e.to_string())
            .and_then(|json| RawValue::from_string(json).map_err(|e| e.to_string()));
        match checked {
            Ok(raw) => Some(raw),
            Err(why) => {
                debug_assert!(false, "the contexts writer wrote invalid JSON: {why}");
                tracing::error!(%why, "left out an event's contexts: they did not serialise");
                None
            }
        }
    }
}

fn string(out: &mut Vec<u8>, text: &str) {
    // Writing into memory cannot fail.
    let _ = serde_json::to_writer(out, text);
}

/// Labels or annotations, in the order the owner lookup kept them.
type Pairs<'a> = &'a [(String, String)];

/// One JSON object being written; [`Object::close`] ends it.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        string(self.out, key);
        self.out.push(b':');
    }

    /// A string, cut; left out when empty.
    fn text(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.text_always(key, value);
        }
    }

    /// A string, cut; written even when empty.
    fn text_always(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, &truncate(value, MAX_CONTEXT_STRING_CHARS));
    }

    fn some_text(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.text(key, value);
        }
    }

    fn time(&mut self, key: &str, value: Option<DateTime<Utc>>) {
        if let Some(value) = value {
            self.text(key, &rfc3339(value));
        }
    }

    fn value(&mut self, key: &str, value: impl Serialize) {
        self.key(key);
        let _ = serde_json::to_writer(&mut *self.out, &value);
    }

    fn some_value(&mut self, key: &str, value: Option<impl Serialize>) {
        if let Some(value) = value {
            self.value(key, value);
        }
    }

    fn object(&mut self, key: &str) -> Object<'_> {
        self.key(key);
        Object::open(self.out)
    }

    /// Labels or annotations, when there are any, by name (the owner cache keeps the
    /// agent's own annotations first).
    fn pairs(&mut self, key: &str, pairs: Pairs<'_>) {
        if pairs.is_empty() {
            return;
        }
        let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut object = self.object(key);
        for (name, value) in sorted {
            object.text_always(name, value);
        }
        object.close();
    }

    /// An array of what `write` writes for each item.
    fn array<T>(&mut self, key: &str, items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) {
        self.key(key);
        self.out.push(b'[');
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            write(self.out, item);
        }
        self.out.push(b']');
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// What only a container's termination adds: the container context (the Go agent's
/// `Container` context, field by field).
fn termination_context(
    contexts: &mut Contexts,
    termination: &Termination,
    container: Option<&str>,
    event: &KubeEvent,
) {
    let mut c = contexts.context("container");
    c.text("container_id", &termination.container_id);
    c.value("exit_code", termination.exit_code);
    c.text("field_path", &event.involved.field_path);
    c.time("finished_at", termination.finished_at);
    c.text("image", &termination.image);
    c.text(
        "instance",
        if termination.previous {
            "previous"
        } else {
            "current"
        },
    );
    c.some_text("name", container);
    c.text("reason", &event.reason);
    c.value("restart_count", termination.restart_count);
    c.some_value("signal", termination.signal);
    c.some_text("signal_name", termination.signal_name());
    c.time("started_at", termination.started_at);
    c.close();
}

/// The event's own context.
fn event_context(
    contexts: &mut Contexts,
    event: &KubeEvent,
    length: usize,
    original_time: Option<String>,
) {
    let mut c = contexts.context("kubernetes_event");
    c.text("action", &event.action);
    c.value("count", event.count());
    // Not "type": that key is the context's own type tag in the protocol.
    c.text("event_type", &event.event_type);
    c.time("first_seen", event.first_seen());
    c.time("last_seen", event.occurred_at());
    c.some_value(
        "message_length",
        (length > MAX_MESSAGE_CHARS).then_some(length),
    );
    c.text("name", &event.name);
    c.text("namespace", &event.namespace);
    // Kept when Sentry would not take it (before 1970, months old, in the future).
    c.some_text("original_time", original_time.as_deref());
    c.text("reason", &event.reason);
    c.text("reporting_controller", &event.reporting_controller);
    c.text("reporting_instance", &event.reporting_instance);
    c.text("resource_version", &event.resource_version);
    c.text("source_component", &event.source_component);
    c.text("source_host", &event.source_host);
    c.text("uid", &event.uid);
    c.close();
}

/// Says on an event how many occurrences of its issue storm control held back since the
/// last one reported: `extra.suppressed_occurrences` and a `storm_control` context.
pub fn add_suppressed(
    report: &mut Report,
    suppressed: u64,
    limit: usize,
    window: std::time::Duration,
) {
    report
        .event
        .extra
        .insert("suppressed_occurrences".into(), suppressed.into());
    let mut fields = Map::new();
    fields.insert("limit_per_window".into(), limit.into());
    fields.insert("suppressed_since_last_report".into(), suppressed.into());
    fields.insert("window_seconds".into(), window.as_secs().into());
    report.add_context("storm_control", fields);
}

/// The Sentry event for one occurrence of a Kubernetes event, enriched, as reported at
/// `now` (the timestamp when the event's own time is one Sentry would not keep).
pub fn to_sentry_event(
    event: &KubeEvent,
    enrichment: &Enrichment,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Report {
    let (message, combined) = grouping::strip_combined(&event.message);
    let involved = &event.involved;
    let object_name = if involved.name.is_empty() {
        &event.name
    } else {
        &involved.name
    };
    let full_message = format!("{object_name}: {message}");
    let length = full_message.chars().count();
    let container = involved.container();
    let root = enrichment.chain.root();
    let root_name = if root.name.is_empty() {
        object_name.as_str()
    } else {
        root.name.as_str()
    };

    let termination = event.termination.as_deref();
    let mut tags = BTreeMap::new();
    let watcher = if termination.is_some() {
        "pods"
    } else {
        "events"
    };
    insert_tag(&mut tags, "watcher_name", watcher);
    insert_tag(&mut tags, "namespace", &event.namespace);
    insert_tag(&mut tags, "reason", &event.reason);
    insert_tag(&mut tags, "kind", &involved.kind);
    insert_tag(&mut tags, "component", event.component());
    insert_tag(&mut tags, "event_type", &event.event_type);
    insert_tag(&mut tags, "event_source_component", event.component());
    insert_tag(&mut tags, "object_uid", &involved.uid);
    if involved.kind.is_empty() {
        insert_tag(&mut tags, "object_name", object_name);
    } else {
        insert_tag(
            &mut tags,
            &format!("{}_name", involved.kind.to_ascii_lowercase()),
            object_name,
        );
    }
    // pod_name, replicaset_name, deployment_name, job_name, cronjob_name, …: the chain.
    for owner in enrichment.chain.objects().skip(1) {
        if !owner.kind.is_empty() {
            insert_tag(
                &mut tags,
                &format!("{}_name", owner.kind.to_ascii_lowercase()),
                &owner.name,
            );
        }
    }
    insert_tag(&mut tags, "root_kind", &root.kind);
    insert_tag(&mut tags, "root_name", root_name);
    insert_tag(&mut tags, "agent_hostname", &settings.hostname);
    if let Some(container) = container {
        insert_tag(&mut tags, "container", container);
    }
    if let Some(termination) = termination {
        // The Go agent's tag for the container of a termination.
        insert_tag(&mut tags, "container_name", container.unwrap_or(""));
        insert_tag(&mut tags, "exit_code", &termination.exit_code.to_string());
        if let Some(signal) = termination.signal_name() {
            insert_tag(&mut tags, "signal", signal);
        }
    }
    if let Some(node) = &enrichment.node {
        insert_tag(&mut tags, "node_name", node);
    }
    if combined {
        insert_tag(&mut tags, "combined_from_similar", "true");
    }
    if let Some(cluster) = &settings.cluster_name {
        insert_tag(&mut tags, "cluster", cluster);
    }
    if let Some(gke) = &settings.gke {
        for (key, value) in gke.tags() {
            insert_tag(&mut tags, key, value);
        }
    }
    for (key, value) in &settings.global_tags {
        insert_tag(&mut tags, key, value);
    }

    // One issue per workload and reason: the root owner, not the pod, is the scope.
    let namespace = [&root.namespace, &involved.namespace, &event.namespace]
        .into_iter()
        .find(|ns| !ns.is_empty())
        .map_or("", |ns| ns.as_str());
    let scope = Scope {
        cluster: settings.cluster_name.as_deref(),
        namespace,
        kind: &root.kind,
        name: root_name,
        reason: &event.reason,
        container,
    };
    let fingerprint = grouping::fingerprint(&scope, &event.message);
    let (timestamp, replaced) = event_time(event.occurred_at(), now);

    // In the order of their names (see `Contexts`).
    let mut contexts = Contexts::new();
    if let Some(termination) = termination {
        termination_context(&mut contexts, termination, container, event);
    }
    if let Some(log) = &enrichment.logs {
        let mut c = contexts.context("container_log");
        c.text(
            "instance",
            if log.previous { "previous" } else { "current" },
        );
        c.array("lines", &log.lines, |out, line| {
            string(out, &truncate(line, MAX_CONTEXT_STRING_CHARS))
        });
        c.some_value("scrubbed", (log.scrubbed > 0).then_some(log.scrubbed));
        c.some_value("truncated", log.truncated.then_some(true));
        c.close();
    }
    if let Some(gke) = &settings.gke {
        let pod = enrichment.chain.objects().find(|o| o.kind == "Pod");
        let mut c = contexts.context("gke");
        c.text("cluster_location", &gke.cluster_location);
        c.text("cluster_name", &gke.cluster_name);
        c.some_text("cluster_url", gke.cluster_url().as_deref());
        c.some_text(
            "pod_logs_url",
            pod.and_then(|p| gke.pod_logs_url(namespace, &p.name))
                .as_deref(),
        );
        c.text("project", &gke.project_id);
        c.close();
    }
    // Labels and annotations as the owner lookups read them (bounded; never
    // managedFields or last-applied-configuration).
    fn metadata(link: &crate::owners::chain::Link) -> (Pairs<'_>, Pairs<'_>) {
        link.meta.as_ref().map_or((&[], &[]), |m| {
            (m.labels.as_slice(), m.annotations.as_slice())
        })
    }
    {
        let (labels, annotations) = metadata(&enrichment.chain.links[0]);
        let mut c = contexts.context("involved_object");
        c.pairs("annotations", annotations);
        c.text("api_version", &involved.api_version);
        c.text("field_path", &involved.field_path);
        c.text("kind", &involved.kind);
        c.pairs("labels", labels);
        c.text("name", &involved.name);
        c.text("namespace", &involved.namespace);
        c.text("uid", &involved.uid);
        c.close();
    }
    if let Some(kubernetes) = &settings.kubernetes {
        let mut c = contexts.context("kubernetes");
        c.text("api_endpoint", &kubernetes.api_endpoint);
        c.some_text("server_version", kubernetes.server_version.as_deref());
        c.close();
    }
    if termination.is_none() {
        let original = replaced.then(|| event.occurred_at().map(rfc3339)).flatten();
        event_context(&mut contexts, event, length, original);
    }
    if let (Some(book), Some(cronjob)) = (
        &settings.monitors,
        enrichment.chain.objects().find(|o| o.kind == "CronJob"),
    ) {
        let cronjob_namespace = if cronjob.namespace.is_empty() {
            namespace
        } else {
            &cronjob.namespace
        };
        let slug = book.slug(
            settings.cluster_name.as_deref(),
            cronjob_namespace,
            &cronjob.name,
        );
        let mut c = contexts.context("monitor");
        c.text("slug", &slug);
        c.close();
    }
    {
        let mut c = contexts.context("owners");
        c.array("chain", &enrichment.chain.links, |out, link| {
            let o = &link.object;
            let (labels, annotations) = metadata(link);
            let mut entry = Object::open(out);
            entry.pairs("annotations", annotations);
            entry.text_always("api_version", &o.api_version);
            entry.text_always("kind", &o.kind);
            entry.pairs("labels", labels);
            entry.text_always("name", &o.name);
            entry.text_always("uid", &o.uid);
            entry.close();
        });
        c.text("root_kind", &root.kind);
        c.text("root_name", root_name);
        c.close();
    }

    let event = Event {
        event_id: event_id(event),
        level: Level::Error,
        message: Some(truncate(&full_message, MAX_MESSAGE_CHARS).into_owned()),
        logger: Some(format!("kubernetes.{watcher}")),
        culprit: Some(
            truncate(
                &format!("{namespace}/{}/{root_name}", root.kind),
                MAX_CULPRIT_CHARS,
            )
            .into_owned(),
        ),
        platform: Cow::Borrowed("other"),
        timestamp: SystemTime::from(timestamp),
        environment: settings.environment.clone().map(Cow::Owned),
        release: settings.release.clone().map(Cow::Owned),
        tags,
        fingerprint: Cow::Owned(
            fingerprint
                .into_iter()
                .map(|part| Cow::Owned(truncate(&part, MAX_FINGERPRINT_PART_CHARS).into_owned()))
                .collect(),
        ),
        sdk: Some(Cow::Owned(ClientSdkInfo {
            name: "sentry.rust.kubernetes".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            integrations: Vec::new(),
            packages: Vec::new(),
        })),
        ..Default::default()
    };
    Report::new(
        event,
        contexts.finish(),
        enrichment.breadcrumbs.clone(),
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breadcrumbs::{Crumb, CrumbText};
    use crate::event::ObjectRef;
    use crate::limits::MAX_TAG_VALUE_CHARS;
    use sentry::protocol::{Context, Map};
    use serde_json::Value;

    fn now() -> DateTime<Utc> {
        "2026-11-21T07:00:00Z".parse().unwrap()
    }

    fn backoff() -> KubeEvent {
        KubeEvent {
            uid: "u1".into(),
            name: "web-1.17a".into(),
            namespace: "shop".into(),
            resource_version: "9".into(),
            event_type: "Warning".into(),
            reason: "BackOff".into(),
            message: "(combined from similar events): Back-off restarting failed container app in pod web-1_shop(p1)".into(),
            involved: ObjectRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: "web-1".into(),
                namespace: "shop".into(),
                uid: "p1".into(),
                field_path: "spec.containers{app}".into(),
            },
            source_component: "kubelet".into(),
            source_host: "node-1".into(),
            reporting_controller: "kubelet".into(),
            reporting_instance: "node-1".into(),
            legacy_count: Some(4),
            first_timestamp: Some("2026-11-21T06:00:00Z".parse().unwrap()),
            last_timestamp: Some("2026-11-21T06:05:00Z".parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn builds_message_tags_timestamp_and_fingerprint_like_the_reference() {
        let settings = Settings {
            cluster_name: Some("eu-1".into()),
            global_tags: [("team".to_string(), "payments".to_string())].into(),
            hostname: "agent-0".into(),
            environment: Some("prod".into()),
            release: Some("1.2.3".into()),
            ..Settings::default()
        };
        let e =
            to_sentry_event(&backoff(), &Enrichment::bare(&backoff()), &settings, now()).to_event();
        assert_eq!(
            e.message.as_deref(),
            Some("web-1: Back-off restarting failed container app in pod web-1_shop(p1)")
        );
        assert_eq!(e.level, Level::Error);
        assert_eq!(
            e.timestamp,
            SystemTime::from("2026-11-21T06:05:00Z".parse::<DateTime<Utc>>().unwrap())
        );
        for (k, v) in [
            ("namespace", "shop"),
            ("reason", "BackOff"),
            ("kind", "Pod"),
            ("component", "kubelet"),
            ("event_type", "Warning"),
            ("event_source_component", "kubelet"),
            ("object_uid", "p1"),
            ("pod_name", "web-1"),
            ("watcher_name", "events"),
            ("agent_hostname", "agent-0"),
            ("container", "app"),
            ("cluster", "eu-1"),
            ("team", "payments"),
            ("combined_from_similar", "true"),
            ("node_name", "node-1"),
        ] {
            assert_eq!(e.tags.get(k).map(String::as_str), Some(v), "tag {k}");
        }
        assert_eq!(
            e.fingerprint.as_ref(),
            ["eu-1", "shop", "Pod", "web-1", "BackOff", "container:app"]
        );
        assert_eq!(e.environment.as_deref(), Some("prod"));
        assert_eq!(e.release.as_deref(), Some("1.2.3"));
        let Context::Other(ev) = &e.contexts["kubernetes_event"] else {
            panic!()
        };
        assert_eq!(ev["count"], 4);
        assert_eq!(ev["first_seen"], "2026-11-21T06:00:00.000000Z");
        assert_eq!(ev["source_host"], "node-1");
        assert!(!ev.contains_key("action"), "empty fields are left out");
    }

    #[test]
    fn ids_are_stable_per_occurrence() {
        let a = backoff();
        let mut b = backoff();
        assert_eq!(event_id(&a), event_id(&b));
        b.legacy_count = Some(5);
        assert_ne!(event_id(&a), event_id(&b));
    }

    #[test]
    fn long_messages_and_tag_values_are_cut_deliberately() {
        let mut ev = backoff();
        ev.message = "é".repeat(1 << 20);
        ev.reason = format!("Reason\n{}", "x".repeat(500));
        let e =
            to_sentry_event(&ev, &Enrichment::bare(&ev), &Settings::default(), now()).to_event();
        let message = e.message.unwrap();
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(message.ends_with('…'));
        let reason = &e.tags["reason"];
        assert_eq!(reason.chars().count(), MAX_TAG_VALUE_CHARS);
        assert!(!reason.contains('\n'));
        let Context::Other(ctx) = &e.contexts["kubernetes_event"] else {
            panic!()
        };
        assert_eq!(ctx["message_length"], (1 << 20) + "web-1: ".len());
    }

    #[test]
    fn hostile_events_serialise_within_sentrys_limits_with_the_original_time_kept() {
        let mut ev = backoff();
        ev.last_timestamp = Some("1969-07-20T20:17:40Z".parse().unwrap());
        ev.first_timestamp = ev.last_timestamp;
        ev.reason = "R".repeat(300_000);
        ev.involved.kind = "Odd Kind/with spaces".into();
        ev.involved.name = "n".repeat(5000);
        ev.source_component = "c".repeat(5000);
        let mut enrichment = Enrichment::bare(&ev);
        enrichment.breadcrumbs.push(Arc::new(Crumb::new(
            "1969-01-01T00:00:00Z".parse().unwrap(),
            true,
            1,
            CrumbText {
                reason: "Old",
                message: "older still",
                kind: "Pod",
                name: "p",
                event_uid: "e0",
            },
        )));
        let e = to_sentry_event(&ev, &enrichment, &Settings::default(), now()).to_event();
        let json = serde_json::to_value(&e).expect("serialisable: no time before 1970");
        assert_eq!(e.timestamp, SystemTime::from(now()), "reported at receipt");
        let Context::Other(ctx) = &e.contexts["kubernetes_event"] else {
            panic!()
        };
        assert_eq!(ctx["original_time"], "1969-07-20T20:17:40.000000Z");
        assert!(ctx["reason"].as_str().unwrap().chars().count() <= MAX_CONTEXT_STRING_CHARS);
        assert!(e.tags["reason"].chars().count() <= MAX_TAG_VALUE_CHARS);
        assert!(
            e.tags.contains_key("odd_kind_with_spaces_name"),
            "{:?}",
            e.tags.keys()
        );
        assert!(e.culprit.as_ref().unwrap().chars().count() <= MAX_CULPRIT_CHARS);
        assert!(
            e.fingerprint
                .iter()
                .all(|p| p.chars().count() <= MAX_FINGERPRINT_PART_CHARS)
        );
        assert!(
            json["breadcrumbs"]["values"][0]["timestamp"]
                .as_f64()
                .unwrap()
                > 0.0
        );
    }

    #[test]
    fn contexts_name_the_cluster_the_metadata_and_the_monitor_and_an_unkinded_object() {
        use crate::owners::cache::Meta;
        use crate::owners::chain::{Chain, Link};
        use std::sync::Arc;
        let monitors = SlugBook::default();
        monitors.insert("batch", "report.v2");
        let settings = Settings {
            kubernetes: Some(ClusterInfo {
                api_endpoint: "https://10.0.0.1:443/".into(),
                server_version: Some("v1.33.2".into()),
            }),
            monitors: Some(monitors),
            ..Settings::default()
        };
        let mut ev = backoff();
        let link = |kind: &str, name: &str, labels: &[(&str, &str)]| Link {
            object: ObjectRef {
                kind: kind.into(),
                name: name.into(),
                namespace: "batch".into(),
                ..Default::default()
            },
            meta: Some(Arc::new(Meta {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Meta::default()
            })),
        };
        let mut enrichment = Enrichment::bare(&ev);
        enrichment.chain = Chain {
            links: vec![
                link("Pod", "report-1-x", &[("app", "report")]),
                link("Job", "report-1", &[]),
                link("CronJob", "report.v2", &[("team", "data")]),
            ],
        };
        let e = to_sentry_event(&ev, &enrichment, &settings, now()).to_event();
        let ctx = |name: &str| -> Map<String, Value> {
            let Context::Other(ctx) = &e.contexts[name] else {
                panic!("{name}")
            };
            ctx.clone()
        };
        assert_eq!(ctx("kubernetes")["server_version"], "v1.33.2");
        assert_eq!(ctx("monitor")["slug"], "reportv2");
        assert_eq!(ctx("involved_object")["labels"]["app"], "report");
        assert_eq!(ctx("owners")["chain"][2]["labels"]["team"], "data");
        assert!(ctx("owners")["chain"][1].get("labels").is_none());

        ev.involved.kind = String::new();
        let e =
            to_sentry_event(&ev, &Enrichment::bare(&ev), &Settings::default(), now()).to_event();
        assert_eq!(e.tags["object_name"], "web-1");
        assert!(!e.contexts.contains_key("monitor") && !e.contexts.contains_key("kubernetes"));
    }

    /// The contexts are written by hand (see `Contexts`); what Sentry receives must be
    /// exactly what the SDK writes for the same contexts as its own `Context` maps.
    #[test]
    fn contexts_are_written_exactly_as_the_sdk_writes_them() {
        use crate::logs::ContainerLog;
        use crate::owners::cache::Meta;
        use crate::owners::chain::{Chain, Link};
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let settings = Settings {
            gke: Some(Arc::new(Gke {
                cluster_name: "eu-1".into(),
                cluster_location: "europe-west1".into(),
                project_id: "shop-prod".into(),
            })),
            kubernetes: Some(ClusterInfo {
                api_endpoint: "https://10.0.0.1:443/".into(),
                server_version: None,
            }),
            ..Settings::default()
        };
        let mut ev = backoff();
        ev.message = "Back-off \"quoted\"\n\u{1}é".into();
        // Before 1970: reported at receipt, the original time kept in the context.
        ev.last_timestamp = Some("1969-07-20T20:17:40Z".parse().unwrap());
        let link = |kind: &str, name: &str, labels, annotations| Link {
            object: ObjectRef {
                kind: kind.into(),
                name: name.into(),
                uid: format!("uid-{name}"),
                ..Default::default()
            },
            meta: Some(Arc::new(Meta {
                labels,
                annotations,
                ..Meta::default()
            })),
        };
        let mut enrichment = Enrichment::bare(&ev);
        enrichment.chain = Chain {
            links: vec![
                link(
                    "Pod",
                    "web-1",
                    pairs(&[("app", "web"), ("note", &"x".repeat(20_000))]),
                    pairs(&[
                        ("k8s.sentry.io/dsn", "x"),
                        ("app.kubernetes.io/owner", "team \"a\""),
                    ]),
                ),
                link("ReplicaSet", "web-7d9", Vec::new(), Vec::new()),
                link("Deployment", "web", pairs(&[("team", "")]), Vec::new()),
            ],
        };
        enrichment.logs = Some(ContainerLog {
            lines: vec!["panic: \"boom\"".into(), String::new()],
            previous: true,
            truncated: true,
            scrubbed: 2,
        });
        let crashed = {
            let mut crashed = ev.clone();
            crashed.termination = Some(Box::new(Termination {
                exit_code: 137,
                signal: None,
                started_at: Some("2026-11-21T06:00:00Z".parse().unwrap()),
                finished_at: Some("2026-11-21T06:59:00Z".parse().unwrap()),
                restart_count: 3,
                container_id: "containerd://abc".into(),
                image: String::new(),
                previous: false,
            }));
            crashed
        };
        for event in [&ev, &crashed] {
            let report = to_sentry_event(event, &enrichment, &settings, now());
            let written = report.contexts_json().unwrap();
            // Read into the SDK's types and written again by the SDK: the same bytes.
            let sdk: Map<String, Context> = serde_json::from_str(written).unwrap();
            assert_eq!(serde_json::to_string(&sdk).unwrap(), written);
            let ours: Value = serde_json::to_value(&report).unwrap();
            assert_eq!(
                ours["contexts"],
                serde_json::from_str::<Value>(written).unwrap()
            );
            for (name, context) in ours["contexts"].as_object().unwrap() {
                assert_eq!(context["type"], "unknown", "{name}");
                for (key, value) in context.as_object().unwrap() {
                    assert!(!value.is_null() && value != "", "{name}.{key} is empty");
                }
            }
            let contexts = &ours["contexts"];
            let note = contexts["involved_object"]["labels"]["note"]
                .as_str()
                .unwrap();
            assert_eq!(note.chars().count(), MAX_CONTEXT_STRING_CHARS);
            assert_eq!(contexts["owners"]["chain"][2]["labels"]["team"], "");
            assert_eq!(contexts["owners"]["chain"][1]["api_version"], "");
            assert_eq!(contexts["container_log"]["lines"][0], "panic: \"boom\"");
            assert_eq!(contexts["gke"]["project"], "shop-prod");
            assert!(contexts["kubernetes"].get("server_version").is_none());
        }
        let report = to_sentry_event(&crashed, &enrichment, &settings, now());
        let contexts = report.contexts();
        assert_eq!(contexts["container"]["exit_code"], 137);
        assert_eq!(contexts["container"]["signal_name"], "SIGKILL");
        assert!(contexts["container"].get("image").is_none());
        assert!(!contexts.contains_key("kubernetes_event"));
        let mut report = to_sentry_event(&ev, &enrichment, &settings, now());
        assert_eq!(
            report.contexts()["kubernetes_event"]["original_time"],
            "1969-07-20T20:17:40.000000Z"
        );
        // Storm control's context, added later, is written the same way; the rest are kept.
        let before = report.contexts_json().unwrap().to_string();
        add_suppressed(&mut report, 7, 100, std::time::Duration::from_secs(3600));
        let written = report.contexts_json().unwrap();
        let sdk: Map<String, Context> = serde_json::from_str(written).unwrap();
        assert_eq!(serde_json::to_string(&sdk).unwrap(), written);
        assert!(
            written.starts_with(&before[..before.len() - 1]),
            "{written}"
        );
        assert_eq!(
            report.contexts()["storm_control"]["suppressed_since_last_report"],
            7
        );
    }

    #[test]
    fn signals_are_named_from_the_runtime_or_the_exit_code() {
        let t = |exit_code, signal| crate::event::Termination {
            exit_code,
            signal,
            ..Default::default()
        };
        assert_eq!(t(137, None).signal_name(), Some("SIGKILL"));
        assert_eq!(t(143, None).signal_name(), Some("SIGTERM"));
        assert_eq!(t(1, Some(11)).signal_name(), Some("SIGSEGV"));
        assert_eq!(t(1, None).signal_name(), None);
        assert_eq!(t(255, None).signal_name(), None);
    }
}
