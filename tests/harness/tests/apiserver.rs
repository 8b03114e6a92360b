//! The fake apiserver, driven by the real kube client: each test names the behaviour of the
//! real server it proves.

use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use harness::fixtures::{ContainerStatusFixture, EventFixture, ObjectFixture};
use harness::{ApiServerOptions, DelayRule, DenyRule, FailRule, FakeApiServer};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::json;
use tokio_stream::wrappers::UnboundedReceiverStream;

const STEP: Duration = Duration::from_secs(5);

/// The next stream item, failing the test if none arrives in time.
async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(STEP, stream.next())
        .await
        .expect("an item within the deadline")
        .expect("the stream continues")
}

fn warning(ns: &str, name: &str) -> serde_json::Value {
    EventFixture::warning(
        ns,
        name,
        "BackOff",
        "Back-off restarting failed container app in pod",
    )
    .build()
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Collects watcher events up to and including the next `InitDone`.
async fn until_init_done<S>(stream: &mut S) -> Vec<String>
where
    S: Stream<Item = Result<watcher::Event<Event>, watcher::Error>> + Unpin,
{
    let mut seen = Vec::new();
    loop {
        match next(stream).await {
            Ok(watcher::Event::InitDone) => return seen,
            Ok(watcher::Event::InitApply(ev)) => {
                seen.push(format!("InitApply {}", ev.metadata.name.unwrap()))
            }
            Ok(other) => seen.push(short(&other)),
            Err(e) => seen.push(format!("Err {e}")),
        }
    }
}

/// Polls a watcher in the background, as a consumer would, so it keeps its watch open.
fn drive<S>(stream: S) -> UnboundedReceiverStream<Result<watcher::Event<Event>, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<Event>, watcher::Error>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if tx.send(item).is_err() {
                return;
            }
        }
    });
    UnboundedReceiverStream::new(rx)
}

fn short(event: &watcher::Event<Event>) -> String {
    match event {
        watcher::Event::Init => "Init".into(),
        watcher::Event::InitApply(e) => format!("InitApply {}", e.metadata.name.clone().unwrap()),
        watcher::Event::InitDone => "InitDone".into(),
        watcher::Event::Apply(e) => format!("Apply {}", e.metadata.name.clone().unwrap()),
        watcher::Event::Delete(e) => format!("Delete {}", e.metadata.name.clone().unwrap()),
    }
}

