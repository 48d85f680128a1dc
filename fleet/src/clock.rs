//! The collector's clock: wall-clock Unix seconds, the one time source of every module.

/// Wall-clock Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
