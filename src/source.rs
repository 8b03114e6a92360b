//! The source: one `kube::runtime::watcher` of Events per namespace (or one cluster-wide)
//! and, with `SENTRY_K8S_WATCH_PODS`, one of Pods beside each, merged into one stream.
//! Watch errors are logged with the apiserver's message, passed on (the pipeline counts
//! them), backed off and retried; the stream never ends on its own.

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{debug, info, warn};

use crate::config::{Config, Namespaces};
use crate::labels::label_enum;
use crate::pods::PodView;

/// Pods per page of a pod list: a page is held whole while it is read, and a pod (its
/// spec, managedFields) is far larger than an event.
const POD_PAGE_SIZE: u32 = 100;

/// What a watch watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    Events,
    /// Pods, for their containers' terminations.
    Pods,
}

/// One watch: a feed in a scope (a namespace, or `None` for the whole cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub feed: Feed,
    pub scope: Option<String>,
}

impl Watch {
    /// How logs and `/readyz` name it: `shop`, or `shop (pods)`.
    pub fn name(&self) -> String {
        let scope = scope_name(&self.scope);
        match self.feed {
            Feed::Events => scope.to_string(),
            Feed::Pods => format!("{scope} (pods)"),
        }
    }
}

/// Every watch of the configuration: the event watches, then the pod watches.
pub fn watches(config: &Config) -> Vec<Watch> {
    let scopes = watch_scopes(&config.namespaces);
    let mut feeds = vec![Feed::Events];
    if config.watch_pods {
        feeds.push(Feed::Pods);
    }
    feeds
        .into_iter()
        .flat_map(|feed| {
            scopes.iter().map(move |scope| Watch {
                feed,
                scope: scope.clone(),
            })
        })
        .collect()
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

/// An object a watch delivered.
#[derive(Debug, Clone)]
pub enum Object {
    Event(DynamicObject),
    Pod(PodView),
}

/// What one watch says, tagged with which watch said it.
#[derive(Debug, Clone)]
pub enum SourceItem {
    /// A list (the first, or a relist after 410) began; `Listed` items follow.
    ListStarted {
        watch: usize,
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
fn report_error(watch: &Watch, error: &watcher::Error) -> WatchErrorKind {
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
    let namespace = scope_name(&watch.scope);
    let feed = match watch.feed {
        Feed::Events => "event",
        Feed::Pods => "pod",
    };
    match (kind, status) {
        (WatchErrorKind::Expired, _) => debug!(namespace, "{feed} watch expired (410); relisting"),
        (_, Some(status)) => warn!(
            namespace,
            code = status.code,
            reason = %status.reason,
            "{feed} watch failed: {}; retrying with backoff",
            status.message
        ),
        _ => warn!(
            namespace,
            "{feed} watch failed: {error}; retrying with backoff"
        ),
    }
    kind
}

/// One watcher's stream as source items.
fn items<K: 'static>(
    index: usize,
    watch: Watch,
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    object: fn(K) -> Object,
) -> futures::stream::BoxStream<'static, SourceItem> {
    stream
        .map(move |item| match item {
            Ok(watcher::Event::Init) => SourceItem::ListStarted { watch: index },
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
                kind: report_error(&watch, &error),
            },
        })
        .boxed()
}

/// The merged stream of `watches` (see [`watches`]); items name their watch by index.
pub fn source(
    client: kube::Client,
    watches: &[Watch],
) -> impl Stream<Item = SourceItem> + Send + 'static {
    let events = ApiResource::erase::<CoreEvent>(&());
    let streams = watches
        .iter()
        .enumerate()
        .map(|(index, watch)| {
            info!(namespace = scope_name(&watch.scope), feed = ?watch.feed, "watching");
            match watch.feed {
                Feed::Events => {
                    let api: Api<DynamicObject> = match &watch.scope {
                        Some(ns) => Api::namespaced_with(client.clone(), ns, &events),
                        None => Api::all_with(client.clone(), &events),
                    };
                    let stream = watcher(api, watcher::Config::default()).default_backoff();
                    items(index, watch.clone(), stream, Object::Event)
                }
                Feed::Pods => {
                    let api: Api<PodView> = match &watch.scope {
                        Some(ns) => Api::namespaced(client.clone(), ns),
                        None => Api::all(client.clone()),
                    };
                    let config = watcher::Config::default().page_size(POD_PAGE_SIZE);
                    let stream = watcher(api, config).default_backoff();
                    items(index, watch.clone(), stream, Object::Pod)
                }
            }
        })
        .collect::<Vec<_>>();
    stream::select_all(streams)
}
