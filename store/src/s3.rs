use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

use crate::error::Result;

/// S3 connection settings, read from the standard AWS environment variables.
///
/// The same settings configure Lance (through its storage options) and the plain
/// `object_store` client that reads source files from `s3://` URIs. `Debug` never prints the
/// secret key or the session token.
#[derive(Clone, Default)]
pub struct S3Settings {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible service, such as a local emulator.
    pub endpoint: Option<String>,
    /// Allows plain `http://` endpoints, which S3 clients reject by default.
    pub allow_http: bool,
}

impl S3Settings {
    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` (`true` or `1`).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let allow_http = var("AWS_ALLOW_HTTP")
            .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
            .unwrap_or(false);

        Self {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint: var("AWS_ENDPOINT_URL"),
            allow_http,
        }
    }

    pub fn with_allow_http(mut self, allow_http: bool) -> Self {
        self.allow_http = self.allow_http || allow_http;
        self
    }

    /// Returns the settings as Lance storage options (object_store's `aws_*` configuration keys).
    pub fn storage_options(&self) -> HashMap<String, String> {
        let mut options = HashMap::new();
        let mut set = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                options.insert(key.to_string(), value.clone());
            }
        };
        set("aws_access_key_id", &self.access_key_id);
        set("aws_secret_access_key", &self.secret_access_key);
        set("aws_session_token", &self.session_token);
        set("aws_region", &self.region);
        set("aws_endpoint", &self.endpoint);
        if self.allow_http {
            options.insert("aws_allow_http".into(), "true".into());
        }
        options
    }

    /// Builds an `object_store` client for one bucket, for reading source files.
    pub fn object_store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (key, value) in self.storage_options() {
            builder = builder.with_config(key.parse()?, value);
        }
        if self.region.is_none() {
            builder = builder.with_region("us-east-1");
        }
        Ok(Arc::new(builder.build()?))
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |value: &Option<String>| value.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Settings")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let settings = S3Settings {
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("very-secret-key".into()),
            session_token: Some("very-secret-token".into()),
            ..Default::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("very-secret-key"), "{printed}");
        assert!(!printed.contains("very-secret-token"), "{printed}");
        assert!(printed.contains("AKIDEXAMPLE"), "{printed}");
    }

    #[test]
    fn storage_options_carry_endpoint_and_http_switch() {
        let settings = S3Settings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            allow_http: true,
            ..Default::default()
        };
        let options = settings.storage_options();
        assert_eq!(options["aws_endpoint"], "http://127.0.0.1:9000");
        assert_eq!(options["aws_allow_http"], "true");
        assert!(!options.contains_key("aws_secret_access_key"));
    }
}
