//! `tug describe`: kubectl's describer layout for pods, nodes, services,
//! deployments and replica sets, ending with the Events whose involvedObject is the object.

use std::io::Write;

use chrono::Utc;
use kube::api::ListParams;
use serde_json::Value;

use super::{get_one, last_error, select, Target};
use crate::ctx::Ctx;
use crate::discovery::Resource;
use crate::error::{CliError, Result};
use crate::printers::describe::{
    annotations_multiline, labels_multiline, rfc1123z, since, tabwrite,
};
use crate::printers::quantity::{self, format, percent, Quantity};

/// Show details of a specific resource or group of resources.
///
/// Implemented for pods, nodes, services, deployments and replica sets.
///
/// Examples:
///   # Describe a deployment
///   tug describe deployment web
///
///   # Describe all services
///   tug describe services
///
///   # Describe services labelled app=web
///   tug describe svc -l app=web
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct DescribeArgs {
    /// TYPE [NAME_PREFIX] | TYPE/NAME
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Hide the Events section.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub show_events: bool,
}

pub async fn run(ctx: &Ctx, a: DescribeArgs) -> Result<()> {
    // Without names, describe every object of the types (like --all).
    let targets = select(ctx, &a.resources, &[], a.selector.as_deref(), true).await?;
    let mut errors = Vec::new();
    let mut first = true;
    for t in &targets {
        match describe_one(ctx, t, a.show_events).await {
            Ok(text) => {
                let mut out = std::io::stdout().lock();
                if !first {
                    out.write_all(b"\n\n")?;
                }
                first = false;
                out.write_all(text.as_bytes())?;
            }
            Err(e) => errors.push(e),
        }
    }
    last_error(errors)
}

async fn describe_one(ctx: &Ctx, t: &Target, show_events: bool) -> Result<String> {
    let obj = get_one(ctx, t).await?;
    let body = match t.0.kind.as_str() {
        "Service" => describe_service(&obj, &endpoint_slices(ctx, t).await?),
        "Deployment" => describe_deployment(&obj),
        "Pod" => describe_pod(&obj),
        "Node" => {
            let pods = ctx.resolve("pods").await?;
            let name = t.2.as_str();
            let lp = ListParams::default().fields(&format!(
                "spec.nodeName={name},status.phase!=Failed,status.phase!=Succeeded"
            ));
            let list = ctx.send(ctx.request(&pods[0], None).list(&lp)?).await?;
            let leases = ctx.resolve("leases.coordination.k8s.io").await?;
            let lease = ctx
                .send(
                    ctx.request(&leases[0], Some("kube-node-lease"))
                        .get(name, &Default::default())?,
                )
                .await;
            describe_node(
                &obj,
                lease,
                list["items"]
                    .as_array()
                    .map(|a| a.as_slice())
                    .unwrap_or(&[]),
                Utc::now(),
            )
        }
        "ReplicaSet" => {
            let lp = ListParams::default()
                .labels(&format_selector(&obj["spec"]["selector"]).replace("<none>", ""));
            let pods = ctx.resolve("pods").await?;
            let list = ctx
                .send(ctx.request(&pods[0], t.1.as_deref()).list(&lp)?)
                .await?;
            describe_replicaset(
                &obj,
                list["items"]
                    .as_array()
                    .map(|a| a.as_slice())
                    .unwrap_or(&[]),
            )
        }
        other => {
            return Err(CliError::client(format!(
                "tug describe does not support {other} yet"
            )))
        }
    };
    let events = if show_events {
        Some(events_for(ctx, &t.0, &obj).await?)
    } else {
        None
    };
    // kubectl flushes its tabwriter before an events table, but `Events:
    // <none>` stays aligned with the fields above it.
    Ok(match events {
        Some(ev) if !ev.is_empty() => {
            tabwrite(&body) + &tabwrite(&describe_events(&ev, Utc::now()))
        }
        Some(_) => tabwrite(&(body + "Events:\t<none>\n")),
        None => tabwrite(&body),
    })
}

