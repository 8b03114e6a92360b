//! Our own small types for a Kubernetes event and the object it is about; every stage
//! after `normalize` works on these, never on the API's shapes.

use chrono::{DateTime, Utc};

use crate::labels::label_enum;

label_enum! {
    /// An event's `type`, as metrics count it.
    pub enum EventType {
        Warning = "warning",
        Normal = "normal",
        /// Anything else a writer put there (reported, like Warning).
        Other = "other",
    }
}

/// A reference to a Kubernetes object (an event's involved object, or an owner).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// `spec.containers{app}` when the event is about one container.
    pub field_path: String,
}

impl ObjectRef {
    /// The container a field path names: `spec.containers{app}`, `spec.initContainers{init}`,
    /// `spec.ephemeralContainers{debug}`.
    pub fn container(&self) -> Option<&str> {
        let path = self.field_path.as_str();
        [
            "spec.containers{",
            "spec.initContainers{",
            "spec.ephemeralContainers{",
        ]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .and_then(|rest| rest.split('}').next())
        .filter(|name| !name.is_empty())
    }

    /// What identifies the object in the agent's caches: its uid, else
    /// `namespace/kind/name` (the namespace defaulting to `namespace`, the event's).
    pub fn key(&self, namespace: &str) -> String {
        if !self.uid.is_empty() {
            return self.uid.clone();
        }
        let ns = if self.namespace.is_empty() {
            namespace
        } else {
            &self.namespace
        };
        format!("{ns}/{}/{}", self.kind, self.name)
    }

    /// The API group of `api_version` ("" for core).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }
}

/// How one instance of a container ended (a Pod's `state.terminated` or
/// `lastState.terminated`). A termination travels as a [`KubeEvent`] about the Pod, its
/// field path naming the container, so owners, breadcrumbs, filters and delivery treat it
/// like any event; this is what only a termination has.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Termination {
    pub exit_code: i64,
    pub signal: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    /// The occurrence time, and what tells one instance's end from the next one's.
    pub finished_at: Option<DateTime<Utc>>,
    pub restart_count: i64,
    pub container_id: String,
    pub image: String,
    /// The instance is the previous one (`lastState`): its output is `previous=true`.
    pub previous: bool,
}

impl Termination {
    /// The signal that ended the container, by name: the one the runtime reports, else
    /// the one an exit code above 128 means (137: SIGKILL, as an OOM kill shows).
    pub fn signal_name(&self) -> Option<&'static str> {
        const NAMES: [&str; 15] = [
            "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
            "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
        ];
        let number = self
            .signal
            .or((self.exit_code > 128).then(|| self.exit_code - 128))?;
        NAMES
            .get(usize::try_from(number).ok()?.checked_sub(1)?)
            .copied()
    }
}

/// A Kubernetes event, normalised from core/v1 (missing fields are empty, never errors).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KubeEvent {
    /// `metadata.uid`, or `namespace/name` when the server sent none.
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub resource_version: String,
    /// `Warning`, `Normal`, or whatever the writer put there.
    pub event_type: String,
    pub reason: String,
    pub message: String,
    pub involved: ObjectRef,
    pub source_component: String,
    pub source_host: String,
    pub reporting_controller: String,
    pub reporting_instance: String,
    pub action: String,
    /// The legacy `count` (old-style recorders bump it on every repeat).
    pub legacy_count: Option<i64>,
    /// `series.count` (new-style recorders).
    pub series_count: Option<i64>,
    pub series_last_observed: Option<DateTime<Utc>>,
    pub first_timestamp: Option<DateTime<Utc>>,
    pub last_timestamp: Option<DateTime<Utc>>,
    pub event_time: Option<DateTime<Utc>>,
    pub created: Option<DateTime<Utc>>,
    /// Set when this is a container's termination read from a Pod, not an Event.
    pub termination: Option<Box<Termination>>,
}

impl KubeEvent {
    pub fn is_normal(&self) -> bool {
        self.event_type.eq_ignore_ascii_case("Normal")
    }

    pub fn type_label(&self) -> EventType {
        match self.event_type.as_str() {
            "Warning" => EventType::Warning,
            "Normal" => EventType::Normal,
            _ => EventType::Other,
        }
    }

    /// The time of the latest occurrence, in the order of preference the API documents:
    /// `series.lastObservedTime` → `lastTimestamp` → `eventTime` → `creationTimestamp`
    /// (for a termination: when the container finished).
    pub fn occurred_at(&self) -> Option<DateTime<Utc>> {
        self.finished_at()
            .or(self.series_last_observed)
            .or(self.last_timestamp)
            .or(self.event_time)
            .or(self.created)
    }

    /// When it was first seen: `firstTimestamp`, else `eventTime`, else creation.
    pub fn first_seen(&self) -> Option<DateTime<Utc>> {
        self.first_timestamp.or(self.event_time).or(self.created)
    }

    /// When the terminated container finished, for a termination.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.termination.as_ref().and_then(|t| t.finished_at)
    }

    /// How many times it has happened so far.
    pub fn count(&self) -> i64 {
        self.series_count
            .into_iter()
            .chain(self.legacy_count)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// The component that wrote it: `source.component`, else `reportingComponent`.
    pub fn component(&self) -> &str {
        if self.source_component.is_empty() {
            &self.reporting_controller
        } else {
            &self.source_component
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_name_containers() {
        let mut r = ObjectRef {
            field_path: "spec.containers{app}".into(),
            ..Default::default()
        };
        assert_eq!(r.container(), Some("app"));
        r.field_path = "spec.initContainers{migrate}".into();
        assert_eq!(r.container(), Some("migrate"));
        r.field_path = "spec.volumes".into();
        assert_eq!(r.container(), None);
        r.api_version = "apps/v1".into();
        assert_eq!(r.group(), "apps");
    }
}
