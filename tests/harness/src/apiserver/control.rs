//! The `/_fake/` control API (documented in the harness README) and the in-process helpers
//! behind it.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Response;
use hyper::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::api::{self, parse_query};
use super::events_view;
use super::faults::Faults;
use super::resources::{self, View};
use super::status::ApiError;
use super::store::{Key, Store};
use super::{State, patch};
use crate::serve::{Body, json_response};

fn resource_of(object: &Value) -> Result<&'static resources::ResourceDef, ApiError> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    resources::by_kind(api_version, kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "no served resource has apiVersion {api_version:?} and kind {kind:?}"
        ))
    })
}

fn ensure_namespace(store: &mut Store, namespace: &str) -> Result<(), ApiError> {
    let key = Key {
        storage: "namespaces",
        namespace: String::new(),
        name: namespace.to_string(),
    };
    if store.get(&key).is_none() {
        let ns = resources::native("namespaces");
        let object =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        store.create(ns, "", object, "fake-apiserver")?;
    }
    Ok(())
}

fn create_locked(store: &mut Store, object: Value) -> Result<Arc<Value>, ApiError> {
    let res = resource_of(&object)?;
    let namespace = if res.namespaced {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        ensure_namespace(store, &ns)?;
        ns
    } else {
        String::new()
    };
    let stored = match res.view {
        View::Native => object,
        View::EventsV1 => events_view::to_core(&object),
    };
    store.create(res, &namespace, stored, "fake-apiserver")
}

pub fn create_one(state: &State, object: Value) -> Result<Arc<Value>, ApiError> {
    create_locked(&mut state.store.lock().unwrap(), object)
}

/// Creates every object under one lock; stops at the first failure.
pub fn create_many(state: &State, objects: Vec<Value>) -> Result<u64, ApiError> {
    let mut store = state.store.lock().unwrap();
    for object in objects {
        create_locked(&mut store, object)?;
    }
    Ok(store.resource_version())
}

fn key_for(
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<(&'static resources::ResourceDef, Key), ApiError> {
    let res = resources::by_kind(api_version, kind)
        .ok_or_else(|| ApiError::bad_request(format!("unknown kind {api_version}/{kind}")))?;
    let key = Key {
        storage: res.storage,
        namespace: if res.namespaced {
            namespace.into()
        } else {
            String::new()
        },
        name: name.into(),
    };
    Ok((res, key))
}

pub fn merge_patch(
    state: &State,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    patch_doc: &Value,
) -> Result<Arc<Value>, ApiError> {
    let (res, key) = key_for(api_version, kind, namespace, name)?;
    let mut store = state.store.lock().unwrap();
    let current = store
        .get(&key)
        .ok_or_else(|| ApiError::not_found(res, name))?;
    let mut view = api::render(res, &current, false);
    patch::merge(&mut view, patch_doc);
    let stored = match res.view {
        View::Native => view,
        View::EventsV1 => events_view::to_core(&view),
    };
    store.update(res, &key, stored)
}

pub fn delete_one(
    state: &State,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let (res, key) = key_for(api_version, kind, namespace, name)?;
    state.store.lock().unwrap().delete(res, &key).map(|_| ())
}

pub fn reset(state: &State) {
    state.store.lock().unwrap().reset();
    state.logs.lock().unwrap().clear();
    *state.faults.lock().unwrap() = Faults::default();
    state.log.lock().unwrap().clear();
    state.set_paused(false);
}

/// Objects from a JSON array, a `List`, a single object, or multi-document YAML.
pub fn parse_objects(body: &[u8]) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = match serde_json::from_slice::<Value>(body) {
        Ok(value) => vec![value],
        Err(_) => {
            let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
            let mut docs = Vec::new();
            for doc in serde_yaml_ng::Deserializer::from_str(text) {
                let value = Value::deserialize(doc).map_err(|e| e.to_string())?;
                if !value.is_null() {
                    docs.push(value);
                }
            }
            docs
        }
    };
    let mut objects = Vec::new();
    for doc in docs {
        match doc {
            Value::Array(items) => objects.extend(items),
            Value::Object(ref fields) if fields.get("items").is_some_and(Value::is_array) => {
                objects.extend(fields["items"].as_array().cloned().unwrap_or_default())
            }
            other => objects.push(other),
        }
    }
    Ok(objects)
}

/// Parses a control request body and, if it parses, applies it.
fn with_body<T: DeserializeOwned>(
    body: &Bytes,
    apply: impl FnOnce(T) -> Response<Body>,
) -> Response<Body> {
    match serde_json::from_slice(body) {
        Ok(parsed) => apply(parsed),
        Err(e) => json_response(
            400,
            &json!({"error": format!("invalid control request body: {e}")}),
        ),
    }
}

fn done(value: Value) -> Response<Body> {
    json_response(200, &value)
}

