//! The `Key:   123 kB` lines of `/proc/meminfo` and `/proc/self/status`, read as bytes.

use crate::Bytes;

/// The figure of `key` (`MemTotal`, `MemAvailable`, `RssAnon`) in `text`, in bytes; `None` when
/// it is absent or not a number of kB.
pub fn kib_field(text: &str, key: &str) -> Option<Bytes> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(Bytes(kib.saturating_mul(1024)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16316412 kB\nMemFree:         1205880 kB\nMemAvailable:    9876543 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n";

    #[test]
    fn fields_are_read_in_bytes() {
        assert_eq!(kib_field(MEMINFO, "MemTotal"), Some(Bytes(16_316_412 * 1024)));
        assert_eq!(kib_field(MEMINFO, "MemAvailable"), Some(Bytes(9_876_543 * 1024)));
        assert_eq!(kib_field("Name:\tmgc\nRssAnon:\t   10240 kB\n", "RssAnon"), Some(Bytes(10 << 20)));
    }

    #[test]
    fn absent_or_unitless_fields_are_none() {
        assert_eq!(kib_field(MEMINFO, "SwapTotal"), None);
        assert_eq!(kib_field(MEMINFO, "HugePages_Total"), None, "no unit");
        assert_eq!(kib_field(MEMINFO, "Mem"), None, "a prefix of a key is not the key");
        assert_eq!(kib_field("MemTotal: lots kB\n", "MemTotal"), None);
        assert_eq!(kib_field("", "MemTotal"), None);
        assert_eq!(kib_field("MemTotal: 99999999999999999999 kB", "MemTotal"), None);
        assert_eq!(kib_field("MemTotal: 18446744073709551615 kB", "MemTotal"), Some(Bytes(u64::MAX)));
    }
}
