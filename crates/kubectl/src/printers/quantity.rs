//! Resource quantities (`100m`, `1.5`, `64Mi`, `1G`) parsed to integers and
//! printed back in Kubernetes' canonical form, for describe's request and
//! limit totals.

/// A quantity in its base unit thousandths (so `100m` CPU and `1Ki` bytes
/// are both exact), remembering whether it was written with binary
/// suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quantity {
    pub milli: i128,
    pub binary: bool,
}

impl Quantity {
    /// Parse `123`, `0.5`, `100m`, `64Mi`, `1G`, `1e3`.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        // Everything up to the first suffix letter is the number.
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(s.len());
        if split == 0 {
            return None;
        }
        let (num, suffix) = s.split_at(split);
        let (mult, binary): (i128, bool) = match suffix {
            "m" => (1, false),
            "" => (1000, false),
            "k" => (1000 * 1000, false),
            "M" => (1000 * 1_000_000, false),
            "G" => (1000 * 1_000_000_000, false),
            "T" => (1000 * 1_000_000_000_000, false),
            "Ki" => (1000 * 1024, true),
            "Mi" => (1000 * (1 << 20), true),
            "Gi" => (1000 * (1 << 30), true),
            "Ti" => (1000 * (1i128 << 40), true),
            _ => return None,
        };
        let milli = match num.split_once('.') {
            None => num.parse::<i128>().ok()? * mult,
            Some((i, f)) => {
                let scale = 10i128.pow(f.len() as u32);
                let whole: i128 = if i.is_empty() { 0 } else { i.parse().ok()? };
                let frac: i128 = if f.is_empty() { 0 } else { f.parse().ok()? };
                (whole * scale + frac) * mult / scale
            }
        };
        Some(Quantity { milli, binary })
    }
}

/// Parse, treating no suffix as a plain count (whole-number parse for
/// simple numbers).
pub fn parse(s: &str) -> Quantity {
    Quantity::parse(s)
        .or_else(|| {
            s.parse::<i128>().ok().map(|n| Quantity {
                milli: n * 1000,
                binary: false,
            })
        })
        .unwrap_or_default()
}

/// Canonical text: millis when fractional (`100m`), else the largest exact
/// suffix of the quantity's family (`1Gi`, `500M`, `2`).
pub fn format(q: Quantity) -> String {
    if q.milli == 0 {
        return "0".into();
    }
    if q.milli % 1000 != 0 {
        return format!("{}m", q.milli);
    }
    let n = q.milli / 1000;
    let steps: &[(i128, &str)] = if q.binary {
        &[
            (1 << 40, "Ti"),
            (1 << 30, "Gi"),
            (1 << 20, "Mi"),
            (1 << 10, "Ki"),
        ]
    } else {
        &[
            (1_000_000_000_000, "T"),
            (1_000_000_000, "G"),
            (1_000_000, "M"),
            (1000, "k"),
        ]
    };
    for (size, suffix) in steps {
        if n % size == 0 {
            return format!("{}{suffix}", n / size);
        }
    }
    n.to_string()
}

/// Integer percent of `part` in `whole` (0 when `whole` is 0), as kubectl.
pub fn percent(part: Quantity, whole: Quantity) -> i128 {
    if whole.milli == 0 {
        0
    } else {
        ((part.milli as f64) / (whole.milli as f64) * 100.0) as i128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_round_trip_canonically() {
        let cases = [
            ("100m", "100m"),
            ("0.5", "500m"),
            ("2", "2"),
            ("64Mi", "64Mi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("500M", "500M"),
            ("1000M", "1G"),
            ("1000", "1k"),
            ("0", "0"),
        ];
        for (input, want) in cases {
            assert_eq!(format(parse(input)), want, "{input}");
        }
        assert_eq!(percent(parse("250m"), parse("2")), 12);
        assert_eq!(percent(parse("1"), parse("0")), 0);
        assert_eq!(parse("bogus"), Quantity::default());
    }
}
