//! Watch streams: replay from a resourceVersion, 410 below the compaction floor, streaming
//! lists, bookmarks, selectors (with ADDED/DELETED on entering/leaving), timeouts, partitions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use hyper::http::request::Parts;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::State;
use super::api::{Query, Target, flag, render};
use super::resources::ResourceDef;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Change, ChangeType, Since, WatchMsg};
use crate::serve::Body;

/// The server-side watch timeout when the client sends none (the real default is a random
/// 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    res: &'static ResourceDef,
    namespace: Option<String>,
    fields: FieldSelector,
    labels: LabelSelector,
    metadata_only: bool,
}

impl Filter {
    fn matches(&self, stored: &Value) -> bool {
        if self.fields.is_empty() && self.labels.is_empty() {
            return true;
        }
        let view = render(self.res, stored, false);
        self.fields.matches(&view) && self.labels.matches(&view)
    }

    /// The watch event a change produces for this watcher, if any. A modification that
    /// moves an object into or out of the selection is an ADDED or DELETED, as in the
    /// real watch cache.
    fn event_for(&self, change: &Change) -> Option<Value> {
        if let Some(ns) = &self.namespace
            && change.key.namespace != *ns
        {
            return None;
        }
        let now = self.matches(&change.object);
        let kind = match change.kind {
            ChangeType::Added | ChangeType::Deleted => now.then_some(change.kind),
            ChangeType::Modified => {
                let before = change.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some(ChangeType::Modified),
                    (false, true) => Some(ChangeType::Added),
                    (true, false) => Some(ChangeType::Deleted),
                    (false, false) => None,
                }
            }
        }?;
        Some(json!({
            "type": kind.as_watch_type(),
            "object": render(self.res, &change.object, self.metadata_only),
        }))
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Value {
        let (kind, api_version) = if self.metadata_only {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (self.res.kind.to_string(), self.res.api_version())
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}})
    }
}

fn line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).expect("watch events serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(Frame::data(bytes)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(StreamBody::new(stream).boxed())
        .expect("static response parts are valid")
}

/// Validates the parameters, opens the subscription and streams it.
pub fn start(
    state: &Arc<State>,
    target: &Target,
    query: &Query,
    metadata_only: bool,
    parts: &Parts,
    user: &str,
) -> Result<Response<Body>, ApiError> {
    let res = target.res;
    let filter = Filter {
        res,
        namespace: target.namespace.clone(),
        fields: FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str), res)?,
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
        metadata_only,
    };
    let bookmarks = flag(query, "allowWatchBookmarks");
    let send_initial = flag(query, "sendInitialEvents");
    if send_initial {
        if !bookmarks {
            return Err(ApiError::invalid(
                res,
                "",
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        if query.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                res,
                "",
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
    }
    let rv = query.get("resourceVersion").map_or("", String::as_str);
    let since = if send_initial || rv.is_empty() || rv == "0" {
        Since::Now
    } else {
        Since::Rv(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        )
    };
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request("timeoutSeconds must be an integer"))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let subscribed = state.store.lock().unwrap().subscribe(
        res.storage,
        since,
        parts.uri.path().to_string(),
        parts.uri.query().unwrap_or("").to_string(),
        user.to_string(),
    );
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let (current_rv, initial, rx) = match subscribed {
        Ok(subscribed) => subscribed,
        Err(err) => {
            // Like the real server: HTTP 200, then one ERROR event carrying the 410.
            let event = json!({"type": "ERROR", "object": err.to_status()});
            let _ = out_tx.try_send(line(&event));
            return Ok(stream_response(out_rx));
        }
    };
    let state = state.clone();
    tokio::spawn(async move {
        let session = WatchSession {
            state,
            filter,
            out: out_tx,
            bookmarks,
        };
        session
            .run(initial, rx, send_initial, current_rv, timeout)
            .await;
    });
    Ok(stream_response(out_rx))
}

struct WatchSession {
    state: Arc<State>,
    filter: Filter,
    out: mpsc::Sender<Bytes>,
    bookmarks: bool,
}

impl WatchSession {
    /// Forwards one message; false once the client is gone.
    async fn forward(&self, msg: WatchMsg) -> bool {
        let event = match msg {
            WatchMsg::Change(change) => self.filter.event_for(&change),
            WatchMsg::Bookmark(rv) => self.bookmarks.then(|| self.filter.bookmark(rv, false)),
        };
        match event {
            Some(event) => self.out.send(line(&event)).await.is_ok(),
            None => true,
        }
    }

    async fn run(
        self,
        initial: Vec<WatchMsg>,
        mut rx: mpsc::UnboundedReceiver<WatchMsg>,
        send_initial: bool,
        current_rv: u64,
        timeout: Duration,
    ) {
        let mut pause = self.state.pause.subscribe();
        let epoch = pause.borrow_and_update().epoch;
        for msg in initial {
            if !self.forward(msg).await {
                return;
            }
        }
        if send_initial
            && self
                .out
                .send(line(&self.filter.bookmark(current_rv, true)))
                .await
                .is_err()
        {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = self
            .state
            .options
            .bookmark_interval
            .map(tokio::time::interval);
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        loop {
            tokio::select! {
                biased;
                changed = pause.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if pause.borrow_and_update().epoch != epoch {
                        // A partition began: nothing flows until it heals, and then this
                        // connection is found dead; the client must reconnect.
                        let _ = pause.wait_for(|p| !p.paused).await;
                        return;
                    }
                }
                msg = rx.recv() => match msg {
                    Some(msg) => if !self.forward(msg).await { return },
                    None => return,
                },
                _ = &mut deadline => return,
                _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => {
                    let rv = self.state.store.lock().unwrap().resource_version();
                    if self.bookmarks && self.out.send(line(&self.filter.bookmark(rv, false))).await.is_err() {
                        return;
                    }
                }
                _ = self.out.closed() => return,
            }
        }
    }
}
