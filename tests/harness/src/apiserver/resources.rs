//! The resource types the fake apiserver serves, and how each maps onto its storage.

/// How a resource's objects are stored and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Objects are served exactly as stored.
    Native,
    /// `events.k8s.io/v1`: the core/v1 event store seen through the renamed schema.
    EventsV1,
}

/// One servable resource (a group/version/plural triple).
#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Objects of resources sharing a storage name are the same objects
    /// (core/v1 and events.k8s.io/v1 events).
    pub storage: &'static str,
    pub view: View,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, or `deployments.apps`: the form RBAC messages and Status details use.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The subresources served under an object's path (`pods/{name}/log`).
    pub fn subresources(&self) -> &'static [&'static str] {
        match (self.storage, self.view) {
            ("pods", View::Native) => &["status", "log"],
            _ => &[],
        }
    }

    /// Field labels accepted by `fieldSelector` besides `metadata.name`/`metadata.namespace`,
    /// as the real apiserver registers them (anything else is a 400).
    pub fn field_labels(&self) -> &'static [&'static str] {
        match (self.storage, self.view) {
            ("events", View::Native) => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ("events", View::EventsV1) => &[
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "regarding.apiVersion",
                "regarding.resourceVersion",
                "regarding.fieldPath",
                "reason",
                "reportingController",
                "type",
            ],
            ("pods", _) => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            ("nodes", _) => &["spec.unschedulable"],
            ("namespaces", _) => &["status.phase"],
            _ => &[],
        }
    }
}

const fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group: "",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        storage: plural,
        view: View::Native,
    }
}

const fn grouped(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    short_names: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced: true,
        short_names,
        storage: plural,
        view: View::Native,
    }
}

/// Everything the fake serves. Order is discovery order.
pub static RESOURCES: &[ResourceDef] = &[
    core("events", "event", "Event", true, &["ev"]),
    core("pods", "pod", "Pod", true, &["po"]),
    core("nodes", "node", "Node", false, &["no"]),
    core("namespaces", "namespace", "Namespace", false, &["ns"]),
    core("configmaps", "configmap", "ConfigMap", true, &["cm"]),
    grouped("apps", "replicasets", "replicaset", "ReplicaSet", &["rs"]),
    grouped(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        &["deploy"],
    ),
    grouped(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        &["sts"],
    ),
    grouped("apps", "daemonsets", "daemonset", "DaemonSet", &["ds"]),
    grouped("batch", "jobs", "job", "Job", &[]),
    grouped("batch", "cronjobs", "cronjob", "CronJob", &["cj"]),
    grouped("coordination.k8s.io", "leases", "lease", "Lease", &[]),
    ResourceDef {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        storage: "events",
        view: View::EventsV1,
    },
];

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource an object with this `apiVersion` and `kind` belongs to.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The native (stored) resource of a storage.
pub fn native(storage: &str) -> &'static ResourceDef {
    RESOURCES
        .iter()
        .find(|r| r.storage == storage && r.view == View::Native)
        .expect("every storage has a native resource")
}

/// The API groups other than core, each with its versions, in discovery order.
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_storage_has_exactly_one_native_view() {
        for r in RESOURCES {
            let natives = RESOURCES
                .iter()
                .filter(|o| o.storage == r.storage && o.view == View::Native)
                .count();
            assert_eq!(natives, 1, "storage {}", r.storage);
        }
    }

    #[test]
    fn events_are_served_twice_over_one_storage() {
        let core = find("", "v1", "events").unwrap();
        let new = find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(core.storage, new.storage);
        assert_eq!(new.api_version(), "events.k8s.io/v1");
        assert_eq!(
            by_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
    }
}
