//! Object-store locations: bare paths and `file://` (local files), `s3://` (also any
//! S3-compatible server through `aws_endpoint` and `aws_allow_http`), `gs://`, `az://` and
//! `memory://` (in-process, for tests and embedding).
//!
//! Credentials and settings come from the usual environment variables (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`) and from options whose names start with `aws_`, `google_` or `azure_`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, RetryConfig};
use url::Url;

/// A resolved location: a store and a prefix inside it.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The location as the user wrote it, for messages and manifests.
    pub url: String,
}

impl Location {
    /// `prefix/name`.
    pub fn child(&self, name: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in name.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// `name` relative to the prefix, for display and stable ids.
    /// The directory on this machine, for a local location.
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        let local = !self.url.contains("://") || self.url.starts_with("file://");
        local.then(|| std::path::PathBuf::from(format!("/{}", self.prefix.as_ref())))
    }

    pub fn relative(&self, path: &Path) -> String {
        match path.prefix_match(&self.prefix) {
            Some(parts) => parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"),
            None => path.to_string(),
        }
    }
}

/// True for option names that configure a store rather than a source or sink.
pub fn is_store_option(key: &str) -> bool {
    ["aws_", "google_", "azure_", "retry_"].iter().any(|p| key.starts_with(p))
}

/// Creates and caches stores, so a source and a sink on the same bucket share one client and
/// `memory://` stores live as long as the registry.
#[derive(Default, Debug)]
pub struct StoreRegistry {
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `store` the one used for URLs under `scheme://authority` (e.g. `memory://corpus`).
    pub fn register(&self, base: &str, store: Arc<dyn ObjectStore>) {
        self.stores.lock().unwrap().insert(base.trim_end_matches('/').to_string(), store);
    }

    /// Resolves a location; `options` holds store settings (see [`is_store_option`]).
    pub fn resolve(&self, location: &str, options: &BTreeMap<String, String>) -> anyhow::Result<Location> {
        let looks_like_url = location.contains("://");
        if !looks_like_url {
            let abs = std::path::absolute(location).with_context(|| format!("bad path {location:?}"))?;
            let prefix = Path::from_absolute_path(lexical(&abs)).with_context(|| format!("bad path {location:?}"))?;
            return Ok(Location { store: self.local(), prefix, url: location.to_string() });
        }
        let url = Url::parse(location).with_context(|| format!("bad location URL {location:?}"))?;
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|_| anyhow::anyhow!("bad file URL {location:?}"))?;
            let prefix = Path::from_absolute_path(lexical(&path)).with_context(|| format!("bad path {location:?}"))?;
            return Ok(Location { store: self.local(), prefix, url: location.to_string() });
        }
        let base = format!("{}://{}", url.scheme(), url.authority());
        let key = format!("{base}?{options:?}");
        let prefix = Path::from_url_path(url.path()).with_context(|| format!("bad path in {location:?}"))?;
        let mut stores = self.stores.lock().unwrap();
        let store = match stores.get(&key).or_else(|| stores.get(&base)) {
            Some(s) => s.clone(),
            None => {
                let s = build(&url, &base, options)?;
                stores.insert(key, s.clone());
                s
            }
        };
        Ok(Location { store, prefix, url: location.to_string() })
    }

    fn local(&self) -> Arc<dyn ObjectStore> {
        self.stores.lock().unwrap().entry("file://".into()).or_insert_with(|| Arc::new(LocalFileSystem::new())).clone()
    }
}

