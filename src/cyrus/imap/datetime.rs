//! IMAP date-times (`"28-Nov-2026 14:53:10 +0000"`) to and from Unix seconds,
//! on the proleptic Gregorian calendar (no time-zone database: the offset is in
//! the text).

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Parse an IMAP date-time (`"28-Nov-2026 14:53:10 +0000"`, day may be space-padded)
/// into Unix seconds.
pub fn parse_imap_datetime(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut d = date.split('-');
    let day: i64 = d.next()?.parse().ok()?;
    let month = d.next()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let year: i64 = d.next()?.parse().ok()?;
    let mut t = time.split(':');
    let (h, mi, sec): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if d.next().is_some()
        || t.next().is_some()
        || !(1..=31).contains(&day)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let zh: i64 = digits[..2].parse().ok()?;
    let zm: i64 = digits[2..].parse().ok()?;
    let offset = sign * (zh * 3600 + zm * 60);
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + mi * 60 + sec - offset)
}

/// Format Unix seconds as an IMAP date-time in UTC (`"28-Nov-2026 14:53:10 +0000"`).
pub fn format_imap_datetime(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let s = t.rem_euclid(86400);
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02} +0000",
        d,
        MONTHS[(m - 1) as usize],
        y,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_imap_datetime("01-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_imap_datetime("28-Nov-2026 14:53:10 +0000"),
            Some(1_795_877_590)
        );
        assert_eq!(
            parse_imap_datetime(" 1-Mar-2024 01:00:00 +0100"),
            Some(1_709_251_200)
        );
        assert_eq!(
            parse_imap_datetime("29-Feb-2024 23:59:59 -0130"),
            Some(1_709_256_599)
        );
        assert_eq!(parse_imap_datetime("31-Dec-1969 23:59:59 +0000"), Some(-1));
        for bad in [
            "",
            "28-Nov-2026",
            "28-Foo-2026 14:53:10 +0000",
            "28-Nov-2026 14:53 +0000",
            "28-Nov-2026 14:53:10 0000",
            "28-Nov-2026 25:00:00 +0000",
        ] {
            assert_eq!(parse_imap_datetime(bad), None, "{bad:?}");
        }
        for t in [0, 1_795_877_590, 951_782_400, 4_102_444_799, -86_401] {
            assert_eq!(parse_imap_datetime(&format_imap_datetime(t)), Some(t));
        }
        assert_eq!(
            format_imap_datetime(1_795_877_590),
            "28-Nov-2026 14:53:10 +0000"
        );
    }
}
