//! A Sentry ingest endpoint for tests: accepts envelopes and store requests for known
//! projects, keeps every item, and can answer 429/5xx or stall on command.

pub mod envelope;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::apiserver::BoxError;
use crate::serve::{self, Body, Peer, ServerTask, json_response};
use envelope::Item;

/// An envelope (or store request) as received, after decoding.
#[derive(Clone, Debug, Serialize)]
pub struct Envelope {
    pub seq: u64,
    pub project: String,
    pub endpoint: String,
    pub content_encoding: String,
    pub headers: Value,
    pub items: Vec<Item>,
    /// The request body's size as sent (compressed, when it was).
    pub wire_bytes: usize,
    /// When it was stored (for latency measurements in the benchmark).
    #[serde(skip)]
    pub received: Instant,
}

/// An error event with the project it was sent to.
#[derive(Clone, Debug, Serialize)]
pub struct ReceivedEvent {
    pub project: String,
    pub event: Value,
}

/// Answer the next `count` ingest requests (or all until `for_millis` passes, or until
/// cleared) with `status`, plus `Retry-After` / `X-Sentry-Rate-Limits` when given.
/// Nothing answered this way is stored.
#[derive(Clone, Debug, Deserialize, Serialize, Default)]
pub struct RespondRule {
    pub status: u16,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub for_millis: Option<u64>,
    /// `Retry-After` in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// `Retry-After` verbatim (an HTTP date); wins over `retry_after`.
    #[serde(default)]
    pub retry_after_raw: Option<String>,
    #[serde(default)]
    pub rate_limits: Option<String>,
    /// Only envelopes with an item of this type (`event`, `check_in`) get this answer.
    #[serde(default)]
    pub item_type: Option<String>,
    /// Send the status and headers, then never finish the body.
    #[serde(default)]
    pub stall_body: bool,
}

impl RespondRule {
    /// Every ingest request answered with `status`, until cleared.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Default::default()
        }
    }
}

/// Delay the next `count` ingest requests (all, when absent) by `millis`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SinkDelay {
    pub millis: u64,
    #[serde(default)]
    pub count: Option<u32>,
}

/// One ingest request and what it was answered.
#[derive(Clone, Debug, Serialize)]
pub struct SinkRequest {
    pub path: String,
    pub status: u16,
    /// The client's address and port: requests with the same one came over the same TCP
    /// connection.
    pub peer: Option<SocketAddr>,
}

#[derive(Default)]
struct SinkState {
    projects: HashMap<String, String>,
    envelopes: Vec<Envelope>,
    requests: Vec<SinkRequest>,
    respond: Option<(RespondRule, Option<Instant>)>,
    delay: Option<SinkDelay>,
    next_seq: u64,
}

struct Shared {
    state: Mutex<SinkState>,
    changed: tokio::sync::Notify,
    address: SocketAddr,
    scheme: &'static str,
}

impl Shared {
    fn respond(&self, rule: Option<RespondRule>) {
        let respond = rule.map(|rule| {
            let until = rule
                .for_millis
                .map(|ms| Instant::now() + Duration::from_millis(ms));
            (rule, until)
        });
        self.state.lock().unwrap().respond = respond;
    }

    fn delay(&self, delay: Option<SinkDelay>) {
        self.state.lock().unwrap().delay = delay;
    }

    fn dsn(&self, project: &str, key: &str) -> String {
        format!("{}://{key}@{}/{project}", self.scheme, self.address)
    }

    fn add_project(&self, project: &str, key: &str) -> String {
        self.state
            .lock()
            .unwrap()
            .projects
            .insert(project.into(), key.into());
        self.dsn(project, key)
    }

    fn reset(&self) {
        let mut state = self.state.lock().unwrap();
        state.envelopes.clear();
        state.requests.clear();
        state.respond = None;
        state.delay = None;
    }
}

/// A running sink. Dropping it stops the server.
pub struct SentrySink {
    shared: Arc<Shared>,
    ca_pem: Option<String>,
    _task: ServerTask,
}

