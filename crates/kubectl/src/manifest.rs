//! Reading objects for `-f`: files, directories (`-R` to descend), and `-`
//! for stdin; multi-document YAML or JSON, with `kind: List` expanded into
//! its items. Each object remembers where it came from for error messages
//! (`error when creating "app.yaml": ...`).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CliError, Result};

/// One object from a manifest, and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

/// Load every object the `-f` arguments name.
pub fn load(files: &[String], recursive: bool) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            out.extend(parse(&text, "STDIN")?);
            continue;
        }
        let path = Path::new(f);
        if !path.exists() {
            return Err(CliError::client(format!("the path \"{f}\" does not exist")));
        }
        let mut paths = Vec::new();
        if path.is_dir() {
            walk(path, recursive, &mut paths)?;
        } else {
            paths.push(path.to_path_buf());
        }
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| CliError::client(format!("error reading {}: {e}", p.display())))?;
            out.extend(parse(&text, &p.display().to_string())?);
        }
    }
    if out.is_empty() {
        return Err(CliError::client("no objects passed to apply"));
    }
    Ok(out)
}

/// Manifest files in a directory (sorted), descending only with `-R`.
fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                walk(&p, recursive, out)?;
            }
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Parse a multi-document YAML (JSON is YAML) text.
pub fn parse(text: &str, source: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc)
            .map_err(|e| CliError::client(format!("error parsing {source}: {e}")))?;
        if v.is_null() {
            continue;
        }
        if !v.is_object() {
            return Err(CliError::client(format!(
                "error parsing {source}: expected an object, got {v}"
            )));
        }
        if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) && v["items"].is_array() {
            for item in v["items"].as_array().cloned().unwrap_or_default() {
                out.push(Manifest {
                    source: source.to_string(),
                    object: item,
                });
            }
            continue;
        }
        if v["kind"].as_str().unwrap_or("").is_empty()
            || v["apiVersion"].as_str().unwrap_or("").is_empty()
        {
            return Err(CliError::client(format!(
                "error validating data: [apiVersion not set, kind not set]; from {source}"
            )));
        }
        out.push(Manifest {
            source: source.to_string(),
            object: v,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_and_lists_expand() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
                    {\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\
                    {\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"b\"}}]}\n";
        let got: Vec<String> = parse(text, "x.yaml")
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m.object["kind"].as_str().unwrap(),
                    m.object["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(got, ["ConfigMap/a", "Secret/b"]);
        assert!(parse("kind: ConfigMap\n", "x")
            .unwrap_err()
            .to_string()
            .contains("apiVersion not set"));
        assert!(parse("a: [", "x").is_err());
        assert!(parse("- 1\n", "x").is_err());
    }

    #[test]
    fn directories_load_manifests_recursively_only_with_r() {
        let dir = std::env::temp_dir().join(format!("tug-manifest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let cm = |n: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\n");
        std::fs::write(dir.join("a.yaml"), cm("a")).unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        std::fs::write(dir.join("sub/b.yml"), cm("b")).unwrap();
        let d = dir.display().to_string();
        assert_eq!(load(std::slice::from_ref(&d), false).unwrap().len(), 1);
        assert_eq!(load(std::slice::from_ref(&d), true).unwrap().len(), 2);
        assert!(load(&["/nonexistent/x.yaml".into()], false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
