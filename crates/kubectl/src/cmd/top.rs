//! `tug top node|pod`: resource usage from the `metrics.k8s.io/v1beta1`
//! API (NodeMetrics, PodMetrics) as kubectl's `top` prints it: CPU in
//! millicores rounded up (`250m`), memory in whole MiB (`12Mi`), and for
//! nodes the share of allocatable (or capacity) as an integer percent.

use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::printers::table::TabWriter;

/// Display resource (CPU/memory) usage.
///
/// The top command allows you to see the resource consumption for nodes
/// or pods. This command requires the Metrics API to be available on the
/// server.
///
/// Examples:
///   # Show metrics for all nodes
///   tug top node
///
///   # Show metrics for the pods of every namespace, their containers too
///   tug top pod -A --containers
#[derive(Debug, Clone, clap::Subcommand)]
#[command(verbatim_doc_comment)]
pub enum TopCommand {
    /// Display resource (CPU/memory) usage of nodes
    #[command(visible_alias = "nodes", visible_alias = "no")]
    Node(TopNodeArgs),
    /// Display resource (CPU/memory) usage of pods
    #[command(visible_alias = "pods", visible_alias = "po")]
    Pod(TopPodArgs),
}

/// Display resource (CPU/memory) usage of nodes.
///
/// Examples:
///   # Show metrics for all nodes
///   tug top node
///
///   # Show metrics for a given node
///   tug top node NODE_NAME
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct TopNodeArgs {
    /// NAME
    pub name: Option<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// If non-empty, sort nodes list using specified field. The field can
    /// be either 'cpu' or 'memory'.
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// If present, print output without headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Print node resources based on Capacity instead of Allocatable(default) of the nodes.
    #[arg(long)]
    pub show_capacity: bool,
}

/// Display resource (CPU/memory) usage of pods.
///
/// Examples:
///   # Show metrics for all pods in the default namespace
///   tug top pod
///
///   # Show metrics for all pods in the given namespace
///   tug top pod --namespace=NAMESPACE
///
///   # Show metrics for a given pod and its containers
///   tug top pod POD_NAME --containers
///
///   # Show metrics for the pods defined by label name=myLabel
///   tug top pod -l name=myLabel
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct TopPodArgs {
    /// NAME
    pub name: Option<String>,
    /// List the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// If present, print usage of containers within a pod.
    #[arg(long)]
    pub containers: bool,
    /// If non-empty, sort pods list using specified field. The field can be
    /// either 'cpu' or 'memory'.
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// If present, print output without headers.
    #[arg(long)]
    pub no_headers: bool,
}

/// A quantity in billionths of its unit (nanocores, nanobytes), so every
/// suffix the metrics API uses (`n`, `u`, `m`, `Ki`, ...) is exact.
pub fn parse_nanos(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    // (numerator, denominator) of the suffix's multiplier in nano units.
    let (mul, div): (i128, i128) = match suffix {
        "n" => (1, 1),
        "u" => (1_000, 1),
        "m" => (1_000_000, 1),
        "" => (1_000_000_000, 1),
        "k" => (1_000_000_000_000, 1),
        "M" => (1_000_000_000_000_000, 1),
        "G" => (1_000_000_000_000_000_000, 1),
        "T" => (1_000_000_000_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000_000_000_000, 1),
        "Ki" => (1_000_000_000 << 10, 1),
        "Mi" => (1_000_000_000 << 20, 1),
        "Gi" => (1_000_000_000 << 30, 1),
        "Ti" => (1_000_000_000 << 40, 1),
        "Pi" => (1_000_000_000 << 50, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if exp >= 0 {
                (1_000_000_000 * 10i128.checked_pow(exp as u32)?, 1)
            } else {
                (1_000_000_000, 10i128.checked_pow((-exp) as u32)?)
            }
        }
        _ => return None,
    };
    let (neg, num) = match num.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    let scale = 10i128.checked_pow(frac.len() as u32)?;
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_n: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let v = (whole * scale + frac_n).checked_mul(mul)? / scale / div;
    Some(if neg { -v } else { v })
}

/// Round up to a whole multiple of `unit` nanos (Go's `MilliValue` and
/// `Value` round up).
fn ceil_div(nanos: i128, unit: i128) -> i128 {
    if nanos >= 0 {
        (nanos + unit - 1) / unit
    } else {
        nanos / unit
    }
}

