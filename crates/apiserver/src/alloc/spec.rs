//! What a Service's spec asks for and holds, as pure functions of its JSON.
//!
//! The storage side ([`super`]) needs to know, for one object, which
//! addresses and node ports it holds (to release them), and which it asks for
//! (static values to check, empty ones to fill). Updates first get upstream's
//! `patchAllocatedValues` (a PUT that omits `clusterIP` or a `nodePort`
//! keeps the allocated one) and `dropTypeDependentFields` (changing the type
//! to one that does not use a value drops it, if the user left it as it was),
//! so `kubectl replace` and `kubectl patch -p '{"spec":{"type":"ClusterIP"}}'`
//! behave as on a real cluster.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use crate::error::Cause;

pub fn service_type(obj: &Value) -> &str {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn cluster_ip(obj: &Value) -> &str {
    obj.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Every type but ExternalName has a cluster IP (or is headless).
fn needs_cluster_ip(obj: &Value) -> bool {
    service_type(obj) != "ExternalName"
}

/// NodePort services, and LoadBalancers unless they opted out with
/// `allocateLoadBalancerNodePorts: false`.
fn needs_node_ports(obj: &Value) -> bool {
    match service_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => {
            obj.pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

/// A LoadBalancer that keeps traffic node-local gets a health-check port.
fn needs_health_check_port(obj: &Value) -> bool {
    service_type(obj) == "LoadBalancer"
        && obj
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}

fn ports(obj: &Value) -> &[Value] {
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn node_port(port: &Value) -> i64 {
    port.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

fn health_check_port(obj: &Value) -> i64 {
    obj.pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// What a stored Service holds: its cluster IP and node ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    pub ip: Option<Ipv4Addr>,
    pub ports: BTreeSet<u16>,
}

pub fn holdings(obj: &Value) -> Holdings {
    let ip = if needs_cluster_ip(obj) {
        cluster_ip(obj).parse().ok()
    } else {
        None
    };
    let mut ports = BTreeSet::new();
    if needs_node_ports(obj) {
        ports.extend(
            self::ports(obj)
                .iter()
                .filter_map(|p| u16::try_from(node_port(p)).ok()),
        );
    }
    if needs_health_check_port(obj) {
        ports.extend(u16::try_from(health_check_port(obj)).ok());
    }
    ports.remove(&0);
    Holdings { ip, ports }
}

/// Where a node port goes in the spec (for filling it and for errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSlot {
    Port(usize),
    HealthCheck,
}

impl PortSlot {
    pub fn field(self) -> String {
        match self {
            PortSlot::Port(i) => format!("spec.ports[{i}].nodePort"),
            PortSlot::HealthCheck => "spec.healthCheckNodePort".into(),
        }
    }
}

/// What a Service asks for: `Some(value)` is a static request, `None` a
/// dynamic one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    /// `None` when the Service has no cluster IP (ExternalName, headless).
    pub ip: Option<Option<IpAddr>>,
    pub ports: Vec<(PortSlot, Option<i64>)>,
}

pub fn wants(obj: &Value) -> Wants {
    let ip = match cluster_ip(obj) {
        _ if !needs_cluster_ip(obj) => None,
        "None" => None,
        "" => Some(None),
        text => Some(text.parse().ok()),
    };
    let mut ports = Vec::new();
    if needs_node_ports(obj) {
        for (i, p) in self::ports(obj).iter().enumerate() {
            ports.push((PortSlot::Port(i), Some(node_port(p)).filter(|n| *n != 0)));
        }
    }
    if needs_health_check_port(obj) {
        let given = Some(health_check_port(obj)).filter(|n| *n != 0);
        ports.push((PortSlot::HealthCheck, given));
    }
    Wants { ip, ports }
}

/// Write an allocated cluster IP into the spec (`clusterIP` and
/// `clusterIPs`, as upstream keeps them in step).
pub fn set_cluster_ip(obj: &mut Value, ip: Ipv4Addr) {
    obj["spec"]["clusterIP"] = json!(ip.to_string());
    obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
}

pub fn set_node_port(obj: &mut Value, slot: PortSlot, port: u16) {
    match slot {
        PortSlot::Port(i) => obj["spec"]["ports"][i]["nodePort"] = json!(port),
        PortSlot::HealthCheck => obj["spec"]["healthCheckNodePort"] = json!(port),
    }
}

/// Defaults that depend on the spec's IP fields: `clusterIPs` follows
/// `clusterIP` (and the other way round), and ExternalName services carry
/// neither, nor IP families.
pub fn normalize(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let first = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    match (ip.is_empty(), first) {
        (true, Some(first)) => {
            spec.insert("clusterIP".into(), json!(first));
        }
        (false, None) => {
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        _ => {}
    }
}

/// Upstream's `patchAllocatedValues` and `dropTypeDependentFields` for an
/// update from `old` to `new`.
pub fn prepare_update(old: &Value, new: &mut Value) {
    if new.get("spec").is_none_or(|s| !s.is_object()) {
        return;
    }
    // Keep what was allocated when the update leaves it out.
    if needs_cluster_ip(old) && needs_cluster_ip(new) && cluster_ip(new).is_empty() {
        let ips = new.pointer("/spec/clusterIPs").and_then(Value::as_array);
        if ips.is_none_or(|ips| ips.is_empty()) {
            for field in ["clusterIP", "clusterIPs"] {
                if let Some(v) = old.pointer(&format!("/spec/{field}")) {
                    new["spec"][field] = v.clone();
                }
            }
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        let old_ports = ports(old).to_vec();
        if let Some(new_ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in new_ports.iter_mut().filter(|p| node_port(p) == 0) {
                let same = |o: &&Value| {
                    o.get("port") == p.get("port")
                        && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                };
                if let Some(old_port) = old_ports.iter().find(same).map(node_port) {
                    if old_port != 0 {
                        p["nodePort"] = json!(old_port);
                    }
                }
            }
        }
    }
    if needs_health_check_port(old) && needs_health_check_port(new) && health_check_port(new) == 0 {
        if let Some(v) = old.pointer("/spec/healthCheckNodePort") {
            new["spec"]["healthCheckNodePort"] = v.clone();
        }
    }
    // Drop what the new type does not use, if the user left it unchanged.
    let spec_field = |obj: &Value, field: &str| obj.pointer(&format!("/spec/{field}")).cloned();
    if needs_cluster_ip(old)
        && !needs_cluster_ip(new)
        && spec_field(old, "clusterIP") == spec_field(new, "clusterIP")
    {
        if let Some(spec) = new["spec"].as_object_mut() {
            for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(field);
            }
        }
    }
    if needs_node_ports(old) && !needs_node_ports(new) {
        let old_ports = ports(old).to_vec();
        if let Some(new_ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for (i, p) in new_ports.iter_mut().enumerate() {
                let unchanged = old_ports.get(i).map(node_port) == Some(node_port(p));
                if unchanged {
                    if let Some(map) = p.as_object_mut() {
                        map.remove("nodePort");
                    }
                }
            }
        }
    }
    if needs_health_check_port(old)
        && !needs_health_check_port(new)
        && health_check_port(old) == health_check_port(new)
    {
        if let Some(spec) = new["spec"].as_object_mut() {
            spec.remove("healthCheckNodePort");
        }
    }
    if !matches!(service_type(new), "NodePort" | "LoadBalancer")
        && spec_field(old, "externalTrafficPolicy") == spec_field(new, "externalTrafficPolicy")
    {
        if let Some(spec) = new["spec"].as_object_mut() {
            spec.remove("externalTrafficPolicy");
        }
    }
}

/// Upstream's validation of the spec's IP and node-port fields.
pub fn validate(obj: &Value, causes: &mut Vec<Cause>) {
    let ty = service_type(obj);
    let ip = cluster_ip(obj);
    if ty == "ExternalName" {
        if !ip.is_empty() && ip != "None" {
            causes.push(Cause::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
    } else if !ip.is_empty() && ip != "None" && ip.parse::<IpAddr>().is_err() {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if let Some(first) = obj
        .pointer("/spec/clusterIPs/0")
        .and_then(Value::as_str)
        .filter(|first| !ip.is_empty() && first != &ip)
    {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            first,
            "must match `clusterIP` when set",
        ));
    }
    let mut seen: Vec<(i64, &str)> = Vec::new();
    for (i, p) in ports(obj).iter().enumerate() {
        let node_port = node_port(p);
        if node_port == 0 {
            continue;
        }
        let field = format!("spec.ports[{i}].nodePort");
        if !(1..=65535).contains(&node_port) {
            causes.push(Cause::invalid_raw(
                &field,
                &node_port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
            continue;
        }
        if ty == "ClusterIP" {
            causes.push(Cause::forbidden(
                &field,
                "may not be used when `type` is 'ClusterIP'",
            ));
            continue;
        }
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if seen.contains(&(node_port, protocol)) {
            causes.push(Cause {
                reason: "FieldValueDuplicate".into(),
                message: format!("Duplicate value: {node_port}"),
                field,
            });
        }
        seen.push((node_port, protocol));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn holdings_follow_the_type() {
        let node_port = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.9",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081}]}));
        let held = holdings(&node_port);
        assert_eq!(held.ip, Some(Ipv4Addr::new(10, 96, 0, 9)));
        assert_eq!(
            held.ports.into_iter().collect::<Vec<_>>(),
            vec![30080, 30081]
        );
        let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        assert_eq!(holdings(&headless), Holdings::default());
        let external = svc(json!({"type": "ExternalName", "externalName": "x.example"}));
        assert_eq!(holdings(&external), Holdings::default());
        let local_lb = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 31000, "clusterIP": "10.96.0.2",
            "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "nodePort": 30001}]}),
        );
        assert_eq!(
            holdings(&local_lb).ports.into_iter().collect::<Vec<_>>(),
            vec![31000]
        );
    }

    #[test]
    fn wants_tell_static_from_dynamic() {
        let obj = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.9",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}));
        assert_eq!(
            wants(&obj),
            Wants {
                ip: Some(Some("10.96.0.9".parse().unwrap())),
                ports: vec![(PortSlot::Port(0), Some(30080)), (PortSlot::Port(1), None)],
            }
        );
        let plain = svc(json!({"ports": [{"port": 80}]}));
        assert_eq!(wants(&plain).ip, Some(None));
        assert!(wants(&plain).ports.is_empty());
        assert_eq!(wants(&svc(json!({"clusterIP": "None"}))).ip, None);
    }

    #[test]
    fn an_update_that_omits_allocated_values_keeps_them() {
        let old = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.9",
            "clusterIPs": ["10.96.0.9"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}));
        let mut new = svc(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        prepare_update(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.9");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.9"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    }

    #[test]
    fn a_type_change_drops_what_the_new_type_does_not_use() {
        let old = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.9",
            "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]}));
        let mut to_cluster_ip = old.clone();
        to_cluster_ip["spec"]["type"] = json!("ClusterIP");
        prepare_update(&old, &mut to_cluster_ip);
        assert_eq!(to_cluster_ip["spec"]["ports"][0].get("nodePort"), None);
        assert_eq!(to_cluster_ip["spec"].get("externalTrafficPolicy"), None);
        assert_eq!(to_cluster_ip["spec"]["clusterIP"], "10.96.0.9");

        let mut to_external = old.clone();
        to_external["spec"]["type"] = json!("ExternalName");
        to_external["spec"]["externalName"] = json!("x.example");
        prepare_update(&old, &mut to_external);
        assert_eq!(to_external["spec"].get("clusterIP"), None);

        // A node port the user changed on the way is theirs to explain.
        let mut changed = old.clone();
        changed["spec"]["type"] = json!("ClusterIP");
        changed["spec"]["ports"][0]["nodePort"] = json!(30099);
        prepare_update(&old, &mut changed);
        assert_eq!(changed["spec"]["ports"][0]["nodePort"], 30099);
    }

    #[test]
    fn bad_ip_and_node_port_fields_get_upstream_messages() {
        let cases = [
            (
                json!({"clusterIP": "abc", "ports": [{"port": 80}]}),
                "spec.clusterIPs[0]: Invalid value: \"abc\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ),
            (
                json!({"ports": [{"port": 80, "nodePort": 30080}]}),
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            ),
            (
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 70000}]}),
                "spec.ports[0].nodePort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ),
            (
                json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                    {"name": "b", "port": 81, "nodePort": 30080}]}),
                "spec.ports[1].nodePort: Duplicate value: 30080",
            ),
            (
                json!({"type": "ExternalName", "externalName": "x", "clusterIP": "10.96.0.1"}),
                "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
            ),
        ];
        for (spec, want) in cases {
            let mut causes = Vec::new();
            validate(&svc(spec.clone()), &mut causes);
            let got: Vec<String> = causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect();
            assert_eq!(got, vec![want.to_string()], "{spec}");
        }
        // The same node port for TCP and UDP of one service is fine.
        let mut causes = Vec::new();
        validate(
            &svc(json!({"type": "NodePort", "ports": [
                {"name": "t", "port": 53, "protocol": "TCP", "nodePort": 30053},
                {"name": "u", "port": 53, "protocol": "UDP", "nodePort": 30053}]})),
            &mut causes,
        );
        assert!(causes.is_empty(), "{causes:?}");
    }

    #[test]
    fn cluster_ip_and_cluster_ips_are_kept_in_step() {
        let mut only_list = svc(json!({"clusterIPs": ["10.96.0.5"]}));
        normalize(&mut only_list);
        assert_eq!(only_list["spec"]["clusterIP"], "10.96.0.5");
        let mut only_ip = svc(json!({"clusterIP": "None"}));
        normalize(&mut only_ip);
        assert_eq!(only_ip["spec"]["clusterIPs"], json!(["None"]));
    }
}
