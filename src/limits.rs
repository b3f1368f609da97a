//! Limits that configs are validated against before anything is allocated: a size that cannot
//! fit in memory, or a thread count far beyond the machine, is an error that says how much was
//! asked for (instead of an abort on a failed allocation, or a machine that seems to hang).

/// Memory available to this process in bytes: `MemAvailable` from `/proc/meminfo`, else 8 GiB.
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        })
        .unwrap_or(8 << 30)
}

/// Formats a byte count with a binary unit (`1.5 GiB`).
pub fn format_bytes(bytes: u128) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Checks that `count` items of `item_bytes` bytes each fit in the memory available; the error
/// names `what` (e.g. the setting) and the sizes.
///
/// ```
/// assert!(glimpse::limits::check_memory("buffer_size", 1_000, 16).is_ok());
/// let err = glimpse::limits::check_memory("buffer_size", 1_000_000_000_000_000, 16).unwrap_err();
/// assert!(err.starts_with("buffer_size needs 14.2 PiB (1000000000000000 × 16 bytes)"), "{err}");
/// ```
pub fn check_memory(what: &str, count: u128, item_bytes: u128) -> Result<(), String> {
    let bytes = count.saturating_mul(item_bytes);
    let available = available_memory() as u128;
    if bytes > available {
        return Err(format!(
            "{what} needs {} ({count} × {item_bytes} bytes), more than the {} of memory available",
            format_bytes(bytes),
            format_bytes(available)
        ));
    }
    Ok(())
}

/// The most worker threads a setting may ask for: 8 per available core (at least 64).
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores * 8).max(64)
}

/// Checks a thread-count setting: at least 1 and at most [`max_threads`].
pub fn check_threads(what: &str, threads: usize) -> Result<(), String> {
    let max = max_threads();
    if threads == 0 || threads > max {
        return Err(format!("{what} must be between 1 and {max} on this machine, got {threads}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_memory_and_absurd_thread_counts_are_refused() {
        assert!(available_memory() > 1 << 20);
        assert_eq!(format_bytes(512), "512 bytes");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert!(check_memory("x", 1 << 20, 4).is_ok());
        let err = check_memory("n_step", u128::from(u64::MAX), u128::from(u64::MAX)).unwrap_err();
        assert!(err.contains("n_step needs") && err.contains("memory available"), "{err}");
        assert!(check_threads("threads", 2).is_ok());
        assert!(check_threads("threads", 0).is_err());
        assert!(check_threads("threads", 5000).unwrap_err().contains("got 5000"));
    }
}
