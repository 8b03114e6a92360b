//! Root owner resolution: follows controller ownerReferences (Pod → ReplicaSet →
//! Deployment, Pod → Job → CronJob, Pod → StatefulSet/DaemonSet, … → a custom resource;
//! the first ownerReference when none is the controller, as the Go agent does) with
//! metadata-only lookups, never a GET per event. Lookup and cache only: what the
//! metadata means (grouping, routing) is decided elsewhere.
//!
//! Answers are cached ([`cache`]); concurrent lookups of one object share one request,
//! which runs as its own task so that a caller giving up (a shutdown, a timeout) neither
//! cancels it for the others nor leaves its answer uncached. A kind the agent cannot read
//! (a custom resource, an RBAC denial, an object that is gone) ends the chain where the
//! ownerReferences left it: degraded, logged once per kind, counted, never blocking.

pub mod cache;
pub mod chain;

use std::collections::HashMap;
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
use cache::{CacheLimits, Lookup, LookupFailure, LookupOutcome, Meta, OwnerCache};
pub use chain::{Chain, Link};

/// A lookup taking longer than this is abandoned (the event goes on with what is known).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Owner chains longer than this are cut (real ones have at most three links).
const MAX_DEPTH: usize = 6;
/// Kinds (and failure classes) already logged about, so each is logged once.
const LOGGED_KINDS: usize = 1_000;

/// A fetch's result: the failure comes with the apiserver's message, for the log.
type Fetched = Result<Arc<Meta>, (LookupFailure, String)>;

/// The API resource behind a kind the agent reads (and that RBAC must allow).
pub fn readable_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    Some(match (api_version, kind) {
        ("v1" | "", "Pod") => ApiResource::erase::<core::v1::Pod>(&()),
        ("v1" | "", "ReplicationController") => {
            ApiResource::erase::<core::v1::ReplicationController>(&())
        }
        ("v1" | "", "Namespace") => ApiResource::erase::<core::v1::Namespace>(&()),
        ("apps/v1" | "", "ReplicaSet") => ApiResource::erase::<apps::v1::ReplicaSet>(&()),
        ("apps/v1" | "", "Deployment") => ApiResource::erase::<apps::v1::Deployment>(&()),
        ("apps/v1" | "", "StatefulSet") => ApiResource::erase::<apps::v1::StatefulSet>(&()),
        ("apps/v1" | "", "DaemonSet") => ApiResource::erase::<apps::v1::DaemonSet>(&()),
        ("batch/v1" | "", "Job") => ApiResource::erase::<batch::v1::Job>(&()),
        ("batch/v1" | "", "CronJob") => ApiResource::erase::<batch::v1::CronJob>(&()),
        _ => return None,
    })
}

struct Inner {
    client: kube::Client,
    cache: Mutex<OwnerCache>,
    in_flight: Mutex<HashMap<String, Shared<BoxFuture<'static, Lookup>>>>,
    logged: Mutex<LruCache<String, ()>>,
    metrics: Metrics,
}

/// Metadata lookups with a cache; cheap to clone.
#[derive(Clone)]
pub struct OwnerResolver {
    inner: Arc<Inner>,
}

