//! `tug api-resources`: the discovered resource catalog as kubectl prints
//! it (sorted by group, then name).

use std::io::Write;

use crate::ctx::Ctx;
use crate::discovery::Resource;
use crate::error::{CliError, Result};
use crate::printers::table::TabWriter;

/// Print the supported API resources on the server.
///
/// Examples:
///   # Print the supported API resources
///   tug api-resources
///
///   # Print the supported API resources with more information
///   tug api-resources -o wide
///
///   # Print the supported namespaced resources
///   tug api-resources --namespaced=true
///
///   # Print the supported API resources with a specific APIGroup
///   tug api-resources --api-group=apps
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ApiResourcesArgs {
    /// Output format: wide or name.
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
    /// Limit to resources in the specified API group ("" for core).
    #[arg(long)]
    pub api_group: Option<String>,
    /// true: only namespaced resources; false: only cluster-scoped ones.
    #[arg(long)]
    pub namespaced: Option<bool>,
    /// Don't print headers.
    #[arg(long)]
    pub no_headers: bool,
}

/// The rows to print for the flags (header first unless suppressed).
pub fn render(resources: &[Resource], a: &ApiResourcesArgs) -> Result<String> {
    let wide = match a.output.as_deref() {
        None | Some("") => false,
        Some("wide") => true,
        Some("name") => false,
        Some(other) => {
            return Err(CliError::client(format!(
                "--output {other} is not available, only name and wide are supported"
            )))
        }
    };
    let mut rs: Vec<&Resource> = resources
        .iter()
        .filter(|r| a.api_group.as_ref().is_none_or(|g| &r.group == g))
        .filter(|r| a.namespaced.is_none_or(|n| r.namespaced == n))
        .collect();
    rs.sort_by(|x, y| (&x.group, &x.plural).cmp(&(&y.group, &y.plural)));
    if a.output.as_deref() == Some("name") {
        return Ok(rs
            .iter()
            .map(|r| format!("{}\n", r.plural_group()))
            .collect());
    }
    let mut rows = Vec::new();
    if !a.no_headers {
        let mut h: Vec<String> = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
            .map(String::from)
            .to_vec();
        if wide {
            h.extend(["VERBS".to_string(), "CATEGORIES".to_string()]);
        }
        rows.push(h);
    }
    for r in rs {
        let mut row = vec![
            r.plural.clone(),
            r.short_names.join(","),
            r.api_version(),
            r.namespaced.to_string(),
            r.kind.clone(),
        ];
        if wide {
            let mut verbs = r.verbs.clone();
            verbs.sort();
            row.push(verbs.join(","));
            row.push(r.categories.join(","));
        }
        rows.push(row);
    }
    Ok(TabWriter::default().write(&rows))
}

pub async fn run(ctx: &Ctx, a: ApiResourcesArgs) -> Result<()> {
    let text = render(&ctx.catalog().await?.resources, &a)?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ApiResourcesArgs,
    }

    fn res(group: &str, plural: &str, kind: &str, namespaced: bool, short: &[&str]) -> Resource {
        Resource {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: String::new(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            namespaced,
            verbs: vec!["list".into(), "get".into()],
            categories: vec![],
        }
    }

    #[test]
    fn catalog_prints_sorted_and_filtered() {
        let rs = [
            res("apps", "deployments", "Deployment", true, &["deploy"]),
            res("", "pods", "Pod", true, &["po"]),
            res("", "nodes", "Node", false, &["no"]),
        ];
        let run = |args: &[&str]| {
            let mut v = vec!["api-resources"];
            v.extend_from_slice(args);
            render(&rs, &T::parse_from(v).a).unwrap()
        };
        assert_eq!(
            run(&[]),
            "NAME          SHORTNAMES   APIVERSION   NAMESPACED   KIND\n\
             nodes         no           v1           false        Node\n\
             pods          po           v1           true         Pod\n\
             deployments   deploy       apps/v1      true         Deployment\n"
        );
        assert_eq!(
            run(&["-o", "name", "--namespaced=true"]),
            "pods\ndeployments.apps\n"
        );
        assert_eq!(
            run(&["--api-group=apps", "--no-headers", "-o", "wide"]),
            "deployments   deploy   apps/v1   true   Deployment   get,list   \n"
        );
        assert!(render(&rs, &T::parse_from(["x", "-o", "json"]).a).is_err());
    }
}
