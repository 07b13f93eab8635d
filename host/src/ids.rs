//! Resource ids and clock helpers shared by the stores.

use rand::Rng;

/// Crockford base32 without the look-alikes, so ids survive being read aloud.
const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// `prefix_` followed by 26 random characters (130 bits).
pub fn new_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 27);
    s.push_str(prefix);
    s.push('_');
    for _ in 0..26 {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// Whether `id` looks like one [`new_id`] made with `prefix` (cheap early 404s
/// and no odd characters reaching storage keys).
pub fn is_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|r| r.len() == 26 && r.bytes().all(|b| ALPHABET.contains(&b)))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 in UTC with milliseconds, as the API shows times.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_differ() {
        let a = new_id("job");
        let b = new_id("job");
        assert_ne!(a, b);
        assert!(is_id(&a, "job"));
        assert!(!is_id(&a, "file"));
        assert!(!is_id("job_../../etc/passwd", "job"));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