impl OwnerResolver {
    pub fn new(client: kube::Client, limits: CacheLimits, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                cache: Mutex::new(OwnerCache::new(limits)),
                in_flight: Mutex::new(HashMap::new()),
                logged: Mutex::new(crate::bounded::lru(
                    NonZeroUsize::new(LOGGED_KINDS).expect("non-zero"),
                )),
                metrics,
            }),
        }
    }

    /// The metadata of one object, from the cache or one (shared) request.
    pub async fn lookup(&self, object: &ObjectRef) -> Lookup {
        let Some(resource) = readable_resource(&object.api_version, &object.kind) else {
            self.inner
                .note_failure(object, LookupFailure::Unreadable, "");
            return Err(LookupFailure::Unreadable);
        };
        let key = object.key("");
        let metrics = &self.inner.metrics;
        if let Some(hit) = self.inner.cache.lock().unwrap().get(&key, Instant::now()) {
            metrics.owner_lookups.inc(LookupOutcome::Cached);
            return hit;
        }
        let shared = {
            let mut in_flight = self.inner.in_flight.lock().unwrap();
            match in_flight.get(&key) {
                Some(shared) => {
                    metrics.owner_lookups.inc(LookupOutcome::Coalesced);
                    shared.clone()
                }
                None => {
                    let inner = self.inner.clone();
                    let (task_key, object) = (key.clone(), object.clone());
                    // Its own task: it completes (and is cached) even if every caller
                    // stops waiting.
                    let task = tokio::spawn(async move {
                        let fetched = fetch(inner.client.clone(), resource, object.clone()).await;
                        inner.finish(task_key, &object, fetched)
                    });
                    let shared = async move { task.await.unwrap_or(Err(LookupFailure::Error)) }
                        .boxed()
                        .shared();
                    in_flight.insert(key, shared.clone());
                    shared
                }
            }
        };
        shared.await
    }

    /// The chain from `involved` up to its root: `[involved, owner, …, root]`, each link's
    /// metadata when it could be read.
    pub async fn chain(&self, involved: &ObjectRef) -> Chain {
        let mut chain = Chain::of(involved);
        while chain.links.len() < MAX_DEPTH {
            let Ok(meta) = self.lookup(chain.root()).await else {
                break;
            };
            if !chain.climb(meta) {
                break;
            }
        }
        chain
    }

    /// The owner chain as far as the cache knows it, without a request: it ends at the
    /// first object whose metadata is not cached (or expired). For occurrences that are
    /// only remembered: their breadcrumbs wait under the deepest object known until a
    /// reported occurrence resolves the whole chain (see `Enricher`).
    pub fn known_chain(&self, involved: &ObjectRef) -> Chain {
        let mut chain = Chain::of(involved);
        let mut cache = self.inner.cache.lock().unwrap();
        let now = Instant::now();
        while chain.links.len() < MAX_DEPTH {
            let Some(Ok(meta)) = cache.get(&chain.root().key(""), now) else {
                break;
            };
            if !chain.climb(meta) {
                break;
            }
        }
        chain
    }

    /// A namespace's metadata (for its annotations), cached like objects.
    pub async fn namespace(&self, namespace: &str) -> Option<Arc<Meta>> {
        if namespace.is_empty() {
            return None;
        }
        let object = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            name: namespace.into(),
            ..Default::default()
        };
        self.lookup(&object).await.ok()
    }
}

impl Inner {
    /// Records a fetch's answer: cached, counted, logged; the request is no longer in flight.
    fn finish(&self, key: String, object: &ObjectRef, fetched: Fetched) -> Lookup {
        let lookup = match fetched {
            Ok(meta) => {
                self.metrics.owner_lookups.inc(LookupOutcome::Fetched);
                Ok(meta)
            }
            Err((failure, detail)) => {
                self.note_failure(object, failure, &detail);
                Err(failure)
            }
        };
        {
            let mut cache = self.cache.lock().unwrap();
            if cache.put(key.clone(), lookup.clone(), Instant::now()) {
                self.metrics.owner_cache_evictions.inc();
            }
            self.metrics.owner_cache_entries.set(cache.len() as i64);
        }
        // After the cache has it: a caller arriving now finds one or the other.
        self.in_flight.lock().unwrap().remove(&key);
        lookup
    }

    fn note_failure(&self, object: &ObjectRef, failure: LookupFailure, detail: &str) {
        let outcome = failure.outcome();
        self.metrics.owner_lookups.inc(outcome);
        if failure == LookupFailure::Error {
            warn!(kind = %object.kind, namespace = %object.namespace, "owner lookup failed: {detail}");
            return;
        }
        let key = format!("{}:{}", outcome.as_str(), object.kind);
        if self.logged.lock().unwrap().put(key, ()).is_some() {
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
    // The controller, else (as the Go agent does) the first owner.
    let references = meta.owner_references.unwrap_or_default();
    let controller = references
        .iter()
        .position(|o| o.controller == Some(true))
        .or_else(|| (!references.is_empty()).then_some(0))
        .map(|at| references[at].clone())
        .map(|o| ObjectRef {
            api_version: o.api_version,
            kind: o.kind,
            name: o.name,
            namespace: object.namespace.clone(),
            uid: o.uid,
            field_path: String::new(),
        });
    Ok(Arc::new(Meta {
        object: ObjectRef {
            uid: meta.uid.unwrap_or_default(),
            field_path: String::new(),
            ..object
        },
        controller,
        labels: cache::kept(meta.labels.unwrap_or_default()),
        annotations: cache::kept(meta.annotations.unwrap_or_default()),
    }))
}

#[cfg(test)]
mod tests {
    use harness::fixtures::ObjectFixture;
    use harness::{DelayRule, FakeApiServer};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn limits() -> CacheLimits {
        CacheLimits {
            capacity: NonZeroUsize::new(100).unwrap(),
            ttl: Duration::from_secs(300),
        }
    }

    fn pod(server: &FakeApiServer) -> ObjectRef {
        let created = server
            .create(ObjectFixture::new("Pod", "shop", "web-1").build())
            .unwrap();
        ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "web-1".into(),
            namespace: "shop".into(),
            uid: created["metadata"]["uid"].as_str().unwrap().into(),
            field_path: String::new(),
        }
    }

    fn gets(server: &FakeApiServer) -> usize {
        server
            .requests(0)
            .iter()
            .filter(|r| r.path == "/api/v1/namespaces/shop/pods/web-1")
            .count()
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_request_and_later_ones_hit_the_cache() {
        let server = FakeApiServer::start().await.unwrap();
        let pod = pod(&server);
        server.delay(DelayRule {
            path: "/api/v1/namespaces/shop/pods/web-1".into(),
            method: None,
            millis: 200,
            count: None,
        });
        let metrics = Metrics::new();
        let resolver = OwnerResolver::new(server.client(), limits(), metrics.clone());
        let lookups = (0..5).map(|_| resolver.lookup(&pod));
        let answers = tokio::time::timeout(DEADLINE, futures::future::join_all(lookups))
            .await
            .unwrap();
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().unwrap().object.name == "web-1")
        );
        assert_eq!(gets(&server), 1, "one request for five concurrent lookups");
        assert_eq!(metrics.owner_lookups.get(LookupOutcome::Coalesced), 4);
        resolver.lookup(&pod).await.unwrap();
        assert_eq!(gets(&server), 1);
        assert_eq!(metrics.owner_lookups.get(LookupOutcome::Cached), 1);
    }

