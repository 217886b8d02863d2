//! Server-side printing: the `meta.k8s.io/v1` `Table` the API server returns for
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! `kubectl get` prints whatever columns and cells the server sends, so the column
//! definitions and the cell computations here follow upstream's
//! `pkg/printers/internalversion/printers.go` (Kubernetes 1.33) exactly. The API
//! server always generates the wide form (`GenerateOptions{Wide: true}`); kubectl
//! hides columns with `priority > 0` unless `-o wide` is given.
//!
//! Resources without a dedicated printer get the columns the CRD handler serves for
//! a custom resource without `additionalPrinterColumns`: `Name` and `Age`.
//!
//! Objects are read as JSON in their served (versioned) form. Where upstream prints
//! the internal type, the few conversions that matter are replicated (for example
//! `status.podIP` standing in for an empty `status.podIPs`, `events.k8s.io` field
//! names, `autoscaling/v1` CPU targets), and so are the defaults upstream's
//! defaulting guarantees before printing (a missing `spec.replicas` is 1, a missing
//! `protocol` is `TCP`, ...).

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// What each row's `object` holds, per upstream's `includeObject` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `includeObject=None`: rows carry no object.
    None,
    /// `includeObject=Metadata` (the default): a `PartialObjectMetadata`.
    #[default]
    Metadata,
    /// `includeObject=Object`: the full object.
    Object,
}

/// Parses the `includeObject` query parameter leniently: a missing, empty or
/// unrecognized value gives the default, [`IncludeObject::Metadata`].
/// Use [`try_parse_include_object`] to reject unknown values as upstream does.
pub fn parse_include_object(s: Option<&str>) -> IncludeObject {
    try_parse_include_object(s).unwrap_or_default()
}

/// Parses the `includeObject` query parameter strictly. Upstream answers an unknown
/// value with `400 BadRequest` and the message returned in `Err`.
pub fn try_parse_include_object(s: Option<&str>) -> Result<IncludeObject, String> {
    match s.unwrap_or("") {
        "" | "Metadata" => Ok(IncludeObject::Metadata),
        "Object" => Ok(IncludeObject::Object),
        "None" => Ok(IncludeObject::None),
        other => Err(format!("unrecognized includeObject value: {other:?}")),
    }
}

/// Whether `(group, plural)` has a dedicated upstream printer (otherwise the
/// default `Name`/`Age` columns are used). The core group is `""` (`"core"` is
/// accepted too).
pub fn has_printer(group: &str, plural: &str) -> bool {
    printer_for(group, plural) != Printer::Default
}

/// The `columnDefinitions` for a resource: each
/// `{"name","type","format","description","priority"}`.
pub fn column_definitions(group: &str, plural: &str) -> Vec<Value> {
    columns(printer_for(group, plural))
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": c.format,
                "description": c.desc,
                "priority": c.priority,
            })
        })
        .collect()
}

/// The cells of one object's row, in [`column_definitions`] order (wide columns
/// included, as upstream's server always does).
pub fn row_cells(group: &str, plural: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    cells(printer_for(group, plural), obj, now)
}

/// A whole `meta.k8s.io/v1` `Table` for `objects` (one row each, in order).
/// `list_meta` becomes the table's `metadata` (`resourceVersion`, `continue`, ...).
pub fn table(
    group: &str,
    plural: &str,
    objects: &[Value],
    list_meta: Value,
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let printer = printer_for(group, plural);
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells(printer, obj, now)));
            if let Some(conditions) = row_conditions(printer, obj) {
                row.insert("conditions".into(), conditions);
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_object_metadata(obj));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    let metadata = if list_meta.is_null() {
        json!({})
    } else {
        list_meta
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(group, plural),
        "rows": rows,
    })
}

/// Upstream's `duration.HumanDuration` (k8s.io/apimachinery/pkg/util/duration):
/// a succinct duration with ~2-3 significant figures.
pub fn human_duration(d: Duration) -> String {
    // Allow a deviation of less than 2 seconds to tolerate clock skew.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{h}h", hours / 24)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{dy}d", hours / 24 / 365)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// Upstream's `metav1.LabelSelectorAsSelector(sel).String()`: requirements sorted by
/// key, `k=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`. `None`, `null` and an empty
/// selector give `""`. An invalid selector gives `Err`.
pub fn label_selector_as_string(selector: Option<&Value>) -> Result<String, String> {
    let Some(sel) = selector.filter(|v| !v.is_null()) else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel["matchLabels"].as_object() {
        for (key, value) in labels {
            let value = s(value);
            validate_label_key(key)?;
            validate_label_value(key, value)?;
            reqs.push((key.clone(), format!("{key}={value}")));
        }
    }
    for expr in arr(&sel["matchExpressions"]) {
        let key = s(&expr["key"]);
        let operator = s(&expr["operator"]);
        let mut values: Vec<&str> = arr(&expr["values"]).iter().map(s).collect();
        let word = match operator {
            "In" => "in",
            "NotIn" => "notin",
            "Exists" | "DoesNotExist" => "",
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        validate_label_key(key)?;
        let rendered = if word.is_empty() {
            if !values.is_empty() {
                return Err("values set must be empty for exists and does not exist".into());
            }
            if operator == "Exists" {
                key.to_string()
            } else {
                format!("!{key}")
            }
        } else {
            if values.is_empty() {
                return Err("for 'in', 'notin' operators, values set can't be empty".into());
            }
            for value in &values {
                validate_label_value(key, value)?;
            }
            values.sort_unstable();
            format!("{key} {word} ({})", values.join(","))
        };
        reqs.push((key.to_string(), rendered));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

/// Upstream's `metav1.FormatLabelSelector`: like [`label_selector_as_string`] but
/// `<none>` when empty and `<error>` when invalid.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector_as_string(selector) {
        Ok(l) if l.is_empty() => "<none>".to_string(),
        Ok(l) => l,
        Err(_) => "<error>".to_string(),
    }
}

/// Upstream's `labels.FormatLabels`: `k=v` pairs sorted and joined with `,`, or
/// `<none>` for a missing or empty map.
pub fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort_unstable();
    pairs.join(",")
}

// ---------------------------------------------------------------------------
// Printers and their columns
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printer {
    Namespace,
    Pod,
    Node,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    ServiceAccount,
    Event,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Lease,
    EndpointSlice,
    PersistentVolume,
    PersistentVolumeClaim,
    ControllerRevision,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    CertificateSigningRequest,
    Default,
}

fn printer_for(group: &str, plural: &str) -> Printer {
    let group = if group == "core" { "" } else { group };
    match (group, plural) {
        ("", "namespaces") => Printer::Namespace,
        ("", "pods") => Printer::Pod,
        ("", "nodes") => Printer::Node,
        ("", "services") => Printer::Service,
        ("", "endpoints") => Printer::Endpoints,
        ("", "configmaps") => Printer::ConfigMap,
        ("", "secrets") => Printer::Secret,
        ("", "serviceaccounts") => Printer::ServiceAccount,
        ("", "events") | ("events.k8s.io", "events") => Printer::Event,
        ("apps", "deployments") => Printer::Deployment,
        ("apps", "replicasets") => Printer::ReplicaSet,
        ("apps", "statefulsets") => Printer::StatefulSet,
        ("apps", "daemonsets") => Printer::DaemonSet,
        ("batch", "jobs") => Printer::Job,
        ("batch", "cronjobs") => Printer::CronJob,
        ("coordination.k8s.io", "leases") => Printer::Lease,
        ("", "persistentvolumes") => Printer::PersistentVolume,
        ("", "persistentvolumeclaims") => Printer::PersistentVolumeClaim,
        ("apps", "controllerrevisions") => Printer::ControllerRevision,
        ("discovery.k8s.io", "endpointslices") => Printer::EndpointSlice,
        ("autoscaling", "horizontalpodautoscalers") => Printer::HorizontalPodAutoscaler,
        ("policy", "poddisruptionbudgets") => Printer::PodDisruptionBudget,
        ("certificates.k8s.io", "certificatesigningrequests") => Printer::CertificateSigningRequest,
        _ => Printer::Default,
    }
}

#[derive(Debug, Clone, Copy)]
struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    desc: &'static str,
    priority: i32,
}

const fn col(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        desc,
        priority: 0,
    }
}

const fn wide(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        desc,
        priority: 1,
    }
}

// Descriptions: upstream uses the generated `SwaggerDoc()` of the named field, or a
// literal. Field docs are from k8s.io/api 1.33 (some from the beta group versions
// upstream's printers.go names, whose wording differs from v1).

const D_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const D_AGE: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const D_CONTAINERS: &str = "Names of each container in the template.";
const D_IMAGES: &str = "Images referenced by each container in the template.";
const D_READY_PODS: &str = "Number of the pod with ready state";

const D_POD_READY: &str = "The aggregate readiness state of this pod for accepting traffic.";
const D_POD_STATUS: &str = "The aggregate status of the containers in this pod.";
const D_POD_RESTARTS: &str = "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.";
const D_POD_IP: &str = "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
const D_POD_NODE: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
const D_POD_NOMINATED: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
const D_POD_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
const D_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";

const D_NS_STATUS: &str = "The status of the namespace";

const D_NODE_STATUS: &str = "The status of the node";
const D_NODE_ROLES: &str = "The roles of the node";
const D_NODE_VERSION: &str = "Kubelet Version reported by the node.";
const D_NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
const D_NODE_OS_IMAGE: &str =
    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
const D_NODE_KERNEL: &str =
    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
const D_NODE_RUNTIME: &str = "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";

const D_SVC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
const D_SVC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SVC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
const D_SVC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SVC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";

const D_ENDPOINTS_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";

const D_CONFIGMAP_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
const D_SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
const D_SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
const D_SA_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";

