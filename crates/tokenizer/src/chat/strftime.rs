//! The clock behind the templates' `strftime_now(format)`.

use std::time::{SystemTime, UNIX_EPOCH};

/// A civil date and time (no time zone) for `strftime_now`. Tests inject a fixed one through
/// [`super::RenderRequest::now`]; by default the current UTC time is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateTime {
    pub year: i32,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

impl TemplateTime {
    /// The current UTC time.
    pub fn now_utc() -> TemplateTime {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        TemplateTime::from_unix(secs as i64)
    }

    /// The UTC civil time of a Unix timestamp.
    pub fn from_unix(secs: i64) -> TemplateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        TemplateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    fn days_since_epoch(&self) -> i64 {
        days_from_civil(self.year, self.month.clamp(1, 12), self.day.clamp(1, 31))
    }

    /// 0 = Monday.
    fn weekday(&self) -> usize {
        // 1970-01-01 was a Thursday.
        (self.days_since_epoch() + 3).rem_euclid(7) as usize
    }

    fn day_of_year(&self) -> i64 {
        self.days_since_epoch() - days_from_civil(self.year, 1, 1) + 1
    }

    /// C/Python `strftime` in the C locale for the common directives (`%Y %y %m %d %e %b %B
    /// %h %a %A %H %I %M %S %p %j %w %u %F %T %D %%`, and glibc's `%-d`-style unpadded
    /// forms). Unknown directives are kept as written, as glibc does.
    pub fn strftime(&self, format: &str) -> String {
        let month_name = MONTHS[(self.month.clamp(1, 12) - 1) as usize];
        let weekday = self.weekday();
        let hour12 = match self.hour % 12 {
            0 => 12,
            h => h,
        };
        let mut out = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let unpadded = chars.peek() == Some(&'-');
            if unpadded {
                chars.next();
            }
            let Some(d) = chars.next() else {
                out.push('%');
                if unpadded {
                    out.push('-');
                }
                break;
            };
            let num = |n: i64, width: usize| {
                if unpadded {
                    n.to_string()
                } else {
                    format!("{n:0width$}")
                }
            };
            match d {
                'Y' => out.push_str(&self.year.to_string()),
                'y' => out.push_str(&num(i64::from(self.year).rem_euclid(100), 2)),
                'm' => out.push_str(&num(self.month.into(), 2)),
                'd' => out.push_str(&num(self.day.into(), 2)),
                'e' => out.push_str(&format!("{:>2}", self.day)),
                'H' => out.push_str(&num(self.hour.into(), 2)),
                'I' => out.push_str(&num(hour12.into(), 2)),
                'M' => out.push_str(&num(self.minute.into(), 2)),
                'S' => out.push_str(&num(self.second.into(), 2)),
                'j' => out.push_str(&num(self.day_of_year(), 3)),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'B' => out.push_str(month_name),
                'b' | 'h' => out.push_str(&month_name[..3]),
                'A' => out.push_str(WEEKDAYS[weekday]),
                'a' => out.push_str(&WEEKDAYS[weekday][..3]),
                'w' => out.push_str(&((weekday + 1) % 7).to_string()),
                'u' => out.push_str(&(weekday + 1).to_string()),
                'F' => out.push_str(&format!("{}-{:02}-{:02}", self.year, self.month, self.day)),
                'T' => out.push_str(&format!(
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                )),
                'D' => out.push_str(&format!(
                    "{:02}/{:02}/{:02}",
                    self.month,
                    self.day,
                    i64::from(self.year).rem_euclid(100)
                )),
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    if unpadded {
                        out.push('-');
                    }
                    out.push(other);
                }
            }
        }
        out
    }
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        let t = TemplateTime {
            year: 2024,
            month: 7,
            day: 26,
            hour: 13,
            minute: 5,
            second: 9,
        };
        assert_eq!(t.strftime("%Y-%m-%d"), "2024-07-26");
        assert_eq!(t.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(t.strftime("%B %d, %Y"), "July 26, 2024");
        assert_eq!(
            t.strftime("%A %a %j %I%p %-d %%"),
            "Friday Fri 208 01PM 26 %"
        );
        assert_eq!(TemplateTime::from_unix(1_721_999_109), t);
        assert_eq!(
            TemplateTime::from_unix(0).strftime("%F %T %A"),
            "1970-01-01 00:00:00 Thursday"
        );
    }
}
