//! The planner's decisions, step by step, without a server.

use super::*;
use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetCondition, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const T0: i64 = 1_800_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(T0 + s).unwrap()
}

fn app_labels() -> BTreeMap<String, String> {
    [("app".to_string(), "web".to_string())].into()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(app_labels()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn ios(s: &str) -> IntOrString {
    match s.parse() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(s.into()),
    }
}

/// A Deployment `web` with `replicas` of `image`; `strategy` is
/// "Recreate" or "surge/unavailable" (e.g. "1/0", "25%/25%").
fn deployment(replicas: i32, image: &str, strategy: &str) -> Deployment {
    let strategy = match strategy {
        "Recreate" => DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        },
        params => {
            let (surge, unavailable) = params.split_once('/').unwrap();
            DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(ios(surge)),
                    max_unavailable: Some(ios(unavailable)),
                }),
            }
        }
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(app_labels()),
                match_expressions: None,
            },
            template: template(image),
            strategy: Some(strategy),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..Default::default()
        }),
        status: None,
    }
}

/// A ReplicaSet of `web` named `name`, running `image`, sized `replicas`
/// with all of them existing and available, at `revision`, created
/// `created` seconds after T0, sized for a Deployment of `desired`.
fn replica_set(
    name: &str,
    image: &str,
    replicas: i32,
    revision: i64,
    created: i64,
    desired: i32,
    max: i32,
) -> ReplicaSet {
    let mut t = template(image);
    let hash = name.trim_start_matches("web-").to_string();
    t.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH.into(), hash);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            creation_timestamp: Some(Time(at(created))),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "d-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            annotations: Some(
                [
                    (REVISION.to_string(), revision.to_string()),
                    (DESIRED_REPLICAS.to_string(), desired.to_string()),
                    (MAX_REPLICAS.to_string(), max.to_string()),
                ]
                .into(),
            ),
            labels: t.metadata.as_ref().unwrap().labels.clone(),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(t),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: count(replicas as usize),
            available_replicas: count(replicas as usize),
            observed_generation: Some(1),
            ..Default::default()
        }),
    }
}

fn sizes(rss: &[ReplicaSet]) -> Vec<(String, i32)> {
    let mut out: Vec<_> = rss.iter().map(|rs| (name(rs), rs_replicas(rs))).collect();
    out.sort();
    out
}

fn events(plan: &Plan) -> Vec<&str> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

fn progressing(status: &DeploymentStatus) -> (String, String, String) {
    let c = get_condition(status, PROGRESSING).expect("a Progressing condition");
    (
        c.status.clone(),
        c.reason.clone().unwrap(),
        c.message.clone().unwrap(),
    )
}

/// Apply a plan as the API server, the ReplicaSet controller and a
/// kubelet whose pods are ready at once would: ReplicaSets take their
/// size, all replicas available; the Deployment takes the status.
fn settle(d: &mut Deployment, rss: &mut Vec<ReplicaSet>, plan: &Plan) {
    for action in &plan.actions {
        match action {
            Action::Create(rs) => {
                let mut rs = rs.clone();
                rs.metadata.uid = Some(format!("uid-{}", name(&rs)));
                rs.metadata.creation_timestamp = Some(Time(at(1000 + rss.len() as i64)));
                rss.push(rs);
            }
            Action::Update(rs) => {
                let slot = rss.iter_mut().find(|r| name(r) == name(rs)).unwrap();
                *slot = rs.clone();
            }
            Action::Delete { name: n } => rss.retain(|r| &name(r) != n),
            Action::Event { .. } => {}
        }
    }
    for rs in rss.iter_mut() {
        let size = rs_replicas(rs);
        let status = rs.status.get_or_insert_with(Default::default);
        status.replicas = size;
        status.ready_replicas = count(size as usize);
        status.available_replicas = count(size as usize);
        status.observed_generation = rs.metadata.generation;
    }
    d.status = Some(plan.status.clone());
    if let Some(revision) = &plan.revision {
        d.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REVISION.into(), revision.clone());
    }
}

