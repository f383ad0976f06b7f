//! Unit tests of the S3 files adapter, over an in-memory store and a refusing loopback server.

use object_store::memory::InMemory;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

const SECRET: &str = "SECRETVALUE";

fn options(max_upload_size: u64, upload_memory: u64) -> S3Options {
    S3Options { max_upload_size, upload_memory }
}

/// An adapter over an in-memory store, as `open` makes it.
fn in_memory(options: S3Options) -> (S3Files, Arc<InMemory>) {
    let store = Arc::new(InMemory::new());
    let files = S3Files {
        store: store.clone(),
        location: "s3://bucket/p".parse().expect("location"),
        endpoint: None,
        prefix: Path::from("p"),
        part_size: usize::try_from(options.part_size()).expect("part size"),
        budget: Arc::new(Semaphore::new(usize::try_from(options.upload_memory / MIB).expect("permits"))),
        budget_mib: options.upload_memory / MIB,
    };
    (files, store)
}

async fn objects(store: &InMemory) -> Vec<String> {
    let listed: Vec<_> = store.list(None).collect().await;
    listed.into_iter().map(|meta| meta.expect("listed").location.to_string()).collect()
}

fn mib(n: u64) -> Vec<u8> {
    vec![7; usize::try_from(n * MIB).expect("fits")]
}

#[test]
fn parts_grow_so_the_largest_upload_fits_in_ten_thousand() {
    let gib = 1024 * MIB;
    for (max, part) in [
        (100 * MIB, 5 * MIB),
        (MAX_PARTS * 5 * MIB, 5 * MIB),
        (MAX_PARTS * 5 * MIB + 1, 6 * MIB),
        (60 * gib, 7 * MIB),
        (MAX_OBJECT_SIZE, 525 * MIB),
    ] {
        let o = options(max, 4 * gib);
        assert_eq!(o.part_size(), part, "max {max}");
        assert!(o.part_size() * MAX_PARTS >= max && o.part_size().is_multiple_of(MIB), "max {max}");
        assert_eq!(o.memory_per_upload(), 3 * part);
    }
    assert!(options(MAX_OBJECT_SIZE + 1, u64::MAX).check_max_upload_size().is_err());
    assert!(options(MAX_OBJECT_SIZE, u64::MAX).check_max_upload_size().is_ok());
    let tight = options(100 * MIB, 15 * MIB);
    assert!(tight.check_upload_memory().is_ok());
    let err = options(100 * MIB, 15 * MIB - 1).check_upload_memory().expect_err("less than three parts");
    assert!(err.contains("at least 15MiB"), "{err}");
    assert!(options(60 * gib, 20 * MIB).check_upload_memory().is_err(), "three 7 MiB parts");
}

