//! The object store: one resourceVersion sequence, a change history with a compaction
//! floor (like etcd), point-in-time snapshots for paged lists, and watch fan-out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::resources::{self, ResourceDef};
use super::status::ApiError;

/// Where an object lives: storage, namespace ("" for cluster-scoped), name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub storage: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_watch_type(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One committed write. `object` is the new state (for a delete: the last state, carrying
/// the delete's resourceVersion); `prev` is the state before, used to rebuild snapshots.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: ChangeType,
    pub key: Key,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
}

/// What a watch stream receives.
#[derive(Debug, Clone)]
pub enum WatchMsg {
    Change(Arc<Change>),
    Bookmark(u64),
}

/// Where a new watch starts.
#[derive(Clone, Copy, Debug)]
pub enum Since {
    /// Replay every change after this resourceVersion.
    Rv(u64),
    /// Synthetic ADDED events for the current state, then live changes.
    Now,
}

/// A watch that is open, as `/_fake/watches` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct WatchInfo {
    pub id: u64,
    pub path: String,
    pub query: String,
    pub user: String,
}

struct Subscriber {
    info: WatchInfo,
    storage: &'static str,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

/// Namespaces every real cluster starts with.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

pub struct Store {
    rv: u64,
    floor: u64,
    history_limit: usize,
    objects: BTreeMap<Key, Arc<Value>>,
    history: VecDeque<Arc<Change>>,
    subscribers: Vec<Subscriber>,
    next_watch_id: u64,
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A DNS-1123 subdomain, the rule for most object names.
pub fn valid_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A DNS-1123 label, the rule for namespace names.
pub fn valid_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && valid_subdomain(name)
}

pub fn rv_of(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let mut store = Self {
            rv: 0,
            floor: 0,
            history_limit,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            subscribers: Vec::new(),
            next_watch_id: 1,
        };
        store.create_default_namespaces();
        store
    }

    fn create_default_namespaces(&mut self) {
        let ns = resources::native("namespaces");
        for name in DEFAULT_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            self.create(ns, "", obj, "kube-apiserver")
                .expect("default namespaces are valid");
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn compaction_floor(&self) -> u64 {
        self.floor
    }

    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// Drops all history: watches and continue tokens from before now get 410 Expired.
    pub fn compact(&mut self) {
        self.floor = self.rv;
        self.history.clear();
    }

    /// Ends every open watch stream cleanly (HTTP chunked end), as an apiserver restart would.
    pub fn close_watches(&mut self) -> usize {
        let n = self.subscribers.len();
        self.subscribers.clear();
        n
    }

    pub fn bookmark(&mut self) {
        let rv = self.rv;
        self.subscribers
            .retain(|s| s.tx.send(WatchMsg::Bookmark(rv)).is_ok());
    }

    pub fn open_watches(&mut self) -> Vec<WatchInfo> {
        self.subscribers.retain(|s| !s.tx.is_closed());
        self.subscribers.iter().map(|s| s.info.clone()).collect()
    }

    /// Empties the store (default namespaces come back), closes every watch and compacts.
    /// The resourceVersion keeps rising so no client ever sees it go backwards.
    pub fn reset(&mut self) {
        self.subscribers.clear();
        self.objects.clear();
        self.history.clear();
        self.create_default_namespaces();
        self.compact();
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.objects.get(key).cloned()
    }

    fn commit(&mut self, kind: ChangeType, key: Key, mut object: Value) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let object = Arc::new(object);
        let prev = match kind {
            ChangeType::Deleted => self.objects.remove(&key),
            _ => self.objects.insert(key.clone(), object.clone()),
        };
        let change = Arc::new(Change {
            rv,
            kind,
            key,
            object: object.clone(),
            prev,
        });
        self.history.push_back(change.clone());
        if self.history.len() > self.history_limit {
            // Like etcd's periodic compaction: the oldest revisions become unreachable.
            if let Some(dropped) = self.history.pop_front() {
                self.floor = dropped.rv;
            }
        }
        let storage = change.key.storage;
        self.subscribers.retain(|s| {
            s.storage != storage || s.tx.send(WatchMsg::Change(change.clone())).is_ok()
        });
        object
    }

    fn require_namespace(&self, res: &ResourceDef, namespace: &str) -> Result<(), ApiError> {
        if !res.namespaced {
            return Ok(());
        }
        let key = Key {
            storage: "namespaces",
            namespace: String::new(),
            name: namespace.to_string(),
        };
        if self.objects.contains_key(&key) {
            Ok(())
        } else {
            Err(ApiError::namespace_not_found(namespace))
        }
    }