#[test]
fn a_new_deployment_creates_its_first_replica_set() {
    let d = deployment(3, "nginx:1", "25%/25%");
    let plan = plan(&d, vec![], &[], at(0)).unwrap();
    let hash = compute_hash(&template("nginx:1"), None);
    let rs_name = format!("web-{hash}");
    let Action::Create(rs) = &plan.actions[0] else {
        panic!("expected a create, got {:?}", plan.actions);
    };
    assert_eq!(name(rs), rs_name);
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
        hash
    );
    let labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(labels[POD_TEMPLATE_HASH], hash);
    assert_eq!(
        rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
        hash
    );
    let annotations = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[REVISION], "1");
    assert_eq!(annotations[DESIRED_REPLICAS], "3");
    assert_eq!(annotations[MAX_REPLICAS], "4");
    assert_eq!(
        rs.metadata.owner_references.as_ref().unwrap()[0].uid,
        "d-uid"
    );
    assert_eq!(
        events(&plan),
        [format!("Scaled up replica set {rs_name} from 0 to 3")]
    );
    assert_eq!(plan.revision.as_deref(), Some("1"));
    assert_eq!(
        progressing(&plan.status),
        (
            "True".into(),
            NEW_REPLICA_SET_CREATED.into(),
            format!("Created new replica set {rs_name:?}")
        )
    );
    let available = get_condition(&plan.status, AVAILABLE).unwrap();
    assert_eq!(
        available.reason.as_deref(),
        Some(MINIMUM_REPLICAS_UNAVAILABLE)
    );
    assert_eq!(plan.status.observed_generation, Some(1));
    // A progress deadline to watch.
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(601)));
}

#[test]
fn rolling_updates_step_within_surge_and_unavailability() {
    // (strategy, replicas, (new, old) sizes after each sync)
    type Steps = &'static [(i32, i32)];
    let cases: &[(&str, i32, Steps)] = &[
        ("1/0", 3, &[(1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]),
        ("0/1", 3, &[(0, 2), (1, 2), (1, 1), (2, 1), (2, 0), (3, 0)]),
        // 25% of 4: surge 1, unavailable 1. The first sync creates the new
        // set and already takes one old pod down.
        ("25%/25%", 4, &[(1, 3), (2, 3), (2, 1), (4, 1), (4, 0)]),
        ("100%/0", 2, &[(2, 2), (2, 0)]),
        ("0/0", 2, &[(0, 1), (1, 1), (1, 0), (2, 0)]),
    ];
    for &(strategy, replicas, steps) in cases {
        let mut d = deployment(replicas, "nginx:2", strategy);
        let max = replicas + max_surge(&d);
        let mut rss = vec![replica_set(
            "web-old", "nginx:1", replicas, 1, 0, replicas, max,
        )];
        let mut seen = Vec::new();
        for _ in 0..20 {
            let p = plan(&d, rss.clone(), &[], at(10)).unwrap();
            settle(&mut d, &mut rss, &p);
            if p.actions.is_empty() {
                break;
            }
            let new = rss
                .iter()
                .find(|rs| name(rs) != "web-old")
                .map_or(0, rs_replicas);
            let old = rss
                .iter()
                .find(|rs| name(rs) == "web-old")
                .map_or(0, rs_replicas);
            // Availability never drops below replicas - maxUnavailable,
            // and pods never exceed replicas + maxSurge.
            let available: i32 = rss.iter().map(|rs| rs_status_counts(rs).2).sum();
            assert!(
                available >= replicas - max_unavailable(&d),
                "{strategy}: {new}/{old}"
            );
            assert!(
                new + old <= replicas + max_surge(&d),
                "{strategy}: {new}/{old}"
            );
            seen.push((new, old));
        }
        assert_eq!(seen, steps, "{strategy}");
        let status = d.status.as_ref().unwrap();
        assert_eq!(status.updated_replicas, Some(replicas), "{strategy}");
        assert_eq!(progressing(status).1, NEW_RS_AVAILABLE, "{strategy}");
        assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "2");
    }
}

