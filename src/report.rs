//! A Sentry event as the agent sends it: the protocol event [`convert`](crate::convert)
//! builds, its contexts as the JSON `convert` wrote for them, and its breadcrumbs written
//! straight from the trail's shared entries.
//!
//! Each event lists up to 20 earlier occurrences. As protocol `Breadcrumb`s they were nine
//! allocations apiece, built again for every event that listed them — a third of the
//! agent's allocations. Here they stay the trail's [`Crumb`]s (shared, built once) and are
//! serialised in the protocol's exact form, so what Sentry receives is unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
#[cfg(test)]
use sentry::protocol::Breadcrumb;
use sentry::protocol::{Context, Event, Level, Map};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::breadcrumbs::Crumb;
use crate::limits::event_time;

/// The breadcrumbs' category in Sentry.
const CATEGORY: &str = "k8s.event";

/// One occurrence, ready to send: serialises as the Sentry event with its contexts and
/// breadcrumbs.
#[derive(Clone, Debug)]
pub struct Report {
    /// The event; its own `contexts` and `breadcrumbs` stay empty (they are `contexts` and
    /// `crumbs` below).
    pub event: Event<'static>,
    /// The `contexts` object as JSON, written whole by `convert` (building protocol
    /// `Context` maps for every event cost more than the rest of the event).
    contexts: Option<Box<RawValue>>,
    crumbs: Vec<Arc<Crumb>>,
    /// When the report was built: breadcrumb times Sentry would not keep become this.
    now: DateTime<Utc>,
}

impl Report {
    /// `contexts` is the JSON object `convert` wrote (the event's own stay empty).
    pub fn new(
        mut event: Event<'static>,
        contexts: Option<Box<RawValue>>,
        crumbs: Vec<Arc<Crumb>>,
        now: DateTime<Utc>,
    ) -> Self {
        // One list of breadcrumbs on the wire: ours.
        event.breadcrumbs = Default::default();
        Self {
            event,
            contexts,
            crumbs,
            now,
        }
    }

    /// The contexts by name, as Sentry receives them.
    #[cfg(test)]
    pub fn contexts(&self) -> serde_json::Map<String, Value> {
        self.contexts
            .as_deref()
            .map(|raw| serde_json::from_str(raw.get()).expect("contexts are a JSON object"))
            .unwrap_or_default()
    }

    /// The contexts exactly as they go on the wire.
    #[cfg(test)]
    pub fn contexts_json(&self) -> Option<&str> {
        self.contexts.as_deref().map(RawValue::get)
    }

    /// Adds (or replaces) one context, written by the SDK as its `Context::Other`; the
    /// others keep their bytes. Rebuilds the contexts' JSON, so only for the rare context
    /// added after `convert` (storm control's).
    pub fn add_context(&mut self, name: &str, fields: Map<String, Value>) {
        let mut contexts: BTreeMap<String, Box<RawValue>> = self
            .contexts
            .as_deref()
            .map(|raw| serde_json::from_str(raw.get()).expect("contexts are a JSON object"))
            .unwrap_or_default();
        let context = serde_json::value::to_raw_value(&Context::Other(fields))
            .expect("a protocol context serialises");
        contexts.insert(name.to_string(), context);
        let json = serde_json::to_string(&contexts).expect("JSON values serialise");
        self.contexts = Some(RawValue::from_string(json).expect("serde_json writes JSON"));
    }

    /// The breadcrumbs in the protocol's types (what the wire form says, for tests;
    /// sending never builds them).
    #[cfg(test)]
    pub fn breadcrumbs(&self) -> Vec<Breadcrumb> {
        self.crumbs
            .iter()
            .map(|crumb| {
                let mut data = Map::new();
                data.insert("kind".into(), Value::String(crumb.kind().to_string()));
                data.insert("name".into(), Value::String(crumb.name().to_string()));
                data.insert("count".into(), Value::from(crumb.count));
                Breadcrumb {
                    timestamp: self.time(crumb),
                    category: Some(CATEGORY.into()),
                    level: level(crumb),
                    message: Some(crumb.text().to_string()),
                    data,
                    ..Default::default()
                }
            })
            .collect()
    }

    /// The event as the SDK's types would hold it, contexts and breadcrumbs included.
    #[cfg(test)]
    pub fn to_event(&self) -> Event<'static> {
        let mut event = self.event.clone();
        if let Some(raw) = &self.contexts {
            event.contexts =
                serde_json::from_str(raw.get()).expect("contexts as the SDK reads them");
        }
        event.breadcrumbs = self.breadcrumbs().into();
        event
    }

    fn time(&self, crumb: &Crumb) -> SystemTime {
        SystemTime::from(event_time(Some(crumb.at), self.now).0)
    }
}

