//! Human-readable tables: the server's `meta.k8s.io/v1` Table rendered the
//! way kubectl's table printer does, and the column alignment of Go's
//! tabwriter as kubectl configures it (minimum width 6, padding 3, widths
//! remembered across flushes so `-w` rows line up with the first table).

use serde_json::Value;

/// Go tabwriter with kubectl's settings. Column widths only grow, so rows
/// written later (watch) stay aligned with earlier ones.
#[derive(Debug, Default)]
pub struct TabWriter {
    widths: Vec<usize>,
    /// Colour the column with this index (a STATUS column) on a terminal.
    pub color_column: Option<usize>,
}

const MIN_WIDTH: usize = 6;
const PADDING: usize = 3;

impl TabWriter {
    /// Align `rows` (each a list of cells) and return the text. Every cell
    /// but a line's last is padded to its column's width.
    pub fn write(&mut self, rows: &[Vec<String>]) -> String {
        for row in rows {
            for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
                let w = (cell.chars().count() + PADDING).max(MIN_WIDTH);
                if self.widths.len() <= i {
                    self.widths.resize(i + 1, 0);
                }
                self.widths[i] = self.widths[i].max(w);
            }
        }
        let mut out = String::new();
        for (r, row) in rows.iter().enumerate() {
            for (i, cell) in row.iter().enumerate() {
                // Colour data cells only, never the header line.
                let colored = match self.color_column {
                    Some(c) if c == i && r > 0 => paint(cell),
                    _ => cell.clone(),
                };
                out.push_str(&colored);
                if i + 1 < row.len() {
                    let n = self.widths[i] - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', n));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Colour a status word: green when healthy, yellow while progressing, red
/// when failing.
pub fn paint(cell: &str) -> String {
    let code = match cell {
        "Running" | "Ready" | "Active" | "Bound" | "Complete" | "Completed" | "Succeeded"
        | "True" | "Available" => "32",
        "Pending" | "ContainerCreating" | "PodInitializing" | "Terminating" | "Unknown"
        | "NotReady" | "SchedulingDisabled" => "33",
        s if s.contains("Err")
            || s.contains("BackOff")
            || s.contains("Fail")
            || s == "Error"
            || s == "OOMKilled"
            || s == "Evicted" =>
        {
            "31"
        }
        _ => return cell.to_string(),
    };
    format!("\x1b[{code}m{cell}\x1b[0m")
}

/// How to turn a server Table into rows.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// `-o wide`: include columns with priority > 0.
    pub wide: bool,
    /// `-A`: a leading NAMESPACE column.
    pub with_namespace: bool,
    /// Prefix names with `kind.group/` (several types were asked for).
    pub kind_prefix: Option<String>,
    /// `--show-labels`: a trailing LABELS column.
    pub show_labels: bool,
}

/// The header and data rows of a server Table.
pub fn table_rows(table: &Value, opts: &TableOptions) -> (Vec<String>, Vec<Vec<String>>) {
    let empty = Vec::new();
    let columns = table["columnDefinitions"].as_array().unwrap_or(&empty);
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| opts.wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let mut header = Vec::new();
    if opts.with_namespace {
        header.push("NAMESPACE".to_string());
    }
    header.extend(
        shown
            .iter()
            .map(|&i| columns[i]["name"].as_str().unwrap_or("").to_uppercase()),
    );
    if opts.show_labels {
        header.push("LABELS".into());
    }
    let rows = table["rows"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|row| {
            let cells = row["cells"].as_array().unwrap_or(&empty);
            let mut out = Vec::new();
            if opts.with_namespace {
                out.push(
                    row["object"]["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                );
            }
            for (n, &i) in shown.iter().enumerate() {
                let mut text = cells.get(i).map(cell_text).unwrap_or_default();
                if n == 0 {
                    if let Some(prefix) = &opts.kind_prefix {
                        text = format!("{prefix}/{text}");
                    }
                }
                out.push(text);
            }
            if opts.show_labels {
                out.push(format_labels(&row["object"]["metadata"]["labels"]));
            }
            out
        })
        .collect();
    (header, rows)
}

/// A cell as kubectl prints it.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Labels as `k=v,k2=v2` (sorted), `<none>` when there are none.
pub fn format_labels(labels: &Value) -> String {
    let Some(m) = labels.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Value {
        json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "Ready", "priority": 0},
                {"name": "Status", "priority": 0}, {"name": "Restarts", "priority": 0},
                {"name": "IP", "priority": 1}
            ],
            "rows": [
                {"cells": ["p1", "0/1", "Pending", 0, "<none>"],
                 "object": {"metadata": {"name": "p1", "namespace": "default", "labels": {"b": "2", "a": "1"}}}},
                {"cells": ["longer-name", "1/1", "Running", 3, "10.0.0.7"],
                 "object": {"metadata": {"name": "longer-name", "namespace": "kube-system"}}}
            ]
        })
    }

    fn render(opts: TableOptions) -> String {
        let (h, mut rows) = table_rows(&table(), &opts);
        rows.insert(0, h);
        TabWriter::default().write(&rows)
    }

    #[test]
    fn tables_align_like_kubectl() {
        let cases = [
            (
                TableOptions::default(),
                "NAME          READY   STATUS    RESTARTS\n\
                 p1            0/1     Pending   0\n\
                 longer-name   1/1     Running   3\n",
            ),
            (
                TableOptions {
                    wide: true,
                    ..Default::default()
                },
                "NAME          READY   STATUS    RESTARTS   IP\n\
                 p1            0/1     Pending   0          <none>\n\
                 longer-name   1/1     Running   3          10.0.0.7\n",
            ),
            (
                TableOptions {
                    with_namespace: true,
                    kind_prefix: Some("pod".into()),
                    ..Default::default()
                },
                "NAMESPACE     NAME              READY   STATUS    RESTARTS\n\
                 default       pod/p1            0/1     Pending   0\n\
                 kube-system   pod/longer-name   1/1     Running   3\n",
            ),
            (
                TableOptions {
                    show_labels: true,
                    ..Default::default()
                },
                "NAME          READY   STATUS    RESTARTS   LABELS\n\
                 p1            0/1     Pending   0          a=1,b=2\n\
                 longer-name   1/1     Running   3          <none>\n",
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(render(opts.clone()), want, "{opts:?}");
        }
    }

    #[test]
    fn widths_are_remembered_and_short_columns_get_the_minimum() {
        let mut w = TabWriter::default();
        assert_eq!(w.write(&[vec!["A".into(), "B".into()]]), "A     B\n");
        // A later, narrower row keeps the earlier width; a wider one grows it.
        assert_eq!(w.write(&[vec!["x".into(), "y".into()]]), "x     y\n");
        assert_eq!(w.write(&[vec!["wider".into(), "y".into()]]), "wider   y\n");
    }

    #[test]
    fn status_cells_are_coloured_but_padded_by_their_text() {
        let mut w = TabWriter {
            color_column: Some(0),
            ..Default::default()
        };
        let out = w.write(&[
            vec!["STATUS".into(), "X".into()],
            vec!["Running".into(), "y".into()],
        ]);
        assert_eq!(out, "STATUS    X\n\x1b[32mRunning\x1b[0m   y\n");
        assert_eq!(paint("CrashLoopBackOff"), "\x1b[31mCrashLoopBackOff\x1b[0m");
        assert_eq!(paint("Pending"), "\x1b[33mPending\x1b[0m");
        assert_eq!(paint("1/1"), "1/1");
    }
}
