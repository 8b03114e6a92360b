//! What a check-in says: the run a Job represents (`in_progress`, then `ok` or `error`), and
//! the monitor configuration its CronJob's schedule gives, so monitors appear in Sentry
//! without being created by hand. Pure: the Kubernetes objects in, the protocol types out.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use sentry::protocol::{MonitorCheckIn, MonitorCheckInStatus, MonitorConfig, MonitorSchedule};

use crate::normalize::from_jiff;

/// Where a run is, in check-in terms; ordered so a run only moves forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Succeeded,
    Failed,
}

/// A Job run of a CronJob, as check-ins need it.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub job_uid: String,
    pub namespace: String,
    pub cronjob: String,
    pub phase: Phase,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
}

/// The run a Job represents, if a CronJob owns it and it has started.
pub fn run_of(job: &Job) -> Option<Run> {
    let meta = &job.metadata;
    let cronjob = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "CronJob")?
        .name
        .clone();
    let status = job.status.as_ref()?;
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
    };
    let (phase, finished) = if let Some(c) = condition("Failed") {
        (
            Phase::Failed,
            c.last_transition_time
                .as_ref()
                .and_then(|t| from_jiff(&t.0)),
        )
    } else if let Some(c) = condition("Complete").or_else(|| condition("SuccessCriteriaMet")) {
        let done = status
            .completion_time
            .as_ref()
            .or(c.last_transition_time.as_ref());
        (Phase::Succeeded, done.and_then(|t| from_jiff(&t.0)))
    } else if status.start_time.is_some() || status.active.unwrap_or(0) > 0 {
        (Phase::Running, None)
    } else {
        return None;
    };
    Some(Run {
        job_uid: meta.uid.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        cronjob,
        phase,
        started: status.start_time.as_ref().and_then(|t| from_jiff(&t.0)),
        finished,
    })
}

/// The monitor schedule of a CronJob: macros expanded, a `CRON_TZ=`/`TZ=` prefix (older
/// clusters) or `spec.timeZone` as the timezone.
pub fn monitor_config(cronjob: &CronJob) -> Option<MonitorConfig> {
    let spec = cronjob.spec.as_ref()?;
    let mut schedule = spec.schedule.trim();
    let mut timezone = spec.time_zone.clone();
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = schedule.strip_prefix(prefix) {
            let (tz, rest) = rest.split_once(' ')?;
            timezone.get_or_insert_with(|| tz.to_string());
            schedule = rest.trim();
        }
    }
    let crontab = match schedule {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    let schedule = MonitorSchedule::from_crontab(crontab).ok()?;
    let minutes = |secs: i64| (secs.max(0) as u64).div_ceil(60).max(1);
    let max_runtime = spec
        .job_template
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map(minutes);
    Some(MonitorConfig {
        schedule,
        checkin_margin: spec.starting_deadline_seconds.map(minutes),
        max_runtime,
        timezone,
        failure_issue_threshold: None,
        recovery_threshold: None,
    })
}

/// The check-in for a run's phase.
pub fn check_in(
    run: &Run,
    slug: String,
    config: Option<MonitorConfig>,
    environment: Option<&str>,
) -> MonitorCheckIn {
    let status = match run.phase {
        Phase::Running => MonitorCheckInStatus::InProgress,
        Phase::Succeeded => MonitorCheckInStatus::Ok,
        Phase::Failed => MonitorCheckInStatus::Error,
    };
    let duration = match (run.phase, run.started, run.finished) {
        (Phase::Running, _, _) => None,
        (_, Some(start), Some(end)) => {
            Some((end - start).num_milliseconds().max(0) as f64 / 1000.0)
        }
        _ => None,
    };
    MonitorCheckIn {
        // One id per run, so Sentry pairs the in_progress and the final check-in.
        check_in_id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, run.job_uid.as_bytes()),
        monitor_slug: slug,
        status,
        environment: environment.map(str::to_string),
        duration,
        monitor_config: config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "nightly-29160000", "namespace": "batch", "uid": "j1",
                          "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "c1", "controller": true}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn job_status_maps_to_run_phases() {
        assert_eq!(run_of(&job(json!({}))), None);
        let running = run_of(&job(
            json!({"startTime": "2026-11-21T02:00:00Z", "active": 1}),
        ))
        .unwrap();
        assert_eq!(
            (running.phase, running.cronjob.as_str()),
            (Phase::Running, "nightly")
        );
        let done = run_of(&job(json!({"startTime": "2026-11-21T02:00:00Z", "completionTime": "2026-11-21T02:01:30Z",
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-21T02:01:30Z"}]}))).unwrap();
        assert_eq!(done.phase, Phase::Succeeded);
        assert_eq!(
            check_in(&done, "nightly".into(), None, Some("prod")).duration,
            Some(90.0)
        );
        let failed = run_of(&job(json!({"startTime": "2026-11-21T02:00:00Z",
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": "2026-11-21T02:05:00Z"}]}))).unwrap();
        assert_eq!(failed.phase, Phase::Failed);
        let c = check_in(&failed, "nightly".into(), None, None);
        assert_eq!(
            (c.status, c.duration),
            (MonitorCheckInStatus::Error, Some(300.0))
        );
        assert_eq!(
            c.check_in_id,
            check_in(&running, "nightly".into(), None, None).check_in_id,
            "one id per run"
        );
    }

    #[test]
    fn schedules_become_monitor_configs() {
        let cronjob = |schedule: &str, tz: Option<&str>| -> CronJob {
            serde_json::from_value(json!({"metadata": {"name": "c"}, "spec": {"schedule": schedule, "timeZone": tz,
                "startingDeadlineSeconds": 200, "jobTemplate": {"spec": {"activeDeadlineSeconds": 3600, "template": {}}}}}))
            .unwrap()
        };
        let c = monitor_config(&cronjob("0 2 * * *", Some("Europe/Berlin"))).unwrap();
        assert_eq!(
            c.schedule,
            MonitorSchedule::Crontab {
                value: "0 2 * * *".into()
            }
        );
        assert_eq!(
            (c.timezone.as_deref(), c.checkin_margin, c.max_runtime),
            (Some("Europe/Berlin"), Some(4), Some(60))
        );
        let c = monitor_config(&cronjob("CRON_TZ=UTC @hourly", None)).unwrap();
        assert_eq!(
            c.schedule,
            MonitorSchedule::Crontab {
                value: "0 * * * *".into()
            }
        );
        assert_eq!(c.timezone.as_deref(), Some("UTC"));
        assert!(monitor_config(&cronjob("every day", None)).is_none());
    }
}