#[cfg(test)]
fn level(crumb: &Crumb) -> Level {
    if crumb.warning {
        Level::Warning
    } else {
        Level::Info
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(flatten)]
            event: &'a Event<'static>,
            #[serde(skip_serializing_if = "Option::is_none")]
            contexts: Option<&'a RawValue>,
            #[serde(skip_serializing_if = "Crumbs::is_empty")]
            breadcrumbs: Crumbs<'a>,
        }
        debug_assert!(
            self.event.contexts.is_empty(),
            "contexts go through Report::add_context, or there would be two keys"
        );
        Wire {
            event: &self.event,
            contexts: self.contexts.as_deref(),
            breadcrumbs: Crumbs(self),
        }
        .serialize(serializer)
    }
}

/// `{"values": [...]}`, as the protocol's `Values<Breadcrumb>`.
struct Crumbs<'a>(&'a Report);

impl Crumbs<'_> {
    fn is_empty(&self) -> bool {
        self.0.crumbs.is_empty()
    }
}

impl Serialize for Crumbs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Values<'a>(&'a Report);
        impl Serialize for Values<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.crumbs.len()))?;
                for crumb in &self.0.crumbs {
                    seq.serialize_element(&Wire {
                        crumb,
                        at: self.0.time(crumb),
                    })?;
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("values", &Values(self.0))?;
        map.end()
    }
}

/// One breadcrumb in the protocol's form: the fields a `Breadcrumb` would write, with the
/// same rules (whole seconds as an integer, `info` and the `default` type left out).
struct Wire<'a> {
    crumb: &'a Crumb,
    at: SystemTime,
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let since = self
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| S::Error::custom("a breadcrumb before 1970"))?;
        let mut map = serializer.serialize_map(None)?;
        if since.subsec_nanos() == 0 {
            map.serialize_entry("timestamp", &since.as_secs())?;
        } else {
            map.serialize_entry("timestamp", &since.as_secs_f64())?;
        }
        map.serialize_entry("category", CATEGORY)?;
        if self.crumb.warning {
            map.serialize_entry("level", &Level::Warning)?;
        }
        map.serialize_entry("message", self.crumb.text())?;
        map.serialize_entry("data", &Data(self.crumb))?;
        map.end()
    }
}

/// `data`, keys in the order a `Map` writes them.
struct Data<'a>(&'a Crumb);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("count", &self.0.count)?;
        map.serialize_entry("kind", self.0.kind())?;
        map.serialize_entry("name", self.0.name())?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breadcrumbs::CrumbText;

    fn crumb(at: &str, warning: bool, uid: &str) -> Arc<Crumb> {
        Arc::new(Crumb::new(
            at.parse().unwrap(),
            warning,
            3,
            CrumbText {
                reason: "BackOff",
                message: "Back-off restarting failed container \"app\"",
                kind: "Pod",
                name: "web-1",
                event_uid: uid,
            },
        ))
    }

    #[test]
    fn the_wire_form_is_the_protocols_own() {
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        let event = Event {
            message: Some("web-1: Back-off".into()),
            ..Default::default()
        };
        let crumbs = vec![
            crumb("2026-11-29T11:00:00Z", false, "a"),
            crumb("2026-11-29T11:30:00.250Z", true, "b"),
            // Sentry would not keep this time: it becomes the report's.
            crumb("1969-07-20T20:17:40Z", true, "c"),
        ];
        let report = Report::new(event, None, crumbs, now);
        let ours = serde_json::to_value(&report).unwrap();
        let sdks = serde_json::to_value(report.to_event()).unwrap();
        assert_eq!(ours, sdks);
        assert_eq!(ours["breadcrumbs"]["values"].as_array().unwrap().len(), 3);
        assert_eq!(
            ours["breadcrumbs"]["values"][2]["timestamp"],
            now.timestamp()
        );
    }

    #[test]
    fn no_breadcrumbs_no_key_and_the_events_own_are_replaced() {
        let event = Event {
            breadcrumbs: vec![Breadcrumb::default()].into(),
            ..Default::default()
        };
        let report = Report::new(event, None, Vec::new(), Utc::now());
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("breadcrumbs").is_none(), "{json}");
    }
}
