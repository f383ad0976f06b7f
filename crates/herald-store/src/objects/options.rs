//! Where the store is and how uploads to it are cut: [`S3Location`], [`S3Endpoint`] and
//! [`S3Options`], parsed and checked at the edge.

use std::{fmt, str::FromStr};

use object_store::path::Path;

use super::{MAX_OBJECT_SIZE, MAX_PARTS, MIB, MIN_PART_SIZE, PARTS_IN_FLIGHT};

/// Where in an object store attachments live: `s3://<bucket>/<prefix>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing slashes; empty for the bucket's root.
    pub prefix: String,
}

impl FromStr for S3Location {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url.strip_prefix("s3://").ok_or("must start with s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        // What the errors echo, without a password or a secret query value.
        let shown = |part: &str| herald_core::redact::url_password(&format!("s3://{part}"))[5..].to_owned();
        if !bucket_ok {
            return Err(format!(
                "{:?} is not a bucket name (3 to 63 lower-case letters, digits, . and -): use s3://<bucket>/<prefix>",
                shown(bucket)
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        let segments_ok = prefix.is_empty()
            || prefix.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(char::is_control));
        if !segments_ok || prefix.len() > 512 || Path::parse(prefix).is_err() {
            let prefix = shown(&format!("{bucket}/{prefix}"))[bucket.len() + 1..].to_owned();
            return Err(format!("{prefix:?} is not a prefix: segments separated by single slashes, no . or .."));
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The endpoint of an S3-compatible store that is not AWS: `http(s)://host[:port]`, addressed
/// path-style. It never carries credentials (those come from `AWS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Endpoint(String);

impl S3Endpoint {
    /// Whether requests go over plain HTTP (a local store, a test server).
    pub fn is_http(&self) -> bool {
        self.0.starts_with("http://")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for S3Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim_end_matches('/');
        let authority = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
        match authority {
            Some(a) if !a.is_empty() && !a.contains(['/', '?', '#', '@']) && !a.contains(char::is_whitespace) => {
                Ok(Self(s.to_owned()))
            }
            _ => Err("must be http://host[:port] or https://host[:port], without a path or credentials \
                      (credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                .into()),
        }
    }
}

impl fmt::Display for S3Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How uploads to the store are cut and how much memory they may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Options {
    /// The largest file accepted (`max_upload_size`): it sets the part size.
    pub max_upload_size: u64,
    /// Memory all uploads of the process may hold in buffers and parts in flight
    /// (`s3_upload_memory`); whole MiB count.
    pub upload_memory: u64,
}

impl S3Options {
    /// Every part of a multipart upload but the last: [`MIN_PART_SIZE`], or the whole MiB that
    /// fit the largest upload in [`MAX_PARTS`] parts.
    pub fn part_size(&self) -> u64 {
        let fitting = self.max_upload_size.div_ceil(MAX_PARTS).div_ceil(MIB).saturating_mul(MIB);
        fitting.max(MIN_PART_SIZE)
    }

    /// The most one upload holds: a part being filled and [`PARTS_IN_FLIGHT`] on the wire.
    pub fn memory_per_upload(&self) -> u64 {
        self.part_size().saturating_mul(1 + PARTS_IN_FLIGHT as u64)
    }

    /// Whether S3 can store a file of `max_upload_size`.
    pub fn check_max_upload_size(&self) -> Result<(), String> {
        if self.max_upload_size > MAX_OBJECT_SIZE {
            return Err(format!(
                "must be at most 5TiB on an object store (S3's largest object), not {} bytes",
                self.max_upload_size
            ));
        }
        Ok(())
    }

    /// Whether the budget holds one upload of any size.
    pub fn check_upload_memory(&self) -> Result<(), String> {
        let least = self.memory_per_upload();
        if self.upload_memory < least {
            return Err(format!(
                "must be at least {}MiB: one upload holds a part being filled and {PARTS_IN_FLIGHT} on the wire, \
                 {}MiB each for max_upload_size {} bytes",
                least / MIB,
                self.part_size() / MIB,
                self.max_upload_size
            ));
        }
        Ok(())
    }
}
