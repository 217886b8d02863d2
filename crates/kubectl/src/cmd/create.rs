//! `tug create`: create objects from files (`-f`) or from one of the
//! generators (`deployment`, `namespace`, `configmap`, `secret generic`,
//! `service clusterip`), which build the same objects kubectl's do.

use std::io::Write;

use base64::Engine;
use kube::api::PostParams;
use serde_json::{json, Map, Value};

use super::{locate, when, DryRun};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::manifest;
use crate::printers::table::TabWriter;
use crate::printers::Output;

/// Create a resource from a file or from stdin.
///
/// JSON and YAML formats are accepted.
///
/// Examples:
///   # Create a pod using the data in pod.json
///   tug create -f ./pod.json
///
///   # Create a pod based on the JSON passed into stdin
///   cat pod.json | tug create -f -
///
///   # Create a deployment named my-dep that runs the busybox image
///   tug create deployment my-dep --image=busybox
///
///   # Print a configmap without creating it
///   tug create configmap my-config --from-literal=key1=config1 --dry-run=client -o yaml
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment, args_conflicts_with_subcommands = true)]
pub struct CreateArgs {
    /// Filename, directory, or URL to files to use to create the resource ('-' for stdin).
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub common: CommonCreate,
    #[command(subcommand)]
    pub generator: Option<Generator>,
}

/// Flags every create form shares.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonCreate {
    /// Must be "none", "server", or "client". With client, only print the
    /// object that would be sent; with server, submit without persisting.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client", global = true)]
    pub dry_run: String,
    /// Output format: json, yaml, name, jsonpath=..., custom-columns=...
    #[arg(short = 'o', long = "output", global = true)]
    pub output: Option<String>,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "tug-create", global = true)]
    pub field_manager: String,
}

