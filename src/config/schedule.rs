//! Checking `SYNC_SCHEDULE` before the Functions host does. The host reads it through `%SYNC_SCHEDULE%` in
//! `function-cert-sync/function.json`; a schedule it cannot parse leaves the timer function disabled with an error in
//! the host's own log, easy to miss. So the app refuses to start and names the field at fault.
//!
//! The format is the timer trigger's NCRONTAB ("Timer trigger for Azure Functions", NCRONTAB expressions):
//! `{second} {minute} {hour} {day} {month} {day-of-week}`, each field a value (`5`), all values (`*`), a range
//! (`5-7`), a list of those (`5,8,10`) or any of them with an interval (`*/5`, `0-30/10`). Months and days of the
//! week may be names (`Jan`, `Monday`), in any case; day 0 is Sunday. The check errs on the side of accepting:
//! names are matched on their first three letters, as NCrontab does, so it never refuses a schedule the host runs.

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names accepted for values, lower case, from `min` on (matched on their first three letters).
    names: &'static [&'static str],
    /// A name to show in an error.
    example: &'static str,
}

const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 6] = [
    Field { name: "second", min: 0, max: 59, names: &[], example: "" },
    Field { name: "minute", min: 0, max: 59, names: &[], example: "" },
    Field { name: "hour", min: 0, max: 23, names: &[], example: "" },
    Field { name: "day", min: 1, max: 31, names: &[], example: "" },
    Field { name: "month", min: 1, max: 12, names: MONTHS, example: "Jan" },
    Field { name: "day-of-week", min: 0, max: 6, names: DAYS, example: "Mon" },
];

/// `Ok` for a schedule the timer trigger accepts; otherwise what is wrong, naming the field.
pub(super) fn check_ncrontab(schedule: &str) -> Result<(), String> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(format!(
            "must be a 6-field NCRONTAB expression ({{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}, \
             UTC), e.g. \"0 0 */4 * * *\"; {schedule:?} has {} field(s)",
            fields.len()
        ));
    }
    for (text, field) in fields.iter().zip(&FIELDS) {
        check_field(text, field).map_err(|why| format!("{} field {text:?} of {schedule:?}: {why}", field.name))?;
    }
    Ok(())
}

fn check_field(text: &str, field: &Field) -> Result<(), String> {
    for item in text.split(',') {
        let (range, interval) = match item.split_once('/') {
            Some((range, interval)) => (range, Some(interval)),
            None => (item, None),
        };
        if let Some(interval) = interval {
            match interval.parse::<u32>() {
                Ok(step) if step > 0 => {}
                _ => return Err(format!("the interval after '/' must be a whole number above 0, not {interval:?}")),
            }
        }
        if range == "*" {
            continue;
        }
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (value(first, field)?, value(last, field)?),
            None => {
                let only = value(range, field)?;
                (only, only)
            }
        };
        if first > last {
            return Err(format!("the range {range:?} runs backwards"));
        }
    }
    Ok(())
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let range = format!("{}-{}", field.min, field.max);
    if let Ok(number) = text.parse::<u32>() {
        return if (field.min..=field.max).contains(&number) {
            Ok(number)
        } else {
            Err(format!("{number} is outside {range}"))
        };
    }
    let lower = text.to_ascii_lowercase();
    let named = (lower.len() >= 3 && lower.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| field.names.iter().position(|name| lower.starts_with(name)))
        .flatten();
    match named {
        Some(index) => Ok(field.min + index as u32),
        None if field.names.is_empty() => {
            Err(format!("expected *, a number in {range}, a range or a list; not {text:?}"))
        }
        None => Err(format!(
            "expected *, a number in {range}, a name such as {:?}, a range or a list; not {text:?}",
            field.example
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_examples_are_accepted() {
        // The examples of "Timer trigger for Azure Functions", NCRONTAB expressions.
        for schedule in [
            "0 */5 * * * *",
            "0 0 * * * *",
            "0 0 */2 * * *",
            "0 0 9-17 * * *",
            "0 30 9 * * *",
            "0 30 9 * * 1-5",
            "0 30 9 * Jan Mon",
            "5 8,10,12 * * * *",
            "0 0-30/10 * * * *",
            "0 0 0 1 January Sunday",
            "0 0 4 * * SAT",
        ] {
            assert_eq!(check_ncrontab(schedule), Ok(()), "{schedule}");
        }
    }

    #[test]
    fn each_mistake_is_named_with_its_field() {
        for (schedule, expected) in [
            ("0 */4 * * *", "has 5 field(s)"),
            ("0 0 25 * * *", "hour field \"25\" of \"0 0 25 * * *\": 25 is outside 0-23"),
            ("60 * * * * *", "second field \"60\""),
            ("0 0 0 0 * *", "day field \"0\""),
            ("0 0 0 * 13 *", "month field \"13\""),
            ("0 0 0 * * 7", "day-of-week field \"7\" of \"0 0 0 * * 7\": 7 is outside 0-6"),
            ("0 */0 * * * *", "the interval after '/' must be a whole number above 0"),
            ("0 0 17-9 * * *", "the range \"17-9\" runs backwards"),
            ("0 0 9,,17 * * *", "not \"\""),
            ("0 0 0 * Foo *", "a name such as \"Jan\""),
            ("0 0 0 * * Mo", "a name such as \"Mon\""),
            ("0 0 every * * *", "a number in 0-23, a range or a list"),
            ("00:30:00", "has 1 field(s)"),
        ] {
            let error = check_ncrontab(schedule).expect_err(schedule);
            assert!(error.contains(expected), "{schedule}: {error}");
        }
    }
}