    /// Validates, fills server-set metadata and stores a new object. `object` is in stored
    /// (native) form; `manager` names the field manager recorded in managedFields.
    pub fn create(
        &mut self,
        res: &ResourceDef,
        namespace: &str,
        mut object: Value,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        let meta_ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let namespace = if res.namespaced {
            if !meta_ns.is_empty() && !namespace.is_empty() && meta_ns != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if namespace.is_empty() {
                meta_ns
            } else {
                namespace.to_string()
            }
        } else {
            String::new()
        };
        if res.namespaced && namespace.is_empty() {
            return Err(ApiError::bad_request(
                "an empty namespace may not be set during creation",
            ));
        }
        let mut name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match object["metadata"]["generateName"].as_str() {
                Some(prefix) if !prefix.is_empty() => name = format!("{prefix}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        res,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            }
        }
        let name_ok = if res.storage == "namespaces" {
            valid_label(&name)
        } else {
            valid_subdomain(&name)
        };
        if !name_ok {
            return Err(ApiError::invalid(
                res,
                &name,
                "metadata.name",
                &format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        self.require_namespace(res, &namespace)?;
        validate(res, &name, &namespace, &object)?;
        let key = Key {
            storage: res.storage,
            namespace: namespace.clone(),
            name: name.clone(),
        };
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(
                resources::native(res.storage),
                &name,
            ));
        }
        let now = now_rfc3339();
        let native = resources::native(res.storage);
        object["apiVersion"] = json!(native.api_version());
        object["kind"] = json!(native.kind);
        let meta = &mut object["metadata"];
        meta["name"] = json!(name);
        if res.namespaced {
            meta["namespace"] = json!(namespace);
        }
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["creationTimestamp"] = json!(now);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
        }
        if meta.get("managedFields").is_none() {
            meta["managedFields"] = json!([{
                "manager": manager,
                "operation": "Update",
                "apiVersion": native.api_version(),
                "time": now,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {}},
            }]);
        }
        if res.storage == "namespaces" {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        Ok(self.commit(ChangeType::Added, key, object))
    }

    /// Replaces an object. `expected_rv` (the body's resourceVersion) must match the stored
    /// one when given; server-owned metadata is kept.
    pub fn update(
        &mut self,
        res: &ResourceDef,
        key: &Key,
        mut object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let current = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resources::native(res.storage), &key.name))?;
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        let body_name = object["metadata"]["name"].as_str().unwrap_or("");
        if !body_name.is_empty() && body_name != key.name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let expected = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if !expected.is_empty() && expected != current["metadata"]["resourceVersion"] {
            return Err(ApiError::conflict(
                resources::native(res.storage),
                &key.name,
            ));
        }
        validate(res, &key.name, &key.namespace, &object)?;
        let native = resources::native(res.storage);
        object["apiVersion"] = json!(native.api_version());
        object["kind"] = json!(native.kind);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "managedFields",
        ] {
            match current["metadata"].get(field) {
                Some(v) => object["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = object["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        Ok(self.commit(ChangeType::Modified, key.clone(), object))
    }

    /// Removes an object; a namespace takes its contents with it.
    pub fn delete(&mut self, res: &ResourceDef, key: &Key) -> Result<Arc<Value>, ApiError> {
        let current = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resources::native(res.storage), &key.name))?;
        if key.storage == "namespaces" {
            let contained: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.namespace == key.name)
                .cloned()
                .collect();
            for k in contained {
                if let Some(obj) = self.objects.get(&k).cloned() {
                    self.commit(ChangeType::Deleted, k, (*obj).clone());
                }
            }
        }
        Ok(self.commit(ChangeType::Deleted, key.clone(), (*current).clone()))
    }

    /// The objects of a storage (in one namespace, or all) as they were at `at`, or now.
    /// Ordered by namespace then name, like etcd keys. Fails with 410 below the floor.
    pub fn list(
        &self,
        storage: &str,
        namespace: Option<&str>,
        at: Option<u64>,
    ) -> Result<(u64, Vec<Arc<Value>>), ApiError> {
        let in_scope =
            |k: &Key| k.storage == storage && namespace.is_none_or(|ns| k.namespace == ns);
        let at = at.filter(|rv| *rv < self.rv);
        let Some(at) = at else {
            let items = self
                .objects
                .iter()
                .filter(|(k, _)| in_scope(k))
                .map(|(_, v)| v.clone())
                .collect();
            return Ok((self.rv, items));
        };
        if at < self.floor {
            return Err(ApiError::expired(format!(
                "too old resource version: {at} ({})",
                self.floor
            )));
        }
        let mut snapshot: BTreeMap<Key, Arc<Value>> = self
            .objects
            .iter()
            .filter(|(k, _)| in_scope(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for change in self.history.iter().rev().take_while(|c| c.rv > at) {
            if !in_scope(&change.key) {
                continue;
            }
            match &change.prev {
                Some(prev) => snapshot.insert(change.key.clone(), prev.clone()),
                None => snapshot.remove(&change.key),
            };
        }
        Ok((at, snapshot.into_values().collect()))
    }

    /// Opens a watch on a storage. Replayed (or synthetic) messages come first, then live
    /// ones; both are taken under one lock so nothing is missed or doubled.
    pub fn subscribe(
        &mut self,
        storage: &'static str,
        since: Since,
        path: String,
        query: String,
        user: String,
    ) -> Result<(u64, Vec<WatchMsg>, mpsc::UnboundedReceiver<WatchMsg>), ApiError> {
        let initial: Vec<WatchMsg> = match since {
            Since::Rv(rv) => {
                if rv < self.floor {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        self.floor
                    )));
                }
                self.history
                    .iter()
                    .filter(|c| c.rv > rv && c.key.storage == storage)
                    .map(|c| WatchMsg::Change(c.clone()))
                    .collect()
            }
            Since::Now => self
                .objects
                .iter()
                .filter(|(k, _)| k.storage == storage)
                .map(|(k, v)| {
                    WatchMsg::Change(Arc::new(Change {
                        rv: rv_of(v),
                        kind: ChangeType::Added,
                        key: k.clone(),
                        object: v.clone(),
                        prev: None,
                    }))
                })
                .collect(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_watch_id;
        self.next_watch_id += 1;
        self.subscribers.push(Subscriber {
            info: WatchInfo {
                id,
                path,
                query,
                user,
            },
            storage,
            tx,
        });
        Ok((self.rv, initial, rx))
    }
}