async fn endpoint_slices(ctx: &Ctx, t: &Target) -> Result<Vec<Value>> {
    let Ok(rs) = ctx.resolve("endpointslices.discovery.k8s.io").await else {
        return Ok(Vec::new());
    };
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={}", t.2));
    let list = ctx
        .send(ctx.request(&rs[0], t.1.as_deref()).list(&lp)?)
        .await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// core/v1 Events about the object (name, namespace, kind and uid).
async fn events_for(ctx: &Ctx, r: &Resource, obj: &Value) -> Result<Vec<Value>> {
    let md = &obj["metadata"];
    let ns = md["namespace"].as_str().unwrap_or("");
    let mut fields = vec![
        format!("involvedObject.name={}", md["name"].as_str().unwrap_or("")),
        format!("involvedObject.kind={}", r.kind),
        format!("involvedObject.uid={}", md["uid"].as_str().unwrap_or("")),
    ];
    if !ns.is_empty() {
        fields.push(format!("involvedObject.namespace={ns}"));
    }
    let events = ctx.resolve("events").await?;
    let lp = ListParams::default().fields(&fields.join(","));
    let list = ctx
        .send(
            ctx.request(&events[0], Some(if ns.is_empty() { "default" } else { ns }))
                .list(&lp)?,
        )
        .await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// The Events section: `<none>`, or a Type/Reason/Age/From/Message table
/// ordered by last occurrence.
pub fn describe_events(events: &[Value], now: chrono::DateTime<Utc>) -> String {
    if events.is_empty() {
        return "Events:\t<none>\n".into();
    }
    let last = |e: &Value| {
        e["lastTimestamp"]
            .as_str()
            .or(e["eventTime"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut sorted: Vec<&Value> = events.iter().collect();
    sorted.sort_by_key(|e| last(e));
    let mut out = String::from(
        "Events:\n  Type\tReason\tAge\tFrom\tMessage\n  ----\t------\t----\t----\t-------\n",
    );
    for e in sorted {
        let first = if e["eventTime"].is_string() {
            since(&e["eventTime"], now)
        } else {
            since(&e["firstTimestamp"], now)
        };
        let count = e["count"].as_i64().unwrap_or(0);
        let interval = if e["series"].is_object() {
            format!(
                "{} (x{} over {first})",
                since(&e["series"]["lastObservedTime"], now),
                e["series"]["count"].as_i64().unwrap_or(0)
            )
        } else if count > 1 {
            format!(
                "{} (x{count} over {first})",
                since(&e["lastTimestamp"], now)
            )
        } else {
            first
        };
        let source = e["source"]["component"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or(e["reportingComponent"].as_str())
            .unwrap_or("");
        out.push_str(&format!(
            "  {}\t{}\t{interval}\t{source}\t{}\n",
            e["type"].as_str().unwrap_or(""),
            e["reason"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("").trim()
        ));
    }
    out
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `k=v,k2=v2` sorted, as labels.FormatLabels (`<none>` when empty).
fn format_map(v: &Value) -> String {
    crate::printers::table::format_labels(v)
}

/// kubectl's service describer.
pub fn describe_service(svc: &Value, slices: &[Value]) -> String {
    let md = &svc["metadata"];
    let spec = &svc["spec"];
    let mut w = format!(
        "Name:\t{}\nNamespace:\t{}\n",
        s(&md["name"]),
        s(&md["namespace"])
    );
    w += &labels_multiline("", "Labels", &md["labels"]);
    w += &annotations_multiline("", "Annotations", &md["annotations"]);
    w += &format!("Selector:\t{}\n", format_map(&spec["selector"]));
    w += &format!("Type:\t{}\n", s(&spec["type"]));
    if let Some(p) = spec["ipFamilyPolicy"].as_str() {
        w += &format!("IP Family Policy:\t{p}\n");
    }
    let join = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| s(x).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    if spec["ipFamilies"].as_array().is_some_and(|a| !a.is_empty()) {
        w += &format!("IP Families:\t{}\n", join(&spec["ipFamilies"]));
    }
    w += &format!("IP:\t{}\n", s(&spec["clusterIP"]));
    if spec["clusterIPs"].as_array().is_some_and(|a| !a.is_empty()) {
        w += &format!("IPs:\t{}\n", join(&spec["clusterIPs"]));
    } else {
        w += "IPs:\t<none>\n";
    }
    if spec["externalIPs"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        w += &format!("External IPs:\t{}\n", join(&spec["externalIPs"]));
    }
    if let Some(n) = spec["externalName"].as_str().filter(|n| !n.is_empty()) {
        w += &format!("External Name:\t{n}\n");
    }
    for p in spec["ports"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let name = p["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("<unset>");
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        w += &format!("Port:\t{name}\t{}/{proto}\n", p["port"]);
        let target = match &p["targetPort"] {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        w += &format!("TargetPort:\t{target}/{proto}\n");
        if let Some(np) = p["nodePort"].as_i64().filter(|n| *n != 0) {
            w += &format!("NodePort:\t{name}\t{np}/{proto}\n");
        }
        w += &format!(
            "Endpoints:\t{}\n",
            endpoints_for(slices, p["name"].as_str().unwrap_or(""))
        );
    }
    w += &format!("Session Affinity:\t{}\n", s(&spec["sessionAffinity"]));
    if let Some(p) = spec["internalTrafficPolicy"].as_str() {
        w += &format!("Internal Traffic Policy:\t{p}\n");
    }
    w
}

/// Ready endpoint addresses for one service port: up to three `ip:port`,
/// then `+ N more...`; `<none>` when there are none.
fn endpoints_for(slices: &[Value], port_name: &str) -> String {
    let mut list = Vec::new();
    for sl in slices {
        let port = sl["ports"]
            .as_array()
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            })
            .and_then(|p| p["port"].as_i64());
        let Some(port) = port else { continue };
        for ep in sl["endpoints"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or(&[])
        {
            if ep["conditions"]["ready"].as_bool() == Some(false) {
                continue;
            }
            for addr in ep["addresses"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or(&[])
            {
                list.push(format!("{}:{port}", s(addr)));
            }
        }
    }
    match list.len() {
        0 => "<none>".into(),
        n if n > 3 => format!("{} + {} more...", list[..3].join(","), n - 3),
        _ => list.join(","),
    }
}

/// kubectl's deployment describer.
pub fn describe_deployment(d: &Value) -> String {
    let md = &d["metadata"];
    let spec = &d["spec"];
    let st = &d["status"];
    let mut w = format!(
        "Name:\t{}\nNamespace:\t{}\n",
        s(&md["name"]),
        s(&md["namespace"])
    );
    w += &format!(
        "CreationTimestamp:\t{}\n",
        rfc1123z(&md["creationTimestamp"])
    );
    w += &labels_multiline("", "Labels", &md["labels"]);
    w += &annotations_multiline("", "Annotations", &md["annotations"]);
    w += &format!("Selector:\t{}\n", format_selector(&spec["selector"]));
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    w += &format!(
        "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable\n",
        spec["replicas"].as_i64().unwrap_or(1),
        n(&st["updatedReplicas"]),
        n(&st["replicas"]),
        n(&st["availableReplicas"]),
        n(&st["unavailableReplicas"])
    );
    w += &format!("StrategyType:\t{}\n", s(&spec["strategy"]["type"]));
    w += &format!("MinReadySeconds:\t{}\n", n(&spec["minReadySeconds"]));
    let ru = &spec["strategy"]["rollingUpdate"];
    if ru.is_object() {
        let text = |v: &Value| match v {
            Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        w += &format!(
            "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
            text(&ru["maxUnavailable"]),
            text(&ru["maxSurge"])
        );
    }
    w += &pod_template(&spec["template"]);
    if let Some(conds) = st["conditions"].as_array().filter(|c| !c.is_empty()) {
        w += "Conditions:\n  Type\tStatus\tReason\n  ----\t------\t------\n";
        for c in conds {
            w += &format!(
                "  {} \t{}\t{}\n",
                s(&c["type"]),
                s(&c["status"]),
                s(&c["reason"])
            );
        }
    }
    w
}

/// metav1.FormatLabelSelector: match labels then expressions.
fn format_selector(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        parts.extend(keys.iter().map(|k| format!("{k}={}", s(&m[k.as_str()]))));
    }
    for e in sel["matchExpressions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|a| a.iter().map(s).collect())
            .unwrap_or_default();
        let key = s(&e["key"]);
        parts.push(match s(&e["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// DescribePodTemplate.
/// The `Pod Template:` block (also `rollout history --revision`).
pub fn pod_template(t: &Value) -> String {
    let mut w = String::from("Pod Template:\n");
    w += &labels_multiline("  ", "Labels", &t["metadata"]["labels"]);
    if t["metadata"]["annotations"]
        .as_object()
        .is_some_and(|a| !a.is_empty())
    {
        w += &annotations_multiline("  ", "Annotations", &t["metadata"]["annotations"]);
    }
    let spec = &t["spec"];
    if let Some(sa) = spec["serviceAccountName"]
        .as_str()
        .filter(|x| !x.is_empty())
    {
        w += &format!("  Service Account:\t{sa}\n");
    }
    if let Some(init) = spec["initContainers"].as_array().filter(|c| !c.is_empty()) {
        w += &containers("Init Containers", init);
    }
    w += &containers(
        "Containers",
        spec["containers"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or(&[]),
    );
    w += &volumes("  ", "   ", spec);
    if let Some(pc) = spec["priorityClassName"].as_str().filter(|x| !x.is_empty()) {
        w += &format!("  Priority Class Name:\t{pc}\n");
    }
    w += &labels_multiline("  ", "Node-Selectors", &spec["nodeSelector"]);
    w += &tolerations("  ", spec);
    w
}

/// The `Volumes:` section of a pod (`indent` ""), or of a pod template
/// (`indent` "  "); kubectl indents the volumes' names by `name_indent`
/// (3 spaces in a template, not 4).
fn volumes(indent: &str, name_indent: &str, spec: &Value) -> String {
    let mut w = String::new();
    match spec["volumes"].as_array().filter(|v| !v.is_empty()) {
        None => w += &format!("{indent}Volumes:\t<none>\n"),
        Some(vols) => {
            w += &format!("{indent}Volumes:\n");
            for v in vols {
                w += &format!("{name_indent}{}:\n", s(&v["name"]));
                w += &volume_source(v);
            }
        }
    }
    w
}

/// The `Tolerations:` section, one toleration a line.
fn tolerations(indent: &str, spec: &Value) -> String {
    let mut w = String::new();
    match spec["tolerations"].as_array().filter(|v| !v.is_empty()) {
        None => w += &format!("{indent}Tolerations:\t<none>\n"),
        Some(ts) => {
            for (i, t) in ts.iter().enumerate() {
                w += indent;
                w += if i == 0 { "Tolerations:\t" } else { "\t" };
                w += &toleration(t);
                w += "\n";
            }
        }
    }
    w
}

fn toleration(t: &Value) -> String {
    let mut out = s(&t["key"]).to_string();
    if let Some(v) = t["value"].as_str().filter(|v| !v.is_empty()) {
        out += &format!("={v}");
    }
    if let Some(e) = t["effect"].as_str().filter(|v| !v.is_empty()) {
        out += &format!(":{e}");
    }
    if s(&t["operator"]) == "Exists" && t["value"].as_str().unwrap_or("").is_empty() {
        out += " op=Exists";
    }
    if let Some(secs) = t["tolerationSeconds"].as_i64() {
        out += &format!(" for {secs}s");
    }
    out
}

/// describeContainers for a pod template (no runtime status).
fn containers(label: &str, cs: &[Value]) -> String {
    containers_with(label, cs, &[], "  ")
}

/// describeContainers: `space` is the template indent ("  ") or "" for a
/// pod, whose containers also show their runtime status.
fn containers_with(label: &str, cs: &[Value], statuses: &[Value], space: &str) -> String {
    let mut w = format!("{space}{label}:\n");
    let name_indent = if space.is_empty() { "" } else { " " };
    for c in cs {
        let status = statuses.iter().find(|st| st["name"] == c["name"]);
        w += &format!("  {name_indent}{}:\n", s(&c["name"]));
        if let Some(id) = status.and_then(|st| st["containerID"].as_str()) {
            w += &format!("    Container ID:\t{id}\n");
        }
        w += &format!("    Image:\t{}\n", s(&c["image"]));
        if let Some(st) = status {
            w += &format!("    Image ID:\t{}\n", s(&st["imageID"]));
        }
        let ports: Vec<&Value> = c["ports"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if ports.is_empty() {
            w += "    Port:\t<none>\n    Host Port:\t<none>\n";
        } else {
            let fmt = |key: &str| {
                ports
                    .iter()
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p[key].as_i64().unwrap_or(0),
                            p["protocol"].as_str().unwrap_or("TCP")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let plural = if ports.len() > 1 { "s" } else { "" };
            w += &format!(
                "    Port{plural}:\t{}\n    Host Port{plural}:\t{}\n",
                fmt("containerPort"),
                fmt("hostPort")
            );
        }
        for (key, title) in [("command", "Command"), ("args", "Args")] {
            if let Some(items) = c[key].as_array().filter(|a| !a.is_empty()) {
                w += &format!("    {title}:\n");
                for i in items {
                    w += &format!("      {}\n", s(i));
                }
            }
        }
        if let Some(st) = status {
            w += &container_state("State", &st["state"]);
            if st["lastState"].as_object().is_some_and(|m| !m.is_empty()) {
                w += &container_state("Last State", &st["lastState"]);
            }
            w += &format!("    Ready:\t{}\n", st["ready"].as_bool().unwrap_or(false));
            w += &format!(
                "    Restart Count:\t{}\n",
                st["restartCount"].as_i64().unwrap_or(0)
            );
        }
        for (key, title) in [("limits", "Limits"), ("requests", "Requests")] {
            if let Some(m) = c["resources"][key].as_object().filter(|m| !m.is_empty()) {
                w += &format!("    {title}:\n");
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for k in keys {
                    w += &format!("      {k}:\t{}\n", s(&m[k.as_str()]));
                }
            }
        }
        match c["env"].as_array().filter(|e| !e.is_empty()) {
            None => w += "    Environment:\t<none>\n",
            Some(env) => {
                w += "    Environment:\n";
                for e in env {
                    w += &format!("      {}:\t{}\n", s(&e["name"]), s(&e["value"]));
                }
            }
        }
        match c["volumeMounts"].as_array().filter(|e| !e.is_empty()) {
            None => w += "    Mounts:\t<none>\n",
            Some(ms) => {
                w += "    Mounts:\n";
                for m in ms {
                    let ro = if m["readOnly"].as_bool() == Some(true) {
                        "ro"
                    } else {
                        "rw"
                    };
                    w += &format!(
                        "      {} from {} ({ro})\n",
                        s(&m["mountPath"]),
                        s(&m["name"])
                    );
                }
            }
        }
    }
    w
}

/// describeStatus for one container state.
fn container_state(title: &str, st: &Value) -> String {
    let mut w = String::new();
    if let Some(r) = st["running"].as_object() {
        w += &format!(
            "    {title}:\tRunning\n      Started:\t{}\n",
            rfc1123z(&r["startedAt"].clone())
        );
    } else if let Some(t) = st["terminated"].as_object() {
        w += &format!("    {title}:\tTerminated\n");
        if let Some(r) = t.get("reason").and_then(|v| v.as_str()) {
            w += &format!("      Reason:\t{r}\n");
        }
        if let Some(m) = t.get("message").and_then(|v| v.as_str()) {
            w += &format!("      Message:\t{m}\n");
        }
        w += &format!(
            "      Exit Code:\t{}\n",
            t.get("exitCode").and_then(|v| v.as_i64()).unwrap_or(0)
        );
        if let Some(sig) = t.get("signal").and_then(|v| v.as_i64()).filter(|x| *x > 0) {
            w += &format!("      Signal:\t{sig}\n");
        }
        w += &format!(
            "      Started:\t{}\n",
            rfc1123z(t.get("startedAt").unwrap_or(&Value::Null))
        );
        w += &format!(
            "      Finished:\t{}\n",
            rfc1123z(t.get("finishedAt").unwrap_or(&Value::Null))
        );
    } else {
        w += &format!("    {title}:\tWaiting\n");
        if let Some(r) = st["waiting"]["reason"].as_str() {
            w += &format!("      Reason:\t{r}\n");
        }
    }
    w
}

/// `Kind/name` of the controlling owner, if any.
fn controlled_by(md: &Value) -> Option<String> {
    md["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"].as_bool() == Some(true))
        .map(|o| format!("{}/{}", s(&o["kind"]), s(&o["name"])))
}

/// The pod's QoS class: the server's, else computed from resources.
fn qos_class(pod: &Value) -> String {
    if let Some(q) = pod["status"]["qosClass"].as_str() {
        return q.to_string();
    }
    let cs = pod["spec"]["containers"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[]);
    let empty = |c: &Value, k: &str| c["resources"][k].as_object().is_none_or(|m| m.is_empty());
    if cs
        .iter()
        .all(|c| empty(c, "requests") && empty(c, "limits"))
    {
        return "BestEffort".into();
    }
    let guaranteed = cs.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let lim = &c["resources"]["limits"][*r];
            !lim.is_null()
                && (c["resources"]["requests"][*r].is_null()
                    || c["resources"]["requests"][*r] == *lim)
        })
    });
    if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

/// kubectl's pod describer.
pub fn describe_pod(pod: &Value) -> String {
    let md = &pod["metadata"];
    let spec = &pod["spec"];
    let st = &pod["status"];
    let mut w = format!(
        "Name:\t{}\nNamespace:\t{}\n",
        s(&md["name"]),
        s(&md["namespace"])
    );
    if let Some(p) = spec["priority"].as_i64() {
        w += &format!("Priority:\t{p}\n");
    }
    if let Some(pc) = spec["priorityClassName"].as_str().filter(|x| !x.is_empty()) {
        w += &format!("Priority Class Name:\t{pc}\n");
    }
    if let Some(sa) = spec["serviceAccountName"]
        .as_str()
        .filter(|x| !x.is_empty())
    {
        w += &format!("Service Account:\t{sa}\n");
    }
    match spec["nodeName"].as_str().filter(|n| !n.is_empty()) {
        None => w += "Node:\t<none>\n",
        Some(n) => w += &format!("Node:\t{n}/{}\n", s(&st["hostIP"])),
    }
    if st["startTime"].is_string() {
        w += &format!("Start Time:\t{}\n", rfc1123z(&st["startTime"]));
    }
    w += &labels_multiline("", "Labels", &md["labels"]);
    w += &annotations_multiline("", "Annotations", &md["annotations"]);
    if md["deletionTimestamp"].is_string() {
        w += &format!(
            "Status:\tTerminating (lasts {})\n",
            since(&md["deletionTimestamp"], Utc::now())
        );
        w += &format!(
            "Termination Grace Period:\t{}s\n",
            md["deletionGracePeriodSeconds"].as_i64().unwrap_or(0)
        );
    } else {
        w += &format!("Status:\t{}\n", s(&st["phase"]));
    }
    if let Some(r) = st["reason"].as_str().filter(|x| !x.is_empty()) {
        w += &format!("Reason:\t{r}\n");
    }
    if let Some(m) = st["message"].as_str().filter(|x| !x.is_empty()) {
        w += &format!("Message:\t{m}\n");
    }
    w += &format!("IP:\t{}\n", s(&st["podIP"]));
    match st["podIPs"].as_array().filter(|a| !a.is_empty()) {
        None => w += "IPs:\t<none>\n",
        Some(ips) => {
            w += "IPs:\n";
            for ip in ips {
                w += &format!("  IP:\t{}\n", s(&ip["ip"]));
            }
        }
    }
    if let Some(c) = controlled_by(md) {
        w += &format!("Controlled By:\t{c}\n");
    }
    let statuses = |k: &str| st[k].as_array().cloned().unwrap_or_default();
    if let Some(init) = spec["initContainers"].as_array().filter(|c| !c.is_empty()) {
        w += &containers_with(
            "Init Containers",
            init,
            &statuses("initContainerStatuses"),
            "",
        );
    }
    w += &containers_with(
        "Containers",
        spec["containers"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or(&[]),
        &statuses("containerStatuses"),
        "",
    );
    if let Some(conds) = st["conditions"].as_array().filter(|c| !c.is_empty()) {
        w += "Conditions:\n  Type\tStatus\n";
        for c in conds {
            w += &format!("  {} \t{} \n", s(&c["type"]), s(&c["status"]));
        }
    }
    w += &volumes("", "  ", spec);
    w += &format!("QoS Class:\t{}\n", qos_class(pod));
    w += &labels_multiline("", "Node-Selectors", &spec["nodeSelector"]);
    w += &tolerations("", spec);
    w
}

/// The common volume sources, as kubectl prints them.
fn volume_source(v: &Value) -> String {
    if let Some(cm) = v["configMap"].as_object() {
        return format!(
            "    Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
            cm.get("name").and_then(|x| x.as_str()).unwrap_or(""),
            cm.get("optional").and_then(|x| x.as_bool()).unwrap_or(false)
        );
    }
    if let Some(sec) = v["secret"].as_object() {
        return format!(
            "    Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
            sec.get("secretName").and_then(|x| x.as_str()).unwrap_or(""),
            sec.get("optional").and_then(|x| x.as_bool()).unwrap_or(false)
        );
    }
    if let Some(e) = v["emptyDir"].as_object() {
        return format!(
            "    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{}\n",
            e.get("medium").and_then(|x| x.as_str()).unwrap_or(""),
            e.get("sizeLimit").and_then(|x| x.as_str()).unwrap_or("<unset>")
        );
    }
    if let Some(h) = v["hostPath"].as_object() {
        return format!(
            "    Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{}\n",
            h.get("path").and_then(|x| x.as_str()).unwrap_or(""),
            h.get("type").and_then(|x| x.as_str()).unwrap_or("")
        );
    }
    "    Type:\t<unknown>\n".into()
}

/// kubectl's replica set describer; `pods` are those its selector matches.
pub fn describe_replicaset(rs: &Value, pods: &[Value]) -> String {
    let md = &rs["metadata"];
    let mut w = format!(
        "Name:\t{}\nNamespace:\t{}\n",
        s(&md["name"]),
        s(&md["namespace"])
    );
    w += &format!("Selector:\t{}\n", format_selector(&rs["spec"]["selector"]));
    w += &labels_multiline("", "Labels", &md["labels"]);
    w += &annotations_multiline("", "Annotations", &md["annotations"]);
    if let Some(c) = controlled_by(md) {
        w += &format!("Controlled By:\t{c}\n");
    }
    w += &format!(
        "Replicas:\t{} current / {} desired\n",
        rs["status"]["replicas"].as_i64().unwrap_or(0),
        rs["spec"]["replicas"].as_i64().unwrap_or(1)
    );
    // Only pods this replica set controls count, as in kubectl.
    let owned: Vec<&Value> = pods
        .iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|os| {
                    os.iter()
                        .any(|o| o["uid"] == md["uid"] && o["controller"].as_bool() == Some(true))
                })
        })
        .collect();
    let count = |phase: &str| {
        owned
            .iter()
            .filter(|p| p["status"]["phase"] == phase)
            .count()
    };
    w += &format!(
        "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed\n",
        count("Running"),
        count("Pending"),
        count("Succeeded"),
        count("Failed")
    );
    w += &pod_template(&rs["spec"]["template"]);
    if let Some(conds) = rs["status"]["conditions"]
        .as_array()
        .filter(|c| !c.is_empty())
    {
        w += "Conditions:\n  Type\tStatus\tReason\n  ----\t------\t------\n";
        for c in conds {
            w += &format!(
                "  {} \t{}\t{}\n",
                s(&c["type"]),
                s(&c["status"]),
                s(&c["reason"])
            );
        }
    }
    w
}

/// Requests and limits of one pod: containers summed (init containers
/// and overhead aside).
fn pod_resources(pod: &Value) -> [Quantity; 4] {
    let mut out = [Quantity::default(); 4];
    for c in pod["spec"]["containers"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        for (i, (kind, res)) in [
            ("requests", "cpu"),
            ("limits", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ]
        .iter()
        .enumerate()
        {
            if let Some(q) = c["resources"][kind][res].as_str() {
                let q = quantity::parse(q);
                if out[i].milli == 0 {
                    out[i].binary = q.binary;
                }
                out[i].milli += q.milli;
            }
        }
    }
    out
}

/// kubectl's node describer; `lease` is the node's kube-node-lease Lease,
/// `pods` the non-terminated pods bound to it.
pub fn describe_node(
    node: &Value,
    lease: Result<Value>,
    pods: &[Value],
    now: chrono::DateTime<Utc>,
) -> String {
    let md = &node["metadata"];
    let spec = &node["spec"];
    let st = &node["status"];
    let mut w = format!("Name:\t{}\n", s(&md["name"]));
    let mut roles: Vec<String> = md["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(String::from)
                        .or_else(|| (k == "kubernetes.io/role").then(|| s(v).to_string()))
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    w += &format!(
        "Roles:\t{}\n",
        if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }
    );
    w += &labels_multiline("", "Labels", &md["labels"]);
    w += &annotations_multiline("", "Annotations", &md["annotations"]);
    w += &format!(
        "CreationTimestamp:\t{}\n",
        rfc1123z(&md["creationTimestamp"])
    );
    match spec["taints"].as_array().filter(|t| !t.is_empty()) {
        None => w += "Taints:\t<none>\n",
        Some(ts) => {
            for (i, t) in ts.iter().enumerate() {
                w += if i == 0 { "Taints:\t" } else { "\t" };
                let value = t["value"]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("={v}"))
                    .unwrap_or_default();
                w += &format!("{}{value}:{}\n", s(&t["key"]), s(&t["effect"]));
            }
        }
    }
    w += &format!(
        "Unschedulable:\t{}\n",
        spec["unschedulable"].as_bool().unwrap_or(false)
    );
    match lease {
        Ok(l) => {
            let or_unset = |v: &Value, time: bool| match v.as_str() {
                Some(x) if time => rfc1123z(&Value::String(x.to_string())),
                Some(x) => x.to_string(),
                None => "<unset>".into(),
            };
            w += "Lease:\n";
            w += &format!(
                "  HolderIdentity:\t{}\n",
                or_unset(&l["spec"]["holderIdentity"], false)
            );
            w += &format!(
                "  AcquireTime:\t{}\n",
                or_unset(&l["spec"]["acquireTime"], true)
            );
            w += &format!(
                "  RenewTime:\t{}\n",
                or_unset(&l["spec"]["renewTime"], true)
            );
        }
        Err(e) => {
            let msg = match e {
                CliError::Server { message, .. } => message,
                other => other.to_string(),
            };
            w += &format!("Lease:\tFailed to get lease: {msg}\n");
        }
    }
    if let Some(conds) = st["conditions"].as_array().filter(|c| !c.is_empty()) {
        w +=
            "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n";
        w += "  ----\t------\t-----------------\t------------------\t------\t-------\n";
        for c in conds {
            w += &format!(
                "  {} \t{} \t{} \t{} \t{} \t{}\n",
                s(&c["type"]),
                s(&c["status"]),
                rfc1123z(&c["lastHeartbeatTime"]),
                rfc1123z(&c["lastTransitionTime"]),
                s(&c["reason"]),
                s(&c["message"])
            );
        }
    }
    w += "Addresses:\n";
    for a in st["addresses"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        w += &format!("  {}:\t{}\n", s(&a["type"]), s(&a["address"]));
    }
    for (key, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        if let Some(m) = st[key].as_object().filter(|m| !m.is_empty()) {
            w += &format!("{title}:\n");
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                w += &format!("  {k}:\t{}\n", format(quantity::parse(s(&m[k.as_str()]))));
            }
        }
    }
    let info = &st["nodeInfo"];
    w += "System Info:\n";
    for (k, title) in [
        ("machineID", "Machine ID"),
        ("systemUUID", "System UUID"),
        ("bootID", "Boot ID"),
        ("kernelVersion", "Kernel Version"),
        ("osImage", "OS Image"),
        ("operatingSystem", "Operating System"),
        ("architecture", "Architecture"),
        ("containerRuntimeVersion", "Container Runtime Version"),
        ("kubeletVersion", "Kubelet Version"),
        ("kubeProxyVersion", "Kube-Proxy Version"),
    ] {
        w += &format!("  {title}:\t{}\n", s(&info[k]));
    }
    if let Some(c) = spec["podCIDR"].as_str().filter(|c| !c.is_empty()) {
        w += &format!("PodCIDR:\t{c}\n");
    }
    if let Some(cs) = spec["podCIDRs"].as_array().filter(|c| !c.is_empty()) {
        w += &format!(
            "PodCIDRs:\t{}\n",
            cs.iter().map(s).collect::<Vec<_>>().join(",")
        );
    }
    if let Some(p) = spec["providerID"].as_str().filter(|c| !c.is_empty()) {
        w += &format!("ProviderID:\t{p}\n");
    }
    // Percentages are of allocatable, else capacity.
    let alloc = if st["allocatable"].as_object().is_some_and(|m| !m.is_empty()) {
        &st["allocatable"]
    } else {
        &st["capacity"]
    };
    let cpu = quantity::parse(alloc["cpu"].as_str().unwrap_or("0"));
    let mem = quantity::parse(alloc["memory"].as_str().unwrap_or("0"));
    w += &format!("Non-terminated Pods:\t({} in total)\n", pods.len());
    w += "  Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n";
    w += "  ---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n";
    let mut totals = [Quantity::default(); 4];
    for p in pods {
        let r = pod_resources(p);
        for (t, q) in totals.iter_mut().zip(r.iter()) {
            if t.milli == 0 {
                t.binary = q.binary;
            }
            t.milli += q.milli;
        }
        w += &format!(
            "  {}\t{}\t\t{} ({}%)\t{} ({}%)\t{} ({}%)\t{} ({}%)\t{}\n",
            s(&p["metadata"]["namespace"]),
            s(&p["metadata"]["name"]),
            format(r[0]),
            percent(r[0], cpu),
            format(r[1]),
            percent(r[1], cpu),
            format(r[2]),
            percent(r[2], mem),
            format(r[3]),
            percent(r[3], mem),
            since(&p["metadata"]["creationTimestamp"], now)
        );
    }
    w += "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n";
    w += "  Resource\tRequests\tLimits\n  --------\t--------\t------\n";
    w += &format!(
        "  cpu\t{} ({}%)\t{} ({}%)\n",
        format(totals[0]),
        percent(totals[0], cpu),
        format(totals[1]),
        percent(totals[1], cpu)
    );
    w += &format!(
        "  memory\t{} ({}%)\t{} ({}%)\n",
        format(totals[2]),
        percent(totals[2], mem),
        format(totals[3]),
        percent(totals[3], mem)
    );
    w += "  ephemeral-storage\t0 (0%)\t0 (0%)\n";
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn services_describe_like_kubectl() {
        let svc = json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "type": "ClusterIP", "ipFamilyPolicy": "SingleStack",
                     "ipFamilies": ["IPv4"], "clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"],
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                     "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}
        });
        let slices = [json!({"ports": [{"name": "", "port": 8080}], "endpoints": [
            {"addresses": ["10.1.0.1"], "conditions": {"ready": true}},
            {"addresses": ["10.1.0.2"], "conditions": {"ready": false}}]})];
        let want = "\
Name:                     web
Namespace:                default
Labels:                   app=web
Annotations:              <none>
Selector:                 app=web
Type:                     ClusterIP
IP Family Policy:         SingleStack
IP Families:              IPv4
IP:                       10.0.0.9
IPs:                      10.0.0.9
Port:                     <unset>  80/TCP
TargetPort:               8080/TCP
Endpoints:                10.1.0.1:8080
Session Affinity:         None
Internal Traffic Policy:  Cluster
";
        assert_eq!(tabwrite(&describe_service(&svc, &slices)), want);
    }

    #[test]
    fn events_section() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(describe_events(&[], now), "Events:\t<none>\n");
        let evs = [
            json!({"type": "Warning", "reason": "Failed", "message": "boom ", "count": 3,
                   "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:09:00Z",
                   "source": {"component": "kubelet"}}),
            json!({"type": "Normal", "reason": "Scheduled", "message": "ok",
                   "firstTimestamp": "2026-01-01T00:05:00Z", "lastTimestamp": "2026-01-01T00:05:00Z",
                   "reportingComponent": "default-scheduler"}),
        ];
        let want = "\
Events:
  Type     Reason     Age                From               Message
  ----     ------     ----               ----               -------
  Normal   Scheduled  5m                 default-scheduler  ok
  Warning  Failed     60s (x3 over 10m)  kubelet            boom
";
        assert_eq!(tabwrite(&describe_events(&evs, now)), want);
    }

    #[test]
    fn selectors_format_like_metav1() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
            {"key": "t", "operator": "In", "values": ["x", "y"]}, {"key": "e", "operator": "Exists"}]});
        assert_eq!(format_selector(&sel), "a=1,b=2,t in (x,y),e");
        assert_eq!(format_selector(&json!({})), "<none>");
    }
}
