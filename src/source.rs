//! The event source: one `kube::runtime::watcher` per namespace (or one cluster-wide),
//! merged into one stream. Watch errors are logged with the apiserver's message, passed on
//! (the pipeline counts them), backed off and retried; the stream never ends on its own.

use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{debug, info, warn};

use crate::config::Namespaces;
use crate::labels::label_enum;
use crate::leadership::Generation;

label_enum! {
    /// What a watch watches.
    pub enum WatchedResource {
        Events = "events",
        CronJobs = "cronjobs",
        Jobs = "jobs",
    }
}

label_enum! {
    /// What went wrong with a watch (`sentry_k8s_watch_errors_total{kind}`).
    pub enum WatchErrorKind {
        /// RBAC: the service account may not list or watch events here.
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
        object: DynamicObject,
    },
    /// The list is complete; live changes follow.
    ListDone {
        watch: usize,
    },
    Applied {
        watch: usize,
        object: DynamicObject,
    },
    Deleted {
        watch: usize,
        object: DynamicObject,
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
    let resource = resource.as_str();
    use kube::Error as KubeError;
    use watcher::Error as WatchError;
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

/// The merged stream of every configured watch, restarted (every watch relisting) whenever
/// a new generation is published — a takeover of the leadership.
pub fn event_source(
    client: kube::Client,
    namespaces: &Namespaces,
    generations: tokio::sync::watch::Receiver<Generation>,
) -> impl Stream<Item = SourceItem> + Send + 'static + use<> {
    let namespaces = namespaces.clone();
    stream::unfold(generations, move |mut generations| {
        let (client, namespaces) = (client.clone(), namespaces.clone());
        async move {
            let generation = Arc::new(generations.borrow_and_update().clone());
            let mut next = generations.clone();
            let until_next = async move {
                if next.changed().await.is_err() {
                    // Nobody will start another generation.
                    std::future::pending::<()>().await;
                }
            };
            let watches = watches(client, &namespaces, generation).take_until(until_next);
            Some((watches, generations))
        }
    })
    .flatten()
}

/// One generation's watches.
fn watches(
    client: kube::Client,
    namespaces: &Namespaces,
    generation: Arc<Generation>,
) -> impl Stream<Item = SourceItem> + Send + 'static + use<> {
    let resource = ApiResource::erase::<CoreEvent>(&());
    let watches = watch_scopes(namespaces)
        .into_iter()
        .enumerate()
        .map(|(watch, scope)| {
            let api: Api<DynamicObject> = match &scope {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            info!(
                namespace = scope_name(&scope),
                generation = generation.number,
                "watching events"
            );
            let mut first = Some(generation.clone());
            watcher(api, watcher::Config::default())
                .default_backoff()
                .filter_map(move |item| {
                    let out = match item {
                        Ok(watcher::Event::Init) => Some(SourceItem::ListStarted {
                            watch,
                            generation: first.take(),
                        }),
                        Ok(watcher::Event::InitApply(object)) => {
                            Some(SourceItem::Listed { watch, object })
                        }
                        Ok(watcher::Event::InitDone) => Some(SourceItem::ListDone { watch }),
                        Ok(watcher::Event::Apply(object)) => {
                            Some(SourceItem::Applied { watch, object })
                        }
                        Ok(watcher::Event::Delete(object)) => {
                            Some(SourceItem::Deleted { watch, object })
                        }
                        Err(error) => Some(SourceItem::Failed {
                            watch,
                            kind: report_error(WatchedResource::Events, &scope, &error),
                        }),
                    };
                    std::future::ready(out)
                })
                .boxed()
        })
        .collect::<Vec<_>>();
    stream::select_all(watches)
}
