//! Per-kind rules: defaulting, validation, and what a write may change.
//!
//! Upstream gives every resource a "strategy" (PrepareForCreate,
//! PrepareForUpdate, Validate, ...). Ours are pure functions over JSON
//! objects, with the typed decode through `k8s-openapi` as the structural
//! check, so they are unit-tested without a server.

use api::resources::ResourceInfo;
use serde_json::{json, Map, Value};

use crate::error::Cause;

/// Check that `obj` decodes as its k8s-openapi type; the decode error is the
/// message (upstream answers such type errors with 400 BadRequest).
pub fn check_decodes(resource: &ResourceInfo, obj: &Value) -> Result<(), String> {
    use api::k8s::api as k;
    fn try_as<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<(), String> {
        T::deserialize(obj).map(|_| ()).map_err(|e| e.to_string())
    }
    match (resource.group, resource.kind) {
        ("", "Namespace") => try_as::<k::core::v1::Namespace>(obj),
        ("", "Pod") => try_as::<k::core::v1::Pod>(obj),
        ("", "Node") => try_as::<k::core::v1::Node>(obj),
        ("", "Service") => try_as::<k::core::v1::Service>(obj),
        ("", "Endpoints") => try_as::<k::core::v1::Endpoints>(obj),
        ("", "ConfigMap") => try_as::<k::core::v1::ConfigMap>(obj),
        ("", "Secret") => try_as::<k::core::v1::Secret>(obj),
        ("", "ServiceAccount") => try_as::<k::core::v1::ServiceAccount>(obj),
        ("", "Event") => try_as::<k::core::v1::Event>(obj),
        ("apps", "Deployment") => try_as::<k::apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => try_as::<k::apps::v1::ReplicaSet>(obj),
        ("apps", "StatefulSet") => try_as::<k::apps::v1::StatefulSet>(obj),
        ("apps", "DaemonSet") => try_as::<k::apps::v1::DaemonSet>(obj),
        ("apps", "ControllerRevision") => try_as::<k::apps::v1::ControllerRevision>(obj),
        ("", "PersistentVolumeClaim") => try_as::<k::core::v1::PersistentVolumeClaim>(obj),
        ("", "PersistentVolume") => try_as::<k::core::v1::PersistentVolume>(obj),
        ("batch", "Job") => try_as::<k::batch::v1::Job>(obj),
        ("batch", "CronJob") => try_as::<k::batch::v1::CronJob>(obj),
        ("coordination.k8s.io", "Lease") => try_as::<k::coordination::v1::Lease>(obj),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            try_as::<k::certificates::v1::CertificateSigningRequest>(obj)
        }
        ("discovery.k8s.io", "EndpointSlice") => try_as::<k::discovery::v1::EndpointSlice>(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            try_as::<k::autoscaling::v2::HorizontalPodAutoscaler>(obj)
        }
        ("events.k8s.io", "Event") => try_as::<k::events::v1::Event>(obj),
        ("policy", "PodDisruptionBudget") => try_as::<k::policy::v1::PodDisruptionBudget>(obj),
        _ => Ok(()),
    }
}

/// Fill in what upstream's defaulting fills in, so objects read back as they
/// would from a real cluster (kubectl diff and edit compare against these).
pub fn default(resource: &ResourceInfo, obj: &mut Value) {
    drop_empty_metadata(obj);
    match (resource.group, resource.kind) {
        ("", "Namespace") => {
            let name = api::meta::name(obj).unwrap_or_default().to_string();
            let labels = labels_mut(obj);
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
                // Upstream sets these on Pods only (SetDefaults_Pod and the
                // Priority admission plugin), never inside templates.
                set_default(spec, "enableServiceLinks", json!(true));
                set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
                set_default(spec, "priority", json!(0));
                default_requests_from_limits(spec);
            }
            // Admission, on create and update as upstream registers it (a
            // `kubectl replace` without them gets them back rather than
            // failing the tolerations-only-grow check).
            add_default_toleration_seconds(obj);
        }
        ("", "Service") => default_service(obj),
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("", "PersistentVolume") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
                set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            }
        }
        ("", "Secret") => {
            set_default(obj, "type", json!("Opaque"));
            fold_string_data(obj);
        }
        ("apps", "Deployment") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                set_default(
                    spec,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
                default_rolling_update(
                    spec,
                    "strategy",
                    &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))],
                );
                default_template(spec);
            }
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_default(spec, "replicas", json!(1));
                default_template(spec);
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "podManagementPolicy", json!("OrderedReady"));
                set_default(spec, "revisionHistoryLimit", json!(10));
                default_rolling_update(spec, "updateStrategy", &[("partition", json!(0))]);
                set_default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                default_template(spec);
            }
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_default(spec, "revisionHistoryLimit", json!(10));
                default_rolling_update(
                    spec,
                    "updateStrategy",
                    &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
                );
                default_template(spec);
            }
        }
        ("batch", "Job") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_job_spec(spec);
            }
        }
        ("batch", "CronJob") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_default(spec, "concurrencyPolicy", json!("Allow"));
                set_default(spec, "suspend", json!(false));
                set_default(spec, "successfulJobsHistoryLimit", json!(3));
                set_default(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(job) = spec.pointer_mut("/jobTemplate/spec") {
                    default_job_spec(job);
                }
            }
        }
        _ => {}
    }
}

