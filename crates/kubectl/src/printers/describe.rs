//! Pieces of `describe` output: Go's tabwriter as kubectl's describers
//! configure it (padding 2, no minimum width, column blocks that end at any
//! line with fewer cells, exactly like `text/tabwriter`), kubectl's
//! multi-line label/annotation fields, and its human-readable durations.

use chrono::{DateTime, Utc};
use serde_json::Value;

const PADDING: usize = 2;

/// Align tab-separated text the way Go's tabwriter does: a column's width
/// is set per block of consecutive lines that have a cell in that column;
/// a line's last cell is never padded.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let mut widths = Vec::new();
    let mut out = String::new();
    format(&lines, 0, lines.len(), &mut widths, &mut out);
    out
}

fn format(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + PADDING);
            this += 1;
        }
        widths.push(width);
        format(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let w = widths.get(j).copied().unwrap_or(0);
                out.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.push('\n');
    }
}

/// `Labels:\tk=v` then `\tk2=v2` lines (sorted), `<none>` when empty.
pub fn labels_multiline(indent: &str, title: &str, map: &Value) -> String {
    multiline(indent, title, map, "=", false)
}

/// Annotations as `k: v`, hiding kubectl's last-applied configuration.
pub fn annotations_multiline(indent: &str, title: &str, map: &Value) -> String {
    multiline(indent, title, map, ": ", true)
}

fn multiline(indent: &str, title: &str, map: &Value, sep: &str, skip_last_applied: bool) -> String {
    let mut keys: Vec<&String> = map
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| {
                    !(skip_last_applied && *k == "kubectl.kubernetes.io/last-applied-configuration")
                })
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    let mut out = format!("{indent}{title}:\t");
    if keys.is_empty() {
        out.push_str("<none>\n");
        return out;
    }
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            out.push_str(&format!("{indent}\t"));
        }
        out.push_str(&format!(
            "{k}{sep}{}\n",
            map[k.as_str()].as_str().unwrap_or("")
        ));
    }
    out
}

/// apimachinery's `HumanDuration`: `45s`, `3m20s`, `15m`, `5h10m`, `3d4h`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of an RFC 3339 timestamp, `<unknown>` when absent.
pub fn since(ts: &Value, now: DateTime<Utc>) -> String {
    match ts
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => human_duration((now - t.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".into(),
    }
}

/// Go's `time.RFC1123Z` as kubectl prints CreationTimestamp.
pub fn rfc1123z(ts: &Value) -> String {
    ts.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S %z").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tabwriter_blocks_match_go() {
        let text = "Name:\tweb\nNamespace:\tdefault\nPod Template:\n  Labels:\tapp=web\n  Containers:\n   nginx:\n    Image:\tnginx\n    Environment:\t<none>\nEvents:\t<none>\n";
        let want = "Name:       web\nNamespace:  default\nPod Template:\n  Labels:  app=web\n  Containers:\n   nginx:\n    Image:        nginx\n    Environment:  <none>\nEvents:           <none>\n";
        assert_eq!(tabwrite(text), want);
        // A third cell only widens its own block.
        assert_eq!(
            tabwrite("Port:\t<unset>\t80/TCP\nTargetPort:\t80/TCP\n"),
            "Port:        <unset>  80/TCP\nTargetPort:  80/TCP\n"
        );
    }

    #[test]
    fn labels_and_annotations() {
        assert_eq!(
            labels_multiline("", "Labels", &json!({"b": "2", "a": "1"})),
            "Labels:\ta=1\n\tb=2\n"
        );
        assert_eq!(
            labels_multiline("  ", "Labels", &json!({})),
            "  Labels:\t<none>\n"
        );
        let ann = json!({"kubectl.kubernetes.io/last-applied-configuration": "{}", "n": "1"});
        assert_eq!(
            annotations_multiline("", "Annotations", &ann),
            "Annotations:\tn: 1\n"
        );
    }

    #[test]
    fn durations_read_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (900, "15m"),
            (3 * 3600 + 600, "3h10m"),
            (10 * 3600, "10h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (30 * 86400, "30d"),
            (800 * 86400, "2y70d"),
            (3000 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
        assert_eq!(
            rfc1123z(&json!("2026-11-28T13:27:56Z")),
            "Sat, 28 Nov 2026 13:27:56 +0000"
        );
        assert_eq!(since(&Value::Null, Utc::now()), "<unknown>");
    }
}