#[test]
fn old_replicas_that_are_not_available_go_first() {
    // The new ReplicaSet is complete; the old one still has 2 replicas,
    // none available. maxUnavailable 1 would allow one scale-down
    // step, but replicas that are unavailable anyway go at once.
    let d = deployment(3, "nginx:2", "0/1");
    let mut old = replica_set("web-old", "nginx:1", 2, 1, 0, 3, 3);
    old.status.as_mut().unwrap().available_replicas = None;
    let new_name = format!("web-{}", compute_hash(&template("nginx:2"), None));
    let new = replica_set(&new_name, "nginx:2", 3, 2, 5, 3, 3);
    let p = plan(&d, vec![old, new], &[], at(10)).unwrap();
    assert_eq!(events(&p), ["Scaled down replica set web-old from 2 to 0"]);
}

#[test]
fn recreate_scales_down_waits_for_pods_then_scales_up() {
    let mut d = deployment(3, "nginx:2", "Recreate");
    let mut rss = vec![replica_set("web-old", "nginx:1", 3, 1, 0, 3, 3)];

    // 1. Old scaled to 0; nothing new yet.
    let p = plan(&d, rss.clone(), &[], at(10)).unwrap();
    assert_eq!(events(&p), ["Scaled down replica set web-old from 3 to 0"]);
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Create(_))));
    settle(&mut d, &mut rss, &p);

    // 2. An old pod is still terminating: wait.
    let old_pod = Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some("web-old-abcde".into()),
            owner_references: rss[0].metadata.owner_references.clone().map(|mut refs| {
                refs[0].uid = "uid-web-old".into();
                refs[0].kind = "ReplicaSet".into();
                refs
            }),
            deletion_timestamp: Some(Time(at(9))),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    });
    let p = plan(&d, rss.clone(), &[old_pod], at(11)).unwrap();
    assert!(p.actions.is_empty(), "{:?}", p.actions);

    // 3. Gone: the new ReplicaSet comes at full size.
    let p = plan(&d, rss.clone(), &[], at(12)).unwrap();
    let created: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Create(rs) => Some(rs_replicas(rs)),
            _ => None,
        })
        .collect();
    assert_eq!(created, [3]);
    assert_eq!(p.revision.as_deref(), Some("2"));
}

#[test]
fn rolling_back_reuses_the_old_replica_set_with_a_new_revision() {
    // v1 (revision 1) was replaced by v2 (revision 2); the template is
    // back at v1, as `kubectl rollout undo` leaves it.
    let mut d = deployment(3, "nginx:1", "1/0");
    d.metadata.annotations = Some([(REVISION.to_string(), "2".to_string())].into());
    let v1 = replica_set("web-v1", "nginx:1", 0, 1, 0, 3, 4);
    let v2 = replica_set("web-v2", "nginx:2", 3, 2, 100, 3, 4);
    let p = plan(&d, vec![v1, v2], &[], at(200)).unwrap();
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Create(_))));
    let Action::Update(first) = &p.actions[0] else {
        panic!("expected an update first, got {:?}", p.actions);
    };
    assert_eq!(name(first), "web-v1");
    let a = first.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        (a[REVISION].as_str(), a[REVISION_HISTORY].as_str()),
        ("3", "1")
    );
    assert_eq!(p.revision.as_deref(), Some("3"));
    assert_eq!(events(&p), ["Scaled up replica set web-v1 from 0 to 1"]);
}

