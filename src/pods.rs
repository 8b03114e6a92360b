//! The only place that knows the Pod JSON: a light view of a watched pod, and the
//! terminations of its containers as occurrences ([`KubeEvent`]s about the Pod, one per
//! container instance that ended with a failure).
//!
//! Kubernetes writes no Event when a container is OOM-killed or exits non-zero: only the
//! pod's status says so. [`PodView`] is parsed straight from the watch stream and keeps
//! what terminations need: its spec, managedFields, labels and the rest are skipped while
//! parsing, so 10,000 watched pods cost no more than the one being read.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::event::{KubeEvent, ObjectRef, Termination};
use crate::normalize::{RawMeta, core_v1_resource, lenient, lenient_object, number, text, time};

/// The `source.component` of a termination: none of Kubernetes' own writes it, so the
/// Go agent invented one; kept for its users' filters and searches.
pub const SOURCE_COMPONENT: &str = "x-pod-controller";

/// Which list of a pod's containers one belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerList {
    Containers,
    InitContainers,
    EphemeralContainers,
}

impl ContainerList {
    const ALL: [(Self, &'static str); 3] = [
        (Self::InitContainers, "initContainerStatuses"),
        (Self::Containers, "containerStatuses"),
        (Self::EphemeralContainers, "ephemeralContainerStatuses"),
    ];

    /// The field path naming a container of this list, as events write it.
    pub fn field_path(self, container: &str) -> String {
        let list = match self {
            Self::Containers => "containers",
            Self::InitContainers => "initContainers",
            Self::EphemeralContainers => "ephemeralContainers",
        };
        format!("spec.{list}{{{container}}}")
    }
}

/// How one instance of a container ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ended {
    pub exit_code: i64,
    pub signal: Option<i64>,
    pub reason: String,
    pub message: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub container_id: String,
}

impl Ended {
    fn read(terminated: &Value) -> Option<Self> {
        if !terminated.is_object() {
            return None;
        }
        Some(Self {
            exit_code: number(terminated, &["exitCode"]).unwrap_or(0),
            signal: number(terminated, &["signal"]).filter(|s| *s != 0),
            reason: text(terminated, &["reason"]),
            message: text(terminated, &["message"]),
            started_at: time(terminated, &["startedAt"]),
            finished_at: time(terminated, &["finishedAt"]),
            container_id: text(terminated, &["containerID"]),
        })
    }

    /// A failure worth reporting: a non-zero exit (as the Go agent decides), or an OOM
    /// kill whatever the exit code says.
    pub fn failed(&self) -> bool {
        self.exit_code != 0 || self.reason == "OOMKilled"
    }
}

/// One container's status: what ended, of the previous and the current instance.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub list: ContainerList,
    pub image: String,
    pub restart_count: i64,
    /// `lastState.terminated`: the previous instance.
    pub previous: Option<Ended>,
    /// `state.terminated`: the current instance.
    pub current: Option<Ended>,
}

/// What the agent keeps of a watched pod while reading it.
#[derive(Clone, Debug, Default)]
pub struct PodView {
    /// Name, namespace, uid and resourceVersion only.
    pub metadata: ObjectMeta,
    pub node: String,
    pub created: Option<DateTime<Utc>>,
    /// `deletionTimestamp` is set: its containers are being stopped on purpose.
    pub deleting: bool,
    pub containers: Vec<ContainerView>,
}

core_v1_resource!(PodView, "Pod", "pods");

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawSpec {
    #[serde(deserialize_with = "lenient")]
    node_name: Value,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawStatus {
    #[serde(deserialize_with = "lenient")]
    init_container_statuses: Value,
    #[serde(deserialize_with = "lenient")]
    container_statuses: Value,
    #[serde(deserialize_with = "lenient")]
    ephemeral_container_statuses: Value,
}

/// The pod as it arrives; fields not named here are skipped unread.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPod {
    #[serde(deserialize_with = "lenient_object")]
    metadata: RawMeta,
    #[serde(deserialize_with = "lenient_object")]
    spec: RawSpec,
    #[serde(deserialize_with = "lenient_object")]
    status: RawStatus,
}