/// `stringData` is write-only: upstream folds it into `data`, base64
/// encoded, winning over `data` for the same key.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        data[k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

fn default_job_spec(spec: &mut Value) {
    let unset = |spec: &Value, field: &str| spec.get(field).is_none_or(Value::is_null);
    // Upstream: completions defaults to 1 only when parallelism was unset
    // too; a job with only parallelism is a work queue (completions nil).
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec["completions"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    default_template(spec);
}

fn default_template(spec: &mut Value) {
    if let Some(pod_spec) = spec.pointer_mut("/template/spec") {
        default_pod_spec(pod_spec);
    }
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                default_container(c);
            }
        }
    }
    if let Some(sa) = spec.get("serviceAccountName").cloned() {
        set_default(spec, "serviceAccount", sa);
    }
}

/// Upstream's SetDefaults_Pod: a container limit without a request gets a
/// request equal to the limit.
fn default_requests_from_limits(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            let Some(limits) = c
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            else {
                continue;
            };
            let resources = &mut c["resources"];
            if !resources.get("requests").is_some_and(Value::is_object) {
                resources["requests"] = json!({});
            }
            for (name, value) in limits {
                if resources["requests"].get(&name).is_none() {
                    resources["requests"][name.as_str()] = value;
                }
            }
        }
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let policy = if image_tag(image).is_none_or(|t| t == "latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default(c, "imagePullPolicy", json!(policy));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// The tag of an image reference (`busybox:1.36` -> `1.36`); digests count
/// as a tag so that pinned images are not pulled every time.
fn image_tag(image: &str) -> Option<&str> {
    if let Some((_, digest)) = image.split_once('@') {
        return Some(digest);
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, t)| t)
}

fn default_service(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let service_type = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if service_type != "ExternalName" {
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "NodePort" || service_type == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
}

/// Upstream's ObjectMeta marks these `omitempty`, so an empty list or map
/// (left by a patch that removed the last owner reference or finalizer)
/// reads back as absent, never as `[]`.
fn drop_empty_metadata(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in [
        "ownerReferences",
        "finalizers",
        "labels",
        "annotations",
        "managedFields",
    ] {
        let empty = match meta.get(field) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(field);
        }
    }
}

/// A workload's update strategy as upstream defaults it: a missing or
/// typeless strategy is `RollingUpdate`, whose parameters get `defaults`
/// (`kubectl create deployment` sends `strategy: {}`).
fn default_rolling_update(spec: &mut Value, field: &str, defaults: &[(&str, Value)]) {
    set_default(spec, field, json!({}));
    let Some(strategy) = spec.get_mut(field) else {
        return;
    };
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        set_default(strategy, "rollingUpdate", json!({}));
        if let Some(rolling) = strategy.get_mut("rollingUpdate") {
            for (key, value) in defaults {
                set_default(rolling, key, value.clone());
            }
        }
    }
}

fn set_default(obj: &mut Value, field: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        if map.get(field).is_none_or(Value::is_null) {
            map.insert(field.to_string(), value);
        }
    }
}

fn labels_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let meta = api::meta::metadata_mut(obj);
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    labels.as_object_mut().expect("object ensured above")
}

/// Everything create does beyond defaulting: the initial status, and the
/// selector upstream generates for Jobs.
pub fn prepare_create(resource: &ResourceInfo, obj: &mut Value) {
    initial_status(resource, obj);
    if (resource.group, resource.kind) == ("batch", "Job") {
        generate_job_selector(obj);
    }
}