#[tokio::test]
async fn lists_page_with_limit_and_continue_from_a_consistent_snapshot() {
    let server = FakeApiServer::start().await.unwrap();
    for i in 0..7 {
        server
            .create(warning("default", &format!("ev-{i}")))
            .unwrap();
    }
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let first = events.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(4));
    let token = first.metadata.continue_.clone().expect("a continue token");
    // Written after the first page: not part of this list.
    server.create(warning("default", "ev-late")).unwrap();
    let second = events
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    let third = events
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(second.metadata.continue_.as_ref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(third.items.len(), 1);
    assert!(third.metadata.continue_.is_none());
    let names: Vec<_> = [first, second, third]
        .iter()
        .flat_map(|l| l.items.iter().map(|e| e.metadata.name.clone().unwrap()))
        .collect();
    assert_eq!(names, (0..7).map(|i| format!("ev-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_expired_continue_token_is_410_expired() {
    let server = FakeApiServer::start().await.unwrap();
    for i in 0..4 {
        server
            .create(warning("default", &format!("ev-{i}")))
            .unwrap();
    }
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let first = events.list(&ListParams::default().limit(2)).await.unwrap();
    server.create(warning("default", "ev-after")).unwrap();
    server.compact();
    let err = events
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(first.metadata.continue_.as_ref().unwrap()),
        )
        .await
        .unwrap_err();
    let status = api_status(err);
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(status.message.contains("continue parameter is too old"));
}

#[tokio::test]
async fn watch_replays_every_change_after_a_resource_version() {
    let server = FakeApiServer::start().await.unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let rv = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    server.create(warning("default", "a")).unwrap();
    server.create(warning("default", "b")).unwrap();
    server
        .patch("v1", "Event", "default", "a", &json!({"count": 2}))
        .unwrap();
    server.delete("v1", "Event", "default", "b").unwrap();
    let mut stream = events
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    let mut last_rv = 0u64;
    for _ in 0..4 {
        let (kind, obj) = match next(&mut stream).await.unwrap() {
            WatchEvent::Added(e) => ("ADDED", e),
            WatchEvent::Modified(e) => ("MODIFIED", e),
            WatchEvent::Deleted(e) => ("DELETED", e),
            other => panic!("unexpected {other:?}"),
        };
        let obj_rv: u64 = obj
            .metadata
            .resource_version
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        assert!(obj_rv > last_rv, "resourceVersions rise");
        last_rv = obj_rv;
        seen.push(format!(
            "{kind} {} {}",
            obj.metadata.name.unwrap(),
            obj.count.unwrap()
        ));
    }
    assert_eq!(
        seen,
        ["ADDED a 1", "ADDED b 1", "MODIFIED a 2", "DELETED b 1"]
    );
}

#[tokio::test]
async fn watch_below_the_compaction_floor_gets_an_error_event_410() {
    let server = FakeApiServer::start().await.unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let rv = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    server.create(warning("default", "a")).unwrap();
    server.compact();
    let mut stream = events
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut stream).await.unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn compaction_during_a_partition_makes_the_watcher_relist_live_events_as_init_apply() {
    let server = FakeApiServer::start().await.unwrap();
    server.create(warning("default", "old")).unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let mut stream = drive(watcher(events, watcher::Config::default()));
    assert_eq!(
        until_init_done(&mut stream).await,
        ["Init", "InitApply old"]
    );
    server.wait_for_watches(1, STEP).await.unwrap();
    server.create(warning("default", "live")).unwrap();
    assert_eq!(short(&next(&mut stream).await.unwrap()), "Apply live");

    server.pause();
    server.create(warning("default", "during")).unwrap();
    server.delete("v1", "Event", "default", "old").unwrap();
    server.compact();
    server.resume();

    let mut after = Vec::new();
    loop {
        match next(&mut stream).await {
            Ok(watcher::Event::InitDone) => break,
            Ok(other) => after.push(short(&other)),
            Err(watcher::Error::WatchError(status)) => after.push(format!("Err {}", status.code)),
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(
        after,
        ["Err 410", "Init", "InitApply during", "InitApply live"]
    );
}

#[tokio::test]
async fn closing_watches_makes_the_watcher_resume_without_relisting() {
    let server = FakeApiServer::start().await.unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let mut stream = drive(watcher(events, watcher::Config::default()));
    until_init_done(&mut stream).await;
    server.wait_for_watches(1, STEP).await.unwrap();
    let before = server.requests(0).last().unwrap().seq;
    assert_eq!(server.close_watches(), 1);
    server.create(warning("default", "after-close")).unwrap();
    assert_eq!(
        short(&next(&mut stream).await.unwrap()),
        "Apply after-close"
    );
    let later = server.requests(before);
    assert!(
        !later.is_empty() && later.iter().all(|r| r.watch),
        "only watch requests after the close: {later:?}"
    );
    assert!(
        later[0].query.contains("resourceVersion="),
        "{:?}",
        later[0]
    );
}

#[tokio::test]
async fn bookmarks_reach_only_watches_that_allow_them() {
    let server = FakeApiServer::start().await.unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let rv = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut with = events
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut without = events
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    server.wait_for_watches(2, STEP).await.unwrap();
    server.bookmark();
    server.create(warning("default", "x")).unwrap();
    match next(&mut with).await.unwrap() {
        WatchEvent::Bookmark(bm) => assert_eq!(bm.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    assert!(matches!(
        next(&mut without).await.unwrap(),
        WatchEvent::Added(_)
    ));
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_end_bookmark() {
    let server = FakeApiServer::start().await.unwrap();
    server.create(warning("default", "a")).unwrap();
    server.create(warning("default", "b")).unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let mut stream = watcher(events.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert_eq!(
        until_init_done(&mut stream).await,
        ["Init", "InitApply a", "InitApply b"]
    );
    let log = server.requests(0);
    assert!(
        log.iter()
            .any(|r| r.query.contains("sendInitialEvents=true")),
        "{log:?}"
    );
    assert!(
        log.iter().all(|r| !r.query.contains("limit=")),
        "no list request: {log:?}"
    );

    // Without resourceVersionMatch=NotOlderThan the real server refuses (422).
    let request = http::Request::get("/api/v1/namespaces/default/events?watch=true&sendInitialEvents=true&allowWatchBookmarks=true")
        .body(Vec::new())
        .unwrap();
    let err = server.client().request_text(request).await.unwrap_err();
    assert_eq!(api_status(err).code, 422);
}

#[tokio::test]
async fn core_and_events_k8s_io_are_two_views_of_one_store() {
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    let core: Api<Event> = Api::namespaced(client.clone(), "default");
    let new: Api<NewEvent> = Api::namespaced(client, "default");

    let created: NewEvent = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "sched.1"},
        "eventTime": "2026-11-21T06:00:00.000000Z",
        "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-node-1",
        "action": "Scheduling", "reason": "FailedScheduling", "type": "Warning",
        "note": "0/3 nodes are available: 3 Insufficient cpu.",
        "regarding": {"kind": "Pod", "name": "web-1", "namespace": "default"},
        "series": {"count": 4, "lastObservedTime": "2026-11-21T06:05:00.000000Z"},
    }))
    .unwrap();
    new.create(&PostParams::default(), &created).await.unwrap();
    let as_core = core.get("sched.1").await.unwrap();
    assert_eq!(
        as_core.message.as_deref(),
        Some("0/3 nodes are available: 3 Insufficient cpu.")
    );
    assert_eq!(as_core.involved_object.name.as_deref(), Some("web-1"));
    assert_eq!(
        as_core.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(as_core.series.as_ref().unwrap().count, Some(4));

    let old: Event = serde_json::from_value(
        EventFixture::warning(
            "default",
            "kubelet.1",
            "BackOff",
            "Back-off restarting failed container",
        )
        .count(7)
        .source("kubelet", Some("node-1"))
        .build(),
    )
    .unwrap();
    core.create(&PostParams::default(), &old).await.unwrap();
    let as_new = new.get("kubelet.1").await.unwrap();
    assert_eq!(
        as_new.note.as_deref(),
        Some("Back-off restarting failed container")
    );
    assert_eq!(as_new.deprecated_count, Some(7));
    assert_eq!(
        as_new.deprecated_source.unwrap().host.as_deref(),
        Some("node-1")
    );
    assert_eq!(as_new.regarding.unwrap().kind.as_deref(), Some("Pod"));

    // events.k8s.io/v1 requires eventTime, as the real validation does.
    let mut bad = created.clone();
    bad.metadata.name = Some("no-time".into());
    bad.event_time = None;
    let status = api_status(new.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(status.message.contains("eventTime"), "{}", status.message);
}

#[tokio::test]
async fn selectors_filter_lists_and_watches_and_leaving_the_selection_is_deleted() {
    let server = FakeApiServer::start().await.unwrap();
    server
        .create(
            EventFixture::warning("default", "p.1", "BackOff", "m")
                .label("team", "a")
                .build(),
        )
        .unwrap();
    server
        .create(
            EventFixture::warning("default", "n.1", "NodeNotReady", "m")
                .about_cluster_object("Node", "n")
                .build(),
        )
        .unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let pods_only = events
        .list(&ListParams::default().fields("involvedObject.kind=Pod"))
        .await
        .unwrap();
    assert_eq!(pods_only.items.len(), 1);
    let team_a = events
        .list(&ListParams::default().labels("team in (a,b)"))
        .await
        .unwrap();
    assert_eq!(team_a.items[0].metadata.name.as_deref(), Some("p.1"));
    let status = api_status(
        events
            .list(&ListParams::default().fields("spec.nodeName=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 400);

    let rv = pods_only.metadata.resource_version.unwrap();
    let mut stream = events
        .watch(&WatchParams::default().labels("team=a"), &rv)
        .await
        .unwrap()
        .boxed();
    server
        .patch(
            "v1",
            "Event",
            "default",
            "n.1",
            &json!({"metadata": {"labels": {"team": "a"}}}),
        )
        .unwrap();
    server
        .patch(
            "v1",
            "Event",
            "default",
            "p.1",
            &json!({"metadata": {"labels": {"team": "c"}}}),
        )
        .unwrap();
    assert!(
        matches!(next(&mut stream).await.unwrap(), WatchEvent::Added(e) if e.metadata.name.as_deref() == Some("n.1"))
    );
    assert!(
        matches!(next(&mut stream).await.unwrap(), WatchEvent::Deleted(e) if e.metadata.name.as_deref() == Some("p.1"))
    );
}

#[tokio::test]
async fn writes_answer_with_the_real_status_codes() {
    let server = FakeApiServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "1"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let status = api_status(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );

    let mut stale = created.clone();
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let status = api_status(
        cms.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let strategic = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"j": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.data.unwrap().len(), 2);

    let status = api_status(cms.get("missing").await.unwrap_err());
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, "configmaps \"missing\" not found");

    let bad: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "Not_Valid"}})).unwrap();
    let status = api_status(cms.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));

    let elsewhere: Api<ConfigMap> = Api::namespaced(server.client(), "nowhere");
    let status = api_status(
        elsewhere
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 404);

    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let made = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(made.metadata.name.unwrap().starts_with("gen-"));

    let rv_before: u64 = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv_before.to_string())
        .await
        .unwrap()
        .boxed();
    cms.delete("c", &DeleteParams::default()).await.unwrap();
    match next(&mut stream).await.unwrap() {
        WatchEvent::Deleted(obj) => {
            let rv: u64 = obj.metadata.resource_version.unwrap().parse().unwrap();
            assert!(rv > rv_before, "a delete gets its own resourceVersion");
        }
        other => panic!("expected DELETED, got {other:?}"),
    }
    assert_eq!(
        api_status(cms.delete("c", &DeleteParams::default()).await.unwrap_err()).code,
        404
    );
}

#[tokio::test]
async fn metadata_only_get_list_and_watch_return_partial_object_metadata() {
    let server = FakeApiServer::start().await.unwrap();
    let chain = harness::fixtures::deployment_chain(&server, "default", "web", 2);
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let name = chain.pods[0]["metadata"]["name"].as_str().unwrap();
    let meta = pods.get_metadata(name).await.unwrap();
    let owner = &meta.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ReplicaSet", Some(true))
    );
    assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");

    let list = pods.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = pods
        .watch_metadata(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    ObjectFixture::new("Pod", "default", "extra").create(&server);
    match next(&mut stream).await.unwrap() {
        WatchEvent::Added(obj) => {
            assert_eq!(obj.metadata.name.as_deref(), Some("extra"));
            assert_eq!(obj.types.unwrap().kind, "PartialObjectMetadata");
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
    let accepts: Vec<_> = server.requests(0).into_iter().map(|r| r.accept).collect();
    assert!(
        accepts
            .iter()
            .all(|a| a.contains("as=PartialObjectMetadata")),
        "{accepts:?}"
    );
}

#[tokio::test]
async fn token_and_tls_authenticate_an_in_cluster_style_client() {
    let dir = harness::tempdir::tempdir().unwrap();
    let options = ApiServerOptions::default()
        .tls(Some(dir.path().to_path_buf()))
        .token("s3cr3t-token", "system:serviceaccount:sentry:agent");
    let server = FakeApiServer::start_with(options).await.unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    std::fs::write(dir.path().join("token"), "s3cr3t-token").unwrap();

    // Configured the way in-cluster config is: a CA file and a token file, re-read by kube.
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.root_cert_file = Some(dir.path().join("ca.crt"));
    config.root_cert = Some(vec![pem_der(
        &std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
    )]);
    config.auth_info.token_file = Some(dir.path().join("token").to_string_lossy().into());
    let client = kube::Client::try_from(config.clone()).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    assert!(
        namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len()
            >= 4
    );
    assert_eq!(
        server.requests(0).last().unwrap().user,
        "system:serviceaccount:sentry:agent"
    );

    config.auth_info.token_file = None;
    config.auth_info.token = Some("wrong".to_string().into());
    let wrong: Api<Event> = Api::all(kube::Client::try_from(config).unwrap());
    let status = api_status(wrong.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test]
async fn rbac_denials_are_the_real_403s() {
    let server = FakeApiServer::start().await.unwrap();
    server.deny(DenyRule {
        verb: "watch".into(),
        resource: "events".into(),
        group: Some(String::new()),
        namespace: None,
    });
    server.deny(DenyRule {
        verb: "get".into(),
        resource: "replicasets".into(),
        group: None,
        namespace: Some("prod".into()),
    });
    let events: Api<Event> = Api::all(server.client());
    let rv = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let status = api_status(
        events
            .watch(&WatchParams::default(), &rv)
            .await
            .err()
            .expect("forbidden"),
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "events is forbidden: User \"system:serviceaccount:sentry:sentry-kubernetes\" cannot watch resource \"events\" in API group \"\" at the cluster scope"
    );
    let rs: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(server.client(), "prod");
    let status = api_status(rs.get_metadata("web-1").await.unwrap_err());
    assert!(
        status
            .message
            .starts_with("replicasets.apps \"web-1\" is forbidden"),
        "{}",
        status.message
    );
    assert!(
        status.message.ends_with("in the namespace \"prod\""),
        "{}",
        status.message
    );
    let other: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(server.client(), "default");
    assert_eq!(
        api_status(other.get_metadata("web-1").await.unwrap_err()).code,
        404
    );
}

#[tokio::test]
async fn a_partition_holds_requests_until_it_heals() {
    let server = FakeApiServer::start().await.unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    server.pause();
    let pending = tokio::spawn(async move {
        events
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
    });
    // The request must still be waiting while the partition lasts.
    let waited = tokio::time::timeout(Duration::from_millis(300), async {
        while !pending.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_err(), "a request completed during the partition");
    server.resume();
    assert_eq!(
        tokio::time::timeout(STEP, pending)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn injected_failures_and_delays_apply_to_matching_requests_only() {
    let server = FakeApiServer::start().await.unwrap();
    server.fail(FailRule {
        path: "/api/v1/namespaces/default/events".into(),
        method: Some("GET".into()),
        status: 500,
        count: 1,
        message: Some("etcdserver: request timed out".into()),
        retry_after: None,
    });
    server.delay(DelayRule {
        path: "/api/v1/namespaces/default/pods".into(),
        method: None,
        millis: 50,
        count: Some(1),
    });
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let status = api_status(events.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        (status.code, status.message.as_str()),
        (500, "etcdserver: request timed out")
    );
    events.list(&ListParams::default()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let started = std::time::Instant::now();
    pods.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
    let statuses: Vec<u16> = server.requests(0).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 200, 200]);
}

#[tokio::test]
async fn watches_end_cleanly_at_their_timeout() {
    let server = FakeApiServer::start().await.unwrap();
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    let rv = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let stream = events
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap();
    let items: Vec<_> = tokio::time::timeout(STEP, stream.try_collect::<Vec<_>>())
        .await
        .unwrap()
        .unwrap();
    assert!(items.iter().all(|e| matches!(e, WatchEvent::Bookmark(_))));
}

#[tokio::test]
async fn leases_are_created_read_and_replaced_with_conflicts_on_stale_writes() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<Lease> = Api::namespaced(server.client(), "kube-system");
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("sentry-kubernetes".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("agent-a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    let again = api
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert_eq!(api_status(again).code, 409, "AlreadyExists");
    let mut a = api.get("sentry-kubernetes").await.unwrap();
    let mut b = a.clone();
    a.spec.as_mut().unwrap().holder_identity = Some("agent-a".into());
    a.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("k8s.sentry.io/checkpoint".into(), "{}".into());
    let renewed = api
        .replace("sentry-kubernetes", &PostParams::default(), &a)
        .await
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        created.metadata.resource_version
    );
    // B read before A's write: its takeover is refused, as the real server does.
    b.spec.as_mut().unwrap().holder_identity = Some("agent-b".into());
    let stale = api
        .replace("sentry-kubernetes", &PostParams::default(), &b)
        .await
        .unwrap_err();
    assert_eq!(
        api_status(stale).code,
        409,
        "Conflict on a stale resourceVersion"
    );
    let now = api.get("sentry-kubernetes").await.unwrap();
    assert_eq!(
        now.spec.unwrap().holder_identity.as_deref(),
        Some("agent-a")
    );
    assert_eq!(
        now.metadata.annotations.unwrap()["k8s.sentry.io/checkpoint"],
        "{}"
    );
    assert_eq!(api_status(api.get("missing").await.unwrap_err()).code, 404);
    // Faults and RBAC apply to leases like to anything else.
    server.fail(FailRule {
        path: "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/sentry-kubernetes".into(),
        method: Some("PUT".into()),
        status: 500,
        count: 1,
        message: None,
        retry_after: None,
    });
    let failed = api
        .replace(
            "sentry-kubernetes",
            &PostParams::default(),
            &api.get("sentry-kubernetes").await.unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(failed).code, 500);
    server.deny(DenyRule {
        verb: "update".into(),
        resource: "leases".into(),
        group: Some("coordination.k8s.io".into()),
        namespace: None,
    });
    let denied = api
        .replace(
            "sentry-kubernetes",
            &PostParams::default(),
            &api.get("sentry-kubernetes").await.unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(denied).code, 403);
}

fn pods(server: &FakeApiServer) -> Api<Pod> {
    Api::namespaced(server.client(), "shop")
}

/// A pod whose `app` container crashed once (its dead instance is `lastState.terminated`,
/// the kubelet holds the restart back) beside a `sidecar` that runs.
fn crashed_pod(server: &FakeApiServer) -> (ContainerStatusFixture, ContainerStatusFixture) {
    let app = ContainerStatusFixture::new("app", "shop/web:1.0").crashed(
        1,
        "Error",
        chrono::Utc::now() - chrono::Duration::seconds(20),
    );
    let sidecar = ContainerStatusFixture::new("sidecar", "envoy:1.30");
    ObjectFixture::new("Pod", "shop", "web-1")
        .containers(&[("app", "shop/web:1.0"), ("sidecar", "envoy:1.30")])
        .status("Running", &[app.clone().build(), sidecar.clone().build()])
        .create(server);
    (app, sidecar)
}

#[tokio::test]
async fn pod_status_is_written_through_the_status_subresource_only() {
    let server = FakeApiServer::start().await.unwrap();
    let pods = pods(&server);
    let created = ObjectFixture::new("Pod", "shop", "web-1")
        .containers(&[("app", "shop/web:1.0")])
        .status("Pending", &[])
        .create(&server);
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap();
    let mut stream = pods
        .watch(&WatchParams::default(), rv)
        .await
        .unwrap()
        .boxed();

    // The kubelet reports a crash the way it does: a PATCH of pods/web-1/status.
    let crashed = ContainerStatusFixture::new("app", "shop/web:1.0")
        .crashed(137, "OOMKilled", chrono::Utc::now())
        .build();
    let patched = pods
        .patch_status(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"ignored": "yes"}},
                                 "status": {"phase": "Running", "containerStatuses": [crashed]}})),
        )
        .await
        .unwrap();
    let statuses = patched.clone().status.unwrap().container_statuses.unwrap();
    let last = statuses[0]
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
    assert!(
        patched.metadata.labels.is_none(),
        "a status write changes nothing but the status"
    );
    match next(&mut stream).await.unwrap() {
        WatchEvent::Modified(pod) => {
            assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"))
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    assert_eq!(
        pods.get_status("web-1")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Running")
    );

    // A write to the pod itself keeps the stored status, as the real pod strategy does.
    let relabelled = pods
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"app": "web"}}, "status": {"phase": "Failed"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(relabelled.metadata.labels.unwrap()["app"], "web");
    assert_eq!(relabelled.status.unwrap().phase.as_deref(), Some("Running"));

    // A stale status update is a conflict like any other.
    let mut stale = patched.clone();
    stale.metadata.resource_version = Some(rv.to_string());
    let status = api_status(
        pods.replace_status("web-1", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    // A client cannot create a pod with a status: it starts Pending.
    let claimed: Pod = serde_json::from_value(json!({"metadata": {"name": "forged"},
        "spec": {"containers": [{"name": "app", "image": "web:1"}]},
        "status": {"phase": "Failed", "containerStatuses": [ContainerStatusFixture::new("app", "web:1").build()]}}))
    .unwrap();
    let forged = pods.create(&PostParams::default(), &claimed).await.unwrap();
    let status = forged.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(status.container_statuses.is_none());
    let missing: Api<Pod> = Api::namespaced(server.client(), "shop");
    assert_eq!(
        api_status(missing.get_status("nope").await.unwrap_err()).code,
        404
    );
}

#[tokio::test]
async fn container_logs_are_served_like_the_kubelet_serves_them() {
    let server = FakeApiServer::start().await.unwrap();
    let (app, sidecar) = crashed_pod(&server);
    let dead = app.previous_container_id().unwrap();
    server.set_container_log(
        &dead,
        "starting\nconnecting to db\npanic: connection refused\n",
    );
    server.set_container_log(&sidecar.container_id(), "listening on :15000\n");
    let pods = pods(&server);
    let logs = |container: &str, previous: bool, tail: Option<i64>, limit: Option<i64>| {
        let params = kube::api::LogParams {
            container: Some(container.to_string()),
            previous,
            tail_lines: tail,
            limit_bytes: limit,
            ..Default::default()
        };
        let pods = pods.clone();
        async move { pods.logs("web-1", &params).await }
    };

    assert_eq!(
        logs("app", true, Some(2), None).await.unwrap(),
        "connecting to db\npanic: connection refused\n"
    );
    assert_eq!(
        logs("app", true, Some(2), Some(10)).await.unwrap(),
        "connecting"
    );
    // Waiting to restart after a crash: the kubelet serves the dead instance.
    assert_eq!(
        logs("app", false, Some(1), None).await.unwrap(),
        "panic: connection refused\n"
    );
    assert_eq!(
        logs("sidecar", false, None, None).await.unwrap(),
        "listening on :15000\n"
    );

    let status = api_status(logs("sidecar", true, None, None).await.unwrap_err());
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        status.message,
        "previous terminated container \"sidecar\" in pod \"web-1\" not found"
    );
    let status = api_status(logs("db", true, None, None).await.unwrap_err());
    assert_eq!(
        (status.code, status.message.as_str()),
        (400, "container db is not valid for pod web-1")
    );
    let status = api_status(pods.logs("web-1", &Default::default()).await.unwrap_err());
    assert_eq!(
        status.message,
        "a container name must be specified for pod web-1, choose one of: [app sidecar]"
    );
    let status = api_status(logs("app", true, Some(-1), None).await.unwrap_err());
    assert_eq!(status.code, 422);
    let status = api_status(pods.logs("gone", &Default::default()).await.unwrap_err());
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "pods \"gone\" not found")
    );
    let logged = server.requests(0);
    let first = logged.iter().find(|r| r.path.ends_with("/log")).unwrap();
    assert_eq!(first.path, "/api/v1/namespaces/shop/pods/web-1/log");
    assert!(first.query.contains("previous=true") && first.query.contains("tailLines=2"));
}

#[tokio::test]
async fn log_requests_obey_rbac_denials_and_injected_failures() {
    let server = FakeApiServer::start().await.unwrap();
    let (app, _) = crashed_pod(&server);
    server.set_container_log(&app.previous_container_id().unwrap(), "boom\n");
    let pods = pods(&server);
    let params = kube::api::LogParams {
        container: Some("app".into()),
        previous: true,
        ..Default::default()
    };
    server.deny(DenyRule {
        verb: "get".into(),
        resource: "pods/log".into(),
        group: Some(String::new()),
        namespace: None,
    });
    let status = api_status(pods.logs("web-1", &params).await.unwrap_err());
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "pods \"web-1\" is forbidden: User \"system:serviceaccount:sentry:sentry-kubernetes\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"shop\""
    );
    // Denying the subresource leaves the pod itself readable, as RBAC does.
    pods.get("web-1").await.unwrap();
    server.clear_faults();

    server.fail(FailRule {
        path: "/pods/web-1/log".into(),
        method: None,
        status: 500,
        count: 1,
        message: Some(
            "Get \"https://10.0.0.7:10250/containerLogs/shop/web-1/app\": dial tcp: i/o timeout"
                .into(),
        ),
        retry_after: None,
    });
    let status = api_status(pods.logs("web-1", &params).await.unwrap_err());
    assert_eq!(status.code, 500);
    assert!(status.message.contains("10250"));
    assert_eq!(pods.logs("web-1", &params).await.unwrap(), "boom\n");

    // Through the control API, as the demo and the end-to-end run store output.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = hyper::Request::post(format!("{}/_fake/logs", server.url()))
        .body(http_body_util::Full::from(
            json!({"containerID": app.previous_container_id().unwrap(), "log": "replaced\n"})
                .to_string(),
        ))
        .unwrap();
    assert_eq!(client.request(request).await.unwrap().status(), 200);
    assert_eq!(pods.logs("web-1", &params).await.unwrap(), "replaced\n");
}
