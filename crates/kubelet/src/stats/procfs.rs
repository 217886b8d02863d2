//! Reading resource usage from `/proc` and cgroup v2 files: the node's
//! (`/proc/stat`, `/proc/meminfo`) and a container's, either from its cgroup
//! (`cpu.stat`, `memory.current`, `memory.stat`) or, when it has none,
//! summed over the processes that belong to it.
//!
//! The parsers are pure and take the files' text; the `read_*` functions
//! do the I/O. CPU times in `/proc` are in `USER_HZ` ticks, which Linux
//! fixes at 100 per second for userspace on every architecture it runs
//! Kubernetes on (the workspace forbids `unsafe`, so no `sysconf` call).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::runtime::{CpuUsage, MemoryUsage};

/// Nanoseconds per `/proc` clock tick (`USER_HZ` = 100).
pub const NANOS_PER_TICK: u64 = 10_000_000;

/// The node's cumulative CPU time: the first (`cpu `) line of
/// `/proc/stat`, busy time only (user, nice, system, irq, softirq, steal;
/// not idle or iowait), in nanoseconds.
pub fn parse_proc_stat_cpu(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice];
    // guest time is already counted in user.
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum::<u64>();
    if fields.len() < 4 {
        return None;
    }
    Some(busy.saturating_mul(NANOS_PER_TICK))
}

/// When the node booted (`btime` in `/proc/stat`), in Unix seconds.
pub fn parse_boot_time(stat: &str) -> Option<i64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The node's memory from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeMemory {
    pub available_bytes: u64,
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    pub rss_bytes: u64,
}

/// Parses `/proc/meminfo`. Usage is total minus free; the working set is
/// total minus available (what cannot be reclaimed without swapping, the
/// same idea as upstream's root-cgroup `usage - inactive_file`); RSS is the
/// anonymous pages.
pub fn parse_meminfo(meminfo: &str) -> Option<NodeMemory> {
    let mut values = HashMap::new();
    for line in meminfo.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(n) = parts.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => n.saturating_mul(1024),
            _ => n,
        };
        values.insert(key.trim(), bytes);
    }
    let total = *values.get("MemTotal")?;
    let free = values.get("MemFree").copied().unwrap_or(0);
    let available = values.get("MemAvailable").copied().unwrap_or(free);
    Some(NodeMemory {
        available_bytes: available,
        usage_bytes: total.saturating_sub(free),
        working_set_bytes: total.saturating_sub(available),
        rss_bytes: values.get("AnonPages").copied().unwrap_or(0),
    })
}