/// Millicores of a CPU quantity in nanos, rounded up.
pub fn milli(nanos: i128) -> i128 {
    ceil_div(nanos, 1_000_000)
}

/// `250m`.
pub fn format_cpu(nanos: i128) -> String {
    format!("{}m", milli(nanos))
}

/// `12Mi`: whole bytes rounded up, then whole MiB rounded down.
pub fn format_memory(nanos: i128) -> String {
    format!("{}Mi", ceil_div(nanos, 1_000_000_000) / (1024 * 1024))
}

/// kubectl's percent: usage over available in millis, truncated.
pub fn format_percent(usage: i128, available: i128) -> String {
    let u = milli(usage);
    let a = milli(available);
    if a == 0 {
        // Go's float division by zero then int64 conversion; never seen in
        // practice since nodes report their resources.
        return "0%".into();
    }
    format!("{}%", ((u as f64) / (a as f64) * 100.0) as i64)
}

/// CPU and memory usage in nanos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub cpu: i128,
    pub memory: i128,
}

fn usage_of(v: &Value) -> Usage {
    let q = |k: &str| v[k].as_str().and_then(parse_nanos).unwrap_or(0);
    Usage {
        cpu: q("cpu"),
        memory: q("memory"),
    }
}

/// A PodMetrics' usage summed over its containers.
pub fn pod_usage(m: &Value) -> Usage {
    let mut total = Usage::default();
    for c in m["containers"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let u = usage_of(&c["usage"]);
        total.cpu += u.cpu;
        total.memory += u.memory;
    }
    total
}

/// Sort rows by usage, largest first (`--sort-by cpu|memory`).
pub fn sort_by<T>(items: &mut [T], by: &str, usage: impl Fn(&T) -> Usage) -> Result<(), String> {
    match by {
        "" => {}
        "cpu" => items.sort_by_key(|i| std::cmp::Reverse(milli(usage(i).cpu))),
        "memory" => {
            items.sort_by_key(|i| std::cmp::Reverse(ceil_div(usage(i).memory, 1_000_000_000)))
        }
        _ => return Err("--sort-by accepts only cpu or memory".into()),
    }
    Ok(())
}

/// Rows as kubectl's top printer writes them: every cell ends in a tab, so
/// even the last column is padded.
fn render(header: &[&str], rows: Vec<Vec<String>>, no_headers: bool) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    if !no_headers {
        lines.push(header.iter().map(|h| h.to_string()).collect());
    }
    lines.extend(rows);
    for l in &mut lines {
        l.push(String::new());
    }
    TabWriter::default().write(&lines)
}

/// The node table's rows: each node with metrics, then those without
/// (`<unknown>`), as kubectl.
pub fn node_rows(metrics: &[Value], nodes: &[Value], show_capacity: bool) -> Vec<Vec<String>> {
    let field = if show_capacity {
        "capacity"
    } else {
        "allocatable"
    };
    let mut rows = Vec::new();
    let name = |v: &Value| v["metadata"]["name"].as_str().unwrap_or("").to_string();
    for m in metrics {
        let n = name(m);
        let Some(node) = nodes.iter().find(|x| name(x) == n) else {
            continue;
        };
        let u = usage_of(&m["usage"]);
        let avail = usage_of(&node["status"][field]);
        rows.push(vec![
            n,
            format_cpu(u.cpu),
            format_percent(u.cpu, avail.cpu),
            format_memory(u.memory),
            format_percent(u.memory, avail.memory),
        ]);
    }
    for node in nodes {
        let n = name(node);
        if !metrics.iter().any(|m| name(m) == n) {
            let unknown = "<unknown>".to_string();
            rows.push(vec![
                n,
                unknown.clone(),
                unknown.clone(),
                unknown.clone(),
                unknown,
            ]);
        }
    }
    rows
}