/// Objects the generators build.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Generator {
    /// Create a deployment with the specified name
    #[command(alias = "deploy")]
    Deployment {
        name: String,
        /// Image names to run (repeatable; one container each).
        #[arg(long, required = true)]
        image: Vec<String>,
        /// Number of replicas to create.
        #[arg(short = 'r', long, default_value_t = 1)]
        replicas: i32,
        /// The containerPort this deployment exposes.
        #[arg(long)]
        port: Option<i32>,
    },
    /// Create a namespace with the specified name
    #[command(alias = "ns")]
    Namespace { name: String },
    /// Create a config map from literal values or files
    #[command(alias = "cm")]
    Configmap {
        name: String,
        /// key=value pairs (repeatable).
        #[arg(long)]
        from_literal: Vec<String>,
        /// [key=]path: a file, or a directory of files (repeatable).
        #[arg(long)]
        from_file: Vec<String>,
    },
    /// Create a secret (generic only)
    #[command(subcommand)]
    Secret(SecretKind),
    /// Create a service (clusterip only)
    #[command(subcommand, alias = "svc")]
    Service(ServiceKind),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SecretKind {
    /// Create a secret from literal values or files
    Generic {
        name: String,
        /// key=value pairs (repeatable).
        #[arg(long)]
        from_literal: Vec<String>,
        /// [key=]path: a file, or a directory of files (repeatable).
        #[arg(long)]
        from_file: Vec<String>,
        /// The type of secret to create.
        #[arg(long = "type")]
        secret_type: Option<String>,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServiceKind {
    /// Create a ClusterIP service
    Clusterip {
        name: String,
        /// Port pairs port:targetPort (repeatable).
        #[arg(long)]
        tcp: Vec<String>,
        /// Assign your own ClusterIP or 'None' for a headless service.
        #[arg(long)]
        clusterip: Option<String>,
    },
}

pub async fn run(ctx: &Ctx, a: CreateArgs) -> Result<()> {
    let dry = DryRun::parse(&a.common.dry_run)?;
    let output = a
        .common
        .output
        .as_deref()
        .map(Output::parse)
        .transpose()
        .map_err(CliError::Client)?;
    let items: Vec<(Value, String)> = match &a.generator {
        Some(g) => vec![(generate(g)?, String::new())],
        None if a.filename.is_empty() => {
            return Err(CliError::client("must specify one of -f and -k"));
        }
        None => manifest::load(&a.filename, a.recursive)?
            .into_iter()
            .map(|m| (m.object, m.source))
            .collect(),
    };
    let mut last_err = None;
    for (obj, source) in items {
        match create_one(
            ctx,
            &obj,
            &source,
            dry,
            &a.common.field_manager,
            output.as_ref(),
        )
        .await
        {
            Ok(()) => {}
            Err(e) => {
                if let Some(prev) = last_err.replace(e) {
                    eprintln!("{prev}");
                }
            }
        }
    }
    last_err.map_or(Ok(()), Err)
}

async fn create_one(
    ctx: &Ctx,
    obj: &Value,
    source: &str,
    dry: DryRun,
    manager: &str,
    output: Option<&Output>,
) -> Result<()> {
    let (r, ns) = locate(ctx, obj, source).await?;
    let created = if dry == DryRun::Client {
        obj.clone()
    } else {
        let pp = PostParams {
            dry_run: dry == DryRun::Server,
            field_manager: Some(manager.to_string()),
        };
        let req = ctx
            .request(&r, ns.as_deref())
            .create(&pp, serde_json::to_vec(obj)?)?;
        ctx.send(req)
            .await
            .map_err(|e| when(e, "creating", source))?
    };
    let name = created["metadata"]["name"].as_str().unwrap_or("");
    let text = match output {
        Some(o) => super::get::print_objects(
            o,
            std::slice::from_ref(&created),
            true,
            false,
            &mut TabWriter::default(),
        ),
        None => format!("{}/{name} created{}\n", r.kind_group(), dry.suffix()),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// Build a generator's object.
pub fn generate(g: &Generator) -> Result<Value> {
    Ok(match g {
        Generator::Deployment {
            name,
            image,
            replicas,
            port,
        } => deployment(name, image, *replicas, *port),
        Generator::Namespace { name } => json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name}, "spec": {}, "status": {}
        }),
        Generator::Configmap {
            name,
            from_literal,
            from_file,
        } => {
            let data = collect_data(from_literal, from_file, |b| {
                String::from_utf8(b)
                    .map_err(|_| CliError::client("configmap files must be UTF-8 text"))
            })?;
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
        }
        Generator::Secret(SecretKind::Generic {
            name,
            from_literal,
            from_file,
            secret_type,
        }) => {
            let data = collect_data(from_literal, from_file, |b| {
                Ok(base64::engine::general_purpose::STANDARD.encode(b))
            })?;
            let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data});
            if let Some(t) = secret_type {
                s["type"] = json!(t);
            }
            s
        }
        Generator::Service(ServiceKind::Clusterip {
            name,
            tcp,
            clusterip,
        }) => service(name, tcp, clusterip.as_deref())?,
    })
}

/// kubectl's container name for an image: the last path element without
/// tag or digest (`reg.io/foo/bar:1.0` -> `bar`).
pub fn container_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let base = last.split(['@', ':']).next().unwrap_or(last);
    base.to_string()
}

fn deployment(name: &str, images: &[String], replicas: i32, port: Option<i32>) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut c = json!({"image": i, "name": container_name(i), "resources": {}});
            if let Some(p) = port {
                c["ports"] = json!([{"containerPort": p}]);
            }
            c
        })
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {},
            // kubectl's typed objects carry a null timestamp, which the
            // server keeps inside the pod template; so do we.
            "template": {"metadata": {"creationTimestamp": null, "labels": {"app": name}}, "spec": {"containers": containers}}
        },
        "status": {}
    })
}

fn service(name: &str, tcp: &[String], cluster_ip: Option<&str>) -> Result<Value> {
    let mut ports = Vec::new();
    for spec in tcp {
        let (port, target) = spec.split_once(':').unwrap_or((spec, spec));
        let port: i32 = port
            .parse()
            .map_err(|_| CliError::client(format!("invalid port: {spec}")))?;
        let target_value = match target.parse::<i32>() {
            Ok(n) => json!(n),
            Err(_) => json!(target),
        };
        ports.push(json!({"name": format!("{port}-{target}"), "protocol": "TCP", "port": port, "targetPort": target_value}));
    }
    let mut spec = json!({"ports": ports, "selector": {"app": name}, "type": "ClusterIP"});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    Ok(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": spec, "status": {"loadBalancer": {}}
    }))
}

