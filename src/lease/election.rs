//! Leader election over a Lease, with client-go's rules: the holder renews every retry
//! period; another process may take the Lease only when it has seen no change to it for the
//! Lease's duration (measured on its own clock, so clocks that disagree do not matter), or
//! when the holder released it; a holder that cannot renew within its renew deadline stops
//! leading before anyone else can start.

use std::time::{Duration, Instant};

/// What a Lease says about its holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Empty: released (or never held).
    pub holder: String,
    pub duration: Duration,
    /// `renewTime`, as written (compared for change only, never against our clock).
    pub renewed: Option<String>,
    pub transitions: i32,
}

/// When the Lease was last seen to change, on our clock.
#[derive(Debug, Default)]
pub struct Observer {
    last: Option<(Record, Instant)>,
}

impl Observer {
    pub fn observe(&mut self, record: &Record, now: Instant) {
        let changed = self.last.as_ref().is_none_or(|(last, _)| last != record);
        if changed {
            self.last = Some((record.clone(), now));
        }
    }

    /// The holder has not renewed for the Lease's duration, as we saw it.
    pub fn expired(&self, now: Instant) -> bool {
        self.last
            .as_ref()
            .is_some_and(|(record, at)| now.saturating_duration_since(*at) >= record.duration)
    }
}

/// What to do with the Lease this round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    Acquire,
    /// Someone else holds it.
    Wait,
}

pub fn decide(
    identity: &str,
    record: Option<&Record>,
    observer: &Observer,
    now: Instant,
) -> Decision {
    match record {
        None => Decision::Create,
        Some(r) if r.holder == identity => Decision::Renew,
        Some(r) if r.holder.is_empty() => Decision::Acquire,
        Some(_) if observer.expired(now) => Decision::Acquire,
        Some(_) => Decision::Wait,
    }
}

/// The identity of this process: `POD_NAME`, else the host name with a random suffix so two
/// processes on one host differ.
pub fn identity(pod_name: Option<&str>, hostname: &str) -> String {
    match pod_name {
        Some(pod) => pod.to_string(),
        None => {
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            format!("{hostname}-{}", &suffix[..8])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed: &str) -> Record {
        Record {
            holder: holder.into(),
            duration: Duration::from_secs(15),
            renewed: Some(renewed.into()),
            transitions: 1,
        }
    }

    #[test]
    fn a_held_lease_is_taken_only_after_its_duration_without_change_on_our_clock() {
        let start = Instant::now();
        let mut observer = Observer::default();
        let record = held_by("agent-a", "t1");
        observer.observe(&record, start);
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            decide("agent-b", Some(&record), &observer, at(14)),
            Decision::Wait
        );
        // A renewal seen at 14 s restarts the count.
        let renewed = held_by("agent-a", "t2");
        observer.observe(&renewed, at(14));
        assert_eq!(
            decide("agent-b", Some(&renewed), &observer, at(28)),
            Decision::Wait
        );
        assert_eq!(
            decide("agent-b", Some(&renewed), &observer, at(29)),
            Decision::Acquire
        );
        // The same record seen again does not restart it.
        observer.observe(&renewed, at(20));
        assert!(observer.expired(at(29)));
    }

    #[test]
    fn holders_renew_released_leases_are_free_and_missing_ones_are_created() {
        let now = Instant::now();
        let observer = Observer::default();
        assert_eq!(decide("a", None, &observer, now), Decision::Create);
        assert_eq!(
            decide("a", Some(&held_by("a", "t")), &observer, now),
            Decision::Renew
        );
        assert_eq!(
            decide("b", Some(&held_by("", "t")), &observer, now),
            Decision::Acquire
        );
        assert_eq!(
            decide("b", Some(&held_by("a", "t")), &observer, now),
            Decision::Wait,
            "never observed: not expired"
        );
    }

    #[test]
    fn identities_differ_between_processes_on_one_host() {
        assert_eq!(identity(Some("agent-7f9"), "node-1"), "agent-7f9");
        let (a, b) = (identity(None, "laptop"), identity(None, "laptop"));
        assert!(a.starts_with("laptop-") && a != b);
    }
}