const D_EVENT_LAST_SEEN: &str =
    "The time at which the most recent occurrence of this event was recorded.";
const D_EVENT_TYPE: &str =
    "Type of this event (Normal, Warning), new types could be added in the future";
const D_EVENT_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
const D_EVENT_OBJECT: &str = "The object that this event is about.";
const D_EVENT_SUBOBJECT: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
const D_EVENT_SOURCE: &str =
    "The component reporting this event. Should be a short machine understandable string.";
const D_EVENT_MESSAGE: &str = "A human-readable description of the status of this operation.";
const D_EVENT_FIRST_SEEN: &str =
    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
const D_EVENT_COUNT: &str = "The number of times this event has occurred.";

// extensions/v1beta1 DeploymentStatus / DeploymentSpec.
const D_DEPLOY_UPDATED: &str = "Total number of non-terminated pods targeted by this deployment that have the desired template spec.";
const D_DEPLOY_AVAILABLE: &str = "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.";
const D_DEPLOY_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.";

// extensions/v1beta1 ReplicaSetSpec / ReplicaSetStatus.
const D_RS_DESIRED: &str = "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller";
const D_RS_CURRENT: &str = "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller";
const D_RS_READY: &str = "The number of ready replicas for this replica set.";
const D_RS_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

// extensions/v1beta1 DaemonSetStatus / DaemonSetSpec.
const D_DS_DESIRED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const D_DS_CURRENT: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const D_DS_READY: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.";
const D_DS_UPDATED: &str = "The total number of nodes that are running updated daemon pod";
const D_DS_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
const D_DS_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. If empty, defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

// batch/v1 JobStatus / JobSpec.
const D_JOB_STATUS: &str = "Status of the job.";
const D_JOB_COMPLETIONS: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
const D_JOB_DURATION: &str = "Time required to complete the job.";
const D_JOB_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

// batch/v1beta1 CronJobSpec / CronJobStatus.
const D_CJ_SCHEDULE: &str = "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";
const D_CJ_TIMEZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";
const D_CJ_SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.";
const D_CJ_ACTIVE: &str = "A list of pointers to currently running jobs.";
const D_CJ_LAST_SCHEDULE: &str =
    "Information when was the last time the job was successfully scheduled.";

// coordination.k8s.io/v1 LeaseSpec.
const D_PV_CAPACITY: &str = "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity";
const D_PV_ACCESS_MODES: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";
const D_PV_RECLAIM: &str = "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming";
const D_PV_STATUS: &str = "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase";
const D_PV_CLAIM: &str = "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding";
const D_PV_STORAGE_CLASS: &str = "storageClassName is the name of StorageClass to which this persistent volume belongs. Empty value means that this volume does not belong to any StorageClass.";
const D_PV_VAC: &str = "Name of VolumeAttributesClass to which this persistent volume belongs. Empty value is not allowed. When this field is not set, it indicates that this volume does not belong to any VolumeAttributesClass.";
const D_PV_REASON: &str = "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.";
const D_PV_VOLUME_MODE: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";
const D_PVC_STATUS: &str = "phase represents the current phase of PersistentVolumeClaim.";
const D_PVC_VOLUME: &str =
    "volumeName is the binding reference to the PersistentVolume backing this claim.";
const D_PVC_CAPACITY: &str = "capacity represents the actual resources of the underlying volume.";
const D_CR_CONTROLLER: &str = "Controller of the object";
const D_CR_REVISION: &str = "Revision indicates the revision of the state represented by Data.";
const D_CSR_SIGNER: &str = "signerName indicates the requested signer, and is a qualified name.";
const D_CSR_REQUESTOR: &str = "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded.";
const D_CSR_DURATION: &str = "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.";
const D_CSR_CONDITION: &str = "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".";
const D_LEASE_HOLDER: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";

// discovery.k8s.io/v1beta1 EndpointSlice.
const D_EPS_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.";
const D_EPS_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports.";
const D_EPS_ENDPOINTS: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";

// autoscaling/v2beta1 HorizontalPodAutoscalerSpec / Status.
const D_HPA_REFERENCE: &str = "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.";
const D_HPA_TARGETS: &str = "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond.";
const D_HPA_MIN: &str = "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.";
const D_HPA_MAX: &str = "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.";
const D_HPA_REPLICAS: &str = "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.";

const D_PDB_MIN: &str = "The minimum number of pods that must be available.";
const D_PDB_MAX: &str = "The maximum number of pods that may be unavailable.";
const D_PDB_ALLOWED: &str = "Calculated number of pods that may be disrupted at this time.";

const NAME: Col = Col {
    name: "Name",
    ty: "string",
    format: "name",
    desc: D_NAME,
    priority: 0,
};
const AGE: Col = col("Age", "string", D_AGE);
const CONTAINERS: Col = wide("Containers", "string", D_CONTAINERS);
const IMAGES: Col = wide("Images", "string", D_IMAGES);

fn columns(printer: Printer) -> Vec<Col> {
    match printer {
        Printer::Namespace => vec![NAME, col("Status", "string", D_NS_STATUS), AGE],
        Printer::Pod => vec![
            NAME,
            col("Ready", "string", D_POD_READY),
            col("Status", "string", D_POD_STATUS),
            col("Restarts", "string", D_POD_RESTARTS),
            AGE,
            wide("IP", "string", D_POD_IP),
            wide("Node", "string", D_POD_NODE),
            wide("Nominated Node", "string", D_POD_NOMINATED),
            wide("Readiness Gates", "string", D_POD_GATES),
        ],
        Printer::Node => vec![
            NAME,
            col("Status", "string", D_NODE_STATUS),
            col("Roles", "string", D_NODE_ROLES),
            AGE,
            col("Version", "string", D_NODE_VERSION),
            wide("Internal-IP", "string", D_NODE_ADDRESSES),
            wide("External-IP", "string", D_NODE_ADDRESSES),
            wide("OS-Image", "string", D_NODE_OS_IMAGE),
            wide("Kernel-Version", "string", D_NODE_KERNEL),
            wide("Container-Runtime", "string", D_NODE_RUNTIME),
        ],
        Printer::Service => vec![
            NAME,
            col("Type", "string", D_SVC_TYPE),
            col("Cluster-IP", "string", D_SVC_CLUSTER_IP),
            col("External-IP", "string", D_SVC_EXTERNAL_IPS),
            col("Port(s)", "string", D_SVC_PORTS),
            AGE,
            wide("Selector", "string", D_SVC_SELECTOR),
        ],
        Printer::Endpoints => vec![NAME, col("Endpoints", "string", D_ENDPOINTS_SUBSETS), AGE],
        Printer::ConfigMap => vec![NAME, col("Data", "string", D_CONFIGMAP_DATA), AGE],
        Printer::Secret => vec![
            NAME,
            col("Type", "string", D_SECRET_TYPE),
            col("Data", "string", D_SECRET_DATA),
            AGE,
        ],
        Printer::ServiceAccount => vec![NAME, col("Secrets", "string", D_SA_SECRETS), AGE],
        Printer::Event => vec![
            col("Last Seen", "string", D_EVENT_LAST_SEEN),
            col("Type", "string", D_EVENT_TYPE),
            col("Reason", "string", D_EVENT_REASON),
            col("Object", "string", D_EVENT_OBJECT),
            wide("Subobject", "string", D_EVENT_SUBOBJECT),
            wide("Source", "string", D_EVENT_SOURCE),
            col("Message", "string", D_EVENT_MESSAGE),
            wide("First Seen", "string", D_EVENT_FIRST_SEEN),
            wide("Count", "string", D_EVENT_COUNT),
            Col {
                priority: 1,
                ..NAME
            },
        ],
        Printer::Deployment => vec![
            NAME,
            col("Ready", "string", D_READY_PODS),
            col("Up-to-date", "string", D_DEPLOY_UPDATED),
            col("Available", "string", D_DEPLOY_AVAILABLE),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_DEPLOY_SELECTOR),
        ],
        Printer::ReplicaSet => vec![
            NAME,
            col("Desired", "integer", D_RS_DESIRED),
            col("Current", "integer", D_RS_CURRENT),
            col("Ready", "integer", D_RS_READY),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_RS_SELECTOR),
        ],
        Printer::StatefulSet => vec![
            NAME,
            col("Ready", "string", D_READY_PODS),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        Printer::DaemonSet => vec![
            NAME,
            col("Desired", "integer", D_DS_DESIRED),
            col("Current", "integer", D_DS_CURRENT),
            col("Ready", "integer", D_DS_READY),
            col("Up-to-date", "integer", D_DS_UPDATED),
            col("Available", "integer", D_DS_AVAILABLE),
            col("Node Selector", "string", D_NODE_SELECTOR),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_DS_SELECTOR),
        ],
        Printer::Job => vec![
            NAME,
            col("Status", "string", D_JOB_STATUS),
            col("Completions", "string", D_JOB_COMPLETIONS),
            col("Duration", "string", D_JOB_DURATION),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_JOB_SELECTOR),
        ],
        Printer::CronJob => vec![
            NAME,
            col("Schedule", "string", D_CJ_SCHEDULE),
            col("Timezone", "string", D_CJ_TIMEZONE),
            col("Suspend", "boolean", D_CJ_SUSPEND),
            col("Active", "integer", D_CJ_ACTIVE),
            col("Last Schedule", "string", D_CJ_LAST_SCHEDULE),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_JOB_SELECTOR),
        ],
        Printer::Lease => vec![NAME, col("Holder", "string", D_LEASE_HOLDER), AGE],
        Printer::CertificateSigningRequest => vec![
            NAME,
            AGE,
            col("SignerName", "string", D_CSR_SIGNER),
            col("Requestor", "string", D_CSR_REQUESTOR),
            col("RequestedDuration", "string", D_CSR_DURATION),
            col("Condition", "string", D_CSR_CONDITION),
        ],
        Printer::PersistentVolume => vec![
            NAME,
            col("Capacity", "string", D_PV_CAPACITY),
            col("Access Modes", "string", D_PV_ACCESS_MODES),
            col("Reclaim Policy", "string", D_PV_RECLAIM),
            col("Status", "string", D_PV_STATUS),
            col("Claim", "string", D_PV_CLAIM),
            col("StorageClass", "string", D_PV_STORAGE_CLASS),
            col("VolumeAttributesClass", "string", D_PV_VAC),
            col("Reason", "string", D_PV_REASON),
            AGE,
            wide("VolumeMode", "string", D_PV_VOLUME_MODE),
        ],
        Printer::PersistentVolumeClaim => vec![
            NAME,
            col("Status", "string", D_PVC_STATUS),
            col("Volume", "string", D_PVC_VOLUME),
            col("Capacity", "string", D_PVC_CAPACITY),
            col("Access Modes", "string", D_PV_ACCESS_MODES),
            col("StorageClass", "string", D_PV_STORAGE_CLASS),
            col("VolumeAttributesClass", "string", D_PV_VAC),
            AGE,
            wide("VolumeMode", "string", D_PV_VOLUME_MODE),
        ],
        Printer::ControllerRevision => vec![
            NAME,
            col("Controller", "string", D_CR_CONTROLLER),
            col("Revision", "integer", D_CR_REVISION),
            AGE,
        ],
        Printer::EndpointSlice => vec![
            NAME,
            col("AddressType", "string", D_EPS_ADDRESS_TYPE),
            col("Ports", "string", D_EPS_PORTS),
            col("Endpoints", "string", D_EPS_ENDPOINTS),
            AGE,
        ],
        Printer::HorizontalPodAutoscaler => vec![
            NAME,
            col("Reference", "string", D_HPA_REFERENCE),
            col("Targets", "string", D_HPA_TARGETS),
            col("MinPods", "string", D_HPA_MIN),
            col("MaxPods", "string", D_HPA_MAX),
            col("Replicas", "string", D_HPA_REPLICAS),
            AGE,
        ],
        Printer::PodDisruptionBudget => vec![
            NAME,
            col("Min Available", "string", D_PDB_MIN),
            col("Max Unavailable", "string", D_PDB_MAX),
            col("Allowed Disruptions", "integer", D_PDB_ALLOWED),
            AGE,
        ],
        // The CRD handler's columns for a custom resource without
        // additionalPrinterColumns (apiextensions-apiserver serveDefaultColumnsIfEmpty).
        Printer::Default => vec![NAME, col("Age", "date", D_AGE)],
    }
}

