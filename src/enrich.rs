//! Enrichment of one occurrence: its owner chain (from [`owners`](crate::owners)), the node
//! it happened on, and the breadcrumbs of its workload.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lru::LruCache;

use crate::breadcrumbs::{Crumb, Trail, TrailEvictions, TrailLimits};
use crate::event::KubeEvent;
use crate::logs::ContainerLog;
use crate::owners::Chain;

/// Pods whose node is remembered (learned from kubelet and scheduler events).
const NODES_REMEMBERED: usize = 20_000;

/// What enrichment adds to an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Enrichment {
    pub chain: Chain,
    pub node: Option<String>,
    pub breadcrumbs: Vec<Arc<Crumb>>,
    /// A crashed container's last lines, when they were read.
    pub logs: Option<ContainerLog>,
}

impl Enrichment {
    /// No owners known, no node, no history: what an event has on its own.
    #[cfg(test)]
    pub fn bare(event: &KubeEvent) -> Self {
        Self {
            chain: Chain::of(&event.involved),
            node: (!event.source_host.is_empty()).then(|| event.source_host.clone()),
            breadcrumbs: Vec::new(),
            logs: None,
        }
    }
}

/// `Successfully assigned <ns>/<pod> to <node>`: the scheduler's word on where a pod runs.
fn assigned_node(event: &KubeEvent) -> Option<&str> {
    if event.reason != "Scheduled" {
        return None;
    }
    let (_, node) = event
        .message
        .strip_prefix("Successfully assigned ")?
        .rsplit_once(" to ")?;
    let node = node.trim();
    (!node.is_empty()).then_some(node)
}

/// Which node each pod runs on, by pod key: learned from the scheduler's and the kubelet's
/// events, and from the pod watch (its `spec.nodeName`) when it runs — so an event that
/// names no host still gets `node_name` without a request. Bounded (least recently
/// learned forgotten first); shared by the pod watch's stage and the enricher.
#[derive(Clone)]
pub struct Nodes(Arc<Mutex<LruCache<String, String>>>);

impl Default for Nodes {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(crate::bounded::lru(
            NonZeroUsize::new(NODES_REMEMBERED).expect("non-zero"),
        ))))
    }
}

impl Nodes {
    pub fn record(&self, pod: String, node: &str) {
        if !node.is_empty() {
            self.0.lock().unwrap().put(pod, node.to_string());
        }
    }

    pub fn get(&self, pod: &str) -> Option<String> {
        self.0.lock().unwrap().get(pod).cloned()
    }
}

/// The stateful part of enrichment, run in event order.
pub struct Enricher {
    trail: Trail,
    nodes: Nodes,
    breadcrumbs: usize,
}

impl Enricher {
    pub fn new(limits: TrailLimits, breadcrumbs: usize, nodes: Nodes) -> Self {
        Self {
            trail: Trail::new(limits),
            nodes,
            breadcrumbs,
        }
    }

    /// Workloads whose breadcrumbs are kept.
    pub fn workloads(&self) -> usize {
        self.trail.workloads()
    }

    /// Remembers an occurrence under its workload (the root of `chain`; for one only
    /// remembered, the chain as far as known), for the breadcrumbs of later ones and the
    /// pod's node; returns the enrichment of a reported one (`report`), which gathers what
    /// waited under the objects of its chain and leaves the occurrence itself out of its
    /// breadcrumbs; and what remembering it evicted.
    pub fn observe(
        &mut self,
        event: &KubeEvent,
        chain: Chain,
        report: bool,
    ) -> (Option<Enrichment>, TrailEvictions) {
        if event.involved.kind == "Pod" {
            let node = assigned_node(event)
                .or((!event.source_host.is_empty()).then_some(event.source_host.as_str()));
            if let Some(node) = node {
                self.nodes
                    .record(event.involved.key(&event.namespace), node);
            }
        }
        let workload = chain.root().key(&event.namespace);
        let mut evictions = match event.occurred_at() {
            Some(at) => self.trail.record(&workload, Crumb::of(event, at)),
            None => TrailEvictions::default(),
        };
        if !report {
            return (None, evictions);
        }
        // What was remembered before its owners were known joins the workload now.
        for object in chain.objects() {
            evictions += self.trail.absorb(&object.key(&event.namespace), &workload);
        }
        let node = if event.source_host.is_empty() {
            chain
                .objects()
                .find(|o| o.kind == "Pod")
                .and_then(|pod| self.nodes.get(&pod.key(&event.namespace)))
        } else {
            Some(event.source_host.clone())
        };
        let until: DateTime<Utc> = event.occurred_at().unwrap_or_else(Utc::now);
        let breadcrumbs = self
            .trail
            .before(&workload, until, &event.uid, self.breadcrumbs);
        (
            Some(Enrichment {
                chain,
                node,
                breadcrumbs,
                logs: None,
            }),
            evictions,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_names_the_node() {
        let object: crate::normalize::EventObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e", "namespace": "shop", "uid": "u"},
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "reason": "Scheduled", "type": "Normal", "message": "Successfully assigned shop/web-1 to node-7",
        }))
        .unwrap();
        let event = crate::normalize::normalize(object).unwrap();
        assert_eq!(assigned_node(&event), Some("node-7"));
    }
}
