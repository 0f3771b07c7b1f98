use std::fmt;
use std::path::PathBuf;

use crate::error::{Result, StoreError};

/// The location of a store: a local folder or a prefix in an S3 bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StoreLocation {
    /// Parses `s3://bucket/prefix` or a local path; a relative path is made absolute.
    pub fn parse(uri: &str) -> Result<Self> {
        let invalid = |reason: &str| StoreError::InvalidUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };

        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(
                    "the bucket name is missing (expected s3://bucket/prefix)",
                ));
            }
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }

        if uri.contains("://") {
            return Err(invalid("only local paths and s3:// URIs are supported"));
        }
        if uri.is_empty() {
            return Err(invalid("the path is empty"));
        }
        let path = std::path::absolute(uri).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self::Local(path))
    }

    /// Returns the URI of an object or dataset named `name` directly under this location.
    pub fn child_uri(&self, name: &str) -> String {
        match self {
            Self::Local(path) => path.join(name).to_string_lossy().into_owned(),
            Self::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}/{name}"),
            Self::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{name}"),
        }
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Self::S3 { .. })
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_bucket_and_prefix() {
        let location = StoreLocation::parse("s3://bucket/a/b/").unwrap();
        assert_eq!(
            location,
            StoreLocation::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            location.child_uri("queries.lance"),
            "s3://bucket/a/b/queries.lance"
        );
    }

    #[test]
    fn parses_bare_bucket() {
        let location = StoreLocation::parse("s3://bucket").unwrap();
        assert_eq!(location.child_uri("x"), "s3://bucket/x");
    }

    #[test]
    fn rejects_missing_bucket_and_other_schemes() {
        assert!(StoreLocation::parse("s3:///prefix").is_err());
        assert!(StoreLocation::parse("gs://bucket/prefix").is_err());
        assert!(StoreLocation::parse("").is_err());
    }

    #[test]
    fn makes_local_paths_absolute() {
        let location = StoreLocation::parse("some/dir").unwrap();
        let StoreLocation::Local(path) = location else {
            panic!("expected a local location");
        };
        assert!(path.is_absolute());
        assert!(path.ends_with("some/dir"));
    }
}