impl SentrySink {
    /// Starts on a free loopback port with project `1` (key `publickey`).
    pub async fn start() -> Result<Self, BoxError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), &[("1", "publickey")]).await
    }

    pub async fn start_on(listen: SocketAddr, projects: &[(&str, &str)]) -> Result<Self, BoxError> {
        Self::start_with(listen, projects, None).await
    }

    /// Starts serving HTTPS with a throwaway CA ([`SentrySink::ca_pem`]); its DSNs are
    /// `https://`.
    pub async fn start_tls() -> Result<Self, BoxError> {
        let material = crate::tls::TlsMaterial::generate()?;
        Self::start_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &[("1", "publickey")],
            Some(material),
        )
        .await
    }

    async fn start_with(
        listen: SocketAddr,
        projects: &[(&str, &str)],
        tls: Option<crate::tls::TlsMaterial>,
    ) -> Result<Self, BoxError> {
        let slot: Arc<std::sync::OnceLock<Arc<Shared>>> = Arc::new(std::sync::OnceLock::new());
        let handler_slot = slot.clone();
        let server_config = tls.as_ref().map(|t| t.server_config.clone());
        let (address, task) = serve::serve(listen, server_config, move |req| {
            let shared = handler_slot.get().cloned();
            async move {
                match shared {
                    Some(shared) => dispatch(shared, req).await,
                    None => serve::text_response(503, "starting"),
                }
            }
        })
        .await?;
        let shared = Arc::new(Shared {
            state: Mutex::new(SinkState {
                projects: projects
                    .iter()
                    .map(|(id, key)| (id.to_string(), key.to_string()))
                    .collect(),
                next_seq: 1,
                ..Default::default()
            }),
            changed: tokio::sync::Notify::new(),
            address,
            scheme: if tls.is_some() { "https" } else { "http" },
        });
        let _ = slot.set(shared.clone());
        Ok(Self {
            shared,
            ca_pem: tls.map(|t| t.ca_pem),
            _task: task,
        })
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.shared.scheme, self.shared.address)
    }

    /// The CA to trust, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The DSN of project `1`.
    pub fn dsn(&self) -> String {
        self.dsn_for("1").expect("project 1 exists")
    }

    pub fn dsn_for(&self, project: &str) -> Option<String> {
        let key = self
            .shared
            .state
            .lock()
            .unwrap()
            .projects
            .get(project)
            .cloned()?;
        Some(self.shared.dsn(project, &key))
    }

    /// Adds a project and returns its DSN.
    pub fn add_project(&self, project: &str, key: &str) -> String {
        self.shared.add_project(project, key)
    }

    pub fn envelopes(&self) -> Vec<Envelope> {
        self.shared.state.lock().unwrap().envelopes.clone()
    }

    /// Every received error event, in arrival order.
    pub fn events(&self) -> Vec<ReceivedEvent> {
        events_of(&self.shared.state.lock().unwrap().envelopes)
    }

    pub fn requests(&self) -> Vec<SinkRequest> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    pub fn respond(&self, rule: RespondRule) {
        self.shared.respond(Some(rule));
    }

    pub fn clear_respond(&self) {
        self.shared.respond(None);
    }

    pub fn delay(&self, delay: SinkDelay) {
        self.shared.delay(Some(delay));
    }

    pub fn clear_delay(&self) {
        self.shared.delay(None);
    }

    /// Forgets every envelope and request; keeps projects.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Waits until at least `n` events have arrived; returns them, or fails after `timeout`.
    pub async fn wait_for_events(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedEvent>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            let events = self.events();
            if events.len() >= n {
                return Ok(events);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "{} events after {timeout:?}, wanted {n}",
                    events.len()
                ));
            }
        }
    }
}

fn events_of(envelopes: &[Envelope]) -> Vec<ReceivedEvent> {
    envelopes
        .iter()
        .flat_map(|env| {
            env.items
                .iter()
                .filter(|item| item.item_type() == "event")
                .map(|item| ReceivedEvent {
                    project: env.project.clone(),
                    event: item.payload.clone(),
                })
        })
        .collect()
}

fn header(parts: &Parts, name: &str) -> String {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn error(status: u16, detail: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"detail": detail.into()}))
}

async fn dispatch(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let peer = parts.extensions.get::<Peer>().map(|p| p.0);
    let body = serve::read_body(body).await;
    let path = parts.uri.path().to_string();
    if let Some(route) = path.strip_prefix("/_sink/") {
        return control(&shared, parts.method.as_str(), route, &body);
    }
    let response = ingest(&shared, &parts, &path, &body).await;
    shared.state.lock().unwrap().requests.push(SinkRequest {
        path,
        status: response.status().as_u16(),
        peer,
    });
    shared.changed.notify_waiters();
    response
}

/// Applies the commanded delay and canned answer, if any, to a request whose envelope
/// carries `item_types`.
async fn commanded(shared: &Shared, item_types: &[String]) -> Option<Response<Body>> {
    let delay = {
        let mut state = shared.state.lock().unwrap();
        let millis = state.delay.as_ref().map(|d| d.millis);
        if let Some(d) = state.delay.as_mut()
            && let Some(count) = d.count.as_mut()
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.delay = None;
            }
        }
        millis
    };
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut state = shared.state.lock().unwrap();
    let (rule, until) = state.respond.clone()?;
    if until.is_some_and(|u| Instant::now() >= u) {
        state.respond = None;
        return None;
    }
    if let Some(wanted) = &rule.item_type
        && !item_types.contains(wanted)
    {
        return None;
    }
    if let Some((rule, _)) = state.respond.as_mut()
        && let Some(count) = rule.count.as_mut()
    {
        *count = count.saturating_sub(1);
        if *count == 0 {
            state.respond = None;
        }
    }
    let mut response = if rule.stall_body {
        let never = futures::stream::pending::<
            Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
        >();
        Response::builder()
            .status(rule.status)
            .header("content-type", "application/json")
            .header("content-length", "100")
            .body(http_body_util::BodyExt::boxed(
                http_body_util::StreamBody::new(never),
            ))
            .expect("static response parts are valid")
    } else {
        error(rule.status, format!("commanded status {}", rule.status))
    };
    let headers = response.headers_mut();
    if let Some(secs) = rule.retry_after {
        headers.insert("retry-after", secs.to_string().parse().expect("digits"));
    }
    if let Some(raw) = &rule.retry_after_raw
        && let Ok(value) = raw.parse()
    {
        headers.insert("retry-after", value);
    }
    if let Some(limits) = &rule.rate_limits
        && let Ok(value) = limits.parse()
    {
        headers.insert("x-sentry-rate-limits", value);
    }
    Some(response)
}

