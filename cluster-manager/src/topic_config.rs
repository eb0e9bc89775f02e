//! Topic configs: the keys this version understands, their defaults and limits, parsed from
//! the string map users send into [`TopicConfig`] (pure, so every rule is table-tested).

use std::collections::BTreeMap;

use crate::config::{DEFAULT_MAX_MESSAGE_BYTES, MAX_MAX_MESSAGE_BYTES};
use crate::error::CmError;

pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";

/// Every key, for error messages.
const KNOWN: [&str; 5] = [
    MAX_MESSAGE_BYTES,
    RETENTION_MS,
    RETENTION_BYTES,
    CLEANUP_POLICY,
    DELETE_RETENTION_MS,
];

/// Records are kept 7 days unless the topic says otherwise.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Tombstones of a compacted topic are kept a day.
pub const DEFAULT_DELETE_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// What happens to old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Deleted by the retention limits.
    pub delete: bool,
    /// Compacted: only the latest record of each key is kept.
    pub compact: bool,
}

impl CleanupPolicy {
    fn parse(value: &str) -> Option<Self> {
        let mut policy = Self {
            delete: false,
            compact: false,
        };
        for part in value.split(',') {
            match part.trim() {
                "delete" if !policy.delete => policy.delete = true,
                "compact" if !policy.compact => policy.compact = true,
                _ => return None,
            }
        }
        Some(policy)
    }

    fn as_str(self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// A topic's effective configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    pub max_message_bytes: u32,
    /// Records stored longer ago than this are deleted; `None`: kept by age forever.
    pub retention_ms: Option<u64>,
    /// Per partition: the oldest batches are deleted while more than this is stored; `None`:
    /// no size limit.
    pub retention_bytes: Option<u64>,
    pub cleanup: CleanupPolicy,
    /// How long a compacted topic keeps a tombstone (a keyed record without a value).
    pub delete_retention_ms: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            retention_ms: Some(DEFAULT_RETENTION_MS as u64),
            retention_bytes: None,
            cleanup: CleanupPolicy {
                delete: true,
                compact: false,
            },
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
        }
    }
}

