//! Number formatting shared by notes and renderers (deterministic, locale-independent).

/// `1234567` → "1,234,567".
#[must_use]
pub(super) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A period's length: `604800` → "168 h", `5400` → "1 h 30 min", `480` → "8 min", `45` → "45 s"
/// (whole hours were all it said: 90 minutes read "1 h", 8 minutes "0 h").
#[must_use]
pub(super) fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{} h", grouped(h.unsigned_abs())));
    }
    if m > 0 {
        parts.push(format!("{m} min"));
    }
    if sec > 0 || parts.is_empty() {
        parts.push(format!("{sec} s"));
    }
    parts.join(" ")
}

/// A duration in milliseconds as [`span`] says it, rounded up to whole seconds (`1` → "1 s").
#[must_use]
pub(super) fn span_ms(ms: u64) -> String {
    span(i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX))
}

/// `41203118` → "41,203,118 B (41.2 MB)"; SI units, exact count first.
#[must_use]
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{} B ({value:.1} {})", grouped(n), UNITS[unit])
}

/// A percentage with two decimals: "12.34 %".
#[must_use]
pub(super) fn pct(p: f64) -> String {
    format!("{p:.2} %")
}

/// `part / whole` in percent, rounded to two decimals (0 when `whole` is 0).
#[must_use]
pub(super) fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_exact_and_stable() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(41_203_118), "41,203,118");
        // A period's length says its minutes and seconds (found by an adversarial pass).
        let spans = [604_800, 5_400, 480, 45, 0, 3_661, 604_800 + 1_800].map(span);
        assert_eq!(spans, ["168 h", "1 h 30 min", "8 min", "45 s", "0 s", "1 h 1 min 1 s", "168 h 30 min"]);
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(41_203_118), "41,203,118 B (41.2 MB)");
        assert_eq!(bytes(999_999), "999,999 B (1.0 MB)");
        assert_eq!(share(1, 3), 33.33);
        assert_eq!(share(2, 3), 66.67);
        assert_eq!(share(5, 0), 0.0);
        assert_eq!(pct(12.5), "12.50 %");
    }
}
