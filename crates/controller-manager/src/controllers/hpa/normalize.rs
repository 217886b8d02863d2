//! From the metrics' proposal to the replica count the autoscaler sets
//! (upstream's `normalizeDesiredReplicas` and
//! `normalizeDesiredReplicasWithBehaviors`):
//! - stabilization: a scale-down follows the highest recommendation of the
//!   last `--horizontal-pod-autoscaler-downscale-stabilization` (5 min),
//!   so a dip in load does not remove pods that are needed again a minute
//!   later (with `behavior`, its windows, up and down);
//! - rate limits: without `behavior`, a scale-up may at most double the
//!   replicas (at least to 4); with it, the policies bound the change per
//!   period (the defaults: up by max(4 pods, 100%) per 15 s, down by 100%
//!   per 15 s);
//! - bounds: `minReplicas` (default 1) and `maxReplicas`.
//!
//! Each step says why through the `AbleToScale` and `ScalingLimited`
//! conditions, with upstream's reasons and messages.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A recommendation as remembered: replicas, when.
pub type Recommendation = (i32, Timestamp);

/// A scaling event as remembered: replicas added (or removed), when.
pub type ScaleEvent = (i32, Timestamp);

/// What the autoscaler remembers of one HPA.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub recommendations: Vec<Recommendation>,
    pub scale_ups: Vec<ScaleEvent>,
    pub scale_downs: Vec<ScaleEvent>,
}

fn minus(at: Timestamp, d: Duration) -> Timestamp {
    at.saturating_sub(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(at)
}

impl Memory {
    /// Upstream's `recordInitialRecommendation`: the first look counts the
    /// current replicas as a recommendation, so a freshly started
    /// autoscaler does not scale down before a window has passed.
    pub fn record_initial(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push((current, now));
        }
    }

    /// Remember `rec`, reusing the slot of one older than `cutoff`.
    fn record(&mut self, rec: i32, now: Timestamp, older: impl Fn(Timestamp) -> bool) {
        match self.recommendations.iter().position(|(_, t)| older(*t)) {
            Some(i) => self.recommendations[i] = (rec, now),
            None => self.recommendations.push((rec, now)),
        }
    }

    /// Upstream's `storeScaleEvent`: remember a change made with
    /// `behavior`, forgetting events older than its longest policy period.
    pub fn store_scale_event(&mut self, rules: &Rules, previous: i32, new: i32, now: Timestamp) {
        let (events, policies, change) = if new > previous {
            (&mut self.scale_ups, &rules.up.policies, new - previous)
        } else {
            (&mut self.scale_downs, &rules.down.policies, previous - new)
        };
        let longest = policies.iter().map(|p| p.period_seconds).max().unwrap_or(0);
        let cutoff = minus(now, Duration::from_secs(longest.max(0) as u64));
        events.retain(|(_, t)| *t >= cutoff);
        events.push((change, now));
    }
}

/// A bound and why: (replicas, condition reason, message).
pub type Limited = (i32, &'static str, &'static str);

/// Upstream's `stabilizeRecommendation` (no `behavior`): the highest
/// recommendation within the downscale window, this one included.
pub fn stabilize(memory: &mut Memory, desired: i32, window: Duration, now: Timestamp) -> i32 {
    let cutoff = minus(now, window);
    let highest = memory
        .recommendations
        .iter()
        .filter(|(_, t)| *t >= cutoff)
        .map(|(r, _)| *r)
        .fold(desired, i32::max);
    memory.record(desired, now, |t| t < cutoff);
    highest
}

/// Upstream's `convertDesiredReplicasWithRules` (no `behavior`).
pub fn limit_without_behavior(current: i32, desired: i32, min: i32, max: i32) -> Limited {
    // A scale-up at most doubles, to at least 4, against bogus samples.
    let scale_up_limit = (current * 2).max(4);
    let (maximum, reason, message) = if max > scale_up_limit {
        (
            scale_up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    };
    if desired < min {
        return (
            min,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        );
    }
    if desired > maximum {
        return (maximum, reason, message);
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// One direction's rules, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Direction {
    pub window: Duration,
    pub select: String,
    pub policies: Vec<HPAScalingPolicy>,
}

/// `behavior` with upstream's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub up: Direction,
    pub down: Direction,
}

fn policy(type_: &str, value: i32, period: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds: period,
    }
}

fn direction(given: Option<&HPAScalingRules>, default: Direction) -> Direction {
    let Some(given) = given else {
        return default;
    };
    Direction {
        window: given
            .stabilization_window_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(default.window),
        select: given.select_policy.clone().unwrap_or(default.select),
        policies: given.policies.clone().unwrap_or(default.policies),
    }
}