#[tokio::test]
async fn uploads_share_a_memory_budget_and_fail_cleanly_beyond_it() {
    // 15 MiB: three buffers of just under a part, or one upload of any size.
    let (files, store) = in_memory(options(100 * MIB, 15 * MIB));
    let mut holders = Vec::new();
    for _ in 0..3 {
        let mut upload = files.begin_upload().await.expect("begin");
        upload.write(&vec![1; 5 * MIB as usize - 1]).await.expect("fits the budget");
        holders.push(upload);
    }
    assert_eq!(files.budget.available_permits(), 0);
    let mut refused = files.begin_upload().await.expect("begin");
    let err = refused.write(b"x").await.expect_err("the budget is spent");
    assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{err}");
    assert!(err.to_string().contains("HERALD_S3_UPLOAD_MEMORY"), "{err}");
    refused.abort().await;
    let small = holders.pop().expect("holder");
    small.abort().await;
    assert_eq!(files.budget.available_permits(), 5, "an aborted upload gives its memory back");

    // A multipart upload: its part keeps its memory while in flight (this runtime runs one
    // task at a time, so a spawned part waits for the test to yield), and the upload waits
    // for its own parts rather than give up.
    let mut multipart = files.begin_upload().await.expect("begin");
    multipart.write(&mib(5)).await.expect("one part, sent");
    assert_eq!(files.budget.available_permits(), 0, "the part in flight holds its 5 MiB");
    let mut other = files.begin_upload().await.expect("begin");
    assert_eq!(other.write(b"x").await.map_err(|e| e.kind()), Err(io::ErrorKind::ResourceBusy));
    other.abort().await;
    multipart.write(b"x").await.expect("waits for its own part, then has room");
    multipart.write(&vec![2; 5 * MIB as usize - 1]).await.expect("a second part, sent");
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(files.budget.available_permits(), 0, "the part on the store gave its memory to its upload");
    let mut filler = files.begin_upload().await.expect("begin");
    assert_eq!(filler.write(b"x").await.map_err(|e| e.kind()), Err(io::ErrorKind::ResourceBusy));
    filler.abort().await;
    multipart.write(b"x").await.expect("the memory of its part on the store");
    multipart.abort().await;
    assert_eq!(files.budget.available_permits(), 5, "an aborted multipart upload gives its memory back");
    for holder in holders {
        holder.abort().await;
    }
    assert_eq!(files.budget.available_permits(), 15, "every MiB is back");
    assert!(objects(&store).await.is_empty(), "refused uploads leave no object");

    // With the budget free again, an upload of many parts goes through within it.
    let mut large = files.begin_upload().await.expect("begin");
    for _ in 0..24 {
        large.write(&mib(1)).await.expect("write");
        assert!(files.budget.available_permits() <= 15);
    }
    let stored = large.finish().await.expect("finish");
    assert_eq!(stored.size, 24 * MIB);
    assert_eq!(files.budget.available_permits(), 15);
    assert_eq!(objects(&store).await, [format!("p/{}", stored.key)]);
}

#[tokio::test]
async fn a_multipart_upload_is_never_refused_midway() {
    // Exactly one upload's needs: a part being filled and two on the wire.
    let budget = options(100 * MIB, 15 * MIB);
    let (files, store) = in_memory(budget);
    assert_eq!(files.budget.available_permits() as u64 * MIB, budget.memory_per_upload());
    let mut large = files.begin_upload().await.expect("begin");
    let mut small = Vec::new();
    for part in 0..5 {
        large.write(&mib(5)).await.expect("a started upload always has memory for its next part");
        // Its parts land (this runtime runs one task at a time); then other uploads take
        // whatever memory is free, one MiB each, until they are refused.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        loop {
            let mut other = files.begin_upload().await.expect("begin");
            match other.write(b"small").await {
                Ok(_) => small.push(other),
                Err(err) => {
                    assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{err}");
                    other.abort().await;
                    break;
                }
            }
        }
        if part == 0 {
            assert!(!small.is_empty(), "a small upload took one MiB between two parts");
        }
    }
    large.write(b"tail").await.expect("and for its last bytes");
    let stored = large.finish().await.expect("the large upload completes");
    assert_eq!(stored.size, 25 * MIB + 4);
    assert_eq!(objects(&store).await, [format!("p/{}", stored.key)]);
    assert_eq!(files.budget.available_permits(), 15 - small.len(), "the large upload gave its memory back");
    for upload in small {
        upload.abort().await;
    }
    assert_eq!(files.budget.available_permits(), 15);
}

#[tokio::test]
async fn a_small_upload_takes_little_memory() {
    let (files, _store) = in_memory(options(100 * MIB, 15 * MIB));
    let mut upload = files.begin_upload().await.expect("begin");
    upload.write(b"hello").await.expect("write");
    assert_eq!(files.budget.available_permits(), 14, "one MiB taken");
    drop(upload);
    assert_eq!(files.budget.available_permits(), 15);
    let mut upload = files.upload(Path::from("p/x"), "x".into(), "x".into());
    upload.write(b"hello").await.expect("write");
    assert!(upload.buffer.capacity() < 1024, "no part-sized buffer up front: {}", upload.buffer.capacity());
    upload.write(&vec![0; MIB as usize]).await.expect("write");
    assert_eq!(upload.held_bytes(), 5 * MIB as usize, "past one MiB, a whole part");
    assert_eq!(upload.buffer.capacity(), 5 * MIB as usize);
}

