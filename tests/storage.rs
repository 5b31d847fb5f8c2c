//! The storage conformance suite against a real S3 server (Garage): at the bucket root and under a key
//! prefix. The local directory runs the same suite in `crates/storage`.

mod support;

use ladder_storage::{conformance, ErrorKind, S3Options, Storage};
use support::garage::{Garage, BUCKET};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn garage_passes_the_storage_conformance_suite() {
    let garage = Garage::start();
    let runtime = runtime();
    for url in [format!("s3://{BUCKET}"), format!("s3://{BUCKET}/tenant-a/media")] {
        let storage = Storage::open(&url, &garage.storage_options()).expect("s3 storage");
        assert!(storage.keeps_attributes());
        runtime.block_on(conformance::run(&storage));
    }
    // The prefixed run wrote under its prefix, and both cleaned up after themselves.
    let root = Storage::open(&format!("s3://{BUCKET}"), &garage.storage_options()).expect("s3 storage");
    runtime.block_on(root.put("tenant-a/media/probe.ts", bytes::Bytes::from_static(b"x"))).expect("put");
    let prefixed = Storage::open(&format!("s3://{BUCKET}/tenant-a/media"), &garage.storage_options()).expect("s3");
    assert_eq!(runtime.block_on(prefixed.get("probe.ts")).expect("get through the prefix").as_ref(), b"x");
}

#[test]
fn wrong_credentials_are_reported_as_a_permanent_error() {
    let garage = Garage::start();
    let options = S3Options { secret_access_key: Some("0".repeat(64)), ..garage.storage_options() };
    let storage = Storage::open(&format!("s3://{BUCKET}"), &options).expect("configuration is valid");
    let error = runtime().block_on(storage.put("x.ts", bytes::Bytes::from_static(b"x"))).expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    // Permanent errors are not retried (only Transient ones are), so it is reported at once.
    assert!(error.to_string().contains("x.ts"), "the error names the key: {error}");
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let garage = Garage::start();
    let storage = Storage::open("s3://no-such-bucket", &garage.storage_options()).expect("configuration is valid");
    let error = runtime().block_on(storage.put("x.ts", bytes::Bytes::from_static(b"x"))).expect_err("refused");
    assert_ne!(error.kind, ErrorKind::Transient, "retrying will not create the bucket: {error}");
    eprintln!("{error}");
}