/// The taints upstream's DefaultTolerationSeconds admission plugin guards
/// against: the node lifecycle controller puts them on nodes that stop
/// reporting (`unreachable`) or report not ready (`not-ready`).
const DEFAULT_TOLERATED_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`.
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Upstream's DefaultTolerationSeconds admission: a new pod that does not
/// already tolerate the not-ready / unreachable NoExecute taints gets
/// tolerations for them of five minutes, so a brief node outage does not
/// evict everything at once. A toleration with an empty key (or an empty
/// effect) counts as tolerating, whatever its operator, as upstream's check.
/// Status writes keep the stored spec, so they are never changed by this.
fn add_default_toleration_seconds(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        existing.iter().any(|t| {
            let field = |f: &str| t.get(f).and_then(Value::as_str).unwrap_or("");
            (field("key") == key || field("key").is_empty())
                && (field("effect") == "NoExecute" || field("effect").is_empty())
        })
    };
    let missing: Vec<Value> = DEFAULT_TOLERATED_TAINTS
        .iter()
        .filter(|key| !tolerates(key))
        .map(|key| {
            json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            })
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut tolerations = existing;
    tolerations.extend(missing);
    spec.insert("tolerations".into(), Value::Array(tolerations));
}

/// Upstream's Job PrepareForCreate: unless `manualSelector` is set, the
/// selector matches the Job's uid, and the template carries its labels.
fn generate_job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    let uid = api::meta::meta_str(obj, "uid").unwrap_or("").to_string();
    let name = api::meta::name(obj).unwrap_or("").to_string();
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    if spec.get("selector").is_none_or(Value::is_null) {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
    let Some(template) = spec.get_mut("template").filter(|t| t.is_object()) else {
        return;
    };
    if !template.get("metadata").is_some_and(Value::is_object) {
        template["metadata"] = json!({});
    }
    let meta = &mut template["metadata"];
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta["labels"] = json!({});
    }
    let labels = &mut meta["labels"];
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        if labels.get(k).is_none() {
            labels[k] = json!(v);
        }
    }
}

/// The status a new object starts with: upstream clears client-sent status
/// on create for every kind with a status subresource, and gives pods and
/// namespaces their initial phase.
fn initial_status(resource: &ResourceInfo, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    match (resource.group, resource.kind) {
        ("", "Pod") => {
            let qos = pod_qos_class(map.get("spec"));
            map.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
        ("", "Namespace") => {
            map.insert("status".into(), json!({"phase": "Active"}));
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if spec.get("finalizers").is_none() {
                spec["finalizers"] = json!(["kubernetes"]);
            }
        }
        // Upstream's PVC and PV strategies start every claim and volume
        // Pending; binding (a controller) moves them on.
        ("", "PersistentVolumeClaim") | ("", "PersistentVolume") => {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
        // Nodes and services keep what the creator sent (kubelets register
        // with status; load balancer status is set by controllers).
        ("", "Node") | ("", "Service") => {}
        _ if resource.subresources.status => {
            map.remove("status");
        }
        _ => {}
    }
}

/// Upstream's QoS class: Guaranteed when every container has equal cpu and
/// memory requests and limits, BestEffort when none has any, else Burstable.
pub fn pod_qos_class(spec: Option<&Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| spec?.get(*f)?.as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if request.is_some() || limit.is_some() {
                any = true;
            }
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Semantic checks beyond decoding: names and the fields upstream requires.
pub fn validate(resource: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = api::meta::name(obj).unwrap_or("");
    let name_rule: fn(&str) -> Option<String> = match resource.kind {
        "Namespace" | "Service" => dns1123_label,
        _ => dns1123_subdomain,
    };
    if let Some(problem) = name_rule(name) {
        causes.push(Cause::invalid("metadata.name", name, &problem));
    }
    for (k, v) in api::meta::labels(obj) {
        if let Some(problem) = label_key_problem(&k) {
            causes.push(Cause::invalid("metadata.labels", &k, &problem));
        }
        if let Some(problem) = label_value_problem(&v) {
            causes.push(Cause::invalid("metadata.labels", &v, &problem));
        }
    }
    validate_owner_references(obj, &mut causes);
    match (resource.group, resource.kind) {
        ("", "Pod") => validate_pod_spec(obj.get("spec"), "spec", &mut causes),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            validate_workload(obj, &mut causes)
        }
        ("batch", "Job") => validate_pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            &mut causes,
        ),
        ("", "Service") => validate_service(obj, &mut causes),
        ("certificates.k8s.io", crate::csr::KIND) => {
            causes.extend(crate::csr::validate_create(obj))
        }
        ("batch", "CronJob") => {
            let schedule = obj
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .unwrap_or("");
            if schedule.is_empty() {
                causes.push(Cause::required("spec.schedule"));
            } else if let Err(problem) = crate::cron::validate(schedule) {
                causes.push(Cause::invalid("spec.schedule", schedule, &problem));
            }
            validate_pod_spec(
                obj.pointer("/spec/jobTemplate/spec/template/spec"),
                "spec.jobTemplate.spec.template.spec",
                &mut causes,
            );
        }
        ("", "ConfigMap") | ("", "Secret") => {
            for field in ["data", "binaryData", "stringData"] {
                if let Some(map) = obj.get(field).and_then(Value::as_object) {
                    for key in map.keys() {
                        if !is_config_key(key) {
                            causes.push(Cause::invalid(
                                &format!("{field}[{key}]"),
                                key,
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                            ));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

/// Upstream's ValidateOwnerReferences: every reference names its owner
/// fully, and at most one is the controller.
fn validate_owner_references(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(refs) = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return;
    };
    let mut controllers = 0;
    for (i, r) in refs.iter().enumerate() {
        let field = format!("metadata.ownerReferences[{i}]");
        for key in ["apiVersion", "kind", "name", "uid"] {
            if r.get(key).and_then(Value::as_str).unwrap_or("").is_empty() {
                let name = if key == "apiVersion" {
                    "apiVersion"
                } else {
                    key
                };
                causes.push(Cause::invalid(
                    &format!("{field}.{name}"),
                    "",
                    &format!("{name} must not be empty"),
                ));
            }
        }
        if r.get("controller") == Some(&Value::Bool(true)) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        causes.push(Cause::invalid(
            "metadata.ownerReferences",
            "",
            "Only one reference can have Controller set to true",
        ));
    }
}

fn validate_workload(obj: &Value, causes: &mut Vec<Cause>) {
    let selector = obj.pointer("/spec/selector");
    if selector.is_none_or(Value::is_null) {
        causes.push(Cause::required("spec.selector"));
    } else if let Some(match_labels) = selector
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object)
    {
        let template_labels = obj
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object);
        let matches = match_labels.iter().all(|(k, v)| {
            template_labels
                .and_then(|l| l.get(k))
                .is_some_and(|tv| tv == v)
        });
        if !matches {
            let mut pairs: Vec<(String, String)> = template_labels
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            pairs.sort();
            let labels = pairs
                .iter()
                .map(|(k, v)| format!("{k:?}:{v:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            causes.push(Cause::invalid_raw(
                "spec.template.metadata.labels",
                &format!("map[string]string{{{labels}}}"),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
        if r < 0 {
            causes.push(Cause::invalid_raw(
                "spec.replicas",
                &r.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    validate_pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
}

fn validate_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required(&format!("{path}.containers"))),
        Some(list) if list.is_empty() => {
            causes.push(Cause::required(&format!("{path}.containers")))
        }
        Some(list) => {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in list.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                let field = format!("{path}.containers[{i}]");
                if name.is_empty() {
                    causes.push(Cause::required(&format!("{field}.name")));
                } else if let Some(problem) = dns1123_label(name) {
                    causes.push(Cause::invalid(&format!("{field}.name"), name, &problem));
                } else if !seen.insert(name.to_string()) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate".into(),
                        message: format!("Duplicate value: \"{name}\""),
                        field: format!("{field}.name"),
                    });
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    causes.push(Cause::required(&format!("{field}.image")));
                }
            }
        }
    }
}

fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    let service_type = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&service_type) {
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: \"{service_type}\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ),
            field: "spec.type".into(),
        });
    }
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    if service_type != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
        causes.push(Cause::required("spec.ports"));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                &format!("spec.ports[{i}].port"),
                &port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if ports.is_some_and(|all| all.len() > 1)
            && p.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            causes.push(Cause::required(&format!("spec.ports[{i}].name")));
        }
    }
    crate::alloc::spec::validate(obj, causes);
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn is_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `None` if `s` is a valid RFC 1123 label, else upstream's message.
pub fn dns1123_label(s: &str) -> Option<String> {
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    (!is_label_chars(s)).then(|| DNS1123_LABEL_MSG.to_string())
}

/// `None` if `s` is a valid RFC 1123 subdomain, else upstream's message.
pub fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    (!s.split('.').all(is_label_chars)).then(|| DNS1123_SUBDOMAIN_MSG.to_string())
}

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if let Some(problem) = dns1123_subdomain(p) {
            return Some(format!("prefix part {problem}"));
        }
    }
    (!is_qualified_name_part(name)).then(|| {
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string()
    })
}

fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() || is_qualified_name_part(value) {
        None
    } else if value.len() > 63 {
        Some("must be no more than 63 characters".into())
    } else {
        Some("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())
    }
}

fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && key != "."
        && key != ".."
}

/// Changes an update may not make (upstream's ValidateUpdate rules that
/// users meet most: selectors, pod specs, immutable ConfigMaps and Secrets).
pub fn immutable_changes(resource: &ResourceInfo, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let changed = |pointer: &str| old.pointer(pointer) != new.pointer(pointer);
    match (resource.group, resource.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            if changed("/spec/selector") && old.pointer("/spec/selector").is_some() {
                causes.push(Cause::invalid(
                    "spec.selector",
                    &selector_text(new),
                    "field is immutable",
                ));
            }
            if resource.kind == "Job" && changed("/spec/template") {
                causes.push(Cause::invalid("spec.template", "", "field is immutable"));
            }
        }
        ("", "Pod") => {
            let strip = |v: &Value| {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                for list in ["containers", "initContainers"] {
                    if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                        for c in cs {
                            if let Some(m) = c.as_object_mut() {
                                m.remove("image");
                            }
                        }
                    }
                }
                if let Some(m) = spec.as_object_mut() {
                    for f in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                        "nodeName",
                        "schedulingGates",
                    ] {
                        m.remove(f);
                    }
                }
                spec
            };
            if strip(old) != strip(new) {
                causes.push(Cause::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
            let old_node = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !old_node.is_empty() && changed("/spec/nodeName") {
                causes.push(Cause::forbidden(
                    "spec.nodeName",
                    "field is immutable once set",
                ));
            }
        }
        ("", "ConfigMap" | "Secret")
            if old.get("immutable") == Some(&Value::Bool(true))
                && (changed("/data") || changed("/binaryData") || changed("/immutable")) =>
        {
            causes.push(Cause::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
        ("", "Service") => {
            let old_ip = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            let new_ip = new
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
                causes.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    new_ip,
                    "may not change once set",
                ));
            }
        }
        _ => {}
    }
    causes
}

fn selector_text(obj: &Value) -> String {
    obj.pointer("/spec/selector")
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Whether a PUT to a missing object creates it (upstream's
/// AllowCreateOnUpdate): leases, endpoints and events.
pub fn allows_create_on_update(resource: &ResourceInfo) -> bool {
    matches!(
        (resource.group, resource.kind),
        ("coordination.k8s.io", "Lease")
            | ("", "Endpoints")
            | ("", "Event")
            | ("events.k8s.io", "Event")
    )
}

/// Whether a PUT may omit the resourceVersion (upstream's
/// AllowUnconditionalUpdate): every kind we serve but leases, whose holders
/// must never overwrite each other blindly.
pub fn allows_unconditional_update(resource: &ResourceInfo) -> bool {
    (resource.group, resource.kind) != ("coordination.k8s.io", "Lease")
}

/// The part of an object that bumps `metadata.generation` when it changes:
/// everything except metadata and status.
pub fn spec_part(obj: &Value) -> Value {
    match obj.as_object() {
        Some(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::find;

    #[test]
    fn pods_get_upstream_defaults() {
        let pods = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}, {"name": "d", "image": "nginx"}]}});
        default(pods, &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], "Always");
        prepare_create(pods, &mut pod);
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn a_job_with_only_parallelism_is_a_work_queue() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let mut queue = json!({"spec": {"parallelism": 3}});
        default(jobs, &mut queue);
        assert!(queue["spec"].get("completions").is_none());
        let mut plain = json!({"spec": {}});
        default(jobs, &mut plain);
        assert_eq!(
            (
                plain["spec"]["completions"].clone(),
                plain["spec"]["parallelism"].clone()
            ),
            (json!(1), json!(1))
        );
    }

    #[test]
    fn empty_metadata_lists_and_maps_read_back_as_absent() {
        let cms = find("", "v1", "configmaps").unwrap();
        let mut cm = json!({"metadata": {"name": "c", "ownerReferences": [], "finalizers": [], "labels": {}, "annotations": {"a": "b"}}});
        default(cms, &mut cm);
        assert_eq!(
            cm["metadata"],
            json!({"name": "c", "annotations": {"a": "b"}})
        );
    }

    #[test]
    fn an_empty_update_strategy_is_a_defaulted_rolling_update() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let mut d = json!({"spec": {"strategy": {}, "template": {"spec": {"containers": []}}}});
        default(deployments, &mut d);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        default(deployments, &mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
        let daemonsets = find("apps", "v1", "daemonsets").unwrap();
        let mut ds =
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "10%"}}}});
        default(daemonsets, &mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}})
        );
    }

    #[test]
    fn new_pods_tolerate_not_ready_and_unreachable_nodes_for_five_minutes() {
        let pods = find("", "v1", "pods").unwrap();
        let defaults = |tolerations: Value| {
            let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}], "tolerations": tolerations}});
            if pod["spec"]["tolerations"].is_null() {
                pod["spec"].as_object_mut().unwrap().remove("tolerations");
            }
            default(pods, &mut pod);
            pod["spec"]["tolerations"].clone()
        };
        let not_ready = json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let unreachable = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let own_unreachable = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2});
        let everything = json!({"operator": "Exists"});
        let any_effect = json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists"});
        let no_schedule = json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"});
        let cases = [
            (Value::Null, json!([not_ready, unreachable])),
            (
                json!([own_unreachable]),
                json!([own_unreachable, not_ready]),
            ),
            (json!([everything]), json!([everything])),
            (json!([any_effect]), json!([any_effect, unreachable])),
            // A NoSchedule toleration does not tolerate the NoExecute taint.
            (
                json!([no_schedule]),
                json!([no_schedule, not_ready, unreachable]),
            ),
        ];
        for (given, want) in cases {
            assert_eq!(defaults(given.clone()), want, "{given}");
        }
    }

    #[test]
    fn a_pod_without_containers_is_invalid() {
        let pods = find("", "v1", "pods").unwrap();
        let causes = validate(pods, &json!({"metadata": {"name": "p"}, "spec": {}}));
        assert_eq!(causes[0].field, "spec.containers");
    }

    #[test]
    fn bad_names_are_rejected_with_upstream_messages() {
        let cms = find("", "v1", "configmaps").unwrap();
        let causes = validate(cms, &json!({"metadata": {"name": "Bad_Name"}}));
        assert_eq!(causes[0].field, "metadata.name");
        assert!(causes[0].message.contains("RFC 1123 subdomain"));
        let ns = find("", "v1", "namespaces").unwrap();
        assert!(!validate(ns, &json!({"metadata": {"name": "a.b"}})).is_empty());
        assert!(validate(ns, &json!({"metadata": {"name": "team-a"}})).is_empty());
    }

    #[test]
    fn a_deployment_selector_must_match_its_template() {
        let d = find("apps", "v1", "deployments").unwrap();
        let obj = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let causes = validate(d, &obj);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn owner_references_need_uid_and_one_controller_at_most() {
        let cms = find("", "v1", "configmaps").unwrap();
        let obj = json!({"metadata": {"name": "c", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "s", "controller": true},
        ]}});
        let causes = validate(cms, &obj);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.ownerReferences[1].uid",
                "metadata.ownerReferences"
            ]
        );
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let guaranteed =
            json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(pod_qos_class(Some(&guaranteed)), "Guaranteed");
        let burstable = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(pod_qos_class(Some(&burstable)), "Burstable");
        assert_eq!(
            pod_qos_class(Some(&json!({"containers": [{}]}))),
            "BestEffort"
        );
    }

    #[test]
    fn secret_string_data_folds_into_base64_data() {
        let secrets = find("", "v1", "secrets").unwrap();
        let mut obj = json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hunter2"}});
        default(secrets, &mut obj);
        assert_eq!(obj["data"], json!({"a": "eA==", "b": "aHVudGVyMg=="}));
        assert!(obj.get("stringData").is_none());
        assert_eq!(obj["type"], "Opaque");
    }

    #[test]
    fn service_ports_default_target_port_and_protocol() {
        let svc = find("", "v1", "services").unwrap();
        let mut obj = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        default(svc, &mut obj);
        assert_eq!(obj["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(obj["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(obj["spec"]["type"], "ClusterIP");
    }
}
