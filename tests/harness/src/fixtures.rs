//! Builders for realistic Kubernetes objects: core/v1 events as the kubelet, scheduler and
//! controllers write them, and workloads with owner references.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::apiserver::ObjectStore;

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Sets the field at `path` (object keys, created as needed) to `value`.
fn set_path(object: &mut Value, path: &[&str], value: Value) {
    let mut node = object;
    for key in path {
        node = &mut node[*key];
    }
    *node = value;
}

fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "HorizontalPodAutoscaler" => "autoscaling/v2",
        _ => "v1",
    }
}

/// A core/v1 Event under construction. Starts as an old-style (count/timestamps) event
/// written by the kubelet about a Pod.
#[derive(Clone, Debug)]
pub struct EventFixture(Value);

impl EventFixture {
    pub fn new(event_type: &str, namespace: &str, name: &str, reason: &str, message: &str) -> Self {
        let now = rfc3339(Utc::now());
        Self(json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name.split('.').next().unwrap_or(name), "namespace": namespace},
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": "kubelet"},
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "reportingComponent": "kubelet",
            "reportingInstance": "",
        }))
    }

    pub fn warning(namespace: &str, name: &str, reason: &str, message: &str) -> Self {
        Self::new("Warning", namespace, name, reason, message)
    }

    pub fn normal(namespace: &str, name: &str, reason: &str, message: &str) -> Self {
        Self::new("Normal", namespace, name, reason, message)
    }

    /// The object the event is about (namespace: the event's).
    #[must_use]
    pub fn about(mut self, kind: &str, name: &str) -> Self {
        let ns = self.0["metadata"]["namespace"].clone();
        self.0["involvedObject"] = json!({"apiVersion": api_version_of(kind), "kind": kind, "name": name, "namespace": ns});
        self
    }

    /// The object the event is about, cluster-scoped (a Node).
    #[must_use]
    pub fn about_cluster_object(mut self, kind: &str, name: &str) -> Self {
        self.0["involvedObject"] =
            json!({"apiVersion": api_version_of(kind), "kind": kind, "name": name});
        self
    }

    #[must_use]
    pub fn involved_uid(mut self, uid: &str) -> Self {
        self.0["involvedObject"]["uid"] = json!(uid);
        self
    }

    /// `involvedObject.fieldPath` naming a container.
    #[must_use]
    pub fn container(mut self, container: &str) -> Self {
        self.0["involvedObject"]["fieldPath"] = json!(format!("spec.containers{{{container}}}"));
        self
    }

    #[must_use]
    pub fn count(mut self, count: i64) -> Self {
        self.0["count"] = json!(count);
        self
    }

    #[must_use]
    pub fn source(mut self, component: &str, host: Option<&str>) -> Self {
        self.0["source"] = match host {
            Some(host) => json!({"component": component, "host": host}),
            None => json!({"component": component}),
        };
        self.0["reportingComponent"] = json!(component);
        self
    }

    #[must_use]
    pub fn timestamps(mut self, first: DateTime<Utc>, last: DateTime<Utc>) -> Self {
        self.0["firstTimestamp"] = json!(rfc3339(first));
        self.0["lastTimestamp"] = json!(rfc3339(last));
        self
    }

    /// A new-style event (client-go tools/events): eventTime set, legacy fields empty.
    #[must_use]
    pub fn new_style(
        mut self,
        controller: &str,
        instance: &str,
        action: &str,
        at: DateTime<Utc>,
    ) -> Self {
        let fields = self.0.as_object_mut().expect("an object");
        for legacy in ["count", "firstTimestamp", "lastTimestamp", "source"] {
            fields.remove(legacy);
        }
        fields.insert("eventTime".into(), json!(micro_time(at)));
        fields.insert("reportingComponent".into(), json!(controller));
        fields.insert("reportingInstance".into(), json!(instance));
        fields.insert("action".into(), json!(action));
        self
    }

    #[must_use]
    pub fn series(mut self, count: i64, last_observed: DateTime<Utc>) -> Self {
        self.0["series"] = json!({"count": count, "lastObservedTime": micro_time(last_observed)});
        self
    }

    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["labels"][key] = json!(value);
        self
    }

    /// Sets any field by JSON pointer-like path of object keys.
    #[must_use]
    pub fn set(mut self, path: &[&str], value: Value) -> Self {
        set_path(&mut self.0, path, value);
        self
    }

    /// Removes a top-level field (real data misses fields).
    #[must_use]
    pub fn without(mut self, field: &str) -> Self {
        if let Some(fields) = self.0.as_object_mut() {
            fields.remove(field);
        }
        self
    }

    pub fn build(self) -> Value {
        self.0
    }
}

