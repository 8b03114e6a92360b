//! The fake Kubernetes API server: start it, talk to it with kube or kubectl, steer it.
//!
//! Requests pass through, in order: the `/_fake/` control API (never paused, never
//! authenticated), a partition (`pause`), bearer-token authentication, injected delays and
//! failures, RBAC denials, then the REST handlers in [`api`] and [`watch`].

pub mod api;
pub mod control;
pub mod discovery;
pub mod events_view;
pub mod faults;
pub mod logs;
pub mod patch;
pub mod resources;
pub mod selectors;
pub mod status;
pub mod store;
pub mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use crate::serve::{self, Body, ServerTask, json_response};
use crate::tls::TlsMaterial;
use faults::{DelayRule, DenyRule, FailRule, Faults, RequestLog, RequestRecord};
use status::ApiError;
use store::{Key, Store, WatchInfo};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How to start a fake apiserver. `Default` is plain HTTP on a free loopback port, no auth.
#[derive(Clone, Debug)]
pub struct ApiServerOptions {
    pub listen: SocketAddr,
    /// Bearer tokens and the user each authenticates as. Empty: no authentication.
    pub tokens: Vec<(String, String)>,
    /// Serve HTTPS with a freshly generated CA.
    pub tls: bool,
    /// Where to write `ca.crt`, `tls.crt`, `tls.key` when serving TLS.
    pub tls_dir: Option<PathBuf>,
    /// The user named in RBAC denials when authentication is off.
    pub anonymous_user: String,
    /// Changes kept for watch replay before the oldest are compacted away.
    pub history_limit: usize,
    /// Send a BOOKMARK this often on watches that allow them (the real server: about 1 min).
    pub bookmark_interval: Option<Duration>,
    /// Requests kept in the request log.
    pub request_log_capacity: usize,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: Vec::new(),
            tls: false,
            tls_dir: None,
            anonymous_user: "system:serviceaccount:sentry:sentry-kubernetes".into(),
            history_limit: 200_000,
            bookmark_interval: None,
            request_log_capacity: 100_000,
        }
    }
}

impl ApiServerOptions {
    #[must_use]
    pub fn token(mut self, token: &str, user: &str) -> Self {
        self.tokens.push((token.into(), user.into()));
        self
    }

    #[must_use]
    pub fn tls(mut self, dir: Option<PathBuf>) -> Self {
        self.tls = true;
        self.tls_dir = dir;
        self
    }
}

/// Where fixtures and scenarios create objects: the in-process handle, or the server's
/// own state (for the `/_fake/scenarios` endpoint).
pub trait ObjectStore {
    /// Creates one object (missing namespaces are created); returns it as stored.
    fn create(&self, object: Value) -> Result<Value, ApiError>;
    /// Creates many under one lock; returns the resourceVersion after the last.
    fn create_all(&self, objects: Vec<Value>) -> Result<u64, ApiError>;
    /// Stores what a container instance (by its `containerID`) wrote, for `pods/{name}/log`.
    fn set_container_log(&self, container_id: &str, output: &str);
}

impl ObjectStore for State {
    fn create(&self, object: Value) -> Result<Value, ApiError> {
        control::create_one(self, object).map(|o| (*o).clone())
    }

    fn create_all(&self, objects: Vec<Value>) -> Result<u64, ApiError> {
        control::create_many(self, objects)
    }

    fn set_container_log(&self, container_id: &str, output: &str) {
        self.logs.lock().unwrap().set(container_id, output);
    }
}

impl ObjectStore for FakeApiServer {
    fn create(&self, object: Value) -> Result<Value, ApiError> {
        FakeApiServer::create(self, object)
    }

    fn create_all(&self, objects: Vec<Value>) -> Result<u64, ApiError> {
        FakeApiServer::create_all(self, objects)
    }

    fn set_container_log(&self, container_id: &str, output: &str) {
        FakeApiServer::set_container_log(self, container_id, output)
    }
}

/// Whether a partition is in force, and how many have begun (so a watch notices a
/// partition even if it healed before the watch task ran).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    pub paused: bool,
    pub epoch: u64,
}

impl State {
    pub(crate) fn set_paused(&self, paused: bool) {
        self.pause.send_modify(|p| {
            if paused && !p.paused {
                p.epoch += 1;
            }
            p.paused = paused;
        });
    }
}

/// State shared by every connection.
pub struct State {
    pub(crate) store: Mutex<Store>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) log: Mutex<RequestLog>,
    /// Container output by container ID, for `pods/{name}/log`.
    pub(crate) logs: Mutex<logs::ContainerLogs>,
    pub(crate) pause: tokio::sync::watch::Sender<Partition>,
    pub(crate) options: ApiServerOptions,
    pub(crate) tokens: HashMap<String, String>,
    pub(crate) address: SocketAddr,
}

