//! Bounded maps that make room when full (the verified-token cache, rate-limit state): a flood
//! of new entries can only churn them, never grow them.

/// Makes room in a bounded map that is full: drops entries until `keep` are left. With `keep`
/// a sixteenth under the capacity, the verified-token cache and the rate-limit state both make
/// room this way, so a flood of new entries can only churn them, never grow them (entries added
/// while an eviction was pending are dropped too). Which entries go moves on with `cursor` from
/// one call to the next, so the same shards are not emptied over and over.
pub fn forget_down_to<K: Eq + std::hash::Hash, V>(
    map: &dashmap::DashMap<K, V>,
    keep: usize,
    cursor: &std::sync::atomic::AtomicUsize,
) {
    let len = map.len();
    let n = len.saturating_sub(keep);
    if n == 0 {
        return;
    }
    let start = cursor.fetch_add(n, std::sync::atomic::Ordering::Relaxed) % len;
    let mut i = 0usize;
    map.retain(|_, _| {
        let from_start = (i % len + len - start) % len;
        i += 1;
        from_start >= n
    });
}

/// What a full map of `capacity` keeps after making room: a sixteenth less, so that eviction
/// (a walk over the whole map) runs once per `capacity / 16` new entries.
pub fn keep_after_eviction(capacity: usize) -> usize {
    capacity - (capacity / 16 + 1).min(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_moves_on_and_reaches_its_target() {
        let map = dashmap::DashMap::new();
        for i in 0..1000u32 {
            map.insert(i, ());
        }
        let cursor = std::sync::atomic::AtomicUsize::new(0);
        let keep = keep_after_eviction(1000);
        assert_eq!(keep, 937);
        forget_down_to(&map, keep, &cursor);
        assert_eq!(map.len(), 937);
        let first: std::collections::HashSet<u32> =
            (0..1000).filter(|i| !map.contains_key(i)).collect();
        for i in 1000..1063u32 {
            map.insert(i, ());
        }
        forget_down_to(&map, keep, &cursor);
        assert_eq!(map.len(), 937);
        let second: std::collections::HashSet<u32> = (0..1000)
            .filter(|i| !map.contains_key(i) && !first.contains(i))
            .collect();
        assert!(
            !second.is_empty(),
            "the second eviction takes other entries"
        );
    }
}
