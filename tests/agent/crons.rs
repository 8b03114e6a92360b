//! Sentry Crons check-ins for CronJob runs (`SENTRY_K8S_MONITOR_CRONJOBS`).

use crate::common::{World, eventually};
use harness::fixtures::ObjectFixture;
use serde_json::{Value, json};

fn check_ins(world: &World) -> Vec<Value> {
    world
        .sink
        .envelopes()
        .into_iter()
        .flat_map(|e| e.items)
        .filter(|i| i.item_type() == "check_in")
        .map(|i| i.payload)
        .collect()
}

#[tokio::test]
async fn cronjob_runs_become_check_ins_sent_once_each() {
    let world = World::new().await;
    let cronjob = ObjectFixture::new("CronJob", "batch", "nightly-report")
        .set(&["spec"], json!({"schedule": "30 2 * * *", "timeZone": "Europe/Berlin", "jobTemplate": {"spec": {"template": {}}}}))
        .create(&world.server);
    // A run that ended before the agent started is history.
    ObjectFixture::new("Job", "batch", "nightly-report-29159000")
        .owned_by(&cronjob)
        .set(
            &["status"],
            json!({"startTime": "2026-11-20T01:30:00Z", "completionTime": "2026-11-20T01:31:00Z",
            "conditions": [{"type": "Complete", "status": "True"}]}),
        )
        .create(&world.server);
    let agent = world
        .start(&[
            ("SENTRY_K8S_MONITOR_CRONJOBS", "true"),
            ("SENTRY_K8S_WATCH_NAMESPACES", "batch"),
            ("SENTRY_ENVIRONMENT", "prod"),
        ])
        .await;

    ObjectFixture::new("Job", "batch", "nightly-report-29160000")
        .owned_by(&cronjob)
        .set(
            &["status"],
            json!({"startTime": "2026-11-21T01:30:00Z", "active": 1}),
        )
        .create(&world.server);
    eventually("the in_progress check-in", || check_ins(&world).len() == 1).await;
    let first = &check_ins(&world)[0];
    assert_eq!(first["monitor_slug"], "nightly-report");
    assert_eq!(first["status"], "in_progress");
    assert_eq!(first["environment"], "prod");
    assert_eq!(
        first["monitor_config"]["schedule"],
        json!({"type": "crontab", "value": "30 2 * * *"})
    );
    assert_eq!(first["monitor_config"]["timezone"], "Europe/Berlin");

    world
        .server
        .patch(
            "batch/v1",
            "Job",
            "batch",
            "nightly-report-29160000",
            &json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .unwrap();
    world
        .server
        .patch("batch/v1", "Job", "batch", "nightly-report-29160000", &json!({"status": {"active": null, "completionTime": "2026-11-21T01:32:30Z",
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-21T01:32:30Z"}]}}))
        .unwrap();
    eventually("the ok check-in", || check_ins(&world).len() == 2).await;
    let done = &check_ins(&world)[1];
    assert_eq!(done["status"], "ok");
    assert_eq!(done["duration"], 150.0);
    assert_eq!(done["check_in_id"], first["check_in_id"], "one id per run");

    ObjectFixture::new("Job", "batch", "nightly-report-29161440")
        .owned_by(&cronjob)
        .set(&["status"], json!({"startTime": "2026-11-22T01:30:00Z",
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": "2026-11-22T01:35:00Z"}]}))
        .create(&world.server);
    eventually("the error check-in", || check_ins(&world).len() == 3).await;
    assert_eq!(check_ins(&world)[2]["status"], "error");
    // Jobs without a CronJob owner are not monitored: a run created after one reports
    // alone.
    ObjectFixture::new("Job", "batch", "one-off")
        .set(
            &["status"],
            json!({"startTime": "2026-11-22T01:30:00Z", "active": 1}),
        )
        .create(&world.server);
    ObjectFixture::new("Job", "batch", "nightly-report-29162880")
        .owned_by(&cronjob)
        .set(
            &["status"],
            json!({"startTime": "2026-11-23T01:30:00Z", "active": 1}),
        )
        .create(&world.server);
    eventually("the next run's check-in", || check_ins(&world).len() >= 4).await;
    agent.stop().await;
    let slugs: Vec<Value> = check_ins(&world)
        .iter()
        .map(|c| c["monitor_slug"].clone())
        .collect();
    assert_eq!(slugs, vec![json!("nightly-report"); 4]);
}
