//! The only place that knows the core/v1 Event JSON: turns a watched object into a
//! [`KubeEvent`], leniently (odd or missing fields become empty, never an error). Also the
//! lenient reading both watched kinds share (`pods` reads Pods with it): any field of an
//! unexpected type, nested objects included, reads as absent or as its JSON text.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
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

/// `kube::Resource` for a core/v1 kind read into our own struct (its `metadata` field
/// holds what the watcher needs: name, namespace, uid, resourceVersion).
macro_rules! core_v1_resource {
    ($type:ty, $kind:literal, $plural:literal) => {
        impl kube::Resource for $type {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }

            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                "".into()
            }

            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                "v1".into()
            }

            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use core_v1_resource;

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

/// A watched core/v1 Event, read straight from the watch stream into the fields the agent
/// uses. Not kube's `DynamicObject`: its flattened body was decoded twice (buffered, then
/// read again), and each field was then copied out of the JSON tree. Every field is
/// lenient: one of an unexpected type becomes text or is treated as absent, never an
/// error for the whole event.
#[derive(Clone, Debug, Default)]
pub struct EventObject {
    /// Name, namespace, uid and resourceVersion only (what the watcher reads).
    metadata: ObjectMeta,
    created: Option<DateTime<Utc>>,
    /// Boxed: a watch moves objects around, and this is most of their size.
    body: Box<RawEvent>,
}

core_v1_resource!(EventObject, "Event", "events");

/// Any JSON value (so a field of an unexpected type never fails the whole object).
pub(crate) fn lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    Option::<Value>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// An object's metadata as it arrives (events and pods), each field lenient.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct RawMeta {
    #[serde(deserialize_with = "lenient")]
    pub name: Value,
    #[serde(deserialize_with = "lenient")]
    pub namespace: Value,
    #[serde(deserialize_with = "lenient")]
    pub uid: Value,
    #[serde(deserialize_with = "lenient")]
    pub resource_version: Value,
    #[serde(deserialize_with = "lenient")]
    pub creation_timestamp: Value,
    #[serde(deserialize_with = "lenient")]
    pub deletion_timestamp: Value,
}

impl RawMeta {
    /// What the watcher reads of an object: name, namespace, uid and resourceVersion,
    /// moved out (empty ones absent).
    pub fn take_object_meta(&mut self) -> ObjectMeta {
        let some = |value: &mut Value| {
            let text = take_text(value);
            (!text.is_empty()).then_some(text)
        };
        ObjectMeta {
            name: some(&mut self.name),
            namespace: some(&mut self.namespace),
            uid: some(&mut self.uid),
            resource_version: some(&mut self.resource_version),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawRef {
    #[serde(deserialize_with = "lenient")]
    api_version: Value,
    #[serde(deserialize_with = "lenient")]
    kind: Value,
    #[serde(deserialize_with = "lenient")]
    name: Value,
    #[serde(deserialize_with = "lenient")]
    namespace: Value,
    #[serde(deserialize_with = "lenient")]
    uid: Value,
    #[serde(deserialize_with = "lenient")]
    field_path: Value,
}

#[derive(Clone, Debug, Deserialize, Default)]
#[serde(default)]
struct RawSource {
    #[serde(deserialize_with = "lenient")]
    component: Value,
    #[serde(deserialize_with = "lenient")]
    host: Value,
}

#[derive(Clone, Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawSeries {
    #[serde(deserialize_with = "lenient")]
    count: Value,
    #[serde(deserialize_with = "lenient")]
    last_observed_time: Value,
}

/// The event as it arrives; fields not named here are skipped unread.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawEvent {
    #[serde(deserialize_with = "lenient_object")]
    metadata: RawMeta,
    #[serde(deserialize_with = "lenient_object")]
    involved_object: RawRef,
    #[serde(rename = "type", deserialize_with = "lenient")]
    event_type: Value,
    #[serde(deserialize_with = "lenient")]
    reason: Value,
    #[serde(deserialize_with = "lenient")]
    message: Value,
    #[serde(deserialize_with = "lenient_object")]
    source: RawSource,
    #[serde(deserialize_with = "lenient")]
    reporting_component: Value,
    #[serde(deserialize_with = "lenient")]
    reporting_instance: Value,
    #[serde(deserialize_with = "lenient")]
    action: Value,
    #[serde(deserialize_with = "lenient")]
    count: Value,
    #[serde(deserialize_with = "lenient_object")]
    series: RawSeries,
    #[serde(deserialize_with = "lenient")]
    first_timestamp: Value,
    #[serde(deserialize_with = "lenient")]
    last_timestamp: Value,
    #[serde(deserialize_with = "lenient")]
    event_time: Value,
}

/// A nested object read in place, or its defaults when it is absent, null or not an
/// object (never buffered: a visitor takes the map as it streams by).
pub(crate) fn lenient_object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    struct Lenient<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for Lenient<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(T::default())
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_none<E>(self) -> Result<T, E> {
            Ok(T::default())
        }

