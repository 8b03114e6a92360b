//! Root owner resolution: follows controller ownerReferences (Pod → ReplicaSet →
//! Deployment, Pod → Job → CronJob, Pod → StatefulSet/DaemonSet, … → a custom resource)
//! with metadata-only lookups, never a GET per event.
//!
//! Lookups are cached by uid in a bounded LRU (entries refresh after a TTL so annotation
//! changes are seen), failures are cached briefly, and concurrent lookups of one object
//! share one request; namespaces, read for their DSN annotation, share the same cache. A
//! kind the agent cannot read (a custom resource, an RBAC denial, an object that is gone)
//! ends the chain where the ownerReferences left it: degraded, logged once per kind,
//! counted, never blocking.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::{apps, batch, core};
use kube::api::{Api, ApiResource, DynamicObject};
use lru::LruCache;
use tracing::{debug, warn};

use crate::event::ObjectRef;
use crate::metrics::Metrics;

/// The annotation naming a per-object DSN.
pub const DSN_ANNOTATION: &str = "k8s.sentry.io/dsn";
/// How long a failed lookup is remembered before it is tried again.
const FAILURE_TTL: Duration = Duration::from_secs(60);
/// A lookup taking longer than this is abandoned (the event goes on with what is known).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Owner chains longer than this are cut (real ones have at most three links).
const MAX_DEPTH: usize = 6;

/// What the agent keeps of an object's metadata: only what enrichment needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub object: ObjectRef,
    /// The controller ownerReference, if any.
    pub controller: Option<ObjectRef>,
    /// The `k8s.sentry.io/dsn` annotation, if any.
    pub dsn: Option<String>,
}

/// Why a lookup gave no metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupFailure {
    /// The kind is not one the agent knows how to read (custom resources).
    Unreadable,
    Forbidden,
    NotFound,
    /// Timeouts, 5xx, connection errors: not cached, tried again next time.
    Error,
}

impl LookupFailure {
    pub fn as_label(self) -> &'static str {
        match self {
            LookupFailure::Unreadable => "unreadable",
            LookupFailure::Forbidden => "forbidden",
            LookupFailure::NotFound => "not_found",
            LookupFailure::Error => "error",
        }
    }
}

type Lookup = Result<Arc<Meta>, LookupFailure>;
/// A fetch's result: the failure comes with the apiserver's message, for the log.
type Fetched = Result<Arc<Meta>, (LookupFailure, String)>;

/// The API resource behind a kind the agent reads (and that RBAC must allow).
pub fn readable_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    Some(match (api_version, kind) {
        ("v1" | "", "Pod") => ApiResource::erase::<core::v1::Pod>(&()),
        ("v1" | "", "ReplicationController") => {
            ApiResource::erase::<core::v1::ReplicationController>(&())
        }
        ("apps/v1" | "", "ReplicaSet") => ApiResource::erase::<apps::v1::ReplicaSet>(&()),
        ("apps/v1" | "", "Deployment") => ApiResource::erase::<apps::v1::Deployment>(&()),
        ("apps/v1" | "", "StatefulSet") => ApiResource::erase::<apps::v1::StatefulSet>(&()),
        ("apps/v1" | "", "DaemonSet") => ApiResource::erase::<apps::v1::DaemonSet>(&()),
        ("batch/v1" | "", "Job") => ApiResource::erase::<batch::v1::Job>(&()),
        ("batch/v1" | "", "CronJob") => ApiResource::erase::<batch::v1::CronJob>(&()),
        _ => return None,
    })
}

/// The bounds of the lookup cache.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    pub capacity: NonZeroUsize,
    pub ttl: Duration,
}

struct Cached {
    lookup: Lookup,
    at: Instant,
}

pub struct OwnerResolver {
    client: kube::Client,
    limits: CacheLimits,
    cache: Mutex<LruCache<String, Cached>>,
    in_flight: Mutex<HashMap<String, Shared<BoxFuture<'static, Fetched>>>>,
    logged_kinds: Mutex<HashSet<String>>,
    metrics: Metrics,
}

