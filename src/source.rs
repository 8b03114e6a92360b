//! The source: one `kube::runtime::watcher` of Events per namespace (or one cluster-wide)
//! and, with `SENTRY_K8S_WATCH_PODS`, one of Pods beside each, merged into one stream —
//! restarted whenever a new [`Generation`] begins (a takeover of the leadership). Watch
//! errors are logged with the apiserver's message, passed on (the pipeline counts them),
//! backed off and retried; the stream never ends on its own.

use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{debug, info, warn};

use crate::config::{Config, Namespaces};
use crate::labels::label_enum;
use crate::leadership::Generation;
use crate::normalize::EventObject;
use crate::pods::PodView;

/// Pods per page of a pod list: a page is held whole while it is read, and a pod (its
/// spec, managedFields) is far larger than an event.
const POD_PAGE_SIZE: u32 = 100;

label_enum! {
    /// What a watch watches.
    pub enum WatchedResource {
        Events = "events",
        /// Pods, for their containers' terminations.
        Pods = "pods",
        CronJobs = "cronjobs",
        Jobs = "jobs",
    }
}

label_enum! {
    /// What went wrong with a watch (`sentry_k8s_watch_errors_total{kind}`).
    pub enum WatchErrorKind {
        /// RBAC: the service account may not list or watch here.
        Forbidden = "forbidden",
        Unauthorized = "unauthorized",
        /// 410: the resourceVersion is too old; a relist follows (routine).
        Expired = "expired",
        /// The initial list failed.
        List = "list",
        /// Starting or reading the watch failed.
        Watch = "watch",
        Other = "other",
    }
}

/// One watch of the pipeline: a resource in a scope (a namespace, or `None` for the whole
/// cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub resource: WatchedResource,
    pub scope: Option<String>,
}

impl Watch {
    /// How logs and `/readyz` name it: `events in shop`.
    pub fn name(&self) -> String {
        format!("{} in {}", self.resource.as_str(), scope_name(&self.scope))
    }
}

/// The pipeline's watches for the configuration: the event watches, then the pod watches.
pub fn watches(config: &Config) -> Vec<Watch> {
    let scopes = watch_scopes(&config.namespaces);
    let mut resources = vec![WatchedResource::Events];
    if config.watch_pods {
        resources.push(WatchedResource::Pods);
    }
    resources
        .into_iter()
        .flat_map(|resource| {
            scopes.iter().map(move |scope| Watch {
                resource,
                scope: scope.clone(),
            })
        })
        .collect()
}

/// An object a watch delivered.
#[derive(Debug, Clone)]
pub enum Object {
    Event(EventObject),
    Pod(PodView),
}

/// What one watch says, tagged with which watch said it.
#[derive(Debug, Clone)]
pub enum SourceItem {
    /// A list (the first, or a relist after 410) began; `Listed` items follow. The first
    /// list of each watch in a generation carries it: that list is judged against its
    /// checkpoint (or, without one, as a first start).
    ListStarted {
        watch: usize,
        generation: Option<Arc<Generation>>,
    },
    Listed {
        watch: usize,
        object: Object,
    },
    /// The list is complete; live changes follow.
    ListDone {
        watch: usize,
    },
    Applied {
        watch: usize,
        object: Object,
    },
    Deleted {
        watch: usize,
        object: Object,
    },
    /// The watch failed (already logged); it backs off and retries.
    Failed {
        watch: usize,
        kind: WatchErrorKind,
    },
}

/// What each watch covers, for logs: a namespace, or `None` for the whole cluster.
pub fn watch_scopes(namespaces: &Namespaces) -> Vec<Option<String>> {
    match namespaces {
        Namespaces::All => vec![None],
        Namespaces::List(list) => list.iter().cloned().map(Some).collect(),
    }
}

/// A scope as logs and `/readyz` name it.
pub fn scope_name(scope: &Option<String>) -> &str {
    scope.as_deref().unwrap_or("all namespaces")
}