async fn ingest(shared: &Shared, parts: &Parts, path: &str, body: &Bytes) -> Response<Body> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (project, endpoint) = match segments.as_slice() {
        ["api", project, endpoint @ ("envelope" | "store")] => (project.to_string(), *endpoint),
        _ => return error(404, format!("no such endpoint {path}")),
    };
    if parts.method != "POST" {
        return error(405, "use POST");
    }
    let encoding = header(parts, "content-encoding");
    let decoded = envelope::decode_body(&encoding, body);
    let item_types: Vec<String> = match (&decoded, endpoint) {
        (Ok(decoded), "envelope") => envelope::parse(decoded)
            .map(|(_, items)| items.iter().map(|i| i.item_type().to_string()).collect())
            .unwrap_or_default(),
        _ => vec!["event".to_string()],
    };
    if let Some(response) = commanded(shared, &item_types).await {
        return response;
    }
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(e) => return error(400, e),
    };
    let (headers, items) = if endpoint == "envelope" {
        match envelope::parse(&decoded) {
            Ok(parsed) => parsed,
            Err(e) => return error(400, format!("invalid envelope: {e}")),
        }
    } else {
        match serde_json::from_slice::<Value>(&decoded) {
            Ok(event) => (
                json!({"event_id": event["event_id"]}),
                vec![Item {
                    headers: json!({"type": "event"}),
                    payload: event,
                }],
            ),
            Err(e) => return error(400, format!("invalid event JSON: {e}")),
        }
    };
    let query = parts.uri.query().unwrap_or("");
    let key = envelope::key_from_auth_header(&header(parts, "x-sentry-auth"))
        .or_else(|| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "sentry_key")
                .map(|(_, v)| v.into_owned())
        })
        .or_else(|| headers["dsn"].as_str().and_then(envelope::key_from_dsn));
    let mut state = shared.state.lock().unwrap();
    match (state.projects.get(&project), key) {
        (Some(expected), Some(key)) if *expected == key => {}
        _ => {
            return error(
                401,
                format!("missing or wrong public key for project {project}"),
            );
        }
    }
    let seq = state.next_seq;
    state.next_seq += 1;
    let event_id = headers["event_id"].clone();
    state.envelopes.push(Envelope {
        seq,
        project,
        endpoint: endpoint.into(),
        content_encoding: encoding,
        headers,
        items,
        wire_bytes: body.len(),
        received: Instant::now(),
    });
    json_response(200, &json!({"id": event_id}))
}

fn control(shared: &Shared, method: &str, route: &str, body: &Bytes) -> Response<Body> {
    fn with_body<T: serde::de::DeserializeOwned>(
        body: &Bytes,
        apply: impl FnOnce(T) -> Value,
    ) -> Response<Body> {
        match serde_json::from_slice(body) {
            Ok(parsed) => json_response(200, &apply(parsed)),
            Err(e) => error(400, format!("invalid control request body: {e}")),
        }
    }
    let ok = |v: Value| json_response(200, &v);
    match (method, route) {
        ("GET", "envelopes") => ok(json!(shared.state.lock().unwrap().envelopes)),
        ("GET", "events") => ok(json!(events_of(&shared.state.lock().unwrap().envelopes))),
        ("GET", "requests") => ok(json!(shared.state.lock().unwrap().requests)),
        ("POST", "respond") => with_body(body, |rule| {
            shared.respond(Some(rule));
            json!({"ok": true})
        }),
        ("DELETE", "respond") => {
            shared.respond(None);
            ok(json!({"ok": true}))
        }
        ("POST", "delay") => with_body(body, |delay| {
            shared.delay(Some(delay));
            json!({"ok": true})
        }),
        ("DELETE", "delay") => {
            shared.delay(None);
            ok(json!({"ok": true}))
        }
        ("POST", "projects") => {
            #[derive(Deserialize)]
            struct NewProject {
                id: String,
                key: String,
            }
            with_body(
                body,
                |p: NewProject| json!({"dsn": shared.add_project(&p.id, &p.key)}),
            )
        }
        ("POST", "reset") => {
            shared.reset();
            ok(json!({"ok": true}))
        }
        _ => error(404, format!("no control endpoint {method} /_sink/{route}")),
    }
}