fn failed(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.to_status())
}

/// Serves `/_fake/...`.
pub async fn handle(state: &Arc<State>, parts: &Parts, body: Bytes) -> Response<Body> {
    let route = parts.uri.path().trim_start_matches("/_fake/");
    let method = parts.method.as_str();
    match (method, route) {
        ("POST", "compact") => {
            let mut store = state.store.lock().unwrap();
            store.compact();
            done(json!({"floor": store.compaction_floor()}))
        }
        ("POST", "close-watches") => {
            done(json!({"closed": state.store.lock().unwrap().close_watches()}))
        }
        ("POST", "pause") => {
            state.set_paused(true);
            done(json!({"paused": true}))
        }
        ("POST", "resume") => {
            state.set_paused(false);
            done(json!({"paused": false}))
        }
        ("POST", "fail") => with_body(&body, |rule| {
            state.faults.lock().unwrap().fail.push(rule);
            done(json!({"ok": true}))
        }),
        ("DELETE", "fail") => {
            state.faults.lock().unwrap().fail.clear();
            done(json!({"ok": true}))
        }
        ("POST", "delay") => with_body(&body, |rule| {
            state.faults.lock().unwrap().delay.push(rule);
            done(json!({"ok": true}))
        }),
        ("DELETE", "delay") => {
            state.faults.lock().unwrap().delay.clear();
            done(json!({"ok": true}))
        }
        ("POST", "deny") => with_body(&body, |rule| {
            state.faults.lock().unwrap().deny.push(rule);
            done(json!({"ok": true}))
        }),
        ("DELETE", "deny") => {
            state.faults.lock().unwrap().deny.clear();
            done(json!({"ok": true}))
        }
        ("GET", "requests") => {
            let query = parse_query(parts.uri.query().unwrap_or(""));
            let since = query.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
            done(json!(state.log.lock().unwrap().since(since)))
        }
        ("DELETE", "requests") => {
            state.log.lock().unwrap().clear();
            done(json!({"ok": true}))
        }
        ("POST", "reset") => {
            reset(state);
            done(json!({"ok": true}))
        }
        ("POST", "logs") => {
            #[derive(serde::Deserialize)]
            struct LogRequest {
                #[serde(rename = "containerID")]
                container_id: String,
                log: String,
            }
            with_body(&body, |l: LogRequest| {
                state.logs.lock().unwrap().set(&l.container_id, &l.log);
                done(json!({"ok": true}))
            })
        }
        ("POST", "bookmark") => {
            state.store.lock().unwrap().bookmark();
            done(json!({"ok": true}))
        }
        ("GET", "watches") => done(json!(state.store.lock().unwrap().open_watches())),
        ("GET", "state") => {
            let mut store = state.store.lock().unwrap();
            done(json!({
                "resourceVersion": store.resource_version(),
                "compactionFloor": store.compaction_floor(),
                "objects": store.object_count(),
                "watches": store.open_watches().len(),
                "paused": state.pause.borrow().paused,
            }))
        }
        ("POST", "objects") => match parse_objects(&body) {
            Ok(objects) => {
                let count = objects.len();
                match create_many(state, objects) {
                    Ok(rv) => done(json!({"created": count, "resourceVersion": rv})),
                    Err(err) => failed(&err),
                }
            }
            Err(e) => json_response(400, &json!({"error": e})),
        },
        ("POST", route) if route.starts_with("scenarios/") => {
            let name = route.trim_start_matches("scenarios/");
            match crate::scenarios::by_name(name, state.as_ref()) {
                Ok(entries) => {
                    let listed = |crash: bool| {
                        entries
                            .iter()
                            .filter(|e| e.is_crash() == crash)
                            .map(|e| {
                                json!({
                                    "id": e.id,
                                    "namespace": e.event["metadata"]["namespace"],
                                    "name": e.event["metadata"]["name"],
                                })
                            })
                            .collect::<Vec<_>>()
                    };
                    done(
                        json!({"scenario": name, "warnings": listed(false), "crashes": listed(true)}),
                    )
                }
                Err(e) => json_response(400, &json!({"error": e})),
            }
        }
        ("POST", "patch") => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct PatchRequest {
                api_version: String,
                kind: String,
                #[serde(default)]
                namespace: String,
                name: String,
                patch: Value,
            }
            with_body(&body, |p: PatchRequest| {
                match merge_patch(
                    state,
                    &p.api_version,
                    &p.kind,
                    &p.namespace,
                    &p.name,
                    &p.patch,
                ) {
                    Ok(object) => done((*object).clone()),
                    Err(err) => failed(&err),
                }
            })
        }
        _ => json_response(
            404,
            &json!({"error": format!("no control endpoint {method} /_fake/{route}; see tests/harness/README.md")}),
        ),
    }
}
