//! Pure output formatting: every `-o` format and its helpers. Nothing here
//! talks to the server, so each printer is unit-tested on its own.

pub mod columns;
pub mod describe;
pub mod json;
pub mod jsonpath;
pub mod quantity;
pub mod table;
pub mod yaml;

use columns::CustomColumns;
use jsonpath::JsonPath;

/// A parsed `-o/--output` value.
#[derive(Debug, Clone)]
pub enum Output {
    /// The server's table (default).
    Table,
    /// The table with every column.
    Wide,
    Yaml,
    Json,
    /// `kind.group/name`.
    Name,
    JsonPath(JsonPath),
    CustomColumns(CustomColumns),
}

impl Output {
    /// Parse `-o` as kubectl does, with kubectl's error for unknown formats.
    pub fn parse(s: &str) -> Result<Output, String> {
        let (kind, arg) = match s.split_once('=') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let missing = || format!("{kind} format specified but no template given");
        let template = arg.filter(|x| !x.is_empty());
        Ok(match kind {
            "" => Output::Table,
            "wide" => Output::Wide,
            "yaml" => Output::Yaml,
            "json" => Output::Json,
            "name" => Output::Name,
            "jsonpath" => Output::JsonPath(JsonPath::parse(template.ok_or_else(missing)?).map_err(|e| format!("error parsing jsonpath {}, {e}", arg.unwrap_or("")))?),
            "jsonpath-file" => {
                let path = template.ok_or_else(missing)?;
                let text = std::fs::read_to_string(path).map_err(|e| format!("error reading --template {path}, {e}"))?;
                Output::JsonPath(JsonPath::parse(&text)?)
            }
            "custom-columns" => Output::CustomColumns(CustomColumns::parse(arg.unwrap_or(""))?),
            _ => {
                return Err(format!(
                    "unable to match a printer suitable for the output format \"{s}\", allowed formats are: custom-columns,json,jsonpath,jsonpath-file,name,wide,yaml"
                ))
            }
        })
    }

    /// Formats that print whole objects fetched as JSON (not Tables).
    pub fn wants_objects(&self) -> bool {
        !matches!(self, Output::Table | Output::Wide)
    }
}

/// `-o name` for one object: `pod/x`, `deployment.apps/web`.
pub fn name_of(kind: &str, group: &str, name: &str) -> String {
    format!("{}/{name}", kind_group(kind, group))
}

/// `deployment.apps`, `pod`.
pub fn kind_group(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_lowercase()
    } else {
        format!("{}.{group}", kind.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_flags_parse() {
        let ok = [
            "",
            "wide",
            "yaml",
            "json",
            "name",
            "jsonpath={.a}",
            "custom-columns=A:.a",
        ];
        for s in ok {
            assert!(Output::parse(s).is_ok(), "{s}");
        }
        let bad = [
            (
                "foo",
                "unable to match a printer suitable for the output format \"foo\"",
            ),
            (
                "jsonpath=",
                "jsonpath format specified but no template given",
            ),
            ("jsonpath={.a", "error parsing jsonpath {.a"),
            (
                "custom-columns=",
                "custom-columns format specified but no custom columns given",
            ),
        ];
        for (s, want) in bad {
            let err = Output::parse(s).unwrap_err();
            assert!(err.starts_with(want), "{s}: {err}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(name_of("Pod", "", "p"), "pod/p");
        assert_eq!(name_of("Deployment", "apps", "web"), "deployment.apps/web");
    }
}