/// `--from-literal=k=v` and `--from-file=[key=]path` into a data map.
fn collect_data(
    literals: &[String],
    files: &[String],
    encode: impl Fn(Vec<u8>) -> Result<String>,
) -> Result<Map<String, Value>> {
    let mut data = Map::new();
    let put = |k: String, v: String, data: &mut Map<String, Value>| -> Result<()> {
        if data.contains_key(&k) {
            return Err(CliError::client(format!("cannot add key {k}, another key by that name already exists in Data for ConfigMap \"\"")));
        }
        data.insert(k, Value::String(v));
        Ok(())
    };
    for l in literals {
        let (k, v) = l
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| {
                CliError::client(format!("invalid literal source {l}, expected key=value"))
            })?;
        put(k.to_string(), encode(v.as_bytes().to_vec())?, &mut data)?;
    }
    for f in files {
        let (key, path) = match f.split_once('=') {
            Some((k, p)) => (Some(k.to_string()), p),
            None => (None, f.as_str()),
        };
        let p = std::path::Path::new(path);
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            for e in entries {
                let k = e
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                put(k, encode(std::fs::read(&e)?)?, &mut data)?;
            }
        } else {
            let bytes = std::fs::read(p)
                .map_err(|e| CliError::client(format!("error reading {path}: {e}")))?;
            let k = key.unwrap_or_else(|| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            put(k, encode(bytes)?, &mut data)?;
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        g: Generator,
    }

    fn gen(args: &[&str]) -> Value {
        let mut v = vec!["create"];
        v.extend_from_slice(args);
        generate(&T::parse_from(v).g).unwrap()
    }

    #[test]
    fn generators_build_kubectls_objects() {
        let d = gen(&[
            "deployment",
            "d1",
            "--image=reg.io/foo/bar:1.0",
            "--replicas=2",
        ]);
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["name"],
            "bar"
        );
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "d1");
        let s = gen(&[
            "service",
            "clusterip",
            "s1",
            "--tcp=80:8080",
            "--tcp=443:https",
        ]);
        assert_eq!(
            s["spec"]["ports"][0],
            json!({"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080})
        );
        assert_eq!(s["spec"]["ports"][1]["targetPort"], "https");
        assert_eq!(s["spec"]["selector"]["app"], "s1");
        let sec = gen(&["secret", "generic", "x", "--from-literal=a=b"]);
        assert_eq!(sec["data"]["a"], "Yg==");
        let cm = gen(&["cm", "c", "--from-literal=a=b=c"]);
        assert_eq!(cm["data"]["a"], "b=c");
        assert_eq!(gen(&["ns", "n1"])["metadata"]["name"], "n1");
    }

    #[test]
    fn container_names_come_from_images() {
        for (image, want) in [
            ("nginx", "nginx"),
            ("nginx:1.25", "nginx"),
            ("reg.io:5000/a/b:1", "b"),
            ("x@sha256:ab", "x"),
        ] {
            assert_eq!(container_name(image), want, "{image}");
        }
    }

    #[test]
    fn bad_sources_are_errors() {
        let bad = [
            Generator::Configmap {
                name: "c".into(),
                from_literal: vec!["novalue".into()],
                from_file: vec![],
            },
            Generator::Configmap {
                name: "c".into(),
                from_literal: vec!["a=1".into(), "a=2".into()],
                from_file: vec![],
            },
            Generator::Configmap {
                name: "c".into(),
                from_literal: vec![],
                from_file: vec!["/nonexistent".into()],
            },
            Generator::Service(ServiceKind::Clusterip {
                name: "s".into(),
                tcp: vec!["x:1".into()],
                clusterip: None,
            }),
        ];
        for g in bad {
            assert!(generate(&g).is_err(), "{g:?}");
        }
    }
}