impl From<RawPod> for PodView {
    fn from(raw: RawPod) -> Self {
        let RawPod {
            metadata: mut meta,
            spec,
            status,
        } = raw;
        let lists = [
            &status.init_container_statuses,
            &status.container_statuses,
            &status.ephemeral_container_statuses,
        ];
        let containers = ContainerList::ALL
            .iter()
            .zip(lists)
            .flat_map(|((list, _), statuses)| {
                statuses
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(move |s| {
                        let name = text(s, &["name"]);
                        (!name.is_empty()).then(|| ContainerView {
                            name,
                            list: *list,
                            image: text(s, &["image"]),
                            restart_count: number(s, &["restartCount"]).unwrap_or(0),
                            previous: Ended::read(&s["lastState"]["terminated"]),
                            current: Ended::read(&s["state"]["terminated"]),
                        })
                    })
            })
            .collect();
        PodView {
            metadata: meta.take_object_meta(),
            node: text(&spec.node_name, &[]),
            created: time(&meta.creation_timestamp, &[]),
            deleting: !meta.deletion_timestamp.is_null(),
            containers,
        }
    }
}

impl<'de> Deserialize<'de> for PodView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient_object::<_, RawPod>(deserializer).map(PodView::from)
    }
}

impl PodView {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("")
    }

    pub fn uid(&self) -> &str {
        self.metadata.uid.as_deref().unwrap_or("")
    }

    /// What the pod is known by: its uid, else `namespace/name`; `None` without either.
    pub fn identity(&self) -> Option<String> {
        match (self.uid(), self.name()) {
            ("", "") => None,
            ("", name) => Some(format!("{}/{name}", self.namespace())),
            (uid, _) => Some(uid.to_string()),
        }
    }

    /// The deduplication key of a container's terminations: pod and container.
    pub fn termination_key(&self, container: &str) -> Option<String> {
        self.identity().map(|pod| format!("{pod}/{container}"))
    }

    /// Every failed termination still shown in the status, the previous instance before
    /// the current one; each is an occurrence the first time it is seen.
    pub fn terminations(&self) -> Vec<KubeEvent> {
        let Some(_) = self.identity() else {
            return Vec::new();
        };
        self.containers
            .iter()
            .flat_map(|c| {
                [(&c.previous, true), (&c.current, false)]
                    .into_iter()
                    .filter_map(move |(ended, previous)| {
                        let ended = ended.as_ref().filter(|e| e.failed())?;
                        Some(self.termination(c, ended, previous))
                    })
            })
            .collect()
    }

    fn termination(&self, container: &ContainerView, ended: &Ended, previous: bool) -> KubeEvent {
        let reason = if ended.reason.is_empty() {
            "Error".to_string()
        } else {
            ended.reason.clone()
        };
        let message = match ended.message.trim() {
            "" => format!(
                "{reason}: container {:?} exited with code {}",
                container.name, ended.exit_code
            ),
            message => message.to_string(),
        };
        KubeEvent {
            uid: self.termination_key(&container.name).unwrap_or_default(),
            name: self.name().to_string(),
            namespace: self.namespace().to_string(),
            resource_version: self.metadata.resource_version.clone().unwrap_or_default(),
            event_type: "Warning".into(),
            reason,
            message,
            involved: ObjectRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: self.name().to_string(),
                namespace: self.namespace().to_string(),
                uid: self.uid().to_string(),
                field_path: container.list.field_path(&container.name),
            },
            source_component: SOURCE_COMPONENT.into(),
            source_host: self.node.clone(),
            created: self.created,
            termination: Some(Box::new(Termination {
                exit_code: ended.exit_code,
                signal: ended.signal,
                started_at: ended.started_at,
                finished_at: ended.finished_at,
                restart_count: container.restart_count,
                container_id: ended.container_id.clone(),
                image: container.image.clone(),
                previous,
            })),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: Value) -> PodView {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "p1", "resourceVersion": "7",
                          "creationTimestamp": "2026-11-21T06:00:00Z",
                          "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
            "spec": {"nodeName": "node-2", "containers": [{"name": "app", "image": "web:1", "env": [{"name": "A", "value": "b"}]}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_status_or_spec_of_the_wrong_type_reads_as_absent() {
        let odd = pod(json!("not an object"));
        assert_eq!((odd.uid(), odd.node.as_str()), ("p1", "node-2"));
        assert!(odd.containers.is_empty());
        let odd: PodView = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop"}, "spec": [1], "status": 3,
        }))
        .unwrap();
        assert_eq!(odd.identity().as_deref(), Some("shop/web-1"));
        assert_eq!(odd.node, "");
        let nothing: PodView = serde_json::from_value(json!(null)).unwrap();
        assert_eq!(nothing.identity(), None);
    }

    #[test]
    fn an_oom_kill_in_last_state_is_one_termination_about_the_container() {
        let p = pod(json!({"containerStatuses": [{
            "name": "app", "image": "web:1", "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                "startedAt": "2026-11-21T06:01:00Z", "finishedAt": "2026-11-21T06:02:00Z",
                "containerID": "containerd://abc"}},
        }]}));
        assert_eq!((p.node.as_str(), p.deleting), ("node-2", false));
        let [t] = p.terminations().try_into().unwrap();
        assert_eq!(t.uid, "p1/app");
        assert_eq!(
            (t.reason.as_str(), t.event_type.as_str()),
            ("OOMKilled", "Warning")
        );
        assert_eq!(
            t.message,
            "OOMKilled: container \"app\" exited with code 137"
        );
        assert_eq!(t.involved.container(), Some("app"));
        assert_eq!(
            (t.involved.kind.as_str(), t.involved.uid.as_str()),
            ("Pod", "p1")
        );
        assert_eq!(
            (t.component(), t.source_host.as_str()),
            (SOURCE_COMPONENT, "node-2")
        );
        assert_eq!(
            t.occurred_at().unwrap().to_rfc3339(),
            "2026-11-21T06:02:00+00:00"
        );
        let term = t.termination.unwrap();
        assert_eq!(
            (term.exit_code, term.restart_count, term.previous),
            (137, 3, true)
        );
        assert_eq!(
            (term.container_id.as_str(), term.image.as_str()),
            ("containerd://abc", "web:1")
        );
    }

    #[test]
    fn only_failures_count_previous_first_every_container_list() {
        let ended = |code: i64, reason: &str, at: &str| json!({"terminated": {"exitCode": code, "reason": reason, "finishedAt": at, "message": ""}});
        let p = pod(json!({
            "initContainerStatuses": [
                {"name": "migrate", "state": ended(0, "Completed", "2026-11-21T06:00:10Z")},
                {"name": "seed", "state": ended(2, "Error", "2026-11-21T06:00:20Z")},
            ],
            "containerStatuses": [{"name": "app", "restartCount": 1,
                "lastState": ended(1, "Error", "2026-11-21T06:01:00Z"),
                "state": ended(143, "", "2026-11-21T06:02:00Z")}],
            "ephemeralContainerStatuses": [{"name": "debug", "state": ended(0, "OOMKilled", "2026-11-21T06:03:00Z")}],
        }));
        let seen: Vec<(String, String, bool)> = p
            .terminations()
            .into_iter()
            .map(|t| {
                (
                    t.involved.field_path,
                    t.reason,
                    t.termination.unwrap().previous,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "spec.initContainers{seed}".to_string(),
                    "Error".to_string(),
                    false
                ),
                (
                    "spec.containers{app}".to_string(),
                    "Error".to_string(),
                    true
                ),
                (
                    "spec.containers{app}".to_string(),
                    "Error".to_string(),
                    false
                ),
                (
                    "spec.ephemeralContainers{debug}".to_string(),
                    "OOMKilled".to_string(),
                    false
                ),
            ]
        );
    }

    #[test]
    fn odd_pods_are_read_leniently_and_never_fail() {
        for odd in [
            json!({}),
            json!({"metadata": null, "spec": null, "status": null}),
            json!({"metadata": {"name": 5, "uid": null}, "status": {"containerStatuses": "x"}}),
            json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [
                null, 3, {"name": ""}, {"name": "a", "restartCount": "two",
                "lastState": {"terminated": {"exitCode": "1", "finishedAt": "yesterday", "signal": 9}}},
                {"name": "b", "state": {"terminated": "gone"}}]}}),
        ] {
            let p: PodView = serde_json::from_value(odd.clone()).unwrap();
            for t in p.terminations() {
                assert!(!t.uid.is_empty(), "{odd}");
                assert_eq!(t.termination.unwrap().signal, Some(9));
            }
        }
        let p: PodView = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "n"}, "status": {
            "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 1}}}]}}),
        )
        .unwrap();
        let [t] = p.terminations().try_into().unwrap();
        assert_eq!(t.uid, "n/p/a", "no uid: namespace and name");
        assert!(t.occurred_at().is_none());
        let deleting: PodView = serde_json::from_value(
            json!({"metadata": {"name": "p", "deletionTimestamp": "2026-11-21T06:00:00Z"}}),
        )
        .unwrap();
        assert!(deleting.deleting);
    }
}