/// Per-kind validation the real apiserver applies on write (the parts tests rely on).
fn validate(
    res: &ResourceDef,
    name: &str,
    namespace: &str,
    object: &Value,
) -> Result<(), ApiError> {
    if res.storage != "events" {
        return Ok(());
    }
    // Validation runs against the stored (core) shape, so field names are core/v1 ones.
    let involved_ns = object
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !involved_ns.is_empty() && involved_ns != namespace {
        let field = match res.view {
            resources::View::EventsV1 => "regarding.namespace",
            resources::View::Native => "involvedObject.namespace",
        };
        return Err(ApiError::invalid(
            res,
            name,
            field,
            &format!("Invalid value: \"{involved_ns}\": does not match event.namespace"),
        ));
    }
    if res.view == resources::View::EventsV1 {
        if object.get("eventTime").is_none_or(Value::is_null) {
            return Err(ApiError::invalid(res, name, "eventTime", "Required value"));
        }
        let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "Normal" && kind != "Warning" {
            return Err(ApiError::invalid(
                res,
                name,
                "type",
                &format!(
                    "Unsupported value: \"{kind}\": supported values: \"Normal\", \"Warning\""
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;

    fn cm(name: &str, data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": data}})
    }

    fn key(name: &str) -> Key {
        Key {
            storage: "configmaps",
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn snapshots_rebuild_the_past_and_expire_below_the_floor() {
        let res = find("", "v1", "configmaps").unwrap();
        let mut store = Store::new(1000);
        store.create(res, "default", cm("a", "1"), "t").unwrap();
        let (at, items) = store.list("configmaps", Some("default"), None).unwrap();
        assert_eq!(items.len(), 1);
        let mut b = cm("a", "2");
        b["metadata"]["resourceVersion"] = json!(at.to_string());
        store.update(res, &key("a"), b).unwrap();
        store.create(res, "default", cm("b", "1"), "t").unwrap();
        store.delete(res, &key("b")).unwrap();
        let (_, past) = store.list("configmaps", Some("default"), Some(at)).unwrap();
        assert_eq!(past.len(), 1);
        assert_eq!(past[0]["data"]["k"], "1");
        store.compact();
        assert_eq!(
            store.list("configmaps", None, Some(at)).unwrap_err().code,
            410
        );
        let (rv, now) = store.list("configmaps", None, None).unwrap();
        assert!(rv >= store.compaction_floor());
        assert_eq!(now[0]["data"]["k"], "2");
    }

    #[test]
    fn stale_updates_conflict_and_duplicates_already_exist() {
        let res = find("", "v1", "configmaps").unwrap();
        let mut store = Store::new(1000);
        let created = store.create(res, "default", cm("a", "1"), "t").unwrap();
        assert_eq!(
            store
                .create(res, "default", cm("a", "1"), "t")
                .unwrap_err()
                .code,
            409
        );
        let mut stale = (*created).clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let err = store.update(res, &key("a"), stale).unwrap_err();
        assert_eq!((err.code, err.reason), (409, "Conflict"));
        assert_eq!(
            store
                .create(res, "nope", cm("x", "1"), "t")
                .unwrap_err()
                .code,
            404
        );
    }

    #[test]
    fn history_limit_raises_the_floor_like_etcd_compaction() {
        let res = find("", "v1", "configmaps").unwrap();
        let mut store = Store::new(3);
        for i in 0..10 {
            store
                .create(res, "default", cm(&format!("c{i}"), "1"), "t")
                .unwrap();
        }
        assert_eq!(store.compaction_floor(), store.resource_version() - 3);
    }
}
