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
    /// `series.lastObservedTime` → `lastTimestamp` → `eventTime` → `creationTimestamp`.
    pub fn occurred_at(&self) -> Option<DateTime<Utc>> {
        self.series_last_observed
            .or(self.last_timestamp)
            .or(self.event_time)
            .or(self.created)
    }

    /// When it was first seen: `firstTimestamp`, else `eventTime`, else creation.
    pub fn first_seen(&self) -> Option<DateTime<Utc>> {
        self.first_timestamp.or(self.event_time).or(self.created)
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
