//! Conversion between the stored core/v1 Event and its events.k8s.io/v1 view.

use serde_json::{Map, Value};

/// Field renames, core/v1 name first.
const RENAMES: &[(&str, &str)] = &[
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(object: &Value, api_version: &str, to_new: bool) -> Value {
    let Some(fields) = object.as_object() else {
        return object.clone();
    };
    let mut out = Map::with_capacity(fields.len());
    for (key, value) in fields {
        let renamed = RENAMES.iter().find_map(|(core, new)| {
            let (from, to) = if to_new { (core, new) } else { (new, core) };
            (key == from).then_some(*to)
        });
        out.insert(renamed.unwrap_or(key).to_string(), value.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

/// The stored (core/v1) event as events.k8s.io/v1 shows it.
pub fn to_events_v1(core: &Value) -> Value {
    rename(core, "events.k8s.io/v1", true)
}

/// An events.k8s.io/v1 event as it is stored (core/v1).
pub fn to_core(new: &Value) -> Value {
    rename(new, "v1", false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_renames_every_field() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "n"},
            "message": "m", "involvedObject": {"kind": "Pod"}, "reportingComponent": "kubelet",
            "source": {"component": "kubelet"}, "firstTimestamp": "t1", "lastTimestamp": "t2",
            "count": 3, "type": "Warning", "reason": "BackOff", "eventTime": null,
        });
        let new = to_events_v1(&core);
        assert_eq!(new["apiVersion"], "events.k8s.io/v1");
        assert_eq!(new["note"], "m");
        assert_eq!(new["regarding"]["kind"], "Pod");
        assert_eq!(new["deprecatedCount"], 3);
        assert_eq!(new["reason"], "BackOff");
        assert!(new.get("message").is_none());
        assert_eq!(to_core(&new), core);
    }
}
