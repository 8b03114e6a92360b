//! The only place that knows the core/v1 Event JSON: turns a watched object into a
//! [`KubeEvent`], leniently (odd or missing fields become empty, never an error).

use chrono::{DateTime, Utc};
use kube::api::DynamicObject;
use serde_json::Value;

use crate::event::{KubeEvent, ObjectRef};
use crate::labels::label_enum;

label_enum! {
    /// Why an object could not be read as an event at all (counted, then skipped).
    pub enum Malformed {
        /// Neither a uid nor a name: nothing to identify it by.
        NoIdentity = "no_identity",
    }
}

pub(crate) fn text(value: &Value, path: &[&str]) -> String {
    let mut node = value;
    for key in path {
        match node.get(key) {
            Some(v) => node = v,
            None => return String::new(),
        }
    }
    match node {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn number(value: &Value, path: &[&str]) -> Option<i64> {
    let mut node = value;
    for key in path {
        node = node.get(key)?;
    }
    node.as_i64().or_else(|| node.as_str()?.trim().parse().ok())
}

/// RFC 3339 (`Time` and `MicroTime`); anything unparsable is treated as absent.
pub(crate) fn time(value: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    let raw = text(value, path);
    DateTime::parse_from_rfc3339(raw.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A jiff timestamp (k8s-openapi's time type) as chrono.
pub fn from_jiff(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}

/// Reads a core/v1 Event.
pub fn normalize(object: &DynamicObject) -> Result<KubeEvent, Malformed> {
    let meta = &object.metadata;
    let data = &object.data;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let uid = match (&meta.uid, name.is_empty()) {
        (Some(uid), _) if !uid.is_empty() => uid.clone(),
        (_, false) => format!("{namespace}/{name}"),
        (_, true) => return Err(Malformed::NoIdentity),
    };
    let involved = ObjectRef {
        api_version: text(data, &["involvedObject", "apiVersion"]),
        kind: text(data, &["involvedObject", "kind"]),
        name: text(data, &["involvedObject", "name"]),
        namespace: text(data, &["involvedObject", "namespace"]),
        uid: text(data, &["involvedObject", "uid"]),
        field_path: text(data, &["involvedObject", "fieldPath"]),
    };
    Ok(KubeEvent {
        uid,
        name,
        namespace,
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        event_type: text(data, &["type"]),
        reason: text(data, &["reason"]),
        message: text(data, &["message"]),
        involved,
        source_component: text(data, &["source", "component"]),
        source_host: text(data, &["source", "host"]),
        reporting_controller: text(data, &["reportingComponent"]),
        reporting_instance: text(data, &["reportingInstance"]),
        action: text(data, &["action"]),
        legacy_count: number(data, &["count"]),
        series_count: number(data, &["series", "count"]),
        series_last_observed: time(data, &["series", "lastObservedTime"]),
        first_timestamp: time(data, &["firstTimestamp"]),
        last_timestamp: time(data, &["lastTimestamp"]),
        event_time: time(data, &["eventTime"]),
        created: meta
            .creation_timestamp
            .as_ref()
            .and_then(|t| from_jiff(&t.0)),
        termination: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn reads_an_old_style_kubelet_event() {
        let ev = normalize(&object(json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-1.17a", "namespace": "shop", "uid": "u1", "resourceVersion": "42",
                          "creationTimestamp": "2026-11-21T06:00:00Z"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "shop",
                               "uid": "p1", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
            "source": {"component": "kubelet", "host": "node-1"},
            "count": 5, "firstTimestamp": "2026-11-21T06:00:00Z", "lastTimestamp": "2026-11-21T06:04:00Z",
        })))
        .unwrap();
        assert_eq!(ev.uid, "u1");
        assert_eq!(ev.involved.container(), Some("app"));
        assert_eq!(ev.count(), 5);
        assert_eq!(ev.component(), "kubelet");
        assert_eq!(
            ev.occurred_at().unwrap().to_rfc3339(),
            "2026-11-21T06:04:00+00:00"
        );
        assert_eq!(
            ev.first_seen().unwrap().to_rfc3339(),
            "2026-11-21T06:00:00+00:00"
        );
    }

    #[test]
    fn prefers_the_series_time_for_new_style_events() {
        let ev = normalize(&object(json!({
            "metadata": {"name": "s", "namespace": "n", "uid": "u", "creationTimestamp": "2026-11-21T05:00:00Z"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": "2026-11-21T06:00:00.123456Z",
            "series": {"count": 7, "lastObservedTime": "2026-11-21T06:30:00.000001Z"},
            "reportingComponent": "default-scheduler", "type": "Warning", "reason": "FailedScheduling",
        })))
        .unwrap();
        assert_eq!(ev.count(), 7);
        assert_eq!(ev.component(), "default-scheduler");
        assert_eq!(
            ev.occurred_at().unwrap().to_rfc3339(),
            "2026-11-21T06:30:00.000001+00:00"
        );
    }

    #[test]
    fn missing_and_odd_fields_become_empty() {
        let ev = normalize(&object(json!({
            "metadata": {"name": "x", "namespace": "n"},
            "involvedObject": {},
            "count": null, "lastTimestamp": "not a time", "type": 3,
        })))
        .unwrap();
        assert_eq!(ev.uid, "n/x");
        assert_eq!(ev.involved.kind, "");
        assert_eq!(ev.count(), 1);
        assert_eq!(ev.event_type, "3");
        assert!(ev.occurred_at().is_none());
        assert_eq!(
            normalize(&object(json!({"metadata": {}}))).unwrap_err(),
            Malformed::NoIdentity
        );
    }
}