impl OwnerResolver {
    pub fn new(client: kube::Client, limits: CacheLimits, metrics: Metrics) -> Self {
        Self {
            client,
            limits,
            cache: Mutex::new(LruCache::new(limits.capacity)),
            in_flight: Mutex::new(HashMap::new()),
            logged_kinds: Mutex::new(HashSet::new()),
            metrics,
        }
    }

    fn fresh(&self, cached: &Cached) -> bool {
        let ttl = if cached.lookup.is_ok() {
            self.limits.ttl
        } else {
            FAILURE_TTL
        };
        cached.at.elapsed() < ttl
    }

    fn cached(&self, key: &str) -> Option<Lookup> {
        let mut cache = self.cache.lock().unwrap();
        let hit = cache
            .get(key)
            .filter(|c| self.fresh(c))
            .map(|c| c.lookup.clone());
        if hit.is_none() {
            cache.pop(key);
        }
        hit
    }

    fn store(&self, key: String, lookup: Lookup) {
        if lookup == Err(LookupFailure::Error) {
            return;
        }
        let mut cache = self.cache.lock().unwrap();
        let evicted = cache.len() == cache.cap().get() && !cache.contains(&key);
        cache.put(
            key,
            Cached {
                lookup,
                at: Instant::now(),
            },
        );
        if evicted {
            self.metrics.owner_cache_evictions.inc();
        }
        self.metrics.owner_cache_entries.set(cache.len() as i64);
    }

    fn note_failure(&self, object: &ObjectRef, failure: LookupFailure, detail: &str) {
        Metrics::inc(&self.metrics.owner_lookups, "outcome", failure.as_label());
        if failure == LookupFailure::Error {
            warn!(kind = %object.kind, namespace = %object.namespace, "owner lookup failed: {detail}");
            return;
        }
        let first = self.logged_kinds.lock().unwrap().insert(format!(
            "{}:{}",
            failure.as_label(),
            object.kind
        ));
        if !first {
            return;
        }
        match failure {
            LookupFailure::Forbidden => warn!(
                kind = %object.kind,
                "cannot read {} metadata ({detail}); events are grouped by what their ownerReferences say. \
                 Grant get on this resource to enrich them (logged once per kind)",
                object.kind
            ),
            LookupFailure::NotFound => {
                debug!(kind = %object.kind, "an owner is gone; using what is known")
            }
            _ => {
                debug!(kind = %object.kind, "{} is not a kind the agent reads; it is taken as the root", object.kind)
            }
        }
    }

    /// The metadata of one object, from the cache or one (shared) request.
    pub async fn lookup(&self, object: &ObjectRef) -> Lookup {
        let Some(resource) = readable_resource(&object.api_version, &object.kind) else {
            self.note_failure(object, LookupFailure::Unreadable, "");
            return Err(LookupFailure::Unreadable);
        };
        self.lookup_as(object, resource).await
    }

    /// [`lookup`](Self::lookup) of an object whose API resource is known.
    async fn lookup_as(&self, object: &ObjectRef, resource: ApiResource) -> Lookup {
        let key = object.key("");
        if let Some(hit) = self.cached(&key) {
            Metrics::inc(&self.metrics.owner_lookups, "outcome", "cached");
            return hit;
        }
        let (shared, leader) = {
            let mut in_flight = self.in_flight.lock().unwrap();
            match in_flight.get(&key) {
                Some(shared) => (shared.clone(), false),
                None => {
                    let fetch = fetch(self.client.clone(), resource, object.clone())
                        .boxed()
                        .shared();
                    in_flight.insert(key.clone(), fetch.clone());
                    (fetch, true)
                }
            }
        };
        if !leader {
            Metrics::inc(&self.metrics.owner_lookups, "outcome", "coalesced");
            return shared.await.map_err(|(failure, _)| failure);
        }
        let result = shared.await;
        self.in_flight.lock().unwrap().remove(&key);
        let lookup = match result {
            Ok(meta) => {
                Metrics::inc(&self.metrics.owner_lookups, "outcome", "fetched");
                Ok(meta)
            }
            Err((failure, detail)) => {
                self.note_failure(object, failure, &detail);
                Err(failure)
            }
        };
        self.store(key, lookup.clone());
        lookup
    }

