//! CronJob schedules: what upstream's `cron.ParseStandard` (robfig/cron v3)
//! accepts, evaluated with croner in the CronJob's time zone.
//!
//! - Five fields (minute, hour, day of month, month, day of week) of `*`,
//!   `?`, numbers, `JAN`-`DEC` / `SUN`-`SAT`, ranges, lists and steps
//!   (`N/step` meaning `N-max/step`), or a descriptor: `@yearly`,
//!   `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`,
//!   `@every <duration>`. croner's extensions (`L`, `W`, `#`, `+`, weekday
//!   7, seconds) are rejected as robfig rejects them.
//! - As in robfig, day of month and day of week combine with OR unless one
//!   of them is `*` (or `?`, or `*/1`).
//! - `TZ=` / `CRON_TZ=` in the schedule is refused with upstream
//!   validation's message; `spec.timeZone` names the IANA zone (chrono-tz).
//!   Without it the controller manager's local zone applies, as upstream.
//! - Daylight saving time follows croner (OCPS): a run whose wall-clock
//!   time falls into a spring-forward gap happens at the first instant
//!   after the gap (robfig skips it that day); a time repeated by a
//!   fall-back runs once, at its first occurrence.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use k8s_openapi::jiff::Timestamp;

/// Where a schedule's wall-clock times are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The controller manager's own zone (no `spec.timeZone`).
    Local,
    Named(Tz),
}

impl Zone {
    /// The zone `spec.timeZone` names, as Go's `time.LoadLocation`: `""`
    /// is UTC, `Local` the local zone, else an IANA name.
    pub fn parse(time_zone: Option<&str>) -> Result<Zone, String> {
        match time_zone {
            None | Some("Local") => Ok(Zone::Local),
            Some("") => Ok(Zone::Named(Tz::UTC)),
            Some(name) => name
                .parse::<Tz>()
                .map(Zone::Named)
                .map_err(|_| format!("unknown time zone {name}")),
        }
    }

    /// `t` as RFC 3339 in this zone (`Z` for UTC, as Go prints it).
    pub fn rfc3339(&self, t: Timestamp) -> String {
        let utc = to_chrono(t);
        match self {
            Zone::Local => utc
                .with_timezone(&Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            Zone::Named(tz) => utc
                .with_timezone(tz)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

#[derive(Debug, Clone)]
enum Spec {
    Cron(Box<Cron>),
    /// `@every`: a fixed delay from the previous run.
    Every(Duration),
}

/// A parsed schedule in its zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: Spec,
    zone: Zone,
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// `spec.timeZone` names no known zone.
    UnknownTimeZone(String),
    /// The schedule text is not a schedule.
    Unparseable(String),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::UnknownTimeZone(e) | ScheduleError::Unparseable(e) => f.write_str(e),
        }
    }
}

impl Schedule {
    /// Parse `schedule` to be read in `time_zone`.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let zone = Zone::parse(time_zone).map_err(ScheduleError::UnknownTimeZone)?;
        let spec = parse_spec(schedule).map_err(ScheduleError::Unparseable)?;
        Ok(Schedule { spec, zone })
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The first run strictly after `t` (at whole seconds, as robfig),
    /// `None` if the schedule never fires again.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let t = Timestamp::from_second(t.as_second()).ok()?;
        match &self.spec {
            Spec::Every(delay) => t.checked_add(*delay).ok(),
            Spec::Cron(cron) => {
                let utc = to_chrono(t);
                match self.zone {
                    Zone::Local => next(cron, &utc.with_timezone(&Local)),
                    Zone::Named(tz) => next(cron, &utc.with_timezone(&tz)),
                }
            }
        }
    }
}

fn next<Z: TimeZone>(cron: &Cron, t: &DateTime<Z>) -> Option<Timestamp> {
    let found = cron.find_next_occurrence(t, false).ok()?;
    from_chrono(&found)
}

pub fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

fn from_chrono<Z: TimeZone>(t: &DateTime<Z>) -> Option<Timestamp> {
    Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).ok()
}

