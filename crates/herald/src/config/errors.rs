//! A raw value with its source, the errors of settings, and parsing one setting.

use std::{collections::BTreeMap, fmt, str::FromStr};

use super::{SETTINGS, Source};

/// A raw, unparsed value and where it came from.
#[derive(Debug, Clone)]
pub(super) struct Raw {
    pub(super) value: String,
    pub(super) source: Source,
}

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting's name, or `config file` for problems with the file itself.
    pub setting: String,
    pub message: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match SETTINGS.iter().find(|s| s.name == self.setting) {
            Some(s) => write!(f, "{} ({}, --{}): {}", s.name, s.env, s.flag, self.message),
            None => write!(f, "{}: {}", self.setting, self.message),
        }
    }
}

/// Everything that was wrong with the configuration.
#[derive(Debug, Clone)]
pub struct ConfigError(pub Vec<SettingError>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for err in &self.0 {
            writeln!(f, "  - {err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

pub(super) fn parse<T: FromStr<Err: fmt::Display>>(
    raw: &BTreeMap<&'static str, Raw>,
    name: &str,
    errors: &mut Vec<SettingError>,
) -> Option<T> {
    let raw = &raw[name];
    match raw.value.parse() {
        Ok(value) => Some(value),
        Err(message) => {
            errors.push(SettingError { setting: name.to_owned(), message: format!("{message} (from {})", raw.source) });
            None
        }
    }
}