#[test]
fn scaling_resizes_the_only_active_replica_set() {
    let d = deployment(5, "nginx:1", "25%/25%");
    let rs = replica_set("web-v1", "nginx:1", 3, 1, 0, 3, 4);
    let p = plan(&d, vec![rs], &[], at(10)).unwrap();
    let Action::Update(updated) = &p.actions[0] else {
        panic!("expected an update, got {:?}", p.actions);
    };
    assert_eq!(rs_replicas(updated), 5);
    let a = updated.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        (a[DESIRED_REPLICAS].as_str(), a[MAX_REPLICAS].as_str()),
        ("5", "7")
    );
    assert_eq!(events(&p), ["Scaled up replica set web-v1 from 3 to 5"]);
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    // (replicas now, old size, new size, annotated max) -> (old, new)
    let cases = [
        // 10 -> 15 (maxSurge 25%: 13 -> 19 pods): +6 spread 4 / 2.
        (15, 8, 5, 13, (12, 7)),
        // 10 -> 5 (maxSurge 2: 7 pods allowed): -6 spread -4 / -2.
        (5, 8, 5, 13, (4, 3)),
        // 10 -> 11 (maxSurge 3: 14 pods): +1, all to the biggest
        // (8 * 14 / 13 rounds to 9; 5 * 14 / 13 to 5).
        (11, 8, 5, 13, (9, 5)),
        // Scaled to zero: everything goes.
        (0, 8, 5, 13, (0, 0)),
    ];
    for (replicas, old_size, new_size, max, want) in cases {
        let mut d = deployment(replicas, "nginx:2", "25%/25%");
        d.status = Some(DeploymentStatus {
            replicas: Some(old_size + new_size),
            ..Default::default()
        });
        let new_name = format!("web-{}", compute_hash(&template("nginx:2"), None));
        let mut old = replica_set("web-old", "nginx:1", old_size, 1, 0, 10, max);
        old.status.as_mut().unwrap().available_replicas = Some(old_size);
        let mut new = replica_set(&new_name, "nginx:2", new_size, 2, 100, 10, max);
        new.status.as_mut().unwrap().available_replicas = None;
        let p = plan(&d, vec![old.clone(), new.clone()], &[], at(200)).unwrap();
        let mut rss = vec![old, new];
        let mut dd = d.clone();
        settle(&mut dd, &mut rss, &p);
        let got = sizes(&rss);
        assert_eq!(
            got,
            vec![(new_name.clone(), want.1), ("web-old".into(), want.0)],
            "replicas {replicas}"
        );
    }
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll_out() {
    let mut d = deployment(5, "nginx:2", "25%/25%");
    d.spec.as_mut().unwrap().paused = Some(true);
    let rs = replica_set("web-v1", "nginx:1", 3, 1, 0, 3, 4);
    let p = plan(&d, vec![rs], &[], at(10)).unwrap();
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Create(_))));
    assert_eq!(events(&p), ["Scaled up replica set web-v1 from 3 to 5"]);
    assert_eq!(
        progressing(&p.status),
        (
            "Unknown".into(),
            PAUSED.into(),
            "Deployment is paused".into()
        )
    );
    // Resumed: the condition says so, and the rollout starts.
    let mut resumed = deployment(5, "nginx:2", "25%/25%");
    let mut status = p.status.clone();
    // As the ReplicaSet controller reports it meanwhile.
    (
        status.replicas,
        status.ready_replicas,
        status.available_replicas,
    ) = (Some(5), Some(5), Some(5));
    resumed.status = Some(status);
    let rs = replica_set("web-v1", "nginx:1", 5, 1, 0, 5, 7);
    let p = plan(&resumed, vec![rs], &[], at(20)).unwrap();
    assert!(p.actions.iter().any(|a| matches!(a, Action::Create(_))));
    assert_eq!(progressing(&p.status).1, NEW_REPLICA_SET_CREATED);
}