/// A namespaced object of any served kind, optionally with labels and a controller owner.
#[derive(Clone, Debug)]
pub struct ObjectFixture(Value);

impl ObjectFixture {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self(json!({
            "apiVersion": api_version_of(kind),
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
        }))
    }

    /// Adds a controller ownerReference to `owner` (a stored object, with its uid).
    #[must_use]
    pub fn owned_by(mut self, owner: &Value) -> Self {
        let reference = json!({
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": true,
            "blockOwnerDeletion": true,
        });
        let refs = &mut self.0["metadata"]["ownerReferences"];
        match refs.as_array_mut() {
            Some(list) => list.push(reference),
            None => *refs = json!([reference]),
        }
        self
    }

    /// A controller ownerReference to something that may not exist (a custom resource).
    #[must_use]
    pub fn owned_by_ref(mut self, api_version: &str, kind: &str, name: &str, uid: &str) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([{
            "apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true,
        }]);
        self
    }

    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["labels"][key] = json!(value);
        self
    }

    #[must_use]
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = json!(value);
        self
    }

    #[must_use]
    pub fn node(mut self, node: &str) -> Self {
        self.0["spec"]["nodeName"] = json!(node);
        self
    }

    /// A pod's `spec.containers` (name and image each).
    #[must_use]
    pub fn containers(mut self, containers: &[(&str, &str)]) -> Self {
        self.0["spec"]["containers"] = containers
            .iter()
            .map(|(name, image)| json!({"name": name, "image": image}))
            .collect();
        self
    }

    /// A pod's `status`: its phase and container statuses (see [`ContainerStatusFixture`]).
    #[must_use]
    pub fn status(mut self, phase: &str, containers: &[Value]) -> Self {
        self.0["status"] = json!({"phase": phase, "containerStatuses": containers});
        self
    }

    #[must_use]
    pub fn set(mut self, path: &[&str], value: Value) -> Self {
        set_path(&mut self.0, path, value);
        self
    }

    pub fn build(self) -> Value {
        self.0
    }

    /// Creates it on `server` and returns the stored object (with uid).
    pub fn create(self, server: &impl ObjectStore) -> Value {
        server
            .create(self.0)
            .unwrap_or_else(|e| panic!("fixture object rejected: {e}"))
    }
}

/// A container ID as the kubelet reports it (`containerd://` and 64 hex digits).
pub fn container_id() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("containerd://{a}{b}")
}

/// One entry of `status.containerStatuses` as the kubelet writes it. Starts running (with
/// a container ID); `terminated`, `crashed`, `waiting` and `restarts` move it on the way a
/// container's life does.
#[derive(Clone, Debug)]
pub struct ContainerStatusFixture(Value);

impl ContainerStatusFixture {
    pub fn new(name: &str, image: &str) -> Self {
        let started = rfc3339(Utc::now() - chrono::Duration::minutes(5));
        Self(json!({
            "name": name,
            "image": image,
            "imageID": format!("{image}@sha256:{}", uuid::Uuid::new_v4().simple()),
            "containerID": container_id(),
            "ready": true,
            "started": true,
            "restartCount": 0,
            "state": {"running": {"startedAt": started}},
            "lastState": {},
        }))
    }

    fn termination(&self, exit_code: i64, reason: &str, finished: DateTime<Utc>) -> Value {
        json!({
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": rfc3339(finished - chrono::Duration::seconds(30)),
            "finishedAt": rfc3339(finished),
            "containerID": self.0["containerID"],
        })
    }