    #[tokio::test]
    async fn a_cancelled_first_caller_neither_cancels_the_request_nor_loses_its_answer() {
        let server = FakeApiServer::start().await.unwrap();
        let pod = pod(&server);
        server.delay(DelayRule {
            path: "/api/v1/namespaces/shop/pods/web-1".into(),
            method: None,
            millis: 300,
            count: None,
        });
        let metrics = Metrics::new();
        let resolver = OwnerResolver::new(server.client(), limits(), metrics.clone());
        let first = tokio::spawn({
            let (resolver, pod) = (resolver.clone(), pod.clone());
            async move { resolver.lookup(&pod).await }
        });
        // The first caller's request is in flight; then the caller is gone.
        tokio::time::timeout(DEADLINE, async {
            while resolver.inner.in_flight.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        first.abort();
        let second = tokio::time::timeout(DEADLINE, resolver.lookup(&pod))
            .await
            .unwrap();
        assert_eq!(second.unwrap().object.uid, pod.uid);
        assert_eq!(
            gets(&server),
            1,
            "the second caller joined the first request"
        );
        // Its answer was cached although its first caller never saw it.
        resolver.lookup(&pod).await.unwrap();
        assert_eq!(gets(&server), 1);
        assert_eq!(metrics.owner_lookups.get(LookupOutcome::Cached), 1);
        assert_eq!(metrics.owner_cache_entries.get(), 1);
    }

    #[tokio::test]
    async fn chains_follow_controllers_to_the_root_and_keep_the_agents_annotations() {
        let server = FakeApiServer::start().await.unwrap();
        let deployment = server
            .create(
                ObjectFixture::new("Deployment", "shop", "web")
                    .annotation("k8s.sentry.io/dsn", "https://k@sentry.example.com/2")
                    .annotation("kubectl.kubernetes.io/last-applied-configuration", "{}")
                    .build(),
            )
            .unwrap();
        let replicaset = server
            .create(
                ObjectFixture::new("ReplicaSet", "shop", "web-7d")
                    .owned_by(&deployment)
                    .build(),
            )
            .unwrap();
        server
            .create(
                ObjectFixture::new("Pod", "shop", "web-7d-x")
                    .owned_by(&replicaset)
                    .build(),
            )
            .unwrap();
        let resolver = OwnerResolver::new(server.client(), limits(), Metrics::new());
        let chain = resolver
            .chain(&ObjectRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: "web-7d-x".into(),
                namespace: "shop".into(),
                ..Default::default()
            })
            .await;
        let kinds: Vec<&str> = chain.objects().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["Pod", "ReplicaSet", "Deployment"]);
        let root = chain.links.last().unwrap().meta.as_ref().unwrap();
        assert_eq!(
            root.annotations,
            [(
                "k8s.sentry.io/dsn".to_string(),
                "https://k@sentry.example.com/2".to_string()
            )],
            "last-applied-configuration is never kept"
        );
        assert!(
            !chain.links[0].object.uid.is_empty(),
            "the pod's uid is filled in"
        );
    }
}
