// Records the versions of the main dependencies (from Cargo.lock) for run manifests.
fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let wanted =
        ["timely", "differential-dataflow", "datafusion", "arrow", "parquet", "object_store", "tokenizers", "ort"];
    let mut found = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take())
            && wanted.contains(&n.as_str())
        {
            found.push(format!("{n}={}", v.trim_matches('"')));
        }
    }
    println!("cargo:rustc-env=WRAPFLOW_DEP_VERSIONS={}", found.join(","));
}
