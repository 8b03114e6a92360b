//! The seam between the Lease keeper and the pipeline: whether this process reports now
//! ([`Leadership`]), and what each generation of watches resumes from ([`Generation`]).
//! A new generation (a takeover) restarts the watches: their first list is judged against
//! the checkpoint the previous leader left, so a handover neither loses nor repeats.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::checkpoint::Checkpoint;

/// Whether this process is the one that reports. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    pub fn new(leading: bool) -> Self {
        Self(Arc::new(AtomicBool::new(leading)))
    }

    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self, leading: bool) {
        self.0.store(leading, Ordering::SeqCst);
    }
}

/// One run of the watches: started at start-up and again at every takeover.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    pub number: u64,
    /// What the first list of each watch is judged against; `None`: a first start
    /// (`SENTRY_K8S_WATCH_HISTORICAL` decides).
    pub resume: Option<Arc<Checkpoint>>,
    /// Whether this generation's occurrences are reported (a follower only watches).
    pub leader: bool,
}

crate::labels::label_enum! {
    /// A change of leadership (`sentry_k8s_leader_transitions_total{direction}`).
    pub enum Transition {
        Acquired = "acquired",
        Lost = "lost",
    }
}

crate::labels::label_enum! {
    /// How a write of the Lease went (`sentry_k8s_lease_writes_total{outcome}`).
    pub enum LeaseWrite {
        /// Created, renewed, taken over, checkpointed or released: any write that landed.
        Written = "written",
        /// Someone else wrote it first (409); tried again next round.
        Conflict = "conflict",
        /// RBAC forbids it: the agent runs without checkpoint and election.
        Forbidden = "forbidden",
        Failed = "failed",
    }
}