/// robfig's field bounds and names: (min, max, names, value of the first name).
const FIELDS: [(u32, u32, &[&str], u32); 5] = [
    (0, 59, &[], 0),
    (0, 23, &[], 0),
    (1, 31, &[], 0),
    (
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
        1,
    ),
    (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"], 0),
];

fn parse_spec(schedule: &str) -> Result<Spec, String> {
    let text = schedule.trim();
    if text.contains("TZ") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    let expanded = match text.strip_prefix('@') {
        Some(descriptor) => match descriptor {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            d => match d.strip_prefix("every ") {
                Some(delay) => return every(delay.trim()),
                None => return Err(format!("unrecognized descriptor: {text}")),
            },
        },
        None => text,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let mut normalized = Vec::with_capacity(5);
    for (n, (field, (min, max, names, first_name))) in fields.iter().zip(FIELDS).enumerate() {
        for part in field.split(',') {
            check_part(part, min, max, names, first_name)?;
        }
        normalized.push(normalize_field(field, n));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .sloppy_ranges(true)
        .build();
    parser
        .parse(&normalized.join(" "))
        .map(|c| Spec::Cron(Box::new(c)))
        .map_err(|e| e.to_string())
}

/// robfig's `@every`: a Go duration, rounded down to whole seconds, at
/// least one second.
fn every(delay: &str) -> Result<Spec, String> {
    let parsed = crate::parse_duration(delay)
        .map_err(|e| format!("failed to parse duration @every {delay}: {e}"))?;
    Ok(Spec::Every(Duration::from_secs(parsed.as_secs().max(1))))
}

/// The field as croner reads it the way robfig means it: `?` is `*`, and a
/// day field of `*/1` is a plain `*` (which decides AND versus OR).
fn normalize_field(field: &str, position: usize) -> String {
    let field = field.replace('?', "*");
    if position >= 2 && field == "*/1" {
        return "*".into();
    }
    field
}

fn check_part(
    part: &str,
    min: u32,
    max: u32,
    names: &[&str],
    first_name: u32,
) -> Result<(), String> {
    let (range, step) = match part.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (part, None),
    };
    if let Some(step) = step {
        let n: u32 = step
            .parse()
            .map_err(|_| format!("failed to parse int from {step}: {part}"))?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
    }
    if range == "*" || range == "?" {
        return Ok(());
    }
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + first_name);
        }
        s.parse::<u32>()
            .map_err(|_| format!("failed to parse int from {s}: {part}"))
    };
    let (low, high) = match range.split_once('-') {
        Some((a, b)) => (value(a)?, value(b)?),
        None => {
            let v = value(range)?;
            (v, if step.is_some() { max } else { v })
        }
    };
    if low < min {
        return Err(format!(
            "beginning of range ({low}) below minimum ({min}): {part}"
        ));
    }
    if high > max {
        return Err(format!(
            "end of range ({high}) above maximum ({max}): {part}"
        ));
    }
    if low > high {
        return Err(format!(
            "beginning of range ({low}) beyond end of range ({high}): {part}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(schedule: &str) -> Schedule {
        Schedule::parse(schedule, Some("UTC")).unwrap()
    }

    /// The first `n` runs after `from`, as RFC 3339 in UTC.
    fn runs(schedule: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = ts(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = schedule.next_after(t).unwrap();
            out.push(t.to_string());
        }
        out
    }

    #[test]
    fn standard_schedules_and_descriptors_run_when_robfig_runs_them() {
        let from = "2026-01-01T00:00:30Z";
        let cases: &[(&str, &[&str])] = &[
            (
                "* * * * *",
                &["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"],
            ),
            (
                "*/15 * * * *",
                &["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"],
            ),
            (
                "5/20 * * * *",
                &["2026-01-01T00:05:00Z", "2026-01-01T00:25:00Z"],
            ),
            (
                "0 9-10 * * mon-fri",
                &["2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z"],
            ),
            (
                "0 0 ? * *",
                &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
            ),
            ("@hourly", &["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"]),
            ("@daily", &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
            (
                "@midnight",
                &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
            ),
            ("@weekly", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
            (
                "@monthly",
                &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"],
            ),
            ("@yearly", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
            (
                "@annually",
                &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
            ),
            (
                "@every 90s",
                &["2026-01-01T00:02:00Z", "2026-01-01T00:03:30Z"],
            ),
            // Day of month OR day of week (both restricted): the 13th or a Friday.
            (
                "0 0 13 * 5",
                &["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"],
            ),
            // One of them a star: AND.
            (
                "0 0 */1 * 5",
                &["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"],
            ),
            (
                "0 0 13 * *",
                &["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"],
            ),
        ];
        for (schedule, want) in cases {
            assert_eq!(runs(&utc(schedule), from, 2), *want, "{schedule}");
        }
    }

    #[test]
    fn next_is_strictly_after_at_whole_seconds() {
        let every_minute = utc("* * * * *");
        assert_eq!(
            every_minute.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T00:01:00Z"))
        );
        assert_eq!(
            every_minute.next_after(ts("2026-01-01T00:00:59.9Z")),
            Some(ts("2026-01-01T00:01:00Z"))
        );
        assert_eq!(
            utc("@every 2s").next_after(ts("2026-01-01T00:00:00.7Z")),
            Some(ts("2026-01-01T00:00:02Z"))
        );
    }

    #[test]
    fn schedules_robfig_refuses_are_unparseable() {
        let cases = [
            (
                "TZ=UTC * * * * *",
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ),
            (
                "CRON_TZ=Europe/Paris 0 9 * * *",
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            (
                "0 * * * * *",
                "expected exactly 5 fields, found 6: [0 * * * * *]",
            ),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("0 0 1 * 7", "end of range (7) above maximum (6): 7"),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("0 0 L * *", "failed to parse int from L: L"),
            ("0 0 * * 5#2", "failed to parse int from 5#2: 5#2"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            ("@often", "unrecognized descriptor: @often"),
        ];
        for (schedule, error) in cases {
            match Schedule::parse(schedule, None) {
                Err(ScheduleError::Unparseable(e)) => assert_eq!(e, error, "{schedule}"),
                other => panic!("{schedule}: {other:?}"),
            }
        }
        assert!(matches!(
            Schedule::parse("@every soon", None),
            Err(ScheduleError::Unparseable(e)) if e.starts_with("failed to parse duration @every soon")
        ));
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(Zone::parse(None), Ok(Zone::Local));
        assert_eq!(Zone::parse(Some("")), Ok(Zone::Named(Tz::UTC)));
        assert_eq!(
            Zone::parse(Some("Europe/Berlin")),
            Ok(Zone::Named(Tz::Europe__Berlin))
        );
        assert_eq!(
            Zone::parse(Some("Mars/Olympus")),
            Err("unknown time zone Mars/Olympus".into())
        );
        assert_eq!(
            Schedule::parse("* * * * *", Some("Mars/Olympus")).unwrap_err(),
            ScheduleError::UnknownTimeZone("unknown time zone Mars/Olympus".into())
        );
    }

    #[test]
    fn schedules_are_read_in_their_time_zone() {
        let nine = Schedule::parse("0 9 * * *", Some("Asia/Tokyo")).unwrap();
        assert_eq!(
            runs(&nine, "2026-01-01T00:30:00Z", 2),
            ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]
        );
        let kolkata = Schedule::parse("15 * * * *", Some("Asia/Kolkata")).unwrap();
        // +05:30: quarter past the local hour is quarter to the UTC hour.
        assert_eq!(
            runs(&kolkata, "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T00:45:00Z"]
        );
        assert_eq!(
            nine.zone().rfc3339(ts("2026-01-02T00:00:00Z")),
            "2026-01-02T09:00:00+09:00"
        );
        assert_eq!(
            Zone::Named(Tz::UTC).rfc3339(ts("2026-01-02T00:00:00Z")),
            "2026-01-02T00:00:00Z"
        );
    }

    #[test]
    fn daylight_saving_time_follows_the_wall_clock() {
        let ny = |s: &str| Schedule::parse(s, Some("America/New_York")).unwrap();
        // 09:00 local is 14:00 UTC in winter and 13:00 UTC in summer.
        assert_eq!(
            runs(&ny("0 9 * * *"), "2026-03-07T15:00:00Z", 2),
            ["2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"]
        );
        // 02:30 does not exist on 8 March 2026: that run is at 03:00 EDT.
        assert_eq!(
            runs(&ny("30 2 * * *"), "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
        );
        // 01:30 happens twice on 1 November 2026: one run, the first.
        assert_eq!(
            runs(&ny("30 1 * * *"), "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // Hourly runs keep their real hours across the jump.
        assert_eq!(
            runs(&ny("0 * * * *"), "2026-03-08T06:30:00Z", 2),
            ["2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"]
        );
    }

    #[test]
    fn impossible_dates_never_run() {
        assert_eq!(
            utc("59 23 31 2 *").next_after(ts("2026-01-01T00:00:00Z")),
            None
        );
    }
}