/// A running fake apiserver. Dropping it stops the server and ends every connection.
pub struct FakeApiServer {
    state: Arc<State>,
    url: String,
    ca_pem: Option<String>,
    _task: ServerTask,
}

impl FakeApiServer {
    /// Starts a plain-HTTP server on a free loopback port.
    pub async fn start() -> Result<Self, BoxError> {
        Self::start_with(ApiServerOptions::default()).await
    }

    pub async fn start_with(options: ApiServerOptions) -> Result<Self, BoxError> {
        let tls = if options.tls {
            let material = TlsMaterial::generate()?;
            if let Some(dir) = &options.tls_dir {
                material.write_to(dir)?;
            }
            Some(material)
        } else {
            None
        };
        // The address is only known after binding; the handler reads it from the state.
        let slot: Arc<std::sync::OnceLock<Arc<State>>> = Arc::new(std::sync::OnceLock::new());
        let handler_slot = slot.clone();
        let (address, task) = serve::serve(
            options.listen,
            tls.as_ref().map(|t| t.server_config.clone()),
            move |req| {
                let state = handler_slot.get().cloned();
                async move {
                    match state {
                        Some(state) => dispatch(state, req).await,
                        None => serve::text_response(503, "starting"),
                    }
                }
            },
        )
        .await?;
        let state = Arc::new(State {
            store: Mutex::new(Store::new(options.history_limit)),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(RequestLog::new(options.request_log_capacity)),
            logs: Mutex::new(logs::ContainerLogs::default()),
            pause: tokio::sync::watch::channel(Partition::default()).0,
            tokens: options.tokens.iter().cloned().collect(),
            options,
            address,
        });
        let _ = slot.set(state.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(Self {
            state,
            url: format!("{scheme}://{address}"),
            ca_pem: tls.map(|t| t.ca_pem),
            _task: task,
        })
    }

    /// `http(s)://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn address(&self) -> SocketAddr {
        self.state.address
    }

    /// The CA certificate (PEM) when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A kube config for this server, authenticated with the first token if any.
    pub fn kube_config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url.parse().expect("own URL parses"));
        if let Some(pem) = &self.ca_pem {
            config.root_cert = Some(vec![pem_to_der(pem)]);
        }
        if let Some((token, _)) = self.state.options.tokens.first() {
            config.auth_info.token = Some(token.clone().into());
        }
        config
    }

    /// A ready client for this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config()).expect("a config for a loopback server is valid")
    }

    /// A kubeconfig document (context `fake`, namespace `default`) for this server.
    pub fn kubeconfig_yaml(&self) -> String {
        let token = self.state.options.tokens.first().map(|(t, _)| t.as_str());
        kubeconfig_yaml(&self.url, self.ca_pem.as_deref(), token)
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    // ---- the control API, in process ----

    /// Creates an object of any served kind (events.k8s.io/v1 events included), as the
    /// bulk endpoint does: missing namespaces are created. Returns the stored object.
    pub fn create(&self, object: Value) -> Result<Value, ApiError> {
        control::create_one(&self.state, object).map(|o| (*o).clone())
    }

    /// Creates many objects at once; returns the resourceVersion after the last one.
    pub fn create_all(&self, objects: Vec<Value>) -> Result<u64, ApiError> {
        control::create_many(&self.state, objects)
    }

    /// The stored (core form) object, if present.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = resources::by_kind(api_version, kind)?;
        let key = Key {
            storage: res.storage,
            namespace: if res.namespaced {
                namespace.into()
            } else {
                String::new()
            },
            name: name.into(),
        };
        let stored = self.state.store.lock().unwrap().get(&key);
        stored.map(|o| api::render(res, &o, false))
    }

    /// Applies a JSON merge patch to a stored object, as a controller's PATCH would.
    pub fn patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        patch_doc: &Value,
    ) -> Result<Value, ApiError> {
        control::merge_patch(&self.state, api_version, kind, namespace, name, patch_doc)
            .map(|o| (*o).clone())
    }

    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        control::delete_one(&self.state, api_version, kind, namespace, name)
    }

    /// Stores what a container instance wrote: `pods/{name}/log` serves it when the pod's
    /// status names this `containerID` (as running, terminated, or the previous instance).
    pub fn set_container_log(&self, container_id: &str, output: &str) {
        self.state.logs.lock().unwrap().set(container_id, output);
    }

    /// Discards all change history: older watches and continue tokens get 410 Expired.
    pub fn compact(&self) -> u64 {
        let mut store = self.state.store.lock().unwrap();
        store.compact();
        store.compaction_floor()
    }

    /// Ends every open watch stream cleanly; returns how many were open.
    pub fn close_watches(&self) -> usize {
        self.state.store.lock().unwrap().close_watches()
    }

    /// Starts a network partition: open watches stall (and are cut when it heals), new
    /// requests wait.
    pub fn pause(&self) {
        self.state.set_paused(true);
    }

    pub fn resume(&self) {
        self.state.set_paused(false);
    }

    pub fn fail(&self, rule: FailRule) {
        self.state.faults.lock().unwrap().fail.push(rule);
    }

    pub fn delay(&self, rule: DelayRule) {
        self.state.faults.lock().unwrap().delay.push(rule);
    }

    pub fn deny(&self, rule: DenyRule) {
        self.state.faults.lock().unwrap().deny.push(rule);
    }

    /// Removes every failure, delay and denial rule.
    pub fn clear_faults(&self) {
        *self.state.faults.lock().unwrap() = Faults::default();
    }

    /// Sends a BOOKMARK with the current resourceVersion on every watch that allows them.
    pub fn bookmark(&self) {
        self.state.store.lock().unwrap().bookmark();
    }

    /// Served requests with a sequence number above `since` (0 for all kept).
    pub fn requests(&self, since: u64) -> Vec<RequestRecord> {
        self.state.log.lock().unwrap().since(since)
    }

    pub fn open_watches(&self) -> Vec<WatchInfo> {
        self.state.store.lock().unwrap().open_watches()
    }

    pub fn resource_version(&self) -> u64 {
        self.state.store.lock().unwrap().resource_version()
    }

    /// Empties the store, closes watches, clears faults and the request log.
    pub fn reset(&self) {
        control::reset(&self.state);
    }

    /// Waits until at least `n` watches are open, or fails after `timeout`.
    pub async fn wait_for_watches(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<WatchInfo>, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open = self.open_watches();
            if open.len() >= n {
                return Ok(open);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} watches open after {timeout:?}, wanted {n}: {open:?}",
                    open.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("rcgen writes valid PEM")
}

