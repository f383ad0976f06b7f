//! The OpenAPI document against the running server, by an outside tool: schemathesis generates
//! requests for every operation (a bounded number of examples, fixed seed) and checks that every
//! answer, successes and problems alike, conforms to what the document says of it.

use std::time::Duration;

use herald_testkit::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_conforms_to_the_openapi_document() {
    let test = "every_answer_conforms_to_the_openapi_document";
    let Some(python) = herald_testkit::backend_url("HERALD_TEST_PYTHON", test) else { return };
    let app = TestApp::start(Backend::Sqlite, test).await.expect("SQLite always runs");
    let admin = app.admin("ops@example.org").await;
    // Schemathesis keeps its state (`.schemathesis`, `.hypothesis`) in its working directory.
    let scratch = tempfile::tempdir().expect("temp dir");
    let run = tokio::process::Command::new(&python)
        .current_dir(scratch.path())
        .args(["-m", "schemathesis.cli", "run", &app.url("/openapi.json")])
        .args(["--checks", "response_schema_conformance", "--phases", "examples,fuzzing"])
        .args(["--max-examples", "5", "--seed", "1", "--request-timeout", "10", "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {admin}")])
        // An NDJSON body schemathesis cannot write; the bulk import is a plain HTTP handler, not
        // a command (its answer is not checked by the registry either).
        .args(["--exclude-path", "/api/v1/clients/bulk"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run).await.expect("schemathesis finishes").expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found answers the document does not describe:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    app.stop().await;
}
