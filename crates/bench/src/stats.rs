//! Latency percentiles and CPU accounting from `/proc`.
//!
//! Every operation's latency is kept (a 10 s phase is tens of thousands of
//! samples, a few hundred KiB), so percentiles are exact, not estimated.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Exact percentiles of one phase's latencies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(mut samples: Vec<Duration>) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        // Nearest-rank percentile: the smallest sample with at least p% at or below it.
        let pct = |p: f64| {
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            ms(samples[rank.clamp(1, samples.len()) - 1])
        };
        let total: Duration = samples.iter().sum();
        Summary {
            count: samples.len(),
            mean_ms: ms(total) / samples.len() as f64,
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            max_ms: ms(samples[samples.len() - 1]),
        }
    }
}

/// Rounds to 3 decimals so the JSON stays readable.
pub fn round(x: f64) -> Value {
    json!((x * 1000.0).round() / 1000.0)
}

/// CPU time (user + system) of a process, read from `/proc/<pid>/stat`.
/// `None` where `/proc` is not there; the figures are then left out.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture we run on.
    Some(Duration::from_millis(ticks * 10))
}

/// Measures how many cores a process (and this one) used over a phase.
pub struct CpuMeter {
    server_pid: Option<u32>,
    started: Instant,
    server_start: Option<Duration>,
    bench_start: Option<Duration>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            server_pid,
            started: Instant::now(),
            server_start: server_pid.and_then(|p| cpu_time(Some(p))),
            bench_start: cpu_time(None),
        }
    }

    /// `{"server_cores": .., "bench_cores": ..}`: CPU seconds per wall second.
    pub fn finish(&self) -> Value {
        let wall = self.started.elapsed().as_secs_f64();
        let cores = |start: Option<Duration>, now: Option<Duration>| match (start, now) {
            (Some(a), Some(b)) if wall > 0.0 => round((b.saturating_sub(a)).as_secs_f64() / wall),
            _ => Value::Null,
        };
        json!({
            "server_cores": cores(self.server_start, self.server_pid.and_then(|p| cpu_time(Some(p)))),
            "bench_cores": cores(self.bench_start, cpu_time(None)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn an_empty_phase_summarizes_to_zeros() {
        assert_eq!(Summary::of(Vec::new()).count, 0);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_time(None).is_some());
    }
}