        fn visit_unit<E>(self) -> Result<T, E> {
            Ok(T::default())
        }

        fn visit_bool<E>(self, _: bool) -> Result<T, E> {
            Ok(T::default())
        }

        fn visit_i64<E>(self, _: i64) -> Result<T, E> {
            Ok(T::default())
        }

        fn visit_u64<E>(self, _: u64) -> Result<T, E> {
            Ok(T::default())
        }

        fn visit_f64<E>(self, _: f64) -> Result<T, E> {
            Ok(T::default())
        }

        fn visit_str<E>(self, _: &str) -> Result<T, E> {
            Ok(T::default())
        }
    }

    deserializer.deserialize_any(Lenient(PhantomData))
}

impl<'de> Deserialize<'de> for EventObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut raw: RawEvent = lenient_object(deserializer)?;
        Ok(Self {
            metadata: raw.metadata.take_object_meta(),
            created: time(&raw.metadata.creation_timestamp, &[]),
            body: Box::new(raw),
        })
    }
}

/// A text field, moved out of the JSON (numbers and other odd values as their JSON text).
fn take_text(value: &mut Value) -> String {
    match value.take() {
        Value::String(text) => text,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Reads a core/v1 Event.
pub fn normalize(object: EventObject) -> Result<KubeEvent, Malformed> {
    let EventObject {
        metadata,
        created,
        body: mut raw,
    } = object;
    let raw = &mut *raw;
    let name = metadata.name.unwrap_or_default();
    let namespace = metadata.namespace.unwrap_or_default();
    let uid = match (metadata.uid, name.is_empty()) {
        (Some(uid), _) => uid,
        (None, false) => format!("{namespace}/{name}"),
        (None, true) => return Err(Malformed::NoIdentity),
    };
    let r = &mut raw.involved_object;
    let involved = ObjectRef {
        api_version: take_text(&mut r.api_version),
        kind: take_text(&mut r.kind),
        name: take_text(&mut r.name),
        namespace: take_text(&mut r.namespace),
        uid: take_text(&mut r.uid),
        field_path: take_text(&mut r.field_path),
    };
    Ok(KubeEvent {
        uid,
        name,
        namespace,
        resource_version: metadata.resource_version.unwrap_or_default(),
        event_type: take_text(&mut raw.event_type),
        reason: take_text(&mut raw.reason),
        message: take_text(&mut raw.message),
        involved,
        source_component: take_text(&mut raw.source.component),
        source_host: take_text(&mut raw.source.host),
        reporting_controller: take_text(&mut raw.reporting_component),
        reporting_instance: take_text(&mut raw.reporting_instance),
        action: take_text(&mut raw.action),
        legacy_count: number(&raw.count, &[]),
        series_count: number(&raw.series.count, &[]),
        series_last_observed: time(&raw.series.last_observed_time, &[]),
        first_timestamp: time(&raw.first_timestamp, &[]),
        last_timestamp: time(&raw.last_timestamp, &[]),
        event_time: time(&raw.event_time, &[]),
        created,
        termination: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> EventObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn reads_an_old_style_kubelet_event() {
        let ev = normalize(object(json!({
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
        let ev = normalize(object(json!({
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
    fn nested_objects_of_the_wrong_type_read_as_absent() {
        let ev = normalize(object(json!({
            "metadata": {"name": 7, "namespace": "n", "uid": ["u"], "resourceVersion": 42},
            "involvedObject": "not an object",
            "source": [1, {"component": "x"}],
            "series": 5,
            "reason": {"nested": true},
            "message": "still read",
        })))
        .unwrap();
        assert_eq!(ev.name, "7");
        assert_eq!(ev.uid, "[\"u\"]", "odd values become their JSON text");
        assert_eq!(ev.resource_version, "42");
        assert_eq!(ev.involved, ObjectRef::default());
        assert_eq!(ev.component(), "");
        assert_eq!(ev.series_count, None);
        assert_eq!(ev.reason, "{\"nested\":true}");
        assert_eq!(ev.message, "still read");
        let bare: EventObject = serde_json::from_value(json!("an event?")).unwrap();
        assert_eq!(normalize(bare).unwrap_err(), Malformed::NoIdentity);
    }

    #[test]
    fn missing_and_odd_fields_become_empty() {
        let ev = normalize(object(json!({
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
            normalize(object(json!({"metadata": {}}))).unwrap_err(),
            Malformed::NoIdentity
        );
    }
}