    /// The chain from `involved` up to its root: `[involved, owner, …, root]`, each link's
    /// metadata when it could be read.
    pub async fn chain(&self, involved: &ObjectRef) -> Chain {
        let mut links = vec![Link {
            object: involved.clone(),
            meta: None,
        }];
        while links.len() < MAX_DEPTH {
            let current = &links.last().expect("never empty").object;
            let Ok(meta) = self.lookup(current).await else {
                break;
            };
            let owner = meta.controller.clone();
            let last = links.last_mut().expect("never empty");
            if last.object.uid.is_empty() {
                last.object.uid = meta.object.uid.clone();
            }
            last.meta = Some(meta);
            match owner {
                Some(owner) => links.push(Link {
                    object: owner,
                    meta: None,
                }),
                None => break,
            }
        }
        Chain { links }
    }

    /// The `k8s.sentry.io/dsn` annotation of a namespace, if readable (cached like objects).
    pub async fn namespace_dsn(&self, namespace: &str) -> Option<String> {
        if namespace.is_empty() {
            return None;
        }
        let object = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            name: namespace.into(),
            ..Default::default()
        };
        let resource = ApiResource::erase::<core::v1::Namespace>(&());
        self.lookup_as(&object, resource).await.ok()?.dsn.clone()
    }
}

/// One GET of an object's metadata.
async fn fetch(client: kube::Client, resource: ApiResource, object: ObjectRef) -> Fetched {
    let api: Api<DynamicObject> = if object.namespace.is_empty() {
        Api::all_with(client, &resource)
    } else {
        Api::namespaced_with(client, &object.namespace, &resource)
    };
    let result = tokio::time::timeout(LOOKUP_TIMEOUT, api.get_metadata(&object.name)).await;
    let meta = match result {
        Err(_) => {
            return Err((
                LookupFailure::Error,
                format!("no answer within {LOOKUP_TIMEOUT:?}"),
            ));
        }
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
            return Err((LookupFailure::Forbidden, status.message.clone()));
        }
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => {
            return Err((LookupFailure::NotFound, status.message.clone()));
        }
        Ok(Err(e)) => return Err((LookupFailure::Error, e.to_string())),
        Ok(Ok(meta)) => meta.metadata,
    };
    // A recreated object (same name, new uid) is not the one the event is about.
    if !object.uid.is_empty() && meta.uid.as_deref().is_some_and(|uid| uid != object.uid) {
        return Err((LookupFailure::NotFound, "recreated since".into()));
    }
    let controller = meta
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.controller == Some(true))
        .map(|o| ObjectRef {
            api_version: o.api_version,
            kind: o.kind,
            name: o.name,
            namespace: object.namespace.clone(),
            uid: o.uid,
            field_path: String::new(),
        });
    let dsn = meta
        .annotations
        .and_then(|mut a| a.remove(DSN_ANNOTATION))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    Ok(Arc::new(Meta {
        object: ObjectRef {
            uid: meta.uid.unwrap_or_default(),
            field_path: String::new(),
            ..object
        },
        controller,
        dsn,
    }))
}

/// One object of a chain and, if it could be read, its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub object: ObjectRef,
    pub meta: Option<Arc<Meta>>,
}

/// An involved object and its owners, up to the root.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub links: Vec<Link>,
}

impl Chain {
    /// A chain of just the involved object (nothing looked up).
    pub fn of(involved: &ObjectRef) -> Self {
        Self {
            links: vec![Link {
                object: involved.clone(),
                meta: None,
            }],
        }
    }

    pub fn root(&self) -> &ObjectRef {
        &self.links.last().expect("a chain is never empty").object
    }

    pub fn objects(&self) -> impl Iterator<Item = &ObjectRef> {
        self.links.iter().map(|l| &l.object)
    }

    /// The nearest `k8s.sentry.io/dsn` annotation: the involved object's, then its owners'.
    pub fn dsn_annotation(&self) -> Option<(&ObjectRef, &str)> {
        self.links
            .iter()
            .find_map(|l| Some((&l.object, l.meta.as_ref()?.dsn.as_deref()?)))
    }
}
