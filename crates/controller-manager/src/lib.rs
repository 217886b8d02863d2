//! `tug-controller-manager`: upstream's built-in controllers in one
//! process.
//!
//! - [`framework`]: shared informers, work queues, expectations and the
//!   worker loop: the runtime the controllers are built on;
//! - [`context`]: what every controller is handed (client, informers,
//!   event recorder, settings);
//! - [`pods`]: pod helpers the workload controllers share (readiness,
//!   availability, controller references, claiming);
//! - [`controllers`]: each controller as a pure decision plus an executor,
//!   registered by upstream's name;
//! - [`cli`]: the command line `tug-controller-manager` and `tugboat` share.

pub mod cli;
pub mod context;
pub mod controllers;
pub mod framework;
pub mod pods;

use std::time::Duration;

/// Parse a Go-style duration as upstream flags take them: `50s`, `5m`,
/// `1h30m`, `500ms`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_flags() {
        assert_eq!(parse_duration("50s"), Ok(Duration::from_secs(50)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("40"), Ok(Duration::from_secs(40)));
        assert!(parse_duration("5x").is_err());
    }
}