/// A kubeconfig with one cluster, user and context, all named `fake`.
pub fn kubeconfig_yaml(url: &str, ca_pem: Option<&str>, token: Option<&str>) -> String {
    use base64::Engine;
    let mut cluster = serde_json::json!({"server": url});
    if let Some(pem) = ca_pem {
        cluster["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(pem).into();
    }
    let user = match token {
        Some(token) => serde_json::json!({"token": token}),
        None => serde_json::json!({}),
    };
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": cluster}],
        "users": [{"name": "fake", "user": user}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
        "current-context": "fake",
        "preferences": {},
    });
    serde_yaml_ng::to_string(&doc).expect("kubeconfig serializes")
}

/// The user a request authenticates as, or the 401 to answer.
fn authenticate(state: &State, parts: &hyper::http::request::Parts) -> Result<String, ApiError> {
    if state.tokens.is_empty() {
        return Ok(state.options.anonymous_user.clone());
    }
    let header = api::header(parts, "authorization");
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .unwrap_or("");
    state
        .tokens
        .get(token.trim())
        .cloned()
        .ok_or_else(ApiError::unauthorized)
}

async fn dispatch(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // Always read the body, even for failures: an unread body breaks keep-alive.
    let body = serve::read_body(body).await;
    let path = parts.uri.path().to_string();
    if path.starts_with("/_fake/") || path == "/_fake" {
        return control::handle(&state, &parts, body).await;
    }
    let mut pause = state.pause.subscribe();
    let _ = pause.wait_for(|p| !p.paused).await;
    let method = parts.method.as_str().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let watching = path.contains("/watch/") || api::flag(&api::parse_query(&query), "watch");
    let (user, response) = match authenticate(&state, &parts) {
        Err(err) => ("".to_string(), json_response(401, &err.to_status())),
        Ok(user) => {
            let delay = state.faults.lock().unwrap().take_delay(&method, &path);
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let failure = state.faults.lock().unwrap().take_failure(&method, &path);
            let response = match failure {
                Some(rule) => {
                    let err = ApiError::injected(rule.status, rule.message.clone());
                    let mut response = json_response(rule.status, &err.to_status());
                    if let Some(secs) = rule.retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", secs.to_string().parse().expect("digits"));
                    }
                    response
                }
                None => api::handle(&state, &parts, body, &user).await,
            };
            (user, response)
        }
    };
    state.log.lock().unwrap().push(RequestRecord {
        seq: 0,
        method,
        path,
        query,
        accept: api::header(&parts, "accept"),
        user,
        status: response.status().as_u16(),
        watch: watching,
    });
    response
}