/// One network interface's counters from `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// Parses `/proc/net/dev` (two header lines, then `name: 16 counters`).
pub fn parse_net_dev(text: &str) -> Vec<Interface> {
    text.lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let c: Vec<u64> = counters
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            if c.len() < 11 {
                return None;
            }
            Some(Interface {
                name: name.trim().to_string(),
                rx_bytes: c[0],
                rx_errors: c[2],
                tx_bytes: c[8],
                tx_errors: c[10],
            })
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` that usage needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    pub minflt: u64,
    pub majflt: u64,
    /// utime + stime + cutime + cstime (the process's own CPU time and
    /// that of the children it waited for, which are gone from `/proc`).
    pub cpu_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may contain spaces and parentheses itself, so fields are
/// counted after its last `)`.
pub fn parse_pid_stat(stat: &str) -> Option<ProcStat> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<i64>().ok());
    let ticks = [14, 15, 16, 17]
        .iter()
        .map(|&n| num(n).map(|v| v.max(0) as u64))
        .sum::<Option<u64>>()?;
    Some(ProcStat {
        pid,
        ppid: num(4)?.try_into().ok()?,
        pgrp: num(5)?.try_into().ok()?,
        minflt: num(10)?.max(0) as u64,
        majflt: num(12)?.max(0) as u64,
        cpu_ticks: ticks,
    })
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes (kernel threads have none).
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// The pids that belong to a container whose main process is `root`: its
/// descendants (by parent pid) and the members of its process group (the
/// process runtime gives each container a group of its own, which keeps
/// daemonized grandchildren that were re-parented away).
pub fn container_pids(root: u32, procs: &[ProcStat]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen: HashSet<u32> = HashSet::new();
    let mut stack = vec![root];
    stack.extend(procs.iter().filter(|p| p.pgrp == root).map(|p| p.pid));
    let known: HashSet<u32> = procs.iter().map(|p| p.pid).collect();
    while let Some(pid) = stack.pop() {
        if !known.contains(&pid) || !seen.insert(pid) {
            continue;
        }
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids);
        }
    }
    let mut out: Vec<u32> = seen.into_iter().collect();
    out.sort_unstable();
    out
}

/// A container's usage summed over its processes: `(stat, rss)` pairs.
pub fn sum_processes(procs: &[(ProcStat, u64)]) -> (CpuUsage, MemoryUsage) {
    let mut cpu = 0u64;
    let mut memory = MemoryUsage::default();
    for (stat, rss) in procs {
        cpu = cpu.saturating_add(stat.cpu_ticks.saturating_mul(NANOS_PER_TICK));
        memory.rss_bytes = memory.rss_bytes.saturating_add(*rss);
        memory.page_faults = memory.page_faults.saturating_add(stat.minflt + stat.majflt);
        memory.major_page_faults = memory.major_page_faults.saturating_add(stat.majflt);
    }
    // Without a cgroup there is no page cache to tell apart: resident memory
    // is both the usage and the working set.
    memory.usage_bytes = memory.rss_bytes;
    memory.working_set_bytes = memory.rss_bytes;
    (
        CpuUsage {
            usage_core_nano_seconds: cpu,
        },
        memory,
    )
}

/// A `key value` file (cgroup v2 `cpu.stat`, `memory.stat`) as a map.
pub fn parse_flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

/// A cgroup v2 group's usage from its `cpu.stat`, `memory.current` and
/// `memory.stat`, as cadvisor computes it: working set is usage minus
/// `inactive_file`, RSS is `anon`.
pub fn cgroup_usage(
    cpu_stat: &str,
    memory_current: &str,
    memory_stat: &str,
) -> Option<(CpuUsage, MemoryUsage)> {
    let cpu = parse_flat_keyed(cpu_stat);
    let usage_usec = *cpu.get("usage_usec")?;
    let usage: u64 = memory_current.trim().parse().ok()?;
    let mem = parse_flat_keyed(memory_stat);
    let inactive = mem.get("inactive_file").copied().unwrap_or(0);
    Some((
        CpuUsage {
            usage_core_nano_seconds: usage_usec.saturating_mul(1000),
        },
        MemoryUsage {
            working_set_bytes: usage.saturating_sub(inactive),
            usage_bytes: usage,
            rss_bytes: mem.get("anon").copied().unwrap_or(0),
            page_faults: mem.get("pgfault").copied().unwrap_or(0),
            major_page_faults: mem.get("pgmajfault").copied().unwrap_or(0),
        },
    ))
}

/// Reads a cgroup v2 directory's usage; `None` if it is not one (or gone).
pub fn read_cgroup(dir: &Path) -> Option<(CpuUsage, MemoryUsage)> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    cgroup_usage(
        &read("cpu.stat")?,
        &read("memory.current")?,
        &read("memory.stat").unwrap_or_default(),
    )
}

/// Every process's stat line, read from `/proc` (processes that end while
/// being read are skipped).
pub fn read_all_processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
        })
        .collect()
}

/// How long one walk of `/proc` serves: a summary measures every
/// container in a row, and each needs the whole process table. Short, so
/// the CPU counters are hardly older than the time they are stamped with.
const SNAPSHOT_TTL: Duration = Duration::from_millis(200);

/// The process table, read at most every [`SNAPSHOT_TTL`].
fn process_snapshot() -> Arc<Vec<ProcStat>> {
    static SNAPSHOT: Mutex<Option<(Instant, Arc<Vec<ProcStat>>)>> = Mutex::new(None);
    let mut snapshot = SNAPSHOT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, procs)) = snapshot.as_ref() {
        if at.elapsed() < SNAPSHOT_TTL {
            return procs.clone();
        }
    }
    let procs = Arc::new(read_all_processes());
    *snapshot = Some((Instant::now(), procs.clone()));
    procs
}

/// The usage of the container whose main process is `root`, summed over
/// its processes; `None` if the process is gone.
pub fn read_process_tree(root: u32) -> Option<(CpuUsage, MemoryUsage)> {
    let all = process_snapshot();
    let pids = container_pids(root, &all);
    if pids.is_empty() {
        return None;
    }
    let by_pid: HashMap<u32, &ProcStat> = all.iter().map(|p| (p.pid, p)).collect();
    let procs: Vec<(ProcStat, u64)> = pids
        .iter()
        .filter_map(|pid| {
            let stat = **by_pid.get(pid)?;
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| parse_status_rss(&s))
                .unwrap_or(0);
            Some((stat, rss))
        })
        .collect();
    Some(sum_processes(&procs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_cpu_counts_busy_ticks_only() {
        let cases = [
            // user nice system idle iowait irq softirq steal guest guest_nice
            (
                "cpu  100 2 30 5000 40 1 2 3 50 0\ncpu0 1 2 3 4\n",
                Some(138 * NANOS_PER_TICK),
            ),
            ("cpu  10 0 5 100\n", Some(15 * NANOS_PER_TICK)),
            ("cpu0 10 0 5 100\n", None),
            ("cpu  10 x 5 100\n", None),
            ("cpu  10 0\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_proc_stat_cpu(text), want, "{text:?}");
        }
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1 2\n"), None);
    }

    #[test]
    fn net_dev_lists_interfaces_with_their_counters() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 52000     400    2    0    0     0          0         0    31000     300    1    0    0     0       0          0
  bad0: 1 2 3
";
        let got = parse_net_dev(text);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            Interface {
                name: "eth0".into(),
                rx_bytes: 52000,
                rx_errors: 2,
                tx_bytes: 31000,
                tx_errors: 1,
            }
        );
        assert!(parse_net_dev("").is_empty());
    }

    #[test]
    fn meminfo_gives_available_usage_and_working_set() {
        let text = "MemTotal:       16000 kB\nMemFree:         4000 kB\nMemAvailable:   10000 kB\nAnonPages:       3000 kB\nHugePages_Total:       0\n";
        assert_eq!(
            parse_meminfo(text),
            Some(NodeMemory {
                available_bytes: 10000 * 1024,
                usage_bytes: 12000 * 1024,
                working_set_bytes: 6000 * 1024,
                rss_bytes: 3000 * 1024,
            })
        );
        // Old kernels have no MemAvailable: free memory stands in.
        let old = "MemTotal: 100 kB\nMemFree: 40 kB\n";
        assert_eq!(parse_meminfo(old).unwrap().working_set_bytes, 60 * 1024);
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn pid_stat_survives_odd_command_names() {
        let line = |comm: &str| {
            format!("42 ({comm}) R 1 42 42 0 -1 4194560 120 0 3 0 250 50 7 3 20 0 1 0 12345 0 0")
        };
        for comm in ["sh", "a b", "x) R 9 9 (y", ""] {
            let s = parse_pid_stat(&line(comm)).unwrap_or_else(|| panic!("{comm:?}"));
            assert_eq!(
                s,
                ProcStat {
                    pid: 42,
                    ppid: 1,
                    pgrp: 42,
                    minflt: 120,
                    majflt: 3,
                    cpu_ticks: 310,
                },
                "{comm:?}"
            );
        }
        assert_eq!(parse_pid_stat("42 (sh) R 1"), None);
        assert_eq!(parse_pid_stat("garbage"), None);
    }

    #[test]
    fn status_rss_is_in_bytes() {
        assert_eq!(
            parse_status_rss("Name:\tsh\nVmRSS:\t    1536 kB\n"),
            Some(1536 * 1024)
        );
        assert_eq!(parse_status_rss("Name:\tkthreadd\n"), None);
    }

    fn p(pid: u32, ppid: u32, pgrp: u32) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            pgrp,
            ..Default::default()
        }
    }

    #[test]
    fn container_pids_are_descendants_and_the_process_group() {
        let procs = [
            p(1, 0, 1),
            p(10, 1, 10),  // the container
            p(11, 10, 10), // its child
            p(12, 11, 12), // a grandchild in a group of its own
            p(13, 1, 10),  // a daemon re-parented to init, same group
            p(20, 1, 20),  // someone else
            p(21, 20, 20),
        ];
        assert_eq!(container_pids(10, &procs), vec![10, 11, 12, 13]);
        assert_eq!(container_pids(20, &procs), vec![20, 21]);
        assert_eq!(container_pids(99, &procs), Vec::<u32>::new());
    }

    #[test]
    fn process_sums_convert_ticks_and_count_rss_as_working_set() {
        let a = ProcStat {
            cpu_ticks: 150,
            minflt: 10,
            majflt: 1,
            ..p(1, 0, 1)
        };
        let b = ProcStat {
            cpu_ticks: 50,
            minflt: 5,
            majflt: 0,
            ..p(2, 1, 1)
        };
        let (cpu, mem) = sum_processes(&[(a, 4096), (b, 8192)]);
        assert_eq!(cpu.usage_core_nano_seconds, 2_000_000_000);
        assert_eq!(
            mem,
            MemoryUsage {
                working_set_bytes: 12288,
                usage_bytes: 12288,
                rss_bytes: 12288,
                page_faults: 16,
                major_page_faults: 1,
            }
        );
    }

    #[test]
    fn cgroup_usage_subtracts_inactive_file() {
        let cpu = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n";
        let stat = "anon 1048576\nfile 4194304\ninactive_file 3145728\npgfault 100\npgmajfault 2\n";
        let (c, m) = cgroup_usage(cpu, "5242880\n", stat).unwrap();
        assert_eq!(c.usage_core_nano_seconds, 2_500_000_000);
        assert_eq!(
            m,
            MemoryUsage {
                working_set_bytes: 2097152,
                usage_bytes: 5242880,
                rss_bytes: 1048576,
                page_faults: 100,
                major_page_faults: 2,
            }
        );
        assert_eq!(cgroup_usage("user_usec 1\n", "1", ""), None);
        assert_eq!(cgroup_usage("usage_usec 1\n", "max", ""), None);
    }

    #[test]
    fn this_process_is_found_in_proc() {
        let me = std::process::id();
        let (cpu, mem) = read_process_tree(me).expect("own process");
        assert!(mem.rss_bytes > 0);
        // The test harness has run for at least a tick or so; just sane.
        assert!(cpu.usage_core_nano_seconds < u64::MAX / 2);
    }
}
