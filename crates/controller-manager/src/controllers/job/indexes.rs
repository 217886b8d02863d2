//! Completion indexes of Indexed Jobs, as upstream's `indexed_job_utils.go`:
//! each pod carries its index in an annotation (and a label), the Job's
//! `status.completedIndexes` lists the succeeded ones as compressed
//! intervals ("0-2,4", with two neighbours written "5,6"), and new pods
//! take the lowest indexes that are neither running nor done.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

/// Annotation and label holding a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable a container reads its index from.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Longest `generateName` the API server accepts before adding its
/// five-character suffix (upstream's `MaxGeneratedNameLength`).
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// An inclusive range of indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub first: i32,
    pub last: i32,
}

/// Sorted, non-overlapping, non-adjacent intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<Interval>);

impl Intervals {
    /// Parse `status.completedIndexes`, ignoring corrupt parts and
    /// everything at or beyond `completions` (the Job may have shrunk).
    pub fn parse(text: &str, completions: i32) -> Self {
        let mut result: Vec<Interval> = Vec::new();
        if text.is_empty() {
            return Intervals(result);
        }
        for part in text.split(',') {
            let mut limits = part.splitn(2, '-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i32>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                Some(last) => match last.parse::<i32>() {
                    Ok(last) => last.min(completions - 1),
                    Err(_) => continue,
                },
                None => first,
            };
            match result.last_mut() {
                Some(previous) if previous.last == first - 1 => previous.last = last,
                _ => result.push(Interval { first, last }),
            }
        }
        Intervals(result)
    }

    /// These intervals plus `indexes`, given in increasing order.
    pub fn with_indexes(&self, indexes: impl IntoIterator<Item = i32>) -> Self {
        let singles = indexes
            .into_iter()
            .map(|i| Interval { first: i, last: i })
            .collect();
        self.merge(&Intervals(singles))
    }

    /// The union of two interval lists.
    pub fn merge(&self, other: &Intervals) -> Self {
        let mut all: Vec<Interval> = self.0.iter().chain(other.0.iter()).copied().collect();
        all.sort_by_key(|i| i.first);
        let mut result: Vec<Interval> = Vec::with_capacity(all.len());
        for interval in all {
            match result.last_mut() {
                Some(last) if interval.first <= last.last + 1 => {
                    last.last = last.last.max(interval.last)
                }
                _ => result.push(interval),
            }
        }
        Intervals(result)
    }

    /// How many indexes the intervals hold.
    pub fn total(&self) -> i32 {
        self.0.iter().map(|i| i.last - i.first + 1).sum()
    }

    /// Whether `index` is in one of the intervals.
    pub fn contains(&self, index: i32) -> bool {
        let at = self.0.partition_point(|i| i.last < index);
        self.0.get(at).is_some_and(|i| i.first <= index)
    }

    pub fn intervals(&self) -> &[Interval] {
        &self.0
    }
}

/// Upstream's compressed form: "1,3-5,7,8".
impl fmt::Display for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, interval) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", interval.first)?;
            if interval.last > interval.first {
                let sep = if interval.last == interval.first + 1 {
                    ','
                } else {
                    '-'
                };
                write!(f, "{sep}{}", interval.last)?;
            }
        }
        Ok(())
    }
}

/// The pod's completion index from its annotation; `None` when missing or
/// not a non-negative number.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// The lowest `count` indexes below `completions` that are not in
/// `taken` (running pods' indexes) nor in `done`.
pub fn first_pending(
    taken: &BTreeSet<i32>,
    done: &Intervals,
    count: usize,
    completions: i32,
) -> Vec<i32> {
    let busy = done.with_indexes(taken.iter().copied());
    let mut result = Vec::with_capacity(count);
    let mut candidate = 0;
    for interval in busy.intervals() {
        while candidate < completions && result.len() < count && candidate < interval.first {
            result.push(candidate);
            candidate += 1;
        }
        candidate = candidate.max(interval.last + 1);
    }
    while candidate < completions && result.len() < count {
        result.push(candidate);
        candidate += 1;
    }
    result
}

/// `generateName` of an indexed pod: `<job>-<index>-`, the job name cut
/// so the whole stays within the API server's limit.
pub fn generate_name(job_name: &str, index: i32) -> String {
    let appendix = format!("-{index}-");
    let room = MAX_GENERATED_NAME_LENGTH.saturating_sub(appendix.len());
    let prefix: String = if job_name.len() + appendix.len() > MAX_GENERATED_NAME_LENGTH {
        job_name.chars().take(room).collect()
    } else {
        job_name.to_string()
    };
    format!("{prefix}{appendix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_print_and_parse_as_upstream() {
        let cases: &[(&[i32], &str)] = &[
            (&[], ""),
            (&[0], "0"),
            (&[0, 1], "0,1"),
            (&[0, 1, 2], "0-2"),
            (&[0, 1, 2, 4], "0-2,4"),
            (&[1, 3, 4, 5, 7, 8], "1,3-5,7,8"),
        ];
        for (indexes, text) in cases {
            let intervals = Intervals::default().with_indexes(indexes.iter().copied());
            assert_eq!(intervals.to_string(), *text, "{indexes:?}");
            assert_eq!(Intervals::parse(text, 10), intervals, "{text}");
            assert_eq!(intervals.total(), indexes.len() as i32);
        }
    }

    #[test]
    fn parsing_drops_corrupt_parts_and_indexes_beyond_completions() {
        assert_eq!(Intervals::parse("0-2,x,5-9", 7).to_string(), "0-2,5,6");
        assert_eq!(Intervals::parse("1,2,3", 10).to_string(), "1-3");
        assert_eq!(Intervals::parse("4-6", 3).to_string(), "");
    }

    #[test]
    fn merging_joins_neighbours() {
        let a = Intervals::parse("0,1,5-7", 100);
        let b = Intervals::parse("2-3,9", 100);
        let merged = a.merge(&b);
        assert_eq!(merged.to_string(), "0-3,5-7,9");
        assert!(merged.contains(6));
        assert!(!merged.contains(4));
        assert!(!merged.contains(10));
    }

    #[test]
    fn pending_indexes_skip_running_and_done_ones() {
        let done = Intervals::parse("0,1,4", 10);
        let running: BTreeSet<i32> = [2, 6].into();
        assert_eq!(first_pending(&running, &done, 3, 10), [3, 5, 7]);
        assert_eq!(first_pending(&running, &done, 10, 8), [3, 5, 7]);
        assert_eq!(
            first_pending(&BTreeSet::new(), &Intervals::default(), 2, 5),
            [0, 1]
        );
        assert!(first_pending(&running, &done, 0, 10).is_empty());
    }

    #[test]
    fn generated_names_carry_the_index_within_the_length_limit() {
        assert_eq!(generate_name("pi", 3), "pi-3-");
        let long = "a".repeat(70);
        let name = generate_name(&long, 12);
        assert_eq!(name.len(), MAX_GENERATED_NAME_LENGTH);
        assert!(name.ends_with("a-12-"));
    }
}
