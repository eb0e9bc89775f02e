//! Config loading shared by every binary: defaults, then a TOML file, then environment
//! variables, then command-line flags; each later source overrides single keys of the earlier
//! ones, and the result is validated once by deserializing into the binary's config struct
//! (whose `#[serde(deny_unknown_fields)]` rejects unknown keys).
//!
//! Environment variables name a key path with `__` between levels: `MQ_STORAGE__FSYNC=false`
//! sets `storage.fsync`. Only variables that start with `MQ_` and contain `__` are read, so
//! `MQ_SERVER` (mqctl's server address) or `MQ_LOG` never collide with config keys.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "MQ_";

/// Why a config could not be loaded; the message names the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid override '{0}': expected KEY=VALUE, e.g. storage.fsync=false")]
    Override(String),
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// One override from a command-line flag: a dotted key path and its value.
pub use figment::value::Value;

pub type Override = (String, Value);

/// Parses `key.path=value` (the `--set` flag); the value is read as TOML-like (numbers, bools,
/// strings, arrays).
pub fn parse_override(text: &str) -> Result<Override, ConfigError> {
    let (key, value) = text
        .split_once('=')
        .filter(|(key, _)| !key.trim().is_empty())
        .ok_or_else(|| ConfigError::Override(text.to_owned()))?;
    let value: Value = value.parse().unwrap_or_else(|never| match never {});
    Ok((key.trim().to_owned(), value))
}

/// Loads a config of type `T`: `T::default()`, overridden by `file` (which must exist when
/// given), by `MQ_..__..` environment variables, and by `overrides`, in that order.
pub fn load<T>(file: Option<&Path>, overrides: &[Override]) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                reason: "no such file".to_owned(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(
        Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__"),
    );
    for (key, value) in overrides {
        figment = figment.merge(Serialized::default(key, value.clone()));
    }
    figment
        .extract()
        .map_err(|err| ConfigError::Invalid(err.to_string()))
}

/// Parses a TOML config text alone (no environment, no overrides): for tests of examples.
pub fn parse_toml<T>(text: &str) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    Figment::from(Serialized::defaults(T::default()))
        .merge(Toml::string(text))
        .extract()
        .map_err(|err| ConfigError::Invalid(err.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        name: String,
        net: Net,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Net {
        port: u16,
        #[serde(with = "humantime_serde_like")]
        timeout: Duration,
    }

    /// Durations as milliseconds, to keep this test free of extra crates.
    mod humantime_serde_like {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(d.as_millis() as u64)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            u64::deserialize(d).map(Duration::from_millis)
        }
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                name: "default".into(),
                net: Net::default(),
            }
        }
    }

    impl Default for Net {
        fn default() -> Self {
            Self {
                port: 7070,
                timeout: Duration::from_millis(500),
            }
        }
    }

    #[test]
    fn file_then_overrides_override_single_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "name = \"from-file\"\n[net]\nport = 9000\n").unwrap();
        let overrides = vec![parse_override("net.timeout=250").unwrap()];
        let config: Sample = load(Some(&path), &overrides).unwrap();
        assert_eq!(
            config,
            Sample {
                name: "from-file".into(),
                net: Net {
                    port: 9000,
                    timeout: Duration::from_millis(250)
                }
            }
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_with_the_key_named() {
        let err = parse_toml::<Sample>("[net]\nprot = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
        let err = parse_toml::<Sample>("[net]\nport = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn missing_file_and_malformed_override_are_errors() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/mq.toml")), &[]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/mq.toml"));
        assert!(parse_override("novalue").is_err());
        assert!(parse_override("=1").is_err());
    }
}