/// Classifies and logs a watch error. 410s are routine (a relist follows); 403s mean RBAC.
pub fn report_error(
    resource: WatchedResource,
    scope: &Option<String>,
    error: &watcher::Error,
) -> WatchErrorKind {
    use kube::Error as KubeError;
    use watcher::Error as WatchError;
    let resource = resource.as_str();
    let status = match error {
        WatchError::InitialListFailed(KubeError::Api(s))
        | WatchError::WatchStartFailed(KubeError::Api(s))
        | WatchError::WatchFailed(KubeError::Api(s)) => Some(s.as_ref()),
        WatchError::WatchError(s) => Some(s.as_ref()),
        _ => None,
    };
    let kind = match (status.map(|s| s.code), error) {
        (Some(403), _) => WatchErrorKind::Forbidden,
        (Some(401), _) => WatchErrorKind::Unauthorized,
        (Some(410), _) => WatchErrorKind::Expired,
        (_, WatchError::InitialListFailed(_)) => WatchErrorKind::List,
        (_, WatchError::WatchStartFailed(_) | WatchError::WatchFailed(_)) => WatchErrorKind::Watch,
        _ => WatchErrorKind::Other,
    };
    let namespace = scope_name(scope);
    match (kind, status) {
        (WatchErrorKind::Expired, _) => {
            debug!(namespace, resource, "watch expired (410); relisting")
        }
        (_, Some(status)) => warn!(
            namespace,
            resource,
            code = status.code,
            reason = %status.reason,
            "{resource} watch failed: {}; retrying with backoff",
            status.message
        ),
        _ => warn!(
            namespace,
            resource, "{resource} watch failed: {error}; retrying with backoff"
        ),
    }
    kind
}

/// One watcher's stream as source items; its first list carries the generation.
fn items<K: 'static>(
    index: usize,
    watch: Watch,
    generation: Arc<Generation>,
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    object: fn(K) -> Object,
) -> futures::stream::BoxStream<'static, SourceItem> {
    let mut first = Some(generation);
    stream
        .map(move |item| match item {
            Ok(watcher::Event::Init) => SourceItem::ListStarted {
                watch: index,
                generation: first.take(),
            },
            Ok(watcher::Event::InitApply(o)) => SourceItem::Listed {
                watch: index,
                object: object(o),
            },
            Ok(watcher::Event::InitDone) => SourceItem::ListDone { watch: index },
            Ok(watcher::Event::Apply(o)) => SourceItem::Applied {
                watch: index,
                object: object(o),
            },
            Ok(watcher::Event::Delete(o)) => SourceItem::Deleted {
                watch: index,
                object: object(o),
            },
            Err(error) => SourceItem::Failed {
                watch: index,
                kind: report_error(watch.resource, &watch.scope, &error),
            },
        })
        .boxed()
}

/// One generation's watches, merged.
fn generation(
    client: &kube::Client,
    watches: &[Watch],
    generation: Arc<Generation>,
) -> impl Stream<Item = SourceItem> + Send + 'static + use<> {
    let streams = watches
        .iter()
        .enumerate()
        .map(|(index, watch)| {
            info!(
                namespace = scope_name(&watch.scope),
                resource = watch.resource.as_str(),
                generation = generation.number,
                "watching"
            );
            let (client, watch, generation) = (client.clone(), watch.clone(), generation.clone());
            match watch.resource {
                WatchedResource::Pods => {
                    let api: Api<PodView> = match &watch.scope {
                        Some(ns) => Api::namespaced(client, ns),
                        None => Api::all(client),
                    };
                    let config = watcher::Config::default().page_size(POD_PAGE_SIZE);
                    let stream = watcher(api, config).default_backoff();
                    items(index, watch, generation, stream, Object::Pod)
                }
                _ => {
                    let api: Api<EventObject> = match &watch.scope {
                        Some(ns) => Api::namespaced(client, ns),
                        None => Api::all(client),
                    };
                    let stream = watcher(api, watcher::Config::default()).default_backoff();
                    items(index, watch, generation, stream, Object::Event)
                }
            }
        })
        .collect::<Vec<_>>();
    stream::select_all(streams)
}

/// The merged stream of `watches` (see [`watches`]); items name their watch by index. Every
/// watch starts over (relists) when `generations` publishes a new generation.
pub fn source(
    client: kube::Client,
    watches: &[Watch],
    generations: tokio::sync::watch::Receiver<Generation>,
) -> impl Stream<Item = SourceItem> + Send + 'static + use<> {
    let watches = watches.to_vec();
    stream::unfold(generations, move |mut generations| {
        let this = Arc::new(generations.borrow_and_update().clone());
        let mut next = generations.clone();
        let until_next = async move {
            if next.changed().await.is_err() {
                // Nobody will start another generation.
                std::future::pending::<()>().await;
            }
        };
        let run = generation(&client, &watches, this).take_until(until_next);
        std::future::ready(Some((run, generations)))
    })
    .flatten()
}