fn cells(printer: Printer, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match printer {
        Printer::Namespace => namespace_cells(obj, now),
        Printer::Pod => pod_cells(obj, now),
        Printer::Node => node_cells(obj, now),
        Printer::Service => service_cells(obj, now),
        Printer::Endpoints => vec![name(obj), format_endpoints(obj).into(), age(obj, now)],
        Printer::ConfigMap => {
            let n = map_len(&obj["data"]) + map_len(&obj["binaryData"]);
            vec![name(obj), json!(n), age(obj, now)]
        }
        Printer::Secret => {
            let ty = non_empty_or(s(&obj["type"]), "Opaque");
            vec![
                name(obj),
                ty.into(),
                json!(map_len(&obj["data"])),
                age(obj, now),
            ]
        }
        Printer::ServiceAccount => {
            let n = arr(&obj["secrets"]).len();
            vec![name(obj), json!(n), age(obj, now)]
        }
        Printer::Event => event_cells(obj, now),
        Printer::Deployment => deployment_cells(obj, now),
        Printer::ReplicaSet => replica_set_cells(obj, now),
        Printer::StatefulSet => stateful_set_cells(obj, now),
        Printer::DaemonSet => daemon_set_cells(obj, now),
        Printer::Job => job_cells(obj, now),
        Printer::CronJob => cron_job_cells(obj, now),
        Printer::PersistentVolume => persistent_volume_cells(obj, now),
        Printer::PersistentVolumeClaim => persistent_volume_claim_cells(obj, now),
        Printer::ControllerRevision => {
            let controller = arr(&obj["metadata"]["ownerReferences"])
                .iter()
                .find(|r| r["controller"] == json!(true))
                .map(|r| {
                    let group = s(&r["apiVersion"]).split_once('/').map(|(g, _)| g);
                    let kind = s(&r["kind"]).to_lowercase();
                    let kind = match group {
                        Some(g) => format!("{kind}.{g}"),
                        None => kind,
                    };
                    format!("{kind}/{}", s(&r["name"]))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name(obj),
                controller.into(),
                json!(int(&obj["revision"]).unwrap_or(0)),
                age(obj, now),
            ]
        }
        Printer::Lease => {
            let holder = s(&obj["spec"]["holderIdentity"]);
            vec![name(obj), holder.into(), age(obj, now)]
        }
        Printer::CertificateSigningRequest => {
            let spec = &obj["spec"];
            let signer = match s(&spec["signerName"]) {
                "" => "<none>".to_string(),
                signer => signer.to_string(),
            };
            let duration = match int(&spec["expirationSeconds"]) {
                Some(secs) => human_duration(Duration::seconds(secs)),
                None => "<none>".to_string(),
            };
            vec![
                name(obj),
                age(obj, now),
                signer.into(),
                s(&spec["username"]).into(),
                duration.into(),
                csr_condition(&obj["status"]).into(),
            ]
        }
        Printer::EndpointSlice => vec![
            name(obj),
            s(&obj["addressType"]).into(),
            format_discovery_ports(arr(&obj["ports"])).into(),
            format_discovery_endpoints(arr(&obj["endpoints"])).into(),
            age(obj, now),
        ],
        Printer::HorizontalPodAutoscaler => hpa_cells(obj, now),
        Printer::PodDisruptionBudget => {
            let spec = &obj["spec"];
            vec![
                name(obj),
                int_or_string(&spec["minAvailable"]).into(),
                int_or_string(&spec["maxUnavailable"]).into(),
                json!(int(&obj["status"]["disruptionsAllowed"]).unwrap_or(0)),
                age(obj, now),
            ]
        }
        Printer::Default => vec![name(obj), default_age(obj, now)],
    }
}

/// A storage quantity; a missing one is the zero quantity, "0".
fn storage_quantity(v: &Value) -> String {
    match v {
        Value::Null => "0".to_string(),
        other => quantity(other),
    }
}

/// Upstream's `GetAccessModesAsString`: short names in a fixed order.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v == m);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// `<unset>` for an empty optional string column, as upstream prints
/// VolumeAttributesClass and VolumeMode.
fn or_unset(v: &Value) -> Value {
    match s(v) {
        "" => json!("<unset>"),
        other => json!(other),
    }
}

/// Terminating while being deleted, else the phase.
fn phase_or_terminating(obj: &Value) -> String {
    if obj["metadata"]["deletionTimestamp"].is_string() {
        "Terminating".into()
    } else {
        s(&obj["status"]["phase"]).into()
    }
}

fn persistent_volume_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &obj["spec"];
    let claim = match &spec["claimRef"] {
        Value::Object(r) => format!(
            "{}/{}",
            r.get("namespace").map(s).unwrap_or(""),
            r.get("name").map(s).unwrap_or("")
        ),
        _ => String::new(),
    };
    vec![
        name(obj),
        json!(storage_quantity(&spec["capacity"]["storage"])),
        json!(access_modes(arr(&spec["accessModes"]))),
        json!(s(&spec["persistentVolumeReclaimPolicy"])),
        json!(phase_or_terminating(obj)),
        json!(claim),
        json!(s(&spec["storageClassName"])),
        or_unset(&spec["volumeAttributesClassName"]),
        json!(s(&obj["status"]["reason"])),
        age(obj, now),
        or_unset(&spec["volumeMode"]),
    ]
}

fn persistent_volume_claim_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    // Capacity and modes are the bound volume's, shown once bound.
    let (capacity, modes) = if s(&spec["volumeName"]).is_empty() {
        (String::new(), String::new())
    } else {
        (
            storage_quantity(&status["capacity"]["storage"]),
            access_modes(arr(&status["accessModes"])),
        )
    };
    vec![
        name(obj),
        json!(phase_or_terminating(obj)),
        json!(s(&spec["volumeName"])),
        json!(capacity),
        json!(modes),
        json!(s(&spec["storageClassName"])),
        or_unset(&spec["volumeAttributesClassName"]),
        age(obj, now),
        or_unset(&spec["volumeMode"]),
    ]
}

