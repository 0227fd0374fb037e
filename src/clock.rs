//! This host's clock against the cluster's: the API server's `Date` header and the CA's
//! validity window. A wrong clock shows up later as baffling TLS errors ("certificate
//! not yet valid", "expired"), so discovery says so first. Pure functions.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

fn seconds(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    let valid = (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 61;
    valid.then(|| days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// An HTTP `Date` (IMF-fixdate: `Sun, 29 Nov 2026 05:47:30 GMT`) as Unix seconds.
/// This host's clock, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's civil_from_days).
pub fn format_utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// An HTTP `Date` header's time (RFC 9110: IMF-fixdate, and the obsolete RFC 850 and
/// asctime forms a recipient must accept), by `httpdate`, as hyper reads it.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// A certificate time as [`crate::x509`] writes it (`2036-11-26T05:26:29Z`).
pub fn parse_cert_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    seconds(
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    )
}

/// More than this between clocks is worth a warning (kubeadm's and the minute).
pub const TOLERANCE_S: i64 = 60;

/// How far this host's clock is ahead (positive) of the server's, when that is more
/// than [`TOLERANCE_S`], with what to do about it.
pub fn skew_warning(local: i64, server: i64) -> Option<(i64, String)> {
    let skew = local - server;
    (skew.abs() > TOLERANCE_S).then(|| {
        let dir = if skew > 0 { "ahead of" } else { "behind" };
        (
            skew,
            format!(
                "this host's clock is {} s {dir} the API server's (its Date header): certificates will \
                 look not yet valid or expired; fix the clock (timedatectl set-ntp true, chrony)",
                skew.abs()
            ),
        )
    })
}

/// A warning when `now` is outside the CA certificate's validity window.
pub fn ca_validity_warning(now: i64, not_before: &str, not_after: &str) -> Option<String> {
    let (nb, na) = (parse_cert_time(not_before)?, parse_cert_time(not_after)?);
    if now + TOLERANCE_S < nb {
        Some(format!(
            "the cluster CA is valid only from {not_before}, after this host's clock: this host's clock \
             is probably behind; fix it (timedatectl set-ntp true, chrony)"
        ))
    } else if now > na {
        Some(format!(
            "the cluster CA expired at {not_after} by this host's clock: renew the cluster's CA, or fix \
             this host's clock if it is ahead"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_round_trip() {
        for t in [0, 951_782_400, 1_764_583_200, 4_102_444_799] {
            let s = format_utc(t);
            assert_eq!(parse_cert_time(&s), Some(t), "{s}");
        }
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 29 Nov 2026 05:47:30 GMT"),
            Some(1_795_931_250)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        // The obsolete forms RFC 9110 says a recipient must accept.
        let fixdate = parse_http_date("Sun, 29 Nov 2026 05:47:30 GMT");
        assert!(fixdate.is_some());
        assert_eq!(parse_http_date("Sunday, 29-Nov-26 05:47:30 GMT"), fixdate);
        assert_eq!(parse_http_date("Sun Nov 29 05:47:30 2026"), fixdate);
        assert_eq!(parse_http_date("Sun, 29 Foo 2026 05:47:30 GMT"), None);
    }

    #[test]
    fn cert_times() {
        assert_eq!(parse_cert_time("1970-01-02T00:00:00Z"), Some(86_400));
        assert_eq!(parse_cert_time("2036-11-26T05:26:29"), None);
    }

    #[test]
    fn skew() {
        assert_eq!(skew_warning(1000, 1000 - 60), None);
        let (s, msg) = skew_warning(1000, 1000 + 3600).unwrap();
        assert_eq!(s, -3600);
        assert!(msg.contains("3600 s behind"), "{msg}");
        assert!(skew_warning(5000, 1000).unwrap().1.contains("ahead of"));
    }

    #[test]
    fn ca_window() {
        let (nb, na) = ("2026-11-29T05:26:29Z", "2036-11-26T05:26:29Z");
        let start = parse_cert_time(nb).unwrap();
        assert_eq!(ca_validity_warning(start + 10, nb, na), None);
        assert_eq!(
            ca_validity_warning(start - 30, nb, na),
            None,
            "within tolerance"
        );
        assert!(
            ca_validity_warning(start - 3600, nb, na)
                .unwrap()
                .contains("behind")
        );
        let end = parse_cert_time(na).unwrap();
        assert!(
            ca_validity_warning(end + 1, nb, na)
                .unwrap()
                .contains("expired")
        );
    }
}
