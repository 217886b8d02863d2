//! Event recording against an in-process API server: repeats aggregate
//! into one Event with a count, as client-go's correlator makes them.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{Api, ListParams, PostParams};
use test_support::TestServer;
use tugboat_component_base::events::EventRecorder;

#[tokio::test]
async fn repeated_events_are_counted_on_one_event() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    let cm = configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let recorder = EventRecorder::new(client.clone(), "test-controller");
    for _ in 0..3 {
        recorder.normal(&cm, "Checked", "settings look fine");
        // Let each write land, as repeats spread over time do.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recorder.warning(&cm, "Broken", "settings look wrong");

    let events: Api<Event> = Api::namespaced(client, "default");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = events.list(&ListParams::default()).await.unwrap().items;
        let checked: Vec<&Event> = list
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Checked"))
            .collect();
        let broken = list.iter().find(|e| e.reason.as_deref() == Some("Broken"));
        if let (Some(broken), [event]) = (broken, checked.as_slice()) {
            if event.count != Some(3) {
                assert!(
                    Instant::now() < deadline,
                    "events never aggregated: {list:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            assert_eq!(event.type_.as_deref(), Some("Normal"));
            assert_eq!(event.involved_object.kind.as_deref(), Some("ConfigMap"));
            assert_eq!(event.involved_object.name.as_deref(), Some("settings"));
            assert_eq!(
                event.source.as_ref().and_then(|s| s.component.as_deref()),
                Some("test-controller")
            );
            assert_eq!(broken.type_.as_deref(), Some("Warning"));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "events never aggregated: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