/// Upstream marks the rows of finished pods with a `Completed` condition.
fn row_conditions(printer: Printer, obj: &Value) -> Option<Value> {
    if printer != Printer::Pod {
        return None;
    }
    let (reason, message) = match s(&obj["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

fn partial_object_metadata(obj: &Value) -> Value {
    let metadata = match &obj["metadata"] {
        Value::Null => json!({}),
        m => m.clone(),
    };
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

// ---------------------------------------------------------------------------
// JSON and time helpers
// ---------------------------------------------------------------------------

/// A CSR's condition cell as kubectl shows it: Denied, Approved or
/// Pending (in that precedence), then `,Failed` and `,Issued`.
fn csr_condition(status: &Value) -> String {
    let has = |kind: &str| {
        arr(&status["conditions"])
            .iter()
            .any(|c| s(&c["type"]) == kind)
    };
    let mut out = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        out.push_str(",Failed");
    }
    if !s(&status["certificate"]).is_empty() {
        out.push_str(",Issued");
    }
    out
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

fn present(v: &Value) -> Option<&Value> {
    if v.is_null() {
        None
    } else {
        Some(v)
    }
}

fn map_len(v: &Value) -> usize {
    v.as_object().map_or(0, Map::len)
}

fn non_empty_or<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() {
        default
    } else {
        value
    }
}

fn name(obj: &Value) -> Value {
    s(&obj["metadata"]["name"]).into()
}

/// Parses an RFC 3339 timestamp; `None` for missing, malformed or Go's zero time.
fn time(v: &Value) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()?
        .with_timezone(&Utc);
    // 0001-01-01T00:00:00Z, Go's zero time.IsZero().
    (t.timestamp() != -62_135_596_800).then_some(t)
}

/// Upstream's `translateTimestampSince`.
fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    since(time(&obj["metadata"]["creationTimestamp"]), now).into()
}

/// The CRD handler's `date` cell: `null` when absent, `<invalid>` when unparseable.
fn default_age(obj: &Value, now: DateTime<Utc>) -> Value {
    match &obj["metadata"]["creationTimestamp"] {
        Value::String(ts) => match DateTime::parse_from_rfc3339(ts) {
            Ok(_) => since(time(&obj["metadata"]["creationTimestamp"]), now).into(),
            Err(_) => "<invalid>".into(),
        },
        _ => Value::Null,
    }
}

/// Keeps the later of `latest` and `candidate`.
fn bump(latest: &mut Option<DateTime<Utc>>, candidate: Option<DateTime<Utc>>) {
    if let Some(c) = candidate {
        if latest.is_none_or(|l| l < c) {
            *latest = Some(c);
        }
    }
}

/// `intstr.IntOrString.String()`, or `N/A` when unset.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::Null => "N/A".to_string(),
        Value::String(s) => s.clone(),
        other => int(other).map_or_else(|| other.to_string(), |n| n.to_string()),
    }
}

/// Upstream's `layoutContainerCells`: names and images joined with `,`.
fn container_cells(pod_spec: &Value) -> (Value, Value) {
    let containers = arr(&pod_spec["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(&c["image"])).collect();
    (names.join(",").into(), images.join(",").into())
}

fn condition_true(conditions: &Value, ty: &str) -> bool {
    arr(conditions)
        .iter()
        .any(|c| s(&c["type"]) == ty && s(&c["status"]) == "True")
}

fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        return "<unset>".to_string();
    }
    ret
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `validation.IsQualifiedName`'s name part: at most 63 characters, alphanumeric
/// at both ends, `-`, `_` and `.` in between.
fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
        && s.chars()
            .all(|c| is_alnum(c) || c == '-' || c == '_' || c == '.')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    let label_ok = |l: &str| {
        let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        !l.is_empty()
            && l.starts_with(lower_alnum)
            && l.ends_with(lower_alnum)
            && l.chars().all(|c| lower_alnum(c) || c == '-')
    };
    !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok)
}

fn validate_label_key(key: &str) -> Result<(), String> {
    let ok = match key.split_once('/') {
        None => is_qualified_name_part(key),
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_qualified_name_part(name),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn validate_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(format!("invalid label value {value:?} for key {key:?}"))
    }
}

// ---------------------------------------------------------------------------
// Per-resource cells
// ---------------------------------------------------------------------------

