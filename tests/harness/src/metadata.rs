//! A fake GCP metadata server (the one a GKE node's pods reach as
//! `metadata.google.internal`; point `GCE_METADATA_HOST` at [`FakeMetadataServer::host`]).
//! Like the real one it answers only requests with `Metadata-Flavor: Google` (403
//! otherwise), serves the instance attributes and the project as recursive JSON
//! (attributes keep their `cluster-name` spelling, the project uses `projectId`), and
//! marks its answers with the same header. It can fail on command.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::Response;
use serde::Serialize;
use serde_json::json;

use crate::apiserver::BoxError;
use crate::serve::{self, Body, ServerTask, full};

/// What the metadata server says about the node's cluster and project.
#[derive(Clone, Debug)]
pub struct GceMetadata {
    pub cluster_name: String,
    pub cluster_location: String,
    pub project_id: String,
    pub numeric_project_id: u64,
}

impl Default for GceMetadata {
    fn default() -> Self {
        Self {
            cluster_name: "prod-1".into(),
            cluster_location: "europe-west1".into(),
            project_id: "shop-prod".into(),
            numeric_project_id: 123_456_789_012,
        }
    }
}

/// One request, as the server saw it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MetadataRequest {
    pub path: String,
    pub query: String,
    /// It carried `Metadata-Flavor: Google`.
    pub flavor: bool,
    pub status: u16,
}

#[derive(Default)]
struct Faults {
    status: u16,
    count: u32,
}

struct State {
    metadata: GceMetadata,
    faults: Mutex<Faults>,
    requests: Mutex<Vec<MetadataRequest>>,
}

/// A running fake metadata server; dropping it stops it.
pub struct FakeMetadataServer {
    state: Arc<State>,
    address: SocketAddr,
    _task: ServerTask,
}

/// Requests kept in the request log.
const REQUESTS_KEPT: usize = 1_000;

fn answer(status: u16, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("metadata-flavor", "Google")
        .body(full(body))
        .expect("a valid response")
}

fn handle(state: &State, path: &str, flavor: bool) -> Response<Body> {
    if !flavor {
        return answer(
            403,
            "text/html; charset=UTF-8",
            "Missing Metadata-Flavor:Google header.".into(),
        );
    }
    {
        let mut faults = state.faults.lock().unwrap();
        if faults.count > 0 {
            faults.count -= 1;
            return answer(faults.status, "text/plain", "injected failure".into());
        }
    }
    let m = &state.metadata;
    let doc = match path {
        "/computeMetadata/v1/instance/attributes/" => json!({
            "cluster-name": m.cluster_name,
            "cluster-location": m.cluster_location,
            "cluster-uid": "4a5b6c7d8e9f",
            "kube-env": "ALLOCATE_NODE_CIDRS: \"true\"\n",
            "gci-ensure-gke-docker": "true",
        }),
        "/computeMetadata/v1/project/" => json!({
            "attributes": {"gke-prod-1-4a5b6c-cidr": "network=default,cidr=10.8.0.0/14"},
            "numericProjectId": m.numeric_project_id,
            "projectId": m.project_id,
        }),
        _ => return answer(404, "text/html; charset=UTF-8", "Not Found".into()),
    };
    answer(200, "application/json", doc.to_string())
}

impl FakeMetadataServer {
    pub async fn start(metadata: GceMetadata) -> Result<Self, BoxError> {
        let state = Arc::new(State {
            metadata,
            faults: Mutex::default(),
            requests: Mutex::default(),
        });
        let handler_state = state.clone();
        let (address, task) =
            serve::serve(SocketAddr::from(([127, 0, 0, 1], 0)), None, move |req| {
                let state = handler_state.clone();
                async move {
                    let flavor = req
                        .headers()
                        .get("metadata-flavor")
                        .is_some_and(|v| v == "Google");
                    let path = req.uri().path().to_string();
                    let response = handle(&state, &path, flavor);
                    let mut requests = state.requests.lock().unwrap();
                    if requests.len() == REQUESTS_KEPT {
                        requests.remove(0);
                    }
                    requests.push(MetadataRequest {
                        path,
                        query: req.uri().query().unwrap_or("").to_string(),
                        flavor,
                        status: response.status().as_u16(),
                    });
                    response
                }
            })
            .await?;
        Ok(Self {
            state,
            address,
            _task: task,
        })
    }

    /// `127.0.0.1:PORT`, the form `GCE_METADATA_HOST` takes.
    pub fn host(&self) -> String {
        self.address.to_string()
    }

    /// The next `count` requests (with the header) are answered with `status`.
    pub fn fail(&self, status: u16, count: u32) {
        *self.state.faults.lock().unwrap() = Faults { status, count };
    }

    /// Every request served, oldest first.
    pub fn requests(&self) -> Vec<MetadataRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}
