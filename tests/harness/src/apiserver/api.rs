//! The Kubernetes REST surface: routing, RBAC, content negotiation, list/get/write handlers.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hyper::Response;
use hyper::http::request::Parts;
use serde_json::{Value, json};

use super::events_view;
use super::logs;
use super::patch;
use super::resources::{self, ResourceDef, View};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::Key;
use super::{State, discovery, watch};
use crate::serve::{Body, json_response, text_response};

/// What a resource path names.
#[derive(Debug)]
pub struct Target {
    pub res: &'static ResourceDef,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name, for item paths.
    pub name: Option<String>,
    /// `status` or `log`, for subresource paths (`pods/{name}/log`).
    pub subresource: Option<&'static str>,
    /// The legacy `/watch/` path prefix was used.
    pub watch_prefix: bool,
}

impl Target {
    /// The resource as RBAC names it: `pods`, or `pods/log` for a subresource.
    pub fn rbac_resource(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.res.plural),
            None => self.res.plural.to_string(),
        }
    }
}

pub type Query = HashMap<String, String>;

pub fn parse_query(query: &str) -> Query {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

pub fn flag(query: &Query, key: &str) -> bool {
    matches!(query.get(key).map(String::as_str), Some("true" | "1"))
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...` resource paths.
pub fn parse_target(path: &str) -> Result<Target, ApiError> {
    let not_found = || ApiError::path_not_found(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    let (watch_prefix, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let lookup = |plural: &str| resources::find(group, version, plural).ok_or_else(not_found);
    let (res, namespace, name, subresource) = match rest {
        [plural] => (lookup(plural)?, None, None, None),
        ["namespaces", ns, plural] => (lookup(plural)?, Some(ns.to_string()), None, None),
        ["namespaces", ns, plural, name] => (
            lookup(plural)?,
            Some(ns.to_string()),
            Some(name.to_string()),
            None,
        ),
        ["namespaces", ns, plural, name, sub] if !watch_prefix => {
            let res = lookup(plural)?;
            let sub = res
                .subresources()
                .iter()
                .find(|s| *s == sub)
                .ok_or_else(not_found)?;
            (
                res,
                Some(ns.to_string()),
                Some(name.to_string()),
                Some(*sub),
            )
        }
        [plural, name] => (lookup(plural)?, None, Some(name.to_string()), None),
        _ => return Err(not_found()),
    };
    if namespace.is_some() && !res.namespaced {
        return Err(not_found());
    }
    if name.is_some() && namespace.is_none() && res.namespaced {
        return Err(not_found());
    }
    Ok(Target {
        res,
        namespace,
        name,
        subresource,
        watch_prefix,
    })
}

/// The RBAC verb of a request.
pub fn verb(method: &str, target: &Target, watch: bool) -> Result<&'static str, ApiError> {
    match (target.subresource, method) {
        (Some("log"), "GET") => return Ok("get"),
        (Some("log"), _) => return Err(ApiError::method_not_allowed()),
        (Some(_), "GET" | "PUT" | "PATCH") if watch => {
            return Err(ApiError::method_not_allowed());
        }
        (Some(_), "POST" | "DELETE") => return Err(ApiError::method_not_allowed()),
        _ => {}
    }
    Ok(match (method, target.name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        _ => return Err(ApiError::method_not_allowed()),
    })
}

/// Whether the client asked for `PartialObjectMetadata` (or its List), the way kube's
/// metadata APIs do. The first acceptable media type wins; `as=Table` is skipped, so
/// kubectl falls back to plain JSON.
pub fn wants_metadata(accept: &str) -> Result<bool, ApiError> {
    if accept.trim().is_empty() {
        return Ok(false);
    }
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        if !matches!(media, "application/json" | "*/*" | "application/*") {
            continue;
        }
        match params.get("as") {
            None => return Ok(false),
            Some(&"PartialObjectMetadata" | &"PartialObjectMetadataList")
                if params.get("g") == Some(&"meta.k8s.io") =>
            {
                return Ok(true);
            }
            Some(_) => continue,
        }
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        format!("only the following media types are accepted: application/json (got {accept:?})"),
    ))
}

/// The stored object as this resource shows it, optionally reduced to its metadata.
pub fn render(res: &ResourceDef, stored: &Value, metadata_only: bool) -> Value {
    let object = match res.view {
        View::Native => stored.clone(),
        View::EventsV1 => events_view::to_events_v1(stored),
    };
    if metadata_only {
        metadata_of(&object)
    } else {
        object
    }
}

pub fn metadata_of(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"],
    })
}

/// A client-supplied body (JSON or YAML) in stored form.
fn parse_body(res: &ResourceDef, parts: &Parts, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = header(parts, "content-type");
    let object: Value = if content_type.contains("yaml") {
        serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))?
    } else if content_type.contains("protobuf") {
        return Err(ApiError::unsupported_media_type(&content_type));
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    if let Some(kind) = object.get("kind").and_then(Value::as_str)
        && kind != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            res.kind
        )));
    }
    if let Some(api_version) = object.get("apiVersion").and_then(Value::as_str)
        && api_version != res.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    Ok(match res.view {
        View::Native => object,
        View::EventsV1 => events_view::to_core(&object),
    })
}

pub fn header(parts: &Parts, name: &str) -> String {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The field manager name the real server derives from the user agent (`kubectl/v1.33 ...`).
fn manager(parts: &Parts) -> String {
    let agent = header(parts, "user-agent");
    let name = agent.split('/').next().unwrap_or("").trim();
    if name.is_empty() {
        "unknown".into()
    } else {
        name.into()
    }
}

fn error_response(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.to_status())
}

fn ok(status: u16, value: Value) -> Response<Body> {
    json_response(status, &value)
}

/// Serves one authenticated, fault-checked request.
pub async fn handle(state: &Arc<State>, parts: &Parts, body: Bytes, user: &str) -> Response<Body> {
    let path = parts.uri.path();
    match (parts.method.as_str(), path) {
        ("GET", "/version" | "/version/") => return ok(200, discovery::version()),
        ("GET", "/healthz" | "/livez" | "/readyz") => return text_response(200, "ok"),
        ("GET", "/api" | "/api/") => {
            return ok(200, discovery::core_versions(&state.address.to_string()));
        }
        ("GET", "/apis" | "/apis/") => return ok(200, discovery::group_list()),
        _ => {}
    }
    if parts.method == "GET" {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let doc = match segments.as_slice() {
            ["api", version] => discovery::resource_list("", version),
            ["apis", group] => discovery::group(group),
            ["apis", group, version] => discovery::resource_list(group, version),
            _ => None,
        };
        if let Some(doc) = doc {
            return ok(200, doc);
        }
    }
    match serve_resource(state, parts, body, user).await {
        Ok(response) => response,
        Err(err) => error_response(&err),
    }
}

async fn serve_resource(
    state: &Arc<State>,
    parts: &Parts,
    body: Bytes,
    user: &str,
) -> Result<Response<Body>, ApiError> {
    let target = parse_target(parts.uri.path())?;
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let watching = target.watch_prefix || flag(&query, "watch");
    let verb = verb(parts.method.as_str(), &target, watching)?;
    let res = target.res;
    let rbac_resource = target.rbac_resource();
    let denied = state.faults.lock().unwrap().denied(
        verb,
        &rbac_resource,
        res.group,
        target.namespace.as_deref(),
    );
    if denied {
        return Err(ApiError::forbidden(
            user,
            verb,
            res,
            &rbac_resource,
            target.namespace.as_deref(),
            target.name.as_deref().unwrap_or(""),
        ));
    }
    if target.subresource == Some("log") {
        return logs::serve(state, &target, &query);
    }
    let metadata_only = wants_metadata(&header(parts, "accept"))?;
    match verb {
        "watch" => {
            let mut query = query;
            if let Some(name) = &target.name {
                let selector = match query.get("fieldSelector") {
                    Some(s) if !s.is_empty() => format!("{s},metadata.name={name}"),
                    _ => format!("metadata.name={name}"),
                };
                query.insert("fieldSelector".into(), selector);
            }
            watch::start(state, &target, &query, metadata_only, parts, user)
        }
        "list" => list(state, &target, &query, metadata_only),
        "get" => {
            let key = key_of(&target);
            let stored = state.store.lock().unwrap().get(&key);
            let stored = stored.ok_or_else(|| ApiError::not_found(res, &key.name))?;
            Ok(ok(200, render(res, &stored, metadata_only)))
        }
        "create" => {
            let mut object = parse_body(res, parts, &body)?;
            if res.subresources().contains(&"status") && object.is_object() {
                // The pod strategy: a new pod is Pending whatever the client wrote; only the
                // kubelet, through pods/{name}/status, says more. (The control API seeds
                // status directly.)
                object["status"] = json!({"phase": "Pending"});
            }
            let namespace = target.namespace.clone().unwrap_or_default();
            let created =
                state
                    .store
                    .lock()
                    .unwrap()
                    .create(res, &namespace, object, &manager(parts))?;
            Ok(ok(201, render(res, &created, metadata_only)))
        }
        "update" => {
            let object = parse_body(res, parts, &body)?;
            let key = key_of(&target);
            let mut store = state.store.lock().unwrap();
            let current = store
                .get(&key)
                .ok_or_else(|| ApiError::not_found(res, &key.name))?;
            let object = scope_write(&target, &current, object);
            let updated = store.update(res, &key, object)?;
            Ok(ok(200, render(res, &updated, metadata_only)))
        }
        "patch" => {
            let patched = apply_patch(state, &target, parts, &body)?;
            Ok(ok(200, render(res, &patched, metadata_only)))
        }
        "delete" => {
            let deleted = state.store.lock().unwrap().delete(res, &key_of(&target))?;
            Ok(ok(200, render(res, &deleted, metadata_only)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// What a write may change, as the real pod strategy decides: a write to a pod keeps its
/// stored status (only the kubelet changes it, through `pods/{name}/status`), and a write
/// to `status` changes nothing but the status. Other resources are written whole.
fn scope_write(target: &Target, current: &Value, mut written: Value) -> Value {
    if !target.res.subresources().contains(&"status") {
        return written;
    }
    if target.subresource == Some("status") {
        let mut object = current.clone();
        object["status"] = written.get("status").cloned().unwrap_or(json!({}));
        // The body's resourceVersion still guards against a stale write.
        object["metadata"]["resourceVersion"] = written["metadata"]["resourceVersion"].clone();
        return object;
    }
    match current.get("status") {
        Some(status) => written["status"] = status.clone(),
        None => {
            if let Some(fields) = written.as_object_mut() {
                fields.remove("status");
            }
        }
    }
    written
}

fn key_of(target: &Target) -> Key {
    Key {
        storage: target.res.storage,
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
    }
}

fn apply_patch(
    state: &Arc<State>,
    target: &Target,
    parts: &Parts,
    body: &Bytes,
) -> Result<Arc<Value>, ApiError> {
    let res = target.res;
    let content_type = header(parts, "content-type");
    let patch_doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid patch body: {e}")))?;
    let key = key_of(target);
    // Read-modify-write under one lock, so a patch never loses a concurrent write.
    let mut store = state.store.lock().unwrap();
    let current = store
        .get(&key)
        .ok_or_else(|| ApiError::not_found(res, &key.name))?;
    let mut view = render(res, &current, false);
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            patch::merge(&mut view, &patch_doc)
        }
        "application/json-patch+json" => patch::json_patch(&mut view, &patch_doc)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    let stored = match res.view {
        View::Native => view,
        View::EventsV1 => events_view::to_core(&view),
    };
    store.update(res, &key, scope_write(target, &current, stored))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: String,
}

fn encode_continue(rv: u64, last: &Key) -> String {
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: format!("{}/{}\u{0}", last.namespace, last.name),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("token serializes"))
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    Ok((token.rv, token.start.trim_end_matches('\u{0}').to_string()))
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn list(
    state: &Arc<State>,
    target: &Target,
    query: &Query,
    metadata_only: bool,
) -> Result<Response<Body>, ApiError> {
    let res = target.res;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str), res)?;
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let limit: usize = match query.get("limit").map(|l| l.parse::<i64>()) {
        None => 0,
        Some(Ok(n)) if n >= 0 => n as usize,
        Some(_) => {
            return Err(ApiError::bad_request(
                "limit must be a non-negative integer",
            ));
        }
    };
    let (at, start) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            (Some(rv), Some(start))
        }
        None => {
            let exact = query.get("resourceVersionMatch").map(String::as_str) == Some("Exact");
            let rv = query
                .get("resourceVersion")
                .filter(|rv| exact && !rv.is_empty())
                .map(|rv| rv.parse::<u64>())
                .transpose()
                .map_err(|_| ApiError::bad_request("invalid resourceVersion"))?;
            (rv, None)
        }
    };
    let listed = state
        .store
        .lock()
        .unwrap()
        .list(res.storage, target.namespace.as_deref(), at);
    let (rv, objects) = match listed {
        Ok(listed) => listed,
        Err(err) if start.is_some() && err.code == 410 => {
            return Err(ApiError::expired(CONTINUE_EXPIRED));
        }
        Err(err) => return Err(err),
    };
    let mut items = Vec::new();
    let mut last_key = None;
    let mut remaining = 0usize;
    // Compare as (namespace, name) like the store orders keys; "ns/name" strings would not.
    let start = start.map(|s| match s.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), s),
    });
    for stored in objects.iter() {
        let position = (
            stored["metadata"]["namespace"].as_str().unwrap_or(""),
            stored["metadata"]["name"].as_str().unwrap_or(""),
        );
        if let Some((ns, name)) = &start
            && position <= (ns.as_str(), name.as_str())
        {
            continue;
        }
        // Rendering is only needed to select: counting what remains after a full page
        // must not copy every object (a paged list of 10,000 pods would be quadratic).
        if !fields.is_empty() || !labels.is_empty() {
            let view = render(res, stored, false);
            if !fields.matches(&view) || !labels.matches(&view) {
                continue;
            }
        }
        if limit > 0 && items.len() == limit {
            remaining += 1;
            continue;
        }
        let view = render(res, stored, false);
        last_key = Some(Key {
            storage: res.storage,
            namespace: stored["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .into(),
            name: stored["metadata"]["name"].as_str().unwrap_or("").into(),
        });
        let mut item = if metadata_only {
            metadata_of(&view)
        } else {
            view
        };
        if !metadata_only && let Some(fields) = item.as_object_mut() {
            // The real server leaves TypeMeta off list items.
            fields.remove("apiVersion");
            fields.remove("kind");
        }
        items.push(item);
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if remaining > 0
        && let Some(last) = &last_key
    {
        meta["continue"] = json!(encode_continue(rv, last));
        meta["remainingItemCount"] = json!(remaining);
    }
    let (kind, api_version) = if metadata_only {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (format!("{}List", res.kind), res.api_version())
    };
    Ok(ok(
        200,
        json!({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_like_the_real_server() {
        let t = parse_target("/api/v1/namespaces/default/events").unwrap();
        assert_eq!(
            (t.res.plural, t.namespace.as_deref(), t.name),
            ("events", Some("default"), None)
        );
        let t = parse_target("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(
            (t.res.plural, t.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let t = parse_target("/apis/apps/v1/namespaces/a/deployments/web").unwrap();
        assert_eq!((t.res.kind, t.name.as_deref()), ("Deployment", Some("web")));
        assert!(parse_target("/api/v1/watch/events").unwrap().watch_prefix);
        assert_eq!(parse_target("/api/v1/pods/x").unwrap_err().code, 404);
        assert_eq!(
            parse_target("/api/v1/namespaces/a/nodes").unwrap_err().code,
            404
        );
        let t = parse_target("/api/v1/namespaces/a/pods/p/log").unwrap();
        assert_eq!(
            (t.rbac_resource(), t.name.as_deref()),
            ("pods/log".to_string(), Some("p"))
        );
        assert_eq!(
            parse_target("/api/v1/namespaces/a/pods/p/status")
                .unwrap()
                .subresource,
            Some("status")
        );
        for unknown in [
            "/api/v1/namespaces/a/pods/p/exec",
            "/api/v1/namespaces/a/configmaps/c/log",
            "/api/v1/watch/namespaces/a/pods/p/log",
        ] {
            assert_eq!(parse_target(unknown).unwrap_err().code, 404, "{unknown}");
        }
    }

    #[test]
    fn accept_negotiation_picks_metadata_or_falls_back() {
        assert!(
            wants_metadata("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1").unwrap()
        );
        assert!(
            wants_metadata("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
                .unwrap()
        );
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert!(!wants_metadata(kubectl).unwrap());
        assert!(!wants_metadata("").unwrap());
        assert_eq!(
            wants_metadata("application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code,
            406
        );
    }

    #[test]
    fn continue_tokens_round_trip() {
        let key = Key {
            storage: "events",
            namespace: "a".into(),
            name: "b".into(),
        };
        let token = encode_continue(42, &key);
        assert_eq!(decode_continue(&token).unwrap(), (42, "a/b".to_string()));
        assert_eq!(decode_continue("garbage!").unwrap_err().code, 400);
    }
}
