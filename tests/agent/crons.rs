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

/// A CronJob of `name` in `namespace` with `schedule`, and a started run of it.
fn cronjob(world: &World, namespace: &str, name: &str, schedule: &str) -> Value {
    ObjectFixture::new("CronJob", namespace, name)
        .set(
            &["spec"],
            json!({"schedule": schedule, "jobTemplate": {"spec": {"template": {}}}}),
        )
        .create(&world.server)
}

fn start_run(world: &World, cronjob: &Value, run: &str) {
    let namespace = cronjob["metadata"]["namespace"].as_str().unwrap();
    let name = cronjob["metadata"]["name"].as_str().unwrap();
    ObjectFixture::new("Job", namespace, &format!("{name}-{run}"))
        .owned_by(cronjob)
        .set(
            &["status"],
            json!({"startTime": "2026-11-29T02:00:00Z", "active": 1}),
        )
        .create(&world.server);
}

#[tokio::test]
async fn monitors_keep_the_go_agents_slug_and_never_collide_across_namespaces() {
    let world = World::new().await;
    let dotted = cronjob(&world, "team-a", "report.v2", "0 2 * * *");
    let backup_a = cronjob(&world, "team-a", "backup", "0 3 * * *");
    let backup_b = cronjob(&world, "team-b", "backup", "0 4 * * *");
    let agent = world
        .start(&[
            ("SENTRY_K8S_MONITOR_CRONJOBS", "1"),
            ("SENTRY_K8S_WATCH_NAMESPACES", "team-a,team-b"),
        ])
        .await;
    for cronjob in [&dotted, &backup_a, &backup_b] {
        start_run(&world, cronjob, "1");
    }
    eventually("three check-ins", || check_ins(&world).len() == 3).await;
    let mut slugs: Vec<String> = check_ins(&world)
        .iter()
        .map(|c| c["monitor_slug"].as_str().unwrap().to_string())
        .collect();
    slugs.sort();
    assert_eq!(
        slugs,
        ["reportv2", "team-a-backup", "team-b-backup"],
        "report.v2 lands where Sentry put the Go agent's check-ins; the two backups apart"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_cluster_name_qualifies_every_monitor() {
    let world = World::new().await;
    let nightly = cronjob(&world, "default", "nightly", "0 2 * * *");
    let agent = world
        .start(&[
            ("SENTRY_K8S_MONITOR_CRONJOBS", "1"),
            ("SENTRY_K8S_CLUSTER_NAME", "eu-1"),
        ])
        .await;
    start_run(&world, &nightly, "1");
    eventually("the check-in", || check_ins(&world).len() == 1).await;
    assert_eq!(check_ins(&world)[0]["monitor_slug"], "eu-1-default-nightly");
    agent.stop().await;
}

#[tokio::test]
async fn a_schedule_edit_reaches_the_next_check_in() {
    let world = World::new().await;
    let nightly = cronjob(&world, "default", "nightly", "0 2 * * *");
    let agent = world.start(&[("SENTRY_K8S_MONITOR_CRONJOBS", "1")]).await;
    start_run(&world, &nightly, "1");
    eventually("the first check-in", || check_ins(&world).len() == 1).await;
    world
        .server
        .patch(
            "batch/v1",
            "CronJob",
            "default",
            "nightly",
            &json!({"spec": {"schedule": "15 5 * * 1", "timeZone": "Asia/Tokyo"}}),
        )
        .unwrap();
    // The edit arrives on the CronJob watch, the next run on the Job watch: the two are not
    // ordered, so a run may still start before the edit is seen; a later one must carry it.
    let mut run = 2;
    loop {
        start_run(&world, &nightly, &run.to_string());
        eventually("the next check-in", || check_ins(&world).len() == run).await;
        let last = check_ins(&world).pop().unwrap();
        if last["monitor_config"]["schedule"]["value"] == "15 5 * * 1" {
            assert_eq!(last["monitor_config"]["timezone"], "Asia/Tokyo");
            break;
        }
        assert!(run < 5, "the edit never reached a check-in: {last}");
        run += 1;
    }
    assert_eq!(
        check_ins(&world)[0]["monitor_config"]["schedule"]["value"],
        "0 2 * * *"
    );
    agent.stop().await;
}

#[tokio::test]
async fn check_ins_go_to_the_main_dsn_unless_custom_dsns_are_on() {
    for (switch, project) in [(None, "1"), (Some("0"), "1"), (Some("1"), "31")] {
        let world = World::new().await;
        let dsn = world.sink.add_project("31", "cronkey");
        let annotated = ObjectFixture::new("CronJob", "default", "annotated")
            .annotation("k8s.sentry.io/dsn", &dsn)
            .set(
                &["spec"],
                json!({"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {}}}}),
            )
            .create(&world.server);
        let mut vars = vec![("SENTRY_K8S_MONITOR_CRONJOBS", "1")];
        vars.extend(switch.map(|v| ("SENTRY_K8S_CUSTOM_DSNS", v)));
        let agent = world.start(&vars).await;
        start_run(&world, &annotated, "1");
        eventually("the check-in", || check_ins(&world).len() == 1).await;
        let projects: Vec<String> = world
            .sink
            .envelopes()
            .into_iter()
            .filter(|e| e.items.iter().any(|i| i.item_type() == "check_in"))
            .map(|e| e.project)
            .collect();
        assert_eq!(projects, [project], "SENTRY_K8S_CUSTOM_DSNS={switch:?}");
        agent.stop().await;
    }
}
