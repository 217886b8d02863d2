//! `tug get`: list or fetch objects of one or more types and print them as
//! the server's table (default, `-o wide`) or as whole objects (`-o
//! yaml|json|name|jsonpath=|custom-columns=`); `-w` keeps printing rows as
//! objects change.

use std::io::{IsTerminal, Write};

use futures::{StreamExt, TryStreamExt};
use kube::api::{GetParams, ListParams, WatchParams};
use serde_json::{json, Value};

use crate::args::parse_resource_args;
use crate::ctx::{Ctx, TABLE_ACCEPT};
use crate::discovery::Resource;
use crate::error::{CliError, Result};
use crate::printers::columns::compare_by;
use crate::printers::jsonpath::JsonPath;
use crate::printers::table::{table_rows, TabWriter, TableOptions};
use crate::printers::{json, yaml, Output};

/// Display one or many resources.
///
/// Prints a table of the most important information about the specified
/// resources. Filter with a label selector (`-l`) or field selector. Types
/// are any served resource name, singular, kind or short name, and `all`.
///
/// Examples:
///   # List all pods in ps output format
///   tug get pods
///
///   # List pods with more information (such as node name)
///   tug get pods -o wide
///
///   # List deployments and pods together
///   tug get deploy,po
///
///   # One pod in JSON
///   tug get -o json pod web-pod-13je7
///
///   # Only names and images
///   tug get pods -o custom-columns=NAME:.metadata.name,IMAGE:.spec.containers[*].image
///
///   # Names with JSONPath
///   tug get pods -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
///
///   # Watch pods change
///   tug get pods -w
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct GetArgs {
    /// TYPE[.VERSION][.GROUP] [NAME ...] | TYPE[.VERSION][.GROUP]/NAME ...
    pub resources: Vec<String>,
    /// Output format: json, yaml, name, wide, jsonpath=..., jsonpath-file=...,
    /// custom-columns=...
    #[arg(short = 'o', long = "output", default_value = "")]
    pub output: String,
    /// Selector (label query) to filter on, e.g. -l key1=value1,key2=value2.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on, e.g. --field-selector status.phase=Running.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Sort list types by this JSONPath expression, e.g. '{.metadata.name}'.
    #[arg(long)]
    pub sort_by: Option<String>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Don't print headers (default and custom-columns output).
    #[arg(long)]
    pub no_headers: bool,
    /// Print `kind/name` in the NAME column even for a single type.
    #[arg(long)]
    pub show_kind: bool,
    /// Suppress the NotFound error for named objects.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// One type's worth of what was fetched.
struct Fetched {
    resource: Resource,
    /// A Table (table output) or a list of objects.
    table: Option<Value>,
    objects: Vec<Value>,
    resource_version: String,
}

pub async fn run(ctx: &Ctx, a: GetArgs) -> Result<()> {
    let output = Output::parse(&a.output).map_err(CliError::Client)?;
    let sort = a
        .sort_by
        .as_deref()
        .map(JsonPath::parse)
        .transpose()
        .map_err(|e| CliError::client(format!("couldn't parse --sort-by: {e}")))?;
    let type_names = parse_resource_args(&a.resources).map_err(CliError::Client)?;
    if type_names.is_empty() {
        return Err(CliError::client(
            "You must specify the type of resource to get. Use \"tug api-resources\" for a complete list of supported resources.",
        ));
    }
    let mut targets: Vec<(Resource, Vec<String>)> = Vec::new();
    for (word, names) in &type_names {
        for r in ctx.resolve(word).await? {
            targets.push((r, names.clone()));
        }
    }
    let named = targets.iter().any(|(_, n)| !n.is_empty());
    if a.all_namespaces && named {
        return Err(CliError::client(
            "a resource cannot be retrieved by name across all namespaces",
        ));
    }
    let ns = if a.all_namespaces {
        None
    } else {
        Some(ctx.namespace.as_str())
    };
    let show_kind = a.show_kind || targets.len() > 1;
    // One object named by one argument prints alone; anything else as a List.
    let single_object = targets.len() == 1 && targets[0].1.len() == 1;

    let mut fetched = Vec::new();
    let mut errors = Vec::new();
    for (r, names) in &targets {
        match fetch(ctx, &a, &output, sort.is_some(), r, names, ns, &mut errors).await {
            Ok(f) => fetched.push(f),
            Err(e) => errors.push(e),
        }
    }
    let errors: Vec<CliError> = errors
        .into_iter()
        .filter(|e| !(a.ignore_not_found && e.is_not_found()))
        .collect();

    let stdout = std::io::stdout();
    let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = stdout.lock();
    let mut writer = TabWriter::default();
    let total: usize = fetched
        .iter()
        .map(|f| {
            f.table.as_ref().map_or(f.objects.len(), |t| {
                t["rows"].as_array().map_or(0, |r| r.len())
            })
        })
        .sum();

    if output.wants_objects() {
        let mut objects: Vec<Value> = fetched.iter().flat_map(|f| f.objects.clone()).collect();
        if let Some(jp) = &sort {
            objects.sort_by(|x, y| compare_by(jp, x, y));
        }
        let text = print_objects(
            &output,
            &objects,
            single_object && errors.is_empty() && objects.len() == 1,
            a.no_headers,
            &mut writer,
        );
        out.write_all(text.as_bytes())?;
    } else {
        let mut first = true;
        for f in &fetched {
            let Some(table) = &f.table else { continue };
            if table["rows"].as_array().is_none_or(|r| r.is_empty()) {
                continue;
            }
            let mut table = table.clone();
            if let Some(jp) = &sort {
                if let Some(rows) = table["rows"].as_array_mut() {
                    rows.sort_by(|x, y| compare_by(jp, &x["object"], &y["object"]));
                }
            }
            let opts = TableOptions {
                wide: matches!(output, Output::Wide),
                with_namespace: a.all_namespaces && f.resource.namespaced,
                kind_prefix: show_kind.then(|| f.resource.kind_group()),
                show_labels: a.show_labels,
            };
            let (header, rows) = table_rows(&table, &opts);
            let mut lines = Vec::new();
            if !a.no_headers {
                lines.push(header.clone());
            }
            lines.extend(rows);
            // Each type is its own table, aligned on its own.
            writer = TabWriter::default();
            if color {
                writer.color_column = header.iter().position(|h| h == "STATUS");
            }
            if !first && !a.no_headers {
                out.write_all(b"\n")?;
            }
            first = false;
            out.write_all(writer.write(&lines).as_bytes())?;
        }
    }
    out.flush()?;
    drop(out);

    if total == 0 && errors.is_empty() && !named && !matches!(output, Output::Json | Output::Yaml) {
        let scoped = !a.all_namespaces && targets.iter().any(|(r, _)| r.namespaced);
        if scoped {
            eprintln!("No resources found in {} namespace.", ctx.namespace);
        } else {
            eprintln!("No resources found");
        }
    }
    if let Some(last) = errors.last().cloned() {
        for e in &errors[..errors.len() - 1] {
            eprintln!("{e}");
        }
        return Err(last);
    }
    if a.watch {
        if fetched.len() != 1 {
            return Err(CliError::client(format!(
                "watch is only supported on individual resources and resource collections, but {} resources were found",
                fetched.len()
            )));
        }
        let f = &fetched[0];
        let names = &targets[0].1;
        watch(ctx, &a, &output, f, names, ns, show_kind, color, writer).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn fetch(
    ctx: &Ctx,
    a: &GetArgs,
    output: &Output,
    sorting: bool,
    r: &Resource,
    names: &[String],
    ns: Option<&str>,
    errors: &mut Vec<CliError>,
) -> Result<Fetched> {
    let req = ctx.request(r, ns);
    let mut f = Fetched {
        resource: r.clone(),
        table: None,
        objects: Vec::new(),
        resource_version: String::new(),
    };
    let lp = list_params(a);
    if output.wants_objects() {
        if names.is_empty() {
            let list = ctx.send(req.list(&lp)?).await?;
            f.resource_version = list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            for mut item in list["items"].as_array().cloned().unwrap_or_default() {
                // Lists carry apiVersion/kind once; kubectl puts them back on
                // every item.
                item["apiVersion"] = json!(r.api_version());
                item["kind"] = json!(r.kind);
                f.objects.push(strip_managed_fields(item));
            }
        } else {
            for name in names {
                match ctx.send(req.get(name, &GetParams::default())?).await {
                    Ok(obj) => f.objects.push(strip_managed_fields(obj)),
                    Err(e) => errors.push(e),
                }
            }
        }
        return Ok(f);
    }
    let with_object = |mut q: http::Request<Vec<u8>>| {
        // Sorting needs the whole object on each row.
        if sorting {
            let uri = q.uri().to_string();
            let sep = if uri.contains('?') { '&' } else { '?' };
            *q.uri_mut() = format!("{uri}{sep}includeObject=Object")
                .parse()
                .unwrap_or(q.uri().clone());
        }
        q
    };
    if names.is_empty() {
        let table = ctx.send_table(with_object(req.list(&lp)?)).await?;
        f.resource_version = table["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        f.table = Some(table);
    } else {
        let mut merged: Option<Value> = None;
        for name in names {
            match ctx
                .send_table(with_object(req.get(name, &GetParams::default())?))
                .await
            {
                Ok(t) => match &mut merged {
                    None => merged = Some(t),
                    Some(m) => {
                        let rows = t["rows"].as_array().cloned().unwrap_or_default();
                        if let Some(all) = m["rows"].as_array_mut() {
                            all.extend(rows);
                        }
                    }
                },
                Err(e) => errors.push(e),
            }
        }
        f.table = merged;
    }
    Ok(f)
}

fn list_params(a: &GetArgs) -> ListParams {
    let mut lp = ListParams::default();
    if let Some(l) = &a.selector {
        lp = lp.labels(l);
    }
    if let Some(fs) = &a.field_selector {
        lp = lp.fields(fs);
    }
    lp
}

/// kubectl hides `metadata.managedFields` unless `--show-managed-fields`.
fn strip_managed_fields(mut obj: Value) -> Value {
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    obj
}

/// Whole-object output for `-o yaml|json|name|jsonpath|custom-columns`.
/// One named object prints alone; anything else as a `List`.
pub fn print_objects(
    output: &Output,
    objects: &[Value],
    single: bool,
    no_headers: bool,
    writer: &mut TabWriter,
) -> String {
    let doc = if single {
        objects[0].clone()
    } else {
        json!({"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}})
    };
    match output {
        Output::Json => json::go_pretty(&doc),
        Output::Yaml => yaml::to_yaml(&doc),
        Output::Name => objects
            .iter()
            .map(|o| format!("{}\n", object_name(o)))
            .collect(),
        Output::JsonPath(jp) => jp.render(&doc),
        Output::CustomColumns(cc) => {
            let mut rows = Vec::new();
            if !no_headers {
                rows.push(cc.header());
            }
            rows.extend(objects.iter().map(|o| cc.row(o)));
            writer.write(&rows)
        }
        Output::Table | Output::Wide => String::new(),
    }
}

/// `kind.group/name` from an object's own apiVersion and kind.
pub fn object_name(o: &Value) -> String {
    let api_version = o["apiVersion"].as_str().unwrap_or("");
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    crate::printers::name_of(
        o["kind"].as_str().unwrap_or(""),
        group,
        o["metadata"]["name"].as_str().unwrap_or(""),
    )
}

#[allow(clippy::too_many_arguments)]
async fn watch(
    ctx: &Ctx,
    a: &GetArgs,
    output: &Output,
    f: &Fetched,
    names: &[String],
    ns: Option<&str>,
    show_kind: bool,
    color: bool,
    mut writer: TabWriter,
) -> Result<()> {
    let r = &f.resource;
    let mut wp = WatchParams::default();
    if let Some(l) = &a.selector {
        wp = wp.labels(l);
    }
    if let Some(fs) = &a.field_selector {
        wp = wp.fields(fs);
    }
    if let [name] = names {
        wp = wp.fields(&format!("metadata.name={name}"));
    }
    let mut req = ctx.request(r, ns).watch(&wp, &f.resource_version)?;
    if !output.wants_objects() {
        req.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static(TABLE_ACCEPT),
        );
    }
    let stream = ctx.client.request_events::<Value>(req).await?;
    let mut stream = stream.boxed();
    let opts = TableOptions {
        wide: matches!(output, Output::Wide),
        with_namespace: a.all_namespaces && r.namespaced,
        kind_prefix: show_kind.then(|| r.kind_group()),
        show_labels: a.show_labels,
    };
    if color && writer.color_column.is_none() && f.table.is_some() {
        let (header, _) = table_rows(f.table.as_ref().unwrap_or(&Value::Null), &opts);
        writer.color_column = header.iter().position(|h| h == "STATUS");
    }
    let mut columns = f
        .table
        .as_ref()
        .map_or(Value::Null, |t| t["columnDefinitions"].clone());
    while let Some(event) = stream.try_next().await? {
        let obj = match event {
            kube::api::WatchEvent::Added(o)
            | kube::api::WatchEvent::Modified(o)
            | kube::api::WatchEvent::Deleted(o) => o,
            kube::api::WatchEvent::Bookmark(_) => continue,
            kube::api::WatchEvent::Error(e) => {
                return Err(CliError::Server {
                    reason: e.reason.clone(),
                    message: e.message.clone(),
                })
            }
        };
        let text = if output.wants_objects() {
            let obj = strip_managed_fields(obj);
            match output {
                Output::Yaml => format!("---\n{}", yaml::to_yaml(&obj)),
                _ => print_objects(output, &[obj], true, true, &mut writer),
            }
        } else {
            // Servers send column definitions with the first watch event
            // only; later events reuse them.
            let mut obj = obj;
            match obj["columnDefinitions"].as_array() {
                Some(c) if !c.is_empty() => columns = obj["columnDefinitions"].clone(),
                _ => obj["columnDefinitions"] = columns.clone(),
            }
            let (_, rows) = table_rows(&obj, &opts);
            writer.write(&rows)
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        get: GetArgs,
    }

    #[test]
    fn flags_translate_to_list_params() {
        let t = T::parse_from([
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            "status.phase=Running",
        ]);
        let lp = list_params(&t.get);
        assert_eq!(lp.label_selector.as_deref(), Some("app=web"));
        assert_eq!(lp.field_selector.as_deref(), Some("status.phase=Running"));
        let req = kube::core::Request::new("/api/v1/namespaces/default/pods")
            .list(&lp)
            .unwrap();
        assert_eq!(
            req.uri().to_string(),
            "/api/v1/namespaces/default/pods?&fieldSelector=status.phase%3DRunning&labelSelector=app%3Dweb"
        );
    }

    #[test]
    fn objects_print_alone_or_as_a_list() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
        let mut w = TabWriter::default();
        let name = Output::parse("name").unwrap();
        assert_eq!(
            print_objects(&name, &[pod.clone(), dep.clone()], false, false, &mut w),
            "pod/p\ndeployment.apps/d\n"
        );
        let jp = Output::parse("jsonpath={.kind}").unwrap();
        assert_eq!(
            print_objects(&jp, std::slice::from_ref(&pod), true, false, &mut w),
            "Pod"
        );
        assert_eq!(
            print_objects(&jp, std::slice::from_ref(&pod), false, false, &mut w),
            "List"
        );
        let cc = Output::parse("custom-columns=N:.metadata.name,K:.kind").unwrap();
        assert_eq!(
            print_objects(&cc, &[pod.clone(), dep], false, false, &mut w),
            "N     K\np     Pod\nd     Deployment\n"
        );
        let js = Output::parse("json").unwrap();
        assert!(print_objects(&js, &[], false, false, &mut w).contains("\"kind\": \"List\""));
    }

    #[test]
    fn managed_fields_are_hidden() {
        let o = strip_managed_fields(json!({"metadata": {"name": "x", "managedFields": []}}));
        assert_eq!(o, json!({"metadata": {"name": "x"}}));
    }
}