impl TopicConfig {
    /// Parses `requested` over the defaults; an unknown key or a bad value is an
    /// `INVALID_ARGUMENT` naming `configs[key]`.
    pub fn parse(requested: &BTreeMap<String, String>) -> Result<Self, CmError> {
        let mut config = Self::default();
        for (key, value) in requested {
            let field = format!("configs[{key}]");
            match key.as_str() {
                MAX_MESSAGE_BYTES => {
                    config.max_message_bytes = value
                        .parse()
                        .ok()
                        .filter(|v| (1..=MAX_MAX_MESSAGE_BYTES).contains(v))
                        .ok_or_else(|| {
                            CmError::invalid(
                                &field,
                                format!("'{value}' is not a size between 1 and {MAX_MAX_MESSAGE_BYTES} bytes"),
                            )
                        })?;
                }
                RETENTION_MS => {
                    config.retention_ms = limit(value).ok_or_else(|| {
                        CmError::invalid(
                            &field,
                            format!("'{value}' is not a number of milliseconds of at least 1, or -1 for no limit"),
                        )
                    })?;
                }
                RETENTION_BYTES => {
                    config.retention_bytes = limit(value).ok_or_else(|| {
                        CmError::invalid(
                            &field,
                            format!("'{value}' is not a number of bytes of at least 1, or -1 for no limit"),
                        )
                    })?;
                }
                CLEANUP_POLICY => {
                    config.cleanup = CleanupPolicy::parse(value).ok_or_else(|| {
                        CmError::invalid(
                            &field,
                            format!("'{value}' is not a policy: delete, compact or compact,delete"),
                        )
                    })?;
                }
                DELETE_RETENTION_MS => {
                    config.delete_retention_ms = value.parse().map_err(|_| {
                        CmError::invalid(
                            &field,
                            format!("'{value}' is not a number of milliseconds (0 or more)"),
                        )
                    })?;
                }
                _ => {
                    return Err(CmError::invalid(
                        &field,
                        format!("unknown topic config; known keys: {}", KNOWN.join(", ")),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// The configs as shown to users: every key with its effective value.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let unlimited = |v: Option<u64>| v.map_or("-1".to_owned(), |v| v.to_string());
        BTreeMap::from([
            (
                MAX_MESSAGE_BYTES.to_owned(),
                self.max_message_bytes.to_string(),
            ),
            (RETENTION_MS.to_owned(), unlimited(self.retention_ms)),
            (RETENTION_BYTES.to_owned(), unlimited(self.retention_bytes)),
            (CLEANUP_POLICY.to_owned(), self.cleanup.as_str().to_owned()),
            (
                DELETE_RETENTION_MS.to_owned(),
                self.delete_retention_ms.to_string(),
            ),
        ])
    }

    /// The age limit brokers enforce: none unless the policy deletes.
    pub fn enforced_retention_ms(&self) -> Option<u64> {
        self.retention_ms.filter(|_| self.cleanup.delete)
    }

    /// The size limit brokers enforce: none unless the policy deletes.
    pub fn enforced_retention_bytes(&self) -> Option<u64> {
        self.retention_bytes.filter(|_| self.cleanup.delete)
    }
}

/// `-1` is no limit (`Some(None)`), a positive number a limit; anything else `None`.
fn limit(value: &str) -> Option<Option<u64>> {
    match value.parse::<i64>().ok()? {
        -1 => Some(None),
        v if v >= 1 => Some(Some(v as u64)),
        _ => None,
    }
}

/// Fills in defaults and checks every key and value of a topic's configs.
pub fn effective_configs(
    requested: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, CmError> {
    TopicConfig::parse(requested).map(|config| config.to_map())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_fill_every_key_and_round_trip() {
        let map = effective_configs(&BTreeMap::new()).unwrap();
        assert_eq!(map[MAX_MESSAGE_BYTES], "1048576");
        assert_eq!(map[RETENTION_MS], "604800000");
        assert_eq!(map[RETENTION_BYTES], "-1");
        assert_eq!(map[CLEANUP_POLICY], "delete");
        assert_eq!(map[DELETE_RETENTION_MS], "86400000");
        assert_eq!(TopicConfig::parse(&map).unwrap(), TopicConfig::default());
    }

    #[test]
    fn values_set_what_they_name() {
        let config = TopicConfig::parse(&configs(&[
            (MAX_MESSAGE_BYTES, "2048"),
            (RETENTION_MS, "-1"),
            (RETENTION_BYTES, "1000000"),
            (CLEANUP_POLICY, "compact,delete"),
            (DELETE_RETENTION_MS, "0"),
        ]))
        .unwrap();
        assert_eq!(
            config,
            TopicConfig {
                max_message_bytes: 2048,
                retention_ms: None,
                retention_bytes: Some(1_000_000),
                cleanup: CleanupPolicy {
                    delete: true,
                    compact: true,
                },
                delete_retention_ms: 0,
            }
        );
        assert_eq!(TopicConfig::parse(&config.to_map()).unwrap(), config);
        let compact_only = TopicConfig::parse(&configs(&[(CLEANUP_POLICY, "compact")])).unwrap();
        assert_eq!(compact_only.retention_ms, Some(DEFAULT_RETENTION_MS as u64));
        assert_eq!(
            compact_only.enforced_retention_ms(),
            None,
            "compaction only"
        );
        assert_eq!(
            TopicConfig::parse(&configs(&[(CLEANUP_POLICY, "delete , compact")]))
                .unwrap()
                .cleanup,
            config.cleanup
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_key() {
        for (key, value) in [
            ("retention.check", "1"),
            (MAX_MESSAGE_BYTES, "0"),
            (MAX_MESSAGE_BYTES, "lots"),
            (RETENTION_MS, "0"),
            (RETENTION_MS, "-2"),
            (RETENTION_MS, "1h"),
            (RETENTION_BYTES, "0"),
            (RETENTION_BYTES, ""),
            (CLEANUP_POLICY, "shred"),
            (CLEANUP_POLICY, "compact,compact"),
            (CLEANUP_POLICY, ""),
            (DELETE_RETENTION_MS, "-1"),
        ] {
            let err = TopicConfig::parse(&configs(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("configs[{key}]")), "{err}");
        }
    }
}