#[test]
fn only_credentials_and_region_come_from_the_environment() {
    let env = [
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_ENDPOINT", "http://elsewhere.example"),
        ("AWS_ENDPOINT_URL", "http://elsewhere.example"),
        ("AWS_SKIP_SIGNATURE", "true"),
        ("AWS_METADATA_ENDPOINT", "http://elsewhere.example"),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "true"),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let location: S3Location = "s3://bucket/p".parse().expect("location");
    let aws = client_builder(&location, None, env.clone());
    let get = |b: &AmazonS3Builder, key: AmazonS3ConfigKey| b.get_config_value(&key);
    assert_eq!(get(&aws, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("id"));
    assert_eq!(get(&aws, AmazonS3ConfigKey::Region).as_deref(), Some("eu-central-1"));
    assert_eq!(get(&aws, AmazonS3ConfigKey::Endpoint), None, "AWS_ENDPOINT(_URL) is ignored");
    assert_ne!(get(&aws, AmazonS3ConfigKey::SkipSignature).as_deref(), Some("true"));
    assert_ne!(get(&aws, AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(), Some("true"));
    assert_ne!(get(&aws, AmazonS3ConfigKey::MetadataEndpoint).as_deref(), Some("http://elsewhere.example"));
    let endpoint: S3Endpoint = "http://127.0.0.1:9000".parse().expect("endpoint");
    let other = client_builder(&location, Some(&endpoint), env);
    assert_eq!(get(&other, AmazonS3ConfigKey::Endpoint).as_deref(), Some("http://127.0.0.1:9000"));
}

/// A store on loopback that answers every request with `status` and an S3 error body quoting
/// the credentials, as AWS does for a bad signature.
async fn refusing_store(status: &'static str) -> S3Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let body = format!(
                    "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>{SECRET}\
                     </AWSAccessKeyId><CanonicalRequest>x-amz-security-token:{SECRET}</CanonicalRequest></Error>"
                );
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}").parse().expect("endpoint")
}

#[tokio::test]
async fn errors_never_carry_the_stores_answer() {
    let location: S3Location = "s3://bucket/p".parse().expect("location");
    let env = [("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "secret"), ("AWS_REGION", "us-east-1")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    for (status, expected) in
        [("403 Forbidden", "the object store answered 403"), ("400 Bad Request", "the object store answered 400")]
    {
        let endpoint = refusing_store(status).await;
        let err = S3Files::open(&location, Some(&endpoint), options(100 * MIB, 256 * MIB), env.clone())
            .await
            .expect_err("refused");
        let mut chain = vec![err.to_string(), format!("{err:?}")];
        let mut source = std::error::Error::source(&err);
        while let Some(current) = source {
            chain.push(current.to_string());
            source = current.source();
        }
        assert!(chain.iter().all(|text| !text.contains(SECRET)), "{chain:?}");
        assert!(err.to_string().contains(expected) && err.to_string().contains("s3://bucket/p"), "{err}");
        let denied = status.starts_with("403");
        assert_eq!(err.kind() == io::ErrorKind::PermissionDenied, denied, "{err}");
    }
}

#[test]
fn locations_and_endpoints_parse() {
    let loc: S3Location = "s3://herald-files/attachments/prod/".parse().expect("location");
    assert_eq!((loc.bucket.as_str(), loc.prefix.as_str()), ("herald-files", "attachments/prod"));
    assert_eq!(loc.to_string(), "s3://herald-files/attachments/prod");
    let root: S3Location = "s3://bucket".parse().expect("bucket only");
    assert_eq!(root.prefix, "");
    for bad in ["s3://", "s3://B/x", "s3://ab/x", "s3://b@c/x", "s3://bucket/a//b", "s3://bucket/../x", "file:///x"] {
        assert!(bad.parse::<S3Location>().is_err(), "{bad}");
    }
    let ep: S3Endpoint = "http://127.0.0.1:9000/".parse().expect("endpoint");
    assert_eq!((ep.as_str(), ep.is_http()), ("http://127.0.0.1:9000", true));
    assert!(!"https://s3.example.org".parse::<S3Endpoint>().expect("https").is_http());
    for bad in ["http://key:secret@host", "ftp://host", "http://", "http://host/path", "host:9000"] {
        assert!(bad.parse::<S3Endpoint>().is_err(), "{bad}");
    }
}