#[test]
fn progress_conditions_follow_the_rollout() {
    let new_name = format!("web-{}", compute_hash(&template("nginx:1"), None));
    let with_progress = |reason: &str, updated: i64| {
        let mut d = deployment(3, "nginx:1", "25%/25%");
        d.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
        let mut status = DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(3),
            updated_replicas: Some(3),
            ready_replicas: Some(1),
            available_replicas: Some(1),
            ..Default::default()
        };
        set_condition(
            &mut status,
            condition(PROGRESSING, "True", reason, "x".into(), at(updated)),
        );
        d.status = Some(status);
        d
    };
    let mut partly = replica_set(&new_name, "nginx:1", 3, 1, 0, 3, 4);
    partly.status.as_mut().unwrap().ready_replicas = Some(1);
    partly.status.as_mut().unwrap().available_replicas = Some(1);
    let all = replica_set(&new_name, "nginx:1", 3, 1, 0, 3, 4);

    // All available: complete.
    let p = plan(
        &with_progress(REPLICA_SET_UPDATED, 0),
        vec![all.clone()],
        &[],
        at(10),
    )
    .unwrap();
    assert_eq!(
        progressing(&p.status),
        (
            "True".into(),
            NEW_RS_AVAILABLE.into(),
            format!("ReplicaSet {new_name:?} has successfully progressed.")
        )
    );
    assert_eq!(get_condition(&p.status, AVAILABLE).unwrap().status, "True");
    assert_eq!(p.requeue_after, None);
    // No progress for 700 s with a 600 s deadline: timed out.
    let p = plan(
        &with_progress(REPLICA_SET_UPDATED, 0),
        vec![partly.clone()],
        &[],
        at(700),
    )
    .unwrap();
    assert_eq!(
        progressing(&p.status),
        (
            "False".into(),
            TIMED_OUT.into(),
            format!("ReplicaSet {new_name:?} has timed out progressing.")
        )
    );
    // No progress for 100 s: look again when the deadline comes.
    let p = plan(
        &with_progress(REPLICA_SET_UPDATED, 0),
        vec![partly.clone()],
        &[],
        at(100),
    )
    .unwrap();
    assert_eq!(progressing(&p.status).1, REPLICA_SET_UPDATED);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(501)));
    // A second pod available: progress, lastUpdateTime refreshed.
    let mut more = partly.clone();
    more.status.as_mut().unwrap().available_replicas = Some(2);
    more.status.as_mut().unwrap().ready_replicas = Some(2);
    let p = plan(
        &with_progress(REPLICA_SET_UPDATED, 0),
        vec![more],
        &[],
        at(100),
    )
    .unwrap();
    let c = get_condition(&p.status, PROGRESSING).unwrap();
    assert_eq!(
        c.message.as_deref(),
        Some(format!("ReplicaSet {new_name:?} is progressing.").as_str())
    );
    assert_eq!(c.last_update_time, Some(Time(at(100))));
    assert_eq!(c.last_transition_time, Some(Time(at(0))));
    // A ReplicaSet's failure shows on the Deployment.
    let mut failing = partly;
    failing.status.as_mut().unwrap().conditions = Some(vec![ReplicaSetCondition {
        type_: REPLICA_FAILURE.into(),
        status: "True".into(),
        reason: Some("FailedCreate".into()),
        message: Some("forbidden".into()),
        last_transition_time: Some(Time(at(50))),
    }]);
    let p = plan(
        &with_progress(REPLICA_SET_UPDATED, 0),
        vec![failing],
        &[],
        at(100),
    )
    .unwrap();
    let c = get_condition(&p.status, REPLICA_FAILURE).unwrap();
    assert_eq!(
        (c.reason.as_deref(), c.message.as_deref()),
        (Some("FailedCreate"), Some("forbidden"))
    );
}

#[test]
fn a_finished_rollout_keeps_only_revision_history_limit_old_sets() {
    let mut d = deployment(1, "nginx:99", "25%/25%");
    d.spec.as_mut().unwrap().revision_history_limit = Some(2);
    let new_name = format!("web-{}", compute_hash(&template("nginx:99"), None));
    let mut rss: Vec<ReplicaSet> = (1..=4)
        .map(|i| replica_set(&format!("web-v{i}"), &format!("nginx:{i}"), 0, i, i, 1, 2))
        .collect();
    rss.push(replica_set(&new_name, "nginx:99", 1, 5, 10, 1, 2));
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(1),
        updated_replicas: Some(1),
        available_replicas: Some(1),
        ready_replicas: Some(1),
        ..Default::default()
    });
    let p = plan(&d, rss, &[], at(100)).unwrap();
    let deleted: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["web-v1", "web-v2"]);
}

#[test]
fn an_empty_selector_selects_everything() {
    let mut d = deployment(1, "nginx:1", "25%/25%");
    assert!(!selects_everything(&d));
    d.spec.as_mut().unwrap().selector = LabelSelector::default();
    assert!(selects_everything(&d));
}
