//! Small text and path values of settings: names, header text, directories, files.

use std::{fmt, path::PathBuf, str::FromStr};

/// A name of letters, digits, `_` and `-` (1 to 64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(pub String);

impl FromStr for Name {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid =
            (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid { Ok(Self(s.to_owned())) } else { Err("must be 1 to 64 letters, digits, _ or -".into()) }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A header value: visible ASCII and spaces, not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderText(pub String);

impl FromStr for HeaderText {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.trim().is_empty() && s.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
        if ok { Ok(Self(s.to_owned())) } else { Err("must be a non-empty header value (visible ASCII)".into()) }
    }
}

impl fmt::Display for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A directory path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir(pub PathBuf);

impl FromStr for Dir {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() { Err("must not be empty".into()) } else { Ok(Self(PathBuf::from(s))) }
    }
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

/// A file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePath(pub PathBuf);

impl FromStr for FilePath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() { Err("must not be empty".into()) } else { Ok(Self(PathBuf::from(s))) }
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}