fn namespace_cells(ns: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = non_empty_or(s(&ns["status"]["phase"]), "Active");
    vec![name(ns), phase.into(), age(ns, now)]
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let init_specs = arr(&spec["initContainers"]);
    let is_sidecar = |c: &Value| s(&c["restartPolicy"]) == "Always";
    let restartable = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| s(&c["name"]) == name)
            .is_some_and(is_sidecar)
    };

    let total =
        arr(&spec["containers"]).len() + init_specs.iter().filter(|c| is_sidecar(c)).count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    // The API server sets `Pending` on create.
    let phase = non_empty_or(s(&status["phase"]), "Pending");
    let mut reason = non_empty_or(s(&status["reason"]), phase).to_string();
    if arr(&status["conditions"])
        .iter()
        .any(|c| s(&c["type"]) == "PodScheduled" && s(&c["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, cs) in arr(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&cs["restartCount"]).unwrap_or(0);
        let finished = time(&cs["lastState"]["terminated"]["finishedAt"]);
        restarts += count;
        bump(&mut last_restart, finished);
        let sidecar = restartable(s(&cs["name"]));
        if sidecar {
            sidecar_restarts += count;
            bump(&mut last_sidecar_restart, finished);
        }
        let terminated = present(&cs["state"]["terminated"]);
        let waiting = present(&cs["state"]["waiting"]);
        if terminated.is_some_and(|t| int(&t["exitCode"]).unwrap_or(0) == 0) {
            continue;
        }
        if sidecar && cs["started"].as_bool() == Some(true) {
            if cs["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match s(&t["reason"]) {
                "" => match int(&t["signal"]).unwrap_or(0) {
                    0 => format!("Init:ExitCode:{}", int(&t["exitCode"]).unwrap_or(0)),
                    signal => format!("Init:Signal:{signal}"),
                },
                r => format!("Init:{r}"),
            };
        } else if let Some(w) = waiting
            .map(|w| s(&w["reason"]))
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = arr(&status["conditions"])
        .iter()
        .find(|c| s(&c["type"]) == "Initialized")
        .is_some_and(|c| s(&c["status"]) == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(&status["containerStatuses"]).iter().rev() {
            restarts += int(&cs["restartCount"]).unwrap_or(0);
            bump(
                &mut last_restart,
                time(&cs["lastState"]["terminated"]["finishedAt"]),
            );
            let waiting_reason = s(&cs["state"]["waiting"]["reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = present(&cs["state"]["terminated"]) {
                reason = match s(&t["reason"]) {
                    "" => match int(&t["signal"]).unwrap_or(0) {
                        0 => format!("ExitCode:{}", int(&t["exitCode"]).unwrap_or(0)),
                        signal => format!("Signal:{signal}"),
                    },
                    r => r.to_string(),
                };
            } else if cs["ready"].as_bool() == Some(true)
                && present(&cs["state"]["running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // Back to "Running" if a container still reports as running.
        if reason == "Completed" && has_running {
            reason = if condition_true(&status["conditions"], "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    if present(&pod["metadata"]["deletionTimestamp"]).is_some() {
        if s(&status["reason"]) == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".to_string();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    // Wide columns.
    let pod_ip = arr(&status["podIPs"])
        .first()
        .map(|ip| s(&ip["ip"]))
        .unwrap_or_else(|| s(&status["podIP"]));
    let readiness_gates = arr(&spec["readinessGates"]);
    let gates = if readiness_gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(&status["conditions"]);
        let true_count = readiness_gates
            .iter()
            .filter(|gate| {
                let ty = s(&gate["conditionType"]);
                conditions
                    .iter()
                    .find(|c| s(&c["type"]) == ty)
                    .is_some_and(|c| s(&c["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", readiness_gates.len())
    };
    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        age(pod, now),
        non_empty_or(pod_ip, "<none>").into(),
        non_empty_or(s(&spec["nodeName"]), "<none>").into(),
        non_empty_or(s(&status["nominatedNodeName"]), "<none>").into(),
        gates.into(),
    ]
}

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let status = &node["status"];
    let mut states: Vec<&str> = Vec::new();
    if let Some(ready) = arr(&status["conditions"])
        .iter()
        .rfind(|c| s(&c["type"]) == "Ready")
    {
        states.push(if s(&ready["status"]) == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if states.is_empty() {
        states.push("Unknown");
    }
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        states.push("SchedulingDisabled");
    }

    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = node["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role);
                }
            } else if key == "kubernetes.io/role" && !s(value).is_empty() {
                roles.push(s(value));
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };

    let address = |ty: &str| {
        arr(&status["addresses"])
            .iter()
            .find(|a| s(&a["type"]) == ty)
            .map_or("<none>", |a| s(&a["address"]))
    };
    let info = &status["nodeInfo"];
    vec![
        name(node),
        states.join(",").into(),
        roles.into(),
        age(node, now),
        s(&info["kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        non_empty_or(s(&info["osImage"]), "<unknown>").into(),
        non_empty_or(s(&info["kernelVersion"]), "<unknown>").into(),
        non_empty_or(s(&info["containerRuntimeVersion"]), "<unknown>").into(),
    ]
}

fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &svc["spec"];
    let ty = non_empty_or(s(&spec["type"]), "ClusterIP");
    let cluster_ip = arr(&spec["clusterIPs"])
        .first()
        .map(s)
        .unwrap_or_else(|| s(&spec["clusterIP"]));
    let external_ips: Vec<&str> = arr(&spec["externalIPs"]).iter().map(s).collect();
    let external = match ty {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            // The server always prints wide, so the list is never truncated.
            let mut lb: Vec<&str> = arr(&svc["status"]["loadBalancer"]["ingress"])
                .iter()
                .map(|i| non_empty_or(s(&i["ip"]), s(&i["hostname"])))
                .filter(|a| !a.is_empty())
                .collect();
            lb.sort_unstable();
            lb.dedup();
            if !external_ips.is_empty() {
                lb.extend(external_ips);
                lb.join(",")
            } else if !lb.is_empty() {
                lb.join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => s(&spec["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| {
            let port = int(&p["port"]).unwrap_or(0);
            let protocol = non_empty_or(s(&p["protocol"]), "TCP");
            match int(&p["nodePort"]).unwrap_or(0) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name(svc),
        ty.into(),
        non_empty_or(cluster_ip, "<none>").into(),
        external.into(),
        ports.into(),
        age(svc, now),
        format_labels(present(&spec["selector"])).into(),
    ]
}

/// Upstream's `formatEndpoints` with all ports: at most three `ip:port` entries.
fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for subset in subsets {
        let addresses = arr(&subset["addresses"]);
        let ports = arr(&subset["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for address in addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(s(&address["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                let port = int(&port["port"]).unwrap_or(0);
                list.push(join_host_port(s(&address["ip"]), port));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - max)
    } else {
        ret
    }
}

fn format_discovery_ports(ports: &[Value]) -> String {
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    for port in ports {
        if list.len() < max {
            let text = match (int(&port["port"]), port["name"].as_str()) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            };
            list.push(text);
        } else if list.len() == max {
            more = true;
        }
    }
    list_with_more(&list, more, ports.len(), max)
}

fn format_discovery_endpoints(endpoints: &[Value]) -> String {
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0;
    for endpoint in endpoints {
        for address in arr(&endpoint["addresses"]) {
            if list.len() < max {
                list.push(s(address).to_string());
            } else if list.len() == max {
                more = true;
            }
            count += 1;
        }
    }
    list_with_more(&list, more, count, max)
}

/// Core `v1` and `events.k8s.io/v1` events share upstream's internal type; read
/// either spelling of each field.
fn event_cells(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let field = |core: &str, events: &str| present(&ev[core]).unwrap_or(&ev[events]);
    let involved = field("involvedObject", "regarding");
    let source = field("source", "deprecatedSource");

    let first_seen = match time(field("firstTimestamp", "deprecatedFirstTimestamp")) {
        Some(t) => since(Some(t), now),
        None => since(time(&ev["eventTime"]), now),
    };
    let mut last_seen = match time(field("lastTimestamp", "deprecatedLastTimestamp")) {
        Some(t) => since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = int(field("count", "deprecatedCount")).unwrap_or(0);
    if let Some(series) = present(&ev["series"]) {
        last_seen = since(time(&series["lastObservedTime"]), now);
        count = int(&series["count"]).unwrap_or(0);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }

    let kind = s(&involved["kind"]).to_lowercase();
    let target = match s(&involved["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = non_empty_or(
        s(&source["component"]),
        s(field("reportingComponent", "reportingController")),
    );
    let instance = non_empty_or(s(&source["host"]), s(&ev["reportingInstance"]));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last_seen.into(),
        s(&ev["type"]).into(),
        s(&ev["reason"]).into(),
        target.into(),
        s(&involved["fieldPath"]).into(),
        source.into(),
        s(field("message", "note")).trim().into(),
        first_seen.into(),
        json!(count),
        name(ev),
    ]
}

fn deployment_cells(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &d["spec"];
    let status = &d["status"];
    let desired = int(&spec["replicas"]).unwrap_or(1);
    let ready = int(&status["readyReplicas"]).unwrap_or(0);
    let (containers, images) = container_cells(&spec["template"]["spec"]);
    let selector = label_selector_as_string(present(&spec["selector"]))
        .unwrap_or_else(|_| "<invalid>".to_string());
    vec![
        name(d),
        format!("{ready}/{desired}").into(),
        json!(int(&status["updatedReplicas"]).unwrap_or(0)),
        json!(int(&status["availableReplicas"]).unwrap_or(0)),
        age(d, now),
        containers,
        images,
        selector.into(),
    ]
}

fn replica_set_cells(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &rs["spec"];
    let status = &rs["status"];
    let (containers, images) = container_cells(&spec["template"]["spec"]);
    vec![
        name(rs),
        json!(int(&spec["replicas"]).unwrap_or(1)),
        json!(int(&status["replicas"]).unwrap_or(0)),
        json!(int(&status["readyReplicas"]).unwrap_or(0)),
        age(rs, now),
        containers,
        images,
        format_label_selector(present(&spec["selector"])).into(),
    ]
}

fn stateful_set_cells(sts: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &sts["spec"];
    let desired = int(&spec["replicas"]).unwrap_or(1);
    let ready = int(&sts["status"]["readyReplicas"]).unwrap_or(0);
    let (containers, images) = container_cells(&spec["template"]["spec"]);
    vec![
        name(sts),
        format!("{ready}/{desired}").into(),
        age(sts, now),
        containers,
        images,
    ]
}

fn daemon_set_cells(ds: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &ds["spec"];
    let status = &ds["status"];
    let n = |field: &str| json!(int(&status[field]).unwrap_or(0));
    let pod_spec = &spec["template"]["spec"];
    let (containers, images) = container_cells(pod_spec);
    vec![
        name(ds),
        n("desiredNumberScheduled"),
        n("currentNumberScheduled"),
        n("numberReady"),
        n("updatedNumberScheduled"),
        n("numberAvailable"),
        format_labels(present(&pod_spec["nodeSelector"])).into(),
        age(ds, now),
        containers,
        images,
        format_label_selector(present(&spec["selector"])).into(),
    ]
}

/// Upstream's `hasJobCondition`: the first condition of that type decides.
fn job_condition(conditions: &Value, ty: &str) -> bool {
    arr(conditions)
        .iter()
        .find(|c| s(&c["type"]) == ty)
        .is_some_and(|c| s(&c["status"]) == "True")
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &job["spec"];
    let status = &job["status"];
    let succeeded = int(&status["succeeded"]).unwrap_or(0);
    let parallelism = int(&spec["parallelism"]);
    // Defaulting sets both to 1 when both are unset.
    let completions = int(&spec["completions"]).or(parallelism.is_none().then_some(1));
    let completions = match completions {
        Some(c) => format!("{succeeded}/{c}"),
        None => match parallelism.unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time(&status["startTime"]), time(&status["completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let conditions = &status["conditions"];
    let state = if job_condition(conditions, "Complete") {
        "Complete"
    } else if job_condition(conditions, "Failed") {
        "Failed"
    } else if present(&job["metadata"]["deletionTimestamp"]).is_some() {
        "Terminating"
    } else if job_condition(conditions, "Suspended") {
        "Suspended"
    } else if job_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = container_cells(&spec["template"]["spec"]);
    vec![
        name(job),
        state.into(),
        completions.into(),
        duration.into(),
        age(job, now),
        containers,
        images,
        format_label_selector(present(&spec["selector"])).into(),
    ]
}

fn cron_job_cells(cj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &cj["spec"];
    let status = &cj["status"];
    let last_schedule = match present(&status["lastScheduleTime"]) {
        Some(t) => since(time(t), now),
        None => "<none>".to_string(),
    };
    let time_zone = spec["timeZone"].as_str().unwrap_or("<none>");
    // Defaulting sets `suspend: false`.
    let suspend = match spec["suspend"].as_bool() {
        Some(true) => "True",
        _ => "False",
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let (containers, images) = container_cells(&job_spec["template"]["spec"]);
    vec![
        name(cj),
        s(&spec["schedule"]).into(),
        time_zone.into(),
        suspend.into(),
        json!(arr(&status["active"]).len()),
        last_schedule.into(),
        age(cj, now),
        containers,
        images,
        format_label_selector(present(&job_spec["selector"])).into(),
    ]
}

fn hpa_cells(hpa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &hpa["spec"];
    let status = &hpa["status"];
    let target = &spec["scaleTargetRef"];
    let reference = format!("{}/{}", s(&target["kind"]), s(&target["name"]));

    // autoscaling/v1 carries a single CPU target; convert it as upstream does, and
    // default to 80% CPU when no metric is given at all (autoscaling/v2 defaulting).
    let mut spec_metrics = arr(&spec["metrics"]).to_vec();
    let mut status_metrics = arr(&status["currentMetrics"]).to_vec();
    if spec_metrics.is_empty() {
        let target = int(&spec["targetCPUUtilizationPercentage"]).unwrap_or(80);
        spec_metrics.push(json!({
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
        }));
        if let Some(current) = int(&status["currentCPUUtilizationPercentage"]) {
            status_metrics = vec![json!({
                "type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": current}},
            })];
        }
    }
    // Defaulting sets `minReplicas: 1`.
    let min_pods = int(&spec["minReplicas"]).unwrap_or(1).to_string();
    vec![
        name(hpa),
        reference.into(),
        format_hpa_metrics(&spec_metrics, &status_metrics).into(),
        min_pods.into(),
        json!(int(&spec["maxReplicas"]).unwrap_or(0)),
        json!(int(&status["currentReplicas"]).unwrap_or(0)),
        age(hpa, now),
    ]
}

/// `resource.Quantity.String()` of an optional quantity (`<nil>` when absent).
fn quantity(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::String(q) => q.clone(),
        other => other.to_string(),
    }
}

/// Upstream's `formatHPAMetrics`: at most two metrics, `current/target` each.
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    let max = 2;
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        // The status of the i-th metric, when it is reported for this source kind.
        let current = |kind: &str| statuses.get(i).and_then(|st| present(&st[kind]));
        let unknown = || "<unknown>".to_string();
        let text = match s(&spec["type"]) {
            kind @ ("External" | "Object") => {
                let key = if kind == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = &spec[key]["target"];
                if present(&target["averageValue"]).is_some() {
                    let cur = current(key)
                        .and_then(|c| present(&c["current"]["averageValue"]))
                        .map_or_else(unknown, quantity);
                    format!("{cur}/{} (avg)", quantity(&target["averageValue"]))
                } else {
                    let cur =
                        current(key).map_or_else(unknown, |c| quantity(&c["current"]["value"]));
                    format!("{cur}/{}", quantity(&target["value"]))
                }
            }
            "Pods" => {
                let cur = current("pods")
                    .map_or_else(unknown, |c| quantity(&c["current"]["averageValue"]));
                format!(
                    "{cur}/{}",
                    quantity(&spec["pods"]["target"]["averageValue"])
                )
            }
            kind @ ("Resource" | "ContainerResource") => {
                let key = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let source = &spec[key];
                let target = &source["target"];
                if present(&target["averageValue"]).is_some() {
                    let cur = current(key)
                        .map_or_else(unknown, |c| quantity(&c["current"]["averageValue"]));
                    format!(
                        "{}: {cur}/{}",
                        s(&source["name"]),
                        quantity(&target["averageValue"])
                    )
                } else {
                    let cur = current(key)
                        .and_then(|c| int(&c["current"]["averageUtilization"]))
                        .map_or_else(unknown, |u| format!("{u}%"));
                    let goal = int(&target["averageUtilization"])
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{}: {cur}/{goal}", s(&source["name"]))
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(text);
    }
    if list.is_empty() {
        return "<none>".to_string();
    }
    let count = list.len();
    if count > max {
        list.truncate(max);
        return format!("{} + {} more...", list.join(", "), count - max);
    }
    list.join(", ")
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cells_of(group: &str, plural: &str, obj: Value) -> Vec<Value> {
        let cells = row_cells(group, plural, &obj, now());
        assert_eq!(
            cells.len(),
            column_definitions(group, plural).len(),
            "one cell per column"
        );
        cells
    }

    fn names(group: &str, plural: &str) -> Vec<(String, i64)> {
        column_definitions(group, plural)
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["priority"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    fn secs(n: i64) -> Duration {
        Duration::seconds(n)
    }

    fn pod(status: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": status,
        })
    }

    #[test]
    fn human_duration_follows_upstream_thresholds() {
        let cases = [
            (secs(-3), "<invalid>"),
            (secs(-1), "0s"),
            (secs(0), "0s"),
            (secs(5), "5s"),
            (secs(119), "119s"),
            (secs(120), "2m"),
            (secs(130), "2m10s"),
            (secs(9 * 60 + 59), "9m59s"),
            (secs(10 * 60 + 30), "10m"),
            (secs(179 * 60), "179m"),
            (secs(3 * 3600), "3h"),
            (secs(3 * 3600 + 5 * 60), "3h5m"),
            (secs(7 * 3600 + 59 * 60), "7h59m"),
            (secs(8 * 3600 + 30 * 60), "8h"),
            (secs(47 * 3600), "47h"),
            (secs(48 * 3600), "2d"),
            (secs(50 * 3600), "2d2h"),
            (secs(191 * 3600), "7d23h"),
            (secs(192 * 3600), "8d"),
            (secs(729 * 86400), "729d"),
            (secs(730 * 86400), "2y"),
            (secs(731 * 86400), "2y1d"),
            (secs(8 * 365 * 86400), "8y"),
            (secs(20 * 365 * 86400), "20y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn age_is_unknown_without_a_creation_timestamp() {
        let cells = cells_of("", "configmaps", json!({"metadata": {"name": "c"}}));
        assert_eq!(cells[2], "<unknown>");
    }

    #[test]
    fn namespaces_print_name_status_and_age() {
        assert_eq!(
            names("", "namespaces"),
            [("Name".into(), 0), ("Status".into(), 0), ("Age".into(), 0)]
        );
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": "2024-04-01T12:00:00Z"},
                        "status": {"phase": "Active"}});
        assert_eq!(
            cells_of("", "namespaces", ns),
            [json!("kube-system"), json!("Active"), json!("30d")]
        );
    }

    #[test]
    fn name_columns_carry_the_name_format_and_wide_columns_priority_one() {
        let cols = column_definitions("", "pods");
        assert_eq!(cols[0]["format"], "name");
        assert_eq!(cols[0]["description"], D_NAME);
        assert_eq!(cols[1]["format"], "");
        let wide: Vec<&str> = cols
            .iter()
            .filter(|c| c["priority"] == 1)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(wide, ["IP", "Node", "Nominated Node", "Readiness Gates"]);
        let keys: Vec<&String> = cols[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "type", "format", "description", "priority"]);
    }

    #[test]
    fn a_pending_pod_without_statuses_is_pending() {
        let cells = cells_of("", "pods", pod(json!({"phase": "Pending"})));
        assert_eq!(
            cells,
            [
                json!("web-0"),
                json!("0/1"),
                json!("Pending"),
                json!("0"),
                json!("60m"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn a_pod_without_status_is_pending() {
        let mut p = pod(Value::Null);
        p.as_object_mut().unwrap().remove("status");
        assert_eq!(cells_of("", "pods", p)[2], "Pending");
    }

    #[test]
    fn a_creating_container_shows_its_waiting_reason() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}));
        assert_eq!(cells_of("", "pods", p)[2], "ContainerCreating");
    }

    #[test]
    fn a_running_pod_with_one_of_two_containers_ready() {
        let mut p = pod(json!({
            "phase": "Running",
            "podIP": "10.244.1.7",
            "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-01T11:00:05Z"}}},
                {"name": "sidecar", "ready": false, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-01T11:00:05Z"}}}
            ]
        }));
        p["spec"]["containers"] = json!([{"name": "app"}, {"name": "sidecar"}]);
        p["spec"]["nodeName"] = json!("worker-1");
        p["spec"]["readinessGates"] = json!([{"conditionType": "example.com/feature"}]);
        let cells = cells_of("", "pods", p);
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "0");
        assert_eq!(cells[5], "10.244.1.7");
        assert_eq!(cells[6], "worker-1");
        assert_eq!(cells[8], "0/1");
    }

    #[test]
    fn pod_ip_falls_back_to_the_singular_field() {
        let p = pod(json!({"phase": "Running", "podIP": "10.0.0.9"}));
        assert_eq!(cells_of("", "pods", p)[5], "10.0.0.9");
    }

    #[test]
    fn a_crash_looping_pod_shows_the_reason_and_when_it_last_restarted() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:57:50Z"}}
        }]}));
        let cells = cells_of("", "pods", p);
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "5 (2m10s ago)");
    }

    #[test]
    fn a_pod_waiting_on_its_first_init_container_is_init_zero_of_one() {
        let mut p = pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "Initialized", "status": "False"}],
            "initContainerStatuses": [{"name": "migrate", "ready": false, "restartCount": 0,
                "state": {"running": {"startedAt": "2024-05-01T11:59:00Z"}}}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]
        }));
        p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "busybox"}]);
        let cells = cells_of("", "pods", p);
        assert_eq!(cells[2], "Init:0/1");
        assert_eq!(cells[1], "0/1");
    }

    #[test]
    fn failing_init_containers_are_prefixed_with_init() {
        let mut p = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "a", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}}
            ]
        }));
        p["spec"]["initContainers"] = json!([{"name": "a"}]);
        let cells = cells_of("", "pods", p.clone());
        assert_eq!(cells[2], "Init:CrashLoopBackOff");
        assert_eq!(cells[3], "3 (60s ago)");

        p["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 2}});
        assert_eq!(cells_of("", "pods", p.clone())[2], "Init:ExitCode:2");
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 137, "signal": 9}});
        assert_eq!(cells_of("", "pods", p)[2], "Init:Signal:9");
    }

    #[test]
    fn started_sidecar_init_containers_count_as_containers() {
        let mut p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:30:00Z"}}}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]
        }));
        p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        let cells = cells_of("", "pods", p);
        assert_eq!(cells[1], "2/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "1 (30m ago)");
    }

    #[test]
    fn a_pod_being_deleted_is_terminating() {
        let mut p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}
        ]}));
        p["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:30Z");
        assert_eq!(cells_of("", "pods", p.clone())[2], "Terminating");

        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells_of("", "pods", p.clone())[2], "Unknown");

        p["status"] = json!({"phase": "Succeeded"});
        assert_eq!(cells_of("", "pods", p)[2], "Succeeded");
    }

    #[test]
    fn a_finished_pod_is_completed_and_its_row_marked() {
        let p = pod(json!({"phase": "Succeeded", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2024-05-01T11:10:00Z"}}
        }]}));
        let cells = cells_of("", "pods", p.clone());
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "Completed");
        let t = table("", "pods", &[p], json!({}), IncludeObject::None, now());
        assert_eq!(
            t["rows"][0]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                    "message": "The pod has completed successfully."}])
        );
    }

    #[test]
    fn completed_with_a_running_container_is_running_or_not_ready() {
        let mut p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "job", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ]}));
        p["spec"]["containers"] = json!([{"name": "app"}, {"name": "job"}]);
        assert_eq!(cells_of("", "pods", p.clone())[2], "NotReady");
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(cells_of("", "pods", p)[2], "Running");
    }

    #[test]
    fn a_scheduling_gated_pod_says_so() {
        let p = pod(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
        ]}));
        assert_eq!(cells_of("", "pods", p)[2], "SchedulingGated");
    }

    #[test]
    fn nodes_print_readiness_roles_and_system_info() {
        assert_eq!(names("", "nodes").len(), 10);
        let node = json!({
            "metadata": {"name": "cp-1", "creationTimestamp": "2024-04-30T12:00:00Z", "labels": {
                "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master",
                "kubernetes.io/hostname": "cp-1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "cp-1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"}
            }
        });
        assert_eq!(
            cells_of("", "nodes", node),
            [
                json!("cp-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,master"),
                json!("24h"),
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-18-amd64"),
                json!("containerd://1.7.13")
            ]
        );
    }

    #[test]
    fn nodes_without_a_ready_condition_or_roles() {
        let node = json!({"metadata": {"name": "w"}, "status": {}});
        let cells = cells_of("", "nodes", node);
        assert_eq!(cells[1], "Unknown");
        assert_eq!(cells[2], "<none>");
        assert_eq!(cells[7], "<unknown>");
        let node = json!({"metadata": {"name": "w"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cells_of("", "nodes", node)[1], "NotReady");
    }

    #[test]
    fn services_print_type_ips_and_ports() {
        assert_eq!(
            names("", "services")
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:58:00Z"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "selector": {"tier": "frontend", "app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]}
        });
        assert_eq!(
            cells_of("", "services", svc),
            [
                json!("web"),
                json!("ClusterIP"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80/TCP,53/UDP"),
                json!("2m"),
                json!("app=web,tier=frontend")
            ]
        );
    }

    #[test]
    fn node_port_and_load_balancer_services() {
        let np = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "clusterIP": "10.96.1.1",
            "ports": [{"port": 80, "nodePort": 30080}]}});
        let cells = cells_of("", "services", np);
        assert_eq!(cells[4], "80:30080/TCP");
        assert_eq!(cells[6], "<none>");

        let mut lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.1.2"],
            "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}});
        assert_eq!(cells_of("", "services", lb.clone())[3], "<pending>");
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}]}});
        assert_eq!(
            cells_of("", "services", lb.clone())[3],
            "203.0.113.9,lb.example.com"
        );
        lb["spec"]["externalIPs"] = json!(["198.51.100.1"]);
        assert_eq!(
            cells_of("", "services", lb)[3],
            "203.0.113.9,lb.example.com,198.51.100.1"
        );

        let ext = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        let cells = cells_of("", "services", ext);
        assert_eq!(cells[2], "<none>");
        assert_eq!(cells[3], "db.example.com");
        assert_eq!(cells[4], "<none>");

        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert_eq!(cells_of("", "services", headless)[2], "None");
    }

    #[test]
    fn endpoints_list_three_addresses_then_count_the_rest() {
        let ep = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:55Z"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]
        }]});
        assert_eq!(
            cells_of("", "endpoints", ep),
            [
                json!("web"),
                json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."),
                json!("5s")
            ]
        );
        let none = json!({"metadata": {"name": "x"}});
        assert_eq!(cells_of("", "endpoints", none)[1], "<none>");
        let v6 = json!({"metadata": {"name": "x"}, "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells_of("", "endpoints", v6)[1], "[fd00::1]:80");
        let headless =
            json!({"metadata": {"name": "x"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(cells_of("", "endpoints", headless)[1], "10.0.0.1");
    }

    #[test]
    fn configmaps_secrets_and_service_accounts_count_their_entries() {
        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": "2024-05-01T10:00:00Z"},
                        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            cells_of("", "configmaps", cm),
            [json!("cfg"), json!(3), json!("120m")]
        );

        assert_eq!(
            names("", "secrets")
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            ["Name", "Type", "Data", "Age"]
        );
        let secret = json!({"metadata": {"name": "tls", "creationTimestamp": "2024-05-01T10:00:00Z"},
                            "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells_of("", "secrets", secret),
            [
                json!("tls"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("120m")
            ]
        );
        let opaque = json!({"metadata": {"name": "o"}});
        assert_eq!(cells_of("", "secrets", opaque)[1], "Opaque");

        assert_eq!(
            names("", "serviceaccounts")
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            ["Name", "Secrets", "Age"]
        );
        let sa =
            json!({"metadata": {"name": "default", "creationTimestamp": "2024-05-01T10:00:00Z"}});
        assert_eq!(
            cells_of("", "serviceaccounts", sa),
            [json!("default"), json!(0), json!("120m")]
        );
    }

    #[test]
    fn core_events_print_the_involved_object_and_source() {
        assert_eq!(
            names("", "events"),
            [
                ("Last Seen".into(), 0),
                ("Type".into(), 0),
                ("Reason".into(), 0),
                ("Object".into(), 0),
                ("Subobject".into(), 1),
                ("Source".into(), 1),
                ("Message".into(), 0),
                ("First Seen".into(), 1),
                ("Count".into(), 1),
                ("Name".into(), 1)
            ]
        );
        assert_eq!(column_definitions("", "events")[9]["format"], "name");
        let ev = json!({
            "metadata": {"name": "web-0.17c1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "message": "  Successfully pulled image \"nginx\"\n", "type": "Normal",
            "source": {"component": "kubelet", "host": "worker-1"},
            "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:00Z", "count": 3
        });
        assert_eq!(
            cells_of("", "events", ev),
            [
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web-0"),
                json!("spec.containers{app}"),
                json!("kubelet, worker-1"),
                json!("Successfully pulled image \"nginx\""),
                json!("10m"),
                json!(3),
                json!("web-0.17c1")
            ]
        );
    }

    #[test]
    fn new_style_events_use_event_time_series_and_reporting_controller() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "note": "Scaled up", "reason": "ScalingReplicaSet", "type": "Normal",
            "eventTime": "2024-05-01T11:55:00.000000Z",
            "reportingController": "deployment-controller", "reportingInstance": "",
            "series": {"count": 4, "lastObservedTime": "2024-05-01T11:59:30.123456Z"}
        });
        let cells = cells_of("events.k8s.io", "events", ev);
        // 29.88s truncates to 29s, as Go's int(d.Seconds()) does.
        assert_eq!(cells[0], "29s");
        assert_eq!(cells[3], "deployment/web");
        assert_eq!(cells[5], "deployment-controller");
        assert_eq!(cells[6], "Scaled up");
        assert_eq!(cells[7], "5m");
        assert_eq!(cells[8], 4);

        let singleton = json!({"metadata": {"name": "e2"}, "involvedObject": {"kind": "Node"},
                               "eventTime": "2024-05-01T11:59:00Z", "reportingComponent": "kubelet"});
        let cells = cells_of("", "events", singleton);
        assert_eq!(cells[0], "60s");
        assert_eq!(cells[3], "node");
        assert_eq!(cells[5], "kubelet");
        assert_eq!(cells[8], 1);
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "app", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]}})
    }

    #[test]
    fn deployments_print_ready_up_to_date_and_available() {
        assert_eq!(
            names("apps", "deployments")
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2024-04-29T12:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}});
        assert_eq!(
            cells_of("apps", "deployments", d),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("2d"),
                json!("app,log"),
                json!("nginx:1.25,busybox"),
                json!("app=web")
            ]
        );
        let fresh = json!({"metadata": {"name": "n"}, "spec": {"template": template()}});
        let cells = cells_of("apps", "deployments", fresh);
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[7], "");
    }

    #[test]
    fn replicasets_print_desired_current_ready() {
        let rs = json!({"metadata": {"name": "web-7c9f", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7c9f"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            cells_of("apps", "replicasets", rs),
            [
                json!("web-7c9f"),
                json!(3),
                json!(3),
                json!(1),
                json!("60m"),
                json!("app,log"),
                json!("nginx:1.25,busybox"),
                json!("app=web,pod-template-hash=7c9f")
            ]
        );
        assert_eq!(
            column_definitions("apps", "replicasets")[1]["type"],
            "integer"
        );
    }

    #[test]
    fn statefulsets_print_ready_over_desired() {
        let sts = json!({"metadata": {"name": "db", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"replicas": 3, "template": template()}, "status": {"readyReplicas": 3}});
        assert_eq!(
            cells_of("apps", "statefulsets", sts),
            [
                json!("db"),
                json!("3/3"),
                json!("60m"),
                json!("app,log"),
                json!("nginx:1.25,busybox")
            ]
        );
    }

    #[test]
    fn daemonsets_print_counts_and_node_selector() {
        let mut tpl = template();
        tpl["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        let ds = json!({"metadata": {"name": "agent", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": tpl},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                       "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            cells_of("apps", "daemonsets", ds),
            [
                json!("agent"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("60m"),
                json!("app,log"),
                json!("nginx:1.25,busybox"),
                json!("app=agent")
            ]
        );
    }

    #[test]
    fn jobs_print_status_completions_and_duration() {
        assert_eq!(
            names("batch", "jobs")
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let job = json!({"metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}}},
            "status": {"succeeded": 1, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:42Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            cells_of("batch", "jobs", job),
            [
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("42s"),
                json!("60m"),
                json!("pi"),
                json!("perl:5.34"),
                json!("batch.kubernetes.io/controller-uid=abc")
            ]
        );

        let running = json!({"metadata": {"name": "r"}, "spec": {"parallelism": 3},
            "status": {"startTime": "2024-05-01T11:57:00Z", "active": 3}});
        let cells = cells_of("batch", "jobs", running);
        assert_eq!(cells[1], "Running");
        assert_eq!(cells[2], "0/1 of 3");
        assert_eq!(cells[3], "3m");

        let defaulted = json!({"metadata": {"name": "d"}, "spec": {}});
        let cells = cells_of("batch", "jobs", defaulted);
        assert_eq!(cells[2], "0/1");
        assert_eq!(cells[3], "");
        assert_eq!(cells[7], "<none>");

        let suspended = json!({"metadata": {"name": "s"}, "spec": {"completions": 5},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(cells_of("batch", "jobs", suspended)[1], "Suspended");
        let failed = json!({"metadata": {"name": "f", "deletionTimestamp": "2024-05-01T11:00:00Z"},
            "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(cells_of("batch", "jobs", failed)[1], "Failed");
        let deleting =
            json!({"metadata": {"name": "t", "deletionTimestamp": "2024-05-01T11:00:00Z"}});
        assert_eq!(cells_of("batch", "jobs", deleting)[1], "Terminating");
    }

    #[test]
    fn cronjobs_print_schedule_timezone_and_last_schedule() {
        assert_eq!(
            names("batch", "cronjobs")
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let cj = json!({"metadata": {"name": "hello", "creationTimestamp": "2024-05-01T09:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox:1.36"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}});
        assert_eq!(
            cells_of("batch", "cronjobs", cj),
            [
                json!("hello"),
                json!("*/5 * * * *"),
                json!("Etc/UTC"),
                json!("False"),
                json!(1),
                json!("5m"),
                json!("3h"),
                json!("hello"),
                json!("busybox:1.36"),
                json!("<none>")
            ]
        );
        let bare =
            json!({"metadata": {"name": "b"}, "spec": {"schedule": "@daily", "suspend": true}});
        let cells = cells_of("batch", "cronjobs", bare);
        assert_eq!(cells[2], "<none>");
        assert_eq!(cells[3], "True");
        assert_eq!(cells[5], "<none>");
    }

    #[test]
    fn csrs_print_signer_requestor_duration_and_condition() {
        let pending = json!({"metadata": {"name": "node-csr-1", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:bootstrap:abcdef", "request": "LS0t"}});
        assert_eq!(
            cells_of("certificates.k8s.io", "certificatesigningrequests", pending),
            [
                json!("node-csr-1"),
                json!("60m"),
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:bootstrap:abcdef"),
                json!("<none>"),
                json!("Pending")
            ]
        );
        let issued = json!({"metadata": {"name": "x"},
            "spec": {"signerName": "s/x", "username": "u", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
        let cells = cells_of("certificates.k8s.io", "certificatesigningrequests", issued);
        assert_eq!(cells[4], "24h");
        assert_eq!(cells[5], "Approved,Issued");
        let cases = [
            (json!({"conditions": [{"type": "Denied"}]}), "Denied"),
            (
                json!({"conditions": [{"type": "Approved"}, {"type": "Failed"}]}),
                "Approved,Failed",
            ),
            (
                json!({"conditions": [{"type": "Denied"}, {"type": "Approved"}]}),
                "Denied",
            ),
            (json!({}), "Pending"),
        ];
        for (status, want) in cases {
            assert_eq!(csr_condition(&status), want, "{status}");
        }
    }

    #[test]
    fn leases_print_their_holder() {
        let lease = json!({"metadata": {"name": "kube-scheduler", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"holderIdentity": "cp-1_5f1c", "leaseDurationSeconds": 15}});
        assert_eq!(
            cells_of("coordination.k8s.io", "leases", lease),
            [json!("kube-scheduler"), json!("cp-1_5f1c"), json!("60m")]
        );
        let free = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(cells_of("coordination.k8s.io", "leases", free)[1], "");
    }

    #[test]
    fn endpointslices_print_address_type_ports_and_endpoints() {
        let eps = json!({"metadata": {"name": "web-abcde", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        assert_eq!(
            cells_of("discovery.k8s.io", "endpointslices", eps),
            [
                json!("web-abcde"),
                json!("IPv4"),
                json!("80,metrics,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
                json!("60m")
            ]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        let cells = cells_of("discovery.k8s.io", "endpointslices", empty);
        assert_eq!(cells[2], "<unset>");
        assert_eq!(cells[3], "<unset>");
    }

    #[test]
    fn hpas_print_reference_targets_and_replica_bounds() {
        let hpa = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 2, "maxReplicas": 10, "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}
        ]},
        "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 23, "averageValue": "115m"}}}
        ]}});
        assert_eq!(
            cells_of("autoscaling", "horizontalpodautoscalers", hpa),
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 23%/50%, memory: <unknown>/500Mi + 1 more..."),
                json!("2"),
                json!(10),
                json!(3),
                json!("60m")
            ]
        );

        let v1 = json!({"metadata": {"name": "v1"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"},
            "maxReplicas": 4, "targetCPUUtilizationPercentage": 70}, "status": {"currentCPUUtilizationPercentage": 12}});
        let cells = cells_of("autoscaling", "horizontalpodautoscalers", v1);
        assert_eq!(cells[2], "cpu: 12%/70%");
        assert_eq!(cells[3], "1");

        let defaulted = json!({"metadata": {"name": "d"}, "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "db"}, "maxReplicas": 2}});
        assert_eq!(
            cells_of("autoscaling", "horizontalpodautoscalers", defaulted)[2],
            "cpu: <unknown>/80%"
        );

        let external = json!({"metadata": {"name": "x"}, "spec": {"maxReplicas": 2, "metrics": [
            {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
            {"type": "Object", "object": {"metric": {"name": "rps"}, "target": {"type": "Value", "value": "10k"}}}
        ]}, "status": {"currentMetrics": [
            {"type": "External", "external": {"current": {"averageValue": "12"}}},
            {"type": "Object", "object": {"current": {"value": "7k"}}}
        ]}});
        assert_eq!(
            cells_of("autoscaling", "horizontalpodautoscalers", external)[2],
            "12/30 (avg), 7k/10k"
        );
    }

    #[test]
    fn pdbs_print_min_max_and_allowed_disruptions() {
        assert_eq!(
            names("policy", "poddisruptionbudgets")
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        let pdb = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells_of("policy", "poddisruptionbudgets", pdb),
            [
                json!("web"),
                json!("2"),
                json!("N/A"),
                json!(1),
                json!("60m")
            ]
        );
        let pct = json!({"metadata": {"name": "p"}, "spec": {"maxUnavailable": "25%"}});
        let cells = cells_of("policy", "poddisruptionbudgets", pct);
        assert_eq!(cells[1], "N/A");
        assert_eq!(cells[2], "25%");
        assert_eq!(cells[3], 0);
    }

    #[test]
    fn unknown_resources_and_crds_get_name_and_age() {
        assert!(!has_printer("stable.example.com", "crontabs"));
        assert!(has_printer("", "pods"));
        assert!(has_printer("core", "pods"));
        let cols = column_definitions("stable.example.com", "crontabs");
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[0]["name"], "Name");
        assert_eq!(cols[0]["format"], "name");
        assert_eq!(cols[1]["name"], "Age");
        assert_eq!(cols[1]["type"], "date");
        assert_eq!(cols[1]["priority"], 0);
        let cr = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                        "metadata": {"name": "my-cron", "creationTimestamp": "2024-05-01T11:59:00Z"}});
        assert_eq!(
            cells_of("stable.example.com", "crontabs", cr),
            [json!("my-cron"), json!("60s")]
        );
        let bare = json!({"metadata": {"name": "x"}});
        assert_eq!(
            cells_of("stable.example.com", "crontabs", bare),
            [json!("x"), Value::Null]
        );
        let bad = json!({"metadata": {"name": "x", "creationTimestamp": "yesterday"}});
        assert_eq!(
            cells_of("stable.example.com", "crontabs", bad)[1],
            "<invalid>"
        );
    }

    #[test]
    fn label_selectors_render_like_upstream() {
        let sel = json!({"matchLabels": {"tier": "web", "app": "shop"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "canary"]},
            {"key": "zone", "operator": "NotIn", "values": ["b"]},
            {"key": "beta", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"}
        ]});
        assert_eq!(
            format_label_selector(Some(&sel)),
            "app=shop,beta,env in (canary,prod),!legacy,tier=web,zone notin (b)"
        );
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(label_selector_as_string(Some(&json!({}))).unwrap(), "");
        let bad_op = json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        assert_eq!(format_label_selector(Some(&bad_op)), "<error>");
        let no_values = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(format_label_selector(Some(&no_values)), "<error>");
        let bad_key = json!({"matchLabels": {"-bad": "x"}});
        assert_eq!(format_label_selector(Some(&bad_key)), "<error>");
        let d = json!({"metadata": {"name": "x"}, "spec": {"selector": bad_key}});
        assert_eq!(cells_of("apps", "deployments", d)[7], "<invalid>");
    }

    #[test]
    fn label_maps_are_sorted_as_key_value_strings() {
        assert_eq!(
            format_labels(Some(&json!({"a": "1", "a.b": "2"}))),
            "a.b=2,a=1"
        );
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    fn two_pods() -> Vec<Value> {
        vec![
            pod(json!({"phase": "Running"})),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "resourceVersion": "42",
                   "labels": {"app": "web"}, "creationTimestamp": "2024-05-01T11:59:00Z"},
                   "spec": {"containers": [{"name": "app"}]}}),
        ]
    }

    #[test]
    fn tables_embed_partial_object_metadata_by_default() {
        let objects = two_pods();
        let t = table(
            "",
            "pods",
            &objects,
            json!({"resourceVersion": "99"}),
            parse_include_object(None),
            now(),
        );
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "kind",
                "apiVersion",
                "metadata",
                "columnDefinitions",
                "rows"
            ]
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "99"}));
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
        assert_eq!(t["rows"].as_array().unwrap().len(), 2);
        assert_eq!(t["rows"][1]["cells"][0], "web-1");
        assert_eq!(
            t["rows"][1]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": objects[1]["metadata"].clone()})
        );
        assert!(t["rows"][0].get("conditions").is_none());
    }

    #[test]
    fn tables_embed_the_full_object_or_nothing_on_request() {
        let objects = two_pods();
        let full = table(
            "",
            "pods",
            &objects,
            json!({}),
            IncludeObject::Object,
            now(),
        );
        assert_eq!(full["rows"][1]["object"], objects[1]);
        let none = table(
            "",
            "pods",
            &objects,
            Value::Null,
            IncludeObject::None,
            now(),
        );
        assert!(none["rows"][0].get("object").is_none());
        assert_eq!(none["metadata"], json!({}));
        let empty = table(
            "apps",
            "deployments",
            &[],
            json!({}),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(empty["rows"], json!([]));
    }

    #[test]
    fn include_object_parses_upstream_values() {
        assert_eq!(parse_include_object(None), IncludeObject::Metadata);
        assert_eq!(parse_include_object(Some("")), IncludeObject::Metadata);
        assert_eq!(
            parse_include_object(Some("Metadata")),
            IncludeObject::Metadata
        );
        assert_eq!(parse_include_object(Some("Object")), IncludeObject::Object);
        assert_eq!(parse_include_object(Some("None")), IncludeObject::None);
        assert_eq!(parse_include_object(Some("bogus")), IncludeObject::Metadata);
        assert_eq!(
            try_parse_include_object(Some("object")).unwrap_err(),
            "unrecognized includeObject value: \"object\""
        );
    }
}
