//! CronJob schedule validation, as upstream's (robfig/cron standard parser):
//! five fields (minute, hour, day of month, month, day of week) of `*`, `?`,
//! numbers, names, ranges, lists and steps, or one of the `@` descriptors.

/// `Ok` if `schedule` parses; else upstream-style text saying why.
pub fn validate(schedule: &str) -> Result<(), String> {
    let trimmed = schedule.trim();
    if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(descriptor) = trimmed.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") => Ok(()),
            _ => Err(format!("unrecognized descriptor: {trimmed}")),
        };
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(u32, u32, &[&str], u32); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, MONTHS, 1),
        (0, 6, DAYS, 0),
    ];
    for (field, (min, max, names, name_base)) in fields.iter().zip(specs) {
        for part in field.split(',') {
            check_part(part, min, max, names, name_base)?;
        }
    }
    Ok(())
}

fn check_part(
    part: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(), String> {
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (part, None),
    };
    if let Some(step) = step {
        let n: u32 = step
            .parse()
            .map_err(|_| format!("failed to parse int from {step}"))?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
    }
    if range == "*" || range == "?" {
        return Ok(());
    }
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + name_base);
        }
        s.parse::<u32>()
            .map_err(|_| format!("failed to parse int from {s}"))
    };
    let (lo, hi) = match range.split_once('-') {
        Some((a, b)) => (value(a)?, value(b)?),
        None => {
            let v = value(range)?;
            (v, if step.is_some() { max } else { v })
        }
    };
    if lo < min {
        return Err(format!(
            "beginning of range ({lo}) below minimum ({min}): {part}"
        ));
    }
    if hi > max {
        return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
    }
    if lo > hi {
        return Err(format!(
            "beginning of range ({lo}) beyond end of range ({hi}): {part}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn standard_schedules_parse() {
        for s in [
            "*/5 * * * *",
            "0 0 * * 0",
            "15 10 1-15/2 JAN-MAR mon,wed",
            "@hourly",
            "0 0 ? * *",
        ] {
            assert!(validate(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn nonsense_and_out_of_range_schedules_do_not() {
        for s in [
            "every tuesday",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "@often",
            "TZ=UTC * * * * *",
        ] {
            assert!(validate(s).is_err(), "{s}");
        }
    }
}
