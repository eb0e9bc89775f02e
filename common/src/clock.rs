//! Wall-clock time as the broker's records and configs count it.

/// Milliseconds since the Unix epoch, by this machine's clock (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