    /// The current instance ended (`state.terminated`): restartPolicy Never, or the moment
    /// before a restart.
    #[must_use]
    pub fn terminated(mut self, exit_code: i64, reason: &str, finished: DateTime<Utc>) -> Self {
        self.0["state"] = json!({"terminated": self.termination(exit_code, reason, finished)});
        self.0["ready"] = json!(false);
        self.0["started"] = json!(false);
        self
    }

    /// The current instance ended and the kubelet holds the restart back: the instance
    /// becomes `lastState.terminated`, the state `waiting` with CrashLoopBackOff.
    #[must_use]
    pub fn crashed(mut self, exit_code: i64, reason: &str, finished: DateTime<Utc>) -> Self {
        let name = self.0["name"].clone();
        self.0["lastState"] = json!({"terminated": self.termination(exit_code, reason, finished)});
        self.0["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
            "message": format!("back-off 10s restarting failed container={} pod=…", name.as_str().unwrap_or(""))}});
        self.0["ready"] = json!(false);
        self.0["started"] = json!(false);
        self
    }

    /// A new instance runs (with a new container ID); the restart count goes up.
    #[must_use]
    pub fn restarted(mut self, at: DateTime<Utc>) -> Self {
        self.0["containerID"] = json!(container_id());
        self.0["state"] = json!({"running": {"startedAt": rfc3339(at)}});
        self.0["ready"] = json!(true);
        self.0["started"] = json!(true);
        let restarts = self.0["restartCount"].as_i64().unwrap_or(0);
        self.0["restartCount"] = json!(restarts + 1);
        self
    }

    #[must_use]
    pub fn waiting(mut self, reason: &str) -> Self {
        self.0["state"] = json!({"waiting": {"reason": reason}});
        self
    }

    #[must_use]
    pub fn restarts(mut self, count: i64) -> Self {
        self.0["restartCount"] = json!(count);
        self
    }

    /// Sets any field by path of object keys.
    #[must_use]
    pub fn set(mut self, path: &[&str], value: Value) -> Self {
        set_path(&mut self.0, path, value);
        self
    }

    /// The ID of the current instance.
    pub fn container_id(&self) -> String {
        self.0["containerID"].as_str().unwrap_or("").to_string()
    }

    /// The ID of the previous (`lastState.terminated`) instance, if any.
    pub fn previous_container_id(&self) -> Option<String> {
        self.0["lastState"]["terminated"]["containerID"]
            .as_str()
            .map(str::to_string)
    }

    pub fn build(self) -> Value {
        self.0
    }
}

/// A Deployment with its ReplicaSet and `replicas` pods, created on `server`.
pub struct DeploymentChain {
    pub deployment: Value,
    pub replicaset: Value,
    pub pods: Vec<Value>,
}

pub fn deployment_chain(
    server: &impl ObjectStore,
    namespace: &str,
    name: &str,
    replicas: usize,
) -> DeploymentChain {
    deployment_chain_with(server, namespace, name, replicas, |_, pod| pod)
}

/// [`deployment_chain`], each pod (by index) shaped by `pod` before it is created (a
/// status, containers).
pub fn deployment_chain_with(
    server: &impl ObjectStore,
    namespace: &str,
    name: &str,
    replicas: usize,
    pod: impl Fn(usize, ObjectFixture) -> ObjectFixture,
) -> DeploymentChain {
    let deployment = ObjectFixture::new("Deployment", namespace, name)
        .label("app", name)
        .create(server);
    let rs_name = format!("{name}-7d4b9c8f5d");
    let replicaset = ObjectFixture::new("ReplicaSet", namespace, &rs_name)
        .label("app", name)
        .owned_by(&deployment)
        .create(server);
    let suffixes = [
        "x2k9p", "b7q4m", "z8w3n", "h5t6r", "c4v2l", "m9d8s", "p3f7g", "r6j2k",
    ];
    let pods = (0..replicas)
        .map(|i| {
            let suffix = suffixes
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("n{i:04}"));
            let fixture = ObjectFixture::new("Pod", namespace, &format!("{rs_name}-{suffix}"))
                .label("app", name)
                .owned_by(&replicaset)
                .node(&format!("node-{}", i % 3 + 1));
            pod(i, fixture).create(server)
        })
        .collect();
    DeploymentChain {
        deployment,
        replicaset,
        pods,
    }
}