/// Upstream's `GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules`
/// (API defaulting) plus the controller's default scale-down window.
pub fn rules(behavior: &HorizontalPodAutoscalerBehavior, downscale_window: Duration) -> Rules {
    Rules {
        up: direction(
            behavior.scale_up.as_ref(),
            Direction {
                window: Duration::ZERO,
                select: "Max".into(),
                policies: vec![policy("Pods", 4, 15), policy("Percent", 100, 15)],
            },
        ),
        down: direction(
            behavior.scale_down.as_ref(),
            Direction {
                window: downscale_window,
                select: "Max".into(),
                policies: vec![policy("Percent", 100, 15)],
            },
        ),
    }
}

/// Upstream's `stabilizeRecommendationWithBehaviors`: the recommendation
/// kept between the lowest of the up window and the highest of the down
/// window, with the reason and message the AbleToScale condition takes if
/// that differs from `desired`.
pub fn stabilize_with_behavior(
    memory: &mut Memory,
    rules: &Rules,
    current: i32,
    desired: i32,
    now: Timestamp,
) -> Limited {
    let up_cutoff = minus(now, rules.up.window);
    let down_cutoff = minus(now, rules.down.window);
    let mut up = desired;
    let mut down = desired;
    for (rec, t) in &memory.recommendations {
        if *t > up_cutoff {
            up = up.min(*rec);
        }
        if *t > down_cutoff {
            down = down.max(*rec);
        }
    }
    let stabilized = current.max(up).min(down);
    memory.record(desired, now, |t| t < up_cutoff && t < down_cutoff);
    if desired >= current {
        (
            stabilized,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            stabilized,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    }
}

/// Upstream's `getReplicasChangePerPeriod`.
fn change_in_period(events: &[ScaleEvent], period_seconds: i32, now: Timestamp) -> i32 {
    let cutoff = minus(now, Duration::from_secs(period_seconds.max(0) as u64));
    events
        .iter()
        .filter(|(_, t)| *t > cutoff)
        .map(|(c, _)| c)
        .sum()
}

/// Upstream's `calculateScaleUpLimitWithScalingRules`.
pub fn scale_up_limit(current: i32, memory: &Memory, rules: &Direction, now: Timestamp) -> i32 {
    if rules.select == "Disabled" {
        return current;
    }
    let proposals = rules.policies.iter().map(|p| {
        let start = current - change_in_period(&memory.scale_ups, p.period_seconds, now)
            + change_in_period(&memory.scale_downs, p.period_seconds, now);
        match p.type_.as_str() {
            "Pods" => start + p.value,
            // Rounded up, or a small percentage would never add a pod.
            _ => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
        }
    });
    if rules.select == "Min" {
        proposals.min().unwrap_or(i32::MAX)
    } else {
        proposals.max().unwrap_or(i32::MIN)
    }
}

/// Upstream's `calculateScaleDownLimitWithBehaviors`.
pub fn scale_down_limit(current: i32, memory: &Memory, rules: &Direction, now: Timestamp) -> i32 {
    if rules.select == "Disabled" {
        return current;
    }
    let proposals = rules.policies.iter().map(|p| {
        let start = current - change_in_period(&memory.scale_ups, p.period_seconds, now)
            + change_in_period(&memory.scale_downs, p.period_seconds, now);
        match p.type_.as_str() {
            "Pods" => start - p.value,
            _ => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        }
    });
    if rules.select == "Min" {
        proposals.max().unwrap_or(i32::MIN)
    } else {
        proposals.min().unwrap_or(i32::MAX)
    }
}

/// Upstream's `convertDesiredReplicasWithBehaviorRate`.
pub fn limit_with_behavior(
    memory: &Memory,
    rules: &Rules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Timestamp,
) -> Limited {
    if desired > current {
        let limit = scale_up_limit(current, memory, &rules.up, now).max(current);
        let (maximum, reason, message) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > maximum {
            return (maximum, reason, message);
        }
    } else if desired < current {
        let limit = scale_down_limit(current, memory, &rules.down, now).min(current);
        let (minimum, reason, message) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < minimum {
            return (minimum, reason, message);
        }
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const WINDOW: Duration = Duration::from_secs(300);

    #[test]
    fn scale_downs_wait_out_the_stabilization_window() {
        let mut memory = Memory::default();
        memory.record_initial(5, at(0));
        // (time, proposal, what is applied)
        let steps = [
            (15, 2, 5),
            (30, 3, 5),
            (290, 2, 5),
            (301, 2, 3),
            (331, 1, 2),
            (602, 1, 1),
            (615, 4, 4),
        ];
        for (t, proposal, want) in steps {
            assert_eq!(
                stabilize(&mut memory, proposal, WINDOW, at(t)),
                want,
                "at {t}"
            );
        }
    }

    #[test]
    fn without_behavior_scale_ups_at_most_double() {
        let cases = [
            // (current, desired, min, max) → (replicas, reason)
            ((2, 3, 1, 10), (3, "DesiredWithinRange")),
            ((2, 9, 1, 10), (4, "ScaleUpLimit")),
            ((5, 20, 1, 10), (10, "TooManyReplicas")),
            ((1, 6, 1, 3), (3, "TooManyReplicas")),
            ((1, 0, 1, 10), (1, "TooFewReplicas")),
            ((8, 2, 3, 10), (3, "TooFewReplicas")),
        ];
        for ((current, desired, min, max), (want, reason)) in cases {
            let (got, got_reason, _) = limit_without_behavior(current, desired, min, max);
            assert_eq!((got, got_reason), (want, reason), "{current} → {desired}");
        }
    }

    #[test]
    fn behavior_defaults_limit_each_period() {
        let rules = rules(&HorizontalPodAutoscalerBehavior::default(), WINDOW);
        let mut memory = Memory::default();
        // Up by max(4 pods, 100%) per 15 s: from 1, 5; from 10, 20.
        assert_eq!(
            limit_with_behavior(&memory, &rules, 1, 50, 1, 100, at(0)).0,
            5
        );
        assert_eq!(
            limit_with_behavior(&memory, &rules, 10, 50, 1, 100, at(0)),
            (
                20,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate"
            )
        );
        assert_eq!(
            limit_with_behavior(&memory, &rules, 10, 50, 1, 15, at(0)).1,
            "TooManyReplicas"
        );
        // After going 1 → 5, the same period allows no more than 5 again.
        memory.store_scale_event(&rules, 1, 5, at(0));
        assert_eq!(
            limit_with_behavior(&memory, &rules, 5, 50, 1, 100, at(10)).0,
            5
        );
        // The next period starts from 5: up to 10.
        assert_eq!(
            limit_with_behavior(&memory, &rules, 5, 50, 1, 100, at(16)).0,
            10
        );
        // Down: 100% per period, bounded by minReplicas.
        assert_eq!(
            limit_with_behavior(&memory, &rules, 10, 0, 2, 100, at(60)),
            (
                2,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count"
            )
        );

        // A custom policy: down by at most 1 pod a minute.
        let custom = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                policies: Some(vec![policy("Pods", 1, 60)]),
                stabilization_window_seconds: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let rules = super::rules(&custom, WINDOW);
        assert_eq!(rules.down.window, Duration::ZERO);
        assert_eq!(rules.up.policies.len(), 2, "scale-up keeps its defaults");
        let mut memory = Memory::default();
        assert_eq!(
            limit_with_behavior(&memory, &rules, 6, 1, 1, 10, at(0)).0,
            5
        );
        memory.store_scale_event(&rules, 6, 5, at(0));
        assert_eq!(
            limit_with_behavior(&memory, &rules, 5, 1, 1, 10, at(30)).1,
            "ScaleDownLimit"
        );
        assert_eq!(
            limit_with_behavior(&memory, &rules, 5, 1, 1, 10, at(30)).0,
            5
        );
        assert_eq!(
            limit_with_behavior(&memory, &rules, 5, 1, 1, 10, at(61)).0,
            4
        );
        // Disabled: no scale-down at all.
        let disabled = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                select_policy: Some("Disabled".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let rules = super::rules(&disabled, WINDOW);
        assert_eq!(
            limit_with_behavior(&Memory::default(), &rules, 5, 1, 1, 10, at(0)).0,
            5
        );
    }

    #[test]
    fn behavior_windows_stabilize_both_ways() {
        let behavior = HorizontalPodAutoscalerBehavior {
            scale_up: Some(HPAScalingRules {
                stabilization_window_seconds: Some(60),
                ..Default::default()
            }),
            ..Default::default()
        };
        let rules = rules(&behavior, WINDOW);
        let mut memory = Memory::default();
        memory.record_initial(3, at(0));
        // A spike to 8 within a minute of a 3: held at 3.
        assert_eq!(
            stabilize_with_behavior(&mut memory, &rules, 3, 8, at(10)).0,
            3
        );
        // A minute of 8s: up it goes.
        assert_eq!(
            stabilize_with_behavior(&mut memory, &rules, 3, 8, at(71)).0,
            8
        );
        // A dip within five minutes of the 8s: held at 8.
        let (held, reason, _) = stabilize_with_behavior(&mut memory, &rules, 8, 2, at(100));
        assert_eq!((held, reason), (8, "ScaleDownStabilized"));
    }
}
