//! The Files port's conformance suite on every adapter: a local directory always, the test
//! bucket when `HERALD_TEST_S3_ENDPOINT` is set (CI sets it).

use herald_testkit::files_suite::FilesTarget;

macro_rules! files_suite {
    ($($name:ident),* $(,)?) => {
        mod local {
            use super::FilesTarget;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let target = FilesTarget::local().await;
                herald_testkit::files_suite::$name(&target).await;
                target.finish().await;
            })*
        }
        mod s3 {
            use super::FilesTarget;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(target) = FilesTarget::s3(stringify!($name)).await else { return };
                herald_testkit::files_suite::$name(&target).await;
                target.finish().await;
            })*
        }
    };
}

files_suite! {
    uploads_hash_and_read_back_by_range,
    removes_say_whether_the_file_was_there,
    aborted_and_dropped_uploads_leave_nothing,
    a_cancelled_abort_still_leaves_nothing,
    a_large_upload_streams_through_in_chunks,
    keys_that_try_to_escape_are_refused,
}

/// A bucket that does not exist, or an endpoint where nothing answers, stops the start with an
/// error that names it, instead of failing the first upload.
#[tokio::test]
async fn a_missing_bucket_or_a_dead_endpoint_fails_at_open() {
    let Some(bucket) = herald_testkit::s3::TestBucket::new("a_missing_bucket_or_a_dead_endpoint_fails_at_open") else {
        return;
    };
    let credentials = herald_testkit::s3::TestBucket::credentials;
    let endpoint: herald_store::S3Endpoint = bucket.endpoint.parse().expect("endpoint");
    let missing: herald_store::S3Location = "s3://herald-no-such-bucket/x".parse().expect("location");
    let options = herald_store::S3Options { max_upload_size: 100 << 20, upload_memory: 256 << 20 };
    let err =
        herald_store::S3Files::open(&missing, Some(&endpoint), options, credentials()).await.expect_err("no bucket");
    assert!(err.to_string().contains("s3://herald-no-such-bucket/x"), "{err}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead: herald_store::S3Endpoint =
        format!("http://{}", listener.local_addr().expect("addr")).parse().expect("dead");
    drop(listener);
    let location: herald_store::S3Location = bucket.files_url().parse().expect("location");
    let started = std::time::Instant::now();
    let err =
        herald_store::S3Files::open(&location, Some(&dead), options, credentials()).await.expect_err("nothing answers");
    assert!(err.to_string().contains(&bucket.files_url()), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(70), "bounded: {:?}", started.elapsed());
    bucket.finish().await;
}

/// With `max_upload_size` past 10,000 parts of 5 MiB (48.8 GiB), parts grow so the largest upload
/// fits: at 60 GiB they are 7 MiB, so 12 MiB go up in two parts, not three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_grow_with_the_largest_upload() {
    use herald_core::files::Files as _;
    let Some(bucket) = herald_testkit::s3::TestBucket::new("parts_grow_with_the_largest_upload") else { return };
    let mib = 1 << 20;
    for (max_upload_size, parts) in [(100 * mib, "-3\""), (60 * 1024 * mib, "-2\"")] {
        let options = herald_store::S3Options { max_upload_size, upload_memory: 64 * mib };
        let files = bucket.files_with(options).await;
        let mut upload = files.begin_upload().await.expect("begin");
        for _ in 0..12 {
            upload.write(&vec![9; 1 << 20]).await.expect("write");
        }
        let stored = upload.finish().await.expect("finish");
        assert_eq!(stored.size, 12 * mib);
        let etag = bucket.etag(&stored.key).await;
        assert!(etag.ends_with(parts), "{max_upload_size}: {etag}");
    }
    bucket.finish().await;
}