/// An absolute path with `.` and `..` resolved by name (`/a/b/../c` is `/a/c`), as a shell
/// resolves `../x` against the working directory: object paths may hold neither.
fn lexical(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Transient errors (5xx, timeouts, resets) are retried with exponential backoff. By default a
/// store that stays unreachable fails within about ten seconds instead of object_store's three
/// minutes; `retry_max` (4) and `retry_timeout_s` (10) give a long job a larger budget.
fn retry(options: &BTreeMap<String, String>) -> anyhow::Result<RetryConfig> {
    let mut r = RetryConfig { max_retries: 4, retry_timeout: Duration::from_secs(10), ..Default::default() };
    if let Some(v) = options.get("retry_max") {
        r.max_retries = v.parse().with_context(|| format!("retry_max {v:?} is not a count"))?;
    }
    if let Some(v) = options.get("retry_timeout_s") {
        let s: f64 = v
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .with_context(|| format!("retry_timeout_s {v:?} is not a number of seconds"))?;
        r.retry_timeout = Duration::from_secs_f64(s);
    }
    if let Some(k) =
        options.keys().find(|k| k.starts_with("retry_") && !["retry_max", "retry_timeout_s"].contains(&k.as_str()))
    {
        anyhow::bail!("unknown store option {k:?} (retry_max, retry_timeout_s)");
    }
    Ok(r)
}

fn build(url: &Url, base: &str, options: &BTreeMap<String, String>) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let retry = || retry(options);
    let opts = options.iter().filter(|(k, _)| is_store_option(k) && !k.starts_with("retry_"));
    Ok(match url.scheme() {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(base).with_retry(retry()?);
            for (k, v) in opts {
                let key = AmazonS3ConfigKey::from_str(k).with_context(|| format!("unknown S3 option {k:?}"))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().with_context(|| format!("cannot configure {base}"))?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(base).with_retry(retry()?);
            for (k, v) in opts {
                let key = GoogleConfigKey::from_str(k).with_context(|| format!("unknown GCS option {k:?}"))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().with_context(|| format!("cannot configure {base}"))?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(base).with_retry(retry()?);
            for (k, v) in opts {
                let key = AzureConfigKey::from_str(k).with_context(|| format!("unknown Azure option {k:?}"))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().with_context(|| format!("cannot configure {base}"))?)
        }
        "memory" => Arc::new(InMemory::new()),
        other => bail!("unsupported location scheme {other:?} (use a path, file://, s3://, gs://, az:// or memory://)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_and_shares_memory_stores() {
        let reg = StoreRegistry::new();
        let none = BTreeMap::new();
        let a = reg.resolve("memory://bucket/in/x", &none).unwrap();
        let b = reg.resolve("memory://bucket/out", &none).unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert_eq!(a.prefix.as_ref(), "in/x");
        let local = reg.resolve("some/dir", &none).unwrap();
        assert!(local.prefix.as_ref().ends_with("some/dir"));
        // `..` and `.` as a shell resolves them.
        let up = reg.resolve("some/./x/../../up", &none).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(up.prefix.as_ref(), Path::from_absolute_path(cwd.join("up")).unwrap().as_ref());
        let parent = reg.resolve("../x", &none).unwrap();
        assert_eq!(parent.prefix.as_ref(), Path::from_absolute_path(cwd.parent().unwrap().join("x")).unwrap().as_ref());
        assert_eq!(local.relative(&local.child("a/b.jsonl")), "a/b.jsonl");
        let err = reg.resolve("ftp://x/y", &none).unwrap_err().to_string();
        assert!(err.contains("unsupported"), "{err}");
        let mut bad = BTreeMap::new();
        bad.insert("aws_no_such_option".to_string(), "1".to_string());
        assert!(reg.resolve("s3://b/p", &bad).is_err());
        let opts = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(reg.resolve("s3://b/p", &opts("retry_max", "12")).is_ok());
        assert!(reg.resolve("s3://b/p", &opts("retry_timeout_s", "600")).is_ok());
        let err = format!("{:#}", reg.resolve("s3://b/p", &opts("retry_max", "many")).unwrap_err());
        assert!(err.contains("retry_max"), "{err}");
        let err = format!("{:#}", reg.resolve("s3://b/p", &opts("retry_forever", "1")).unwrap_err());
        assert!(err.contains("unknown store option"), "{err}");
        assert!(reg.resolve("s3://b/p", &opts("retry_timeout_s", "-1")).is_err());
    }
}