/// The pod table's rows (with namespace first for `-A`; one row per
/// container with `--containers`).
pub fn pod_rows(metrics: &[Value], all_namespaces: bool, containers: bool) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for m in metrics {
        let mut prefix = Vec::new();
        if all_namespaces {
            prefix.push(
                m["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        let pod = m["metadata"]["name"].as_str().unwrap_or("").to_string();
        if containers {
            for c in m["containers"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or(&[])
            {
                let u = usage_of(&c["usage"]);
                let mut row = prefix.clone();
                row.extend([
                    pod.clone(),
                    c["name"].as_str().unwrap_or("").to_string(),
                    format_cpu(u.cpu),
                    format_memory(u.memory),
                ]);
                rows.push(row);
            }
        } else {
            let u = pod_usage(m);
            let mut row = prefix;
            row.extend([pod, format_cpu(u.cpu), format_memory(u.memory)]);
            rows.push(row);
        }
    }
    rows
}

pub async fn run(ctx: &Ctx, c: TopCommand) -> Result<()> {
    let served = ctx
        .catalog()
        .await?
        .resources
        .iter()
        .any(|r| r.group == "metrics.k8s.io" && r.version == "v1beta1");
    if !served {
        return Err(CliError::client("Metrics API not available"));
    }
    match c {
        TopCommand::Node(a) => top_node(ctx, a).await,
        TopCommand::Pod(a) => top_pod(ctx, a).await,
    }
}

async fn get(ctx: &Ctx, url: String) -> Result<Value> {
    let req = http::Request::get(url)
        .body(Vec::new())
        .map_err(CliError::client)?;
    ctx.send(req).await
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn query(selector: Option<&str>, fields: Option<&str>) -> String {
    let mut lp = kube::api::ListParams::default();
    if let Some(l) = selector {
        lp = lp.labels(l);
    }
    if let Some(f) = fields {
        lp = lp.fields(f);
    }
    // Reuse kube's query encoding through a throwaway request URL.
    kube::core::Request::new("/x")
        .list(&lp)
        .ok()
        .and_then(|r| r.uri().query().map(|q| format!("?{q}")))
        .unwrap_or_default()
}

async fn top_node(ctx: &Ctx, a: TopNodeArgs) -> Result<()> {
    if !matches!(a.sort_by.as_str(), "" | "cpu" | "memory") {
        return Err(CliError::client("--sort-by accepts only cpu or memory"));
    }
    let (mut metrics, nodes) = match &a.name {
        Some(n) => (
            vec![get(ctx, format!("/apis/metrics.k8s.io/v1beta1/nodes/{n}")).await?],
            vec![get(ctx, format!("/api/v1/nodes/{n}")).await?],
        ),
        None => {
            let q = query(a.selector.as_deref(), None);
            let metrics = items(&get(ctx, format!("/apis/metrics.k8s.io/v1beta1/nodes{q}")).await?);
            let nodes = items(&get(ctx, format!("/api/v1/nodes{q}")).await?);
            (metrics, nodes)
        }
    };
    if metrics.is_empty() {
        return Err(CliError::client("metrics not available yet"));
    }
    sort_by(&mut metrics, &a.sort_by, |m| usage_of(&m["usage"])).map_err(CliError::Client)?;
    let rows = node_rows(&metrics, &nodes, a.show_capacity);
    crate::out(&render(
        &["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
        rows,
        a.no_headers,
    ))
}

async fn top_pod(ctx: &Ctx, a: TopPodArgs) -> Result<()> {
    if !matches!(a.sort_by.as_str(), "" | "cpu" | "memory") {
        return Err(CliError::client("--sort-by accepts only cpu or memory"));
    }
    if a.name.is_some() && a.all_namespaces {
        return Err(CliError::client(
            "a resource cannot be retrieved by name across all namespaces",
        ));
    }
    let ns = &ctx.namespace;
    let q = query(a.selector.as_deref(), a.field_selector.as_deref());
    let mut metrics = match &a.name {
        Some(n) => {
            match get(
                ctx,
                format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{n}"),
            )
            .await
            {
                Ok(m) => vec![m],
                Err(e) if e.is_not_found() => {
                    // The pod's own error when it does not exist; otherwise
                    // its metrics are just not scraped yet.
                    get(ctx, format!("/api/v1/namespaces/{ns}/pods/{n}")).await?;
                    return Err(CliError::client("metrics not available yet"));
                }
                Err(e) => return Err(e),
            }
        }
        None if a.all_namespaces => {
            items(&get(ctx, format!("/apis/metrics.k8s.io/v1beta1/pods{q}")).await?)
        }
        None => items(
            &get(
                ctx,
                format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods{q}"),
            )
            .await?,
        ),
    };
    if metrics.is_empty() {
        let pods_url = if a.all_namespaces {
            format!("/api/v1/pods{q}")
        } else {
            format!("/api/v1/namespaces/{ns}/pods{q}")
        };
        if !items(&get(ctx, pods_url).await?).is_empty() {
            return Err(CliError::client("metrics not available yet"));
        }
        if a.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {ns} namespace.");
        }
        return Ok(());
    }
    sort_by(&mut metrics, &a.sort_by, pod_usage).map_err(CliError::Client)?;
    let mut header = Vec::new();
    if a.all_namespaces {
        header.push("NAMESPACE");
    }
    if a.containers {
        header.extend(["POD", "NAME"]);
    } else {
        header.push("NAME");
    }
    header.extend(["CPU(cores)", "MEMORY(bytes)"]);
    let rows = pod_rows(&metrics, a.all_namespaces, a.containers);
    crate::out(&render(&header, rows, a.no_headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_format_like_kubectl_top() {
        let cpu = [
            ("0", "0m"),
            ("250m", "250m"),
            ("1", "1000m"),
            ("1.5", "1500m"),
            ("123456n", "1m"),
            ("1000001n", "2m"),
            ("2500u", "3m"),
            ("1950m", "1950m"),
        ];
        for (q, want) in cpu {
            assert_eq!(format_cpu(parse_nanos(q).unwrap()), want, "{q}");
        }
        let mem = [
            ("0", "0Mi"),
            ("3248Ki", "3Mi"),
            ("12Mi", "12Mi"),
            ("1Gi", "1024Mi"),
            ("1048575", "0Mi"),
            ("2e6", "1Mi"),
            ("1G", "953Mi"),
        ];
        for (q, want) in mem {
            assert_eq!(format_memory(parse_nanos(q).unwrap()), want, "{q}");
        }
        assert_eq!(parse_nanos("x"), None);
        assert_eq!(parse_nanos("1Q"), None);
        let pct = [("1950m", "2", "97%"), ("3", "4", "75%"), ("0", "0", "0%")];
        for (u, a, want) in pct {
            assert_eq!(
                format_percent(parse_nanos(u).unwrap(), parse_nanos(a).unwrap()),
                want
            );
        }
    }

    #[test]
    fn tables_pad_every_column() {
        let pods = [
            json!({"metadata": {"name": "b", "namespace": "ns"}, "containers": [
                {"name": "c1", "usage": {"cpu": "100m", "memory": "1Mi"}},
                {"name": "c2", "usage": {"cpu": "150m", "memory": "2Mi"}}]}),
            json!({"metadata": {"name": "a-long-name", "namespace": "ns"}, "containers": [
                {"name": "c", "usage": {"cpu": "10m", "memory": "20Mi"}}]}),
        ];
        let rows = pod_rows(&pods, false, false);
        assert_eq!(
            render(&["NAME", "CPU(cores)", "MEMORY(bytes)"], rows, false),
            "NAME          CPU(cores)   MEMORY(bytes)   \nb             250m         3Mi             \na-long-name   10m          20Mi            \n"
        );
        let rows = pod_rows(&pods, true, true);
        assert_eq!(rows[1], ["ns", "b", "c2", "150m", "2Mi"]);
        let mut sorted = pods.to_vec();
        sort_by(&mut sorted, "memory", pod_usage).unwrap();
        assert_eq!(sorted[0]["metadata"]["name"], "a-long-name");
        sort_by(&mut sorted, "cpu", pod_usage).unwrap();
        assert_eq!(sorted[0]["metadata"]["name"], "b");
        assert!(sort_by(&mut sorted, "disk", pod_usage).is_err());
        assert_eq!(
            render(&["NAME"], vec![vec!["0m".into(), "3Mi".into()]], true),
            "0m    3Mi   \n"
        );
    }

    #[test]
    fn node_rows_show_shares_and_missing_metrics() {
        let metrics =
            [json!({"metadata": {"name": "n1"}, "usage": {"cpu": "500m", "memory": "1Gi"}})];
        let nodes = [
            json!({"metadata": {"name": "n1"}, "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi"},
                "capacity": {"cpu": "4", "memory": "8Gi"}}}),
            json!({"metadata": {"name": "n2"}, "status": {}}),
        ];
        assert_eq!(
            node_rows(&metrics, &nodes, false),
            [
                vec!["n1", "500m", "25%", "1024Mi", "25%"],
                vec!["n2", "<unknown>", "<unknown>", "<unknown>", "<unknown>"]
            ]
        );
        assert_eq!(node_rows(&metrics, &nodes, true)[0][2], "12%");
    }
}
