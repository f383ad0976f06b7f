use std::{collections::BTreeMap, io::Write as _};

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_alone_are_valid_and_derive_the_store_from_the_data_dir() {
    let loaded = load(None, &env(&[]), &Flags::default()).expect("defaults load");
    assert_eq!(loaded.config.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(loaded.config.store_url, StoreUrl::Sqlite("./herald-data/herald.db".into()));
    assert!(loaded.sources.values().all(|s| *s == Source::Default));

    let loaded = load(None, &env(&[("HERALD_DATA_DIR", "/var/lib/herald/")]), &Flags::default()).expect("load");
    assert_eq!(loaded.config.store_url, StoreUrl::Sqlite("/var/lib/herald/herald.db".into()));
}

#[test]
fn precedence_is_default_file_env_flag() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(file, "http_addr = \"127.0.0.1:1000\"\njwt_ttl = \"2h\"\nbody_limit = 2048\ncors_origins = [\"https://a.org\", \"https://b.org\"]")
        .expect("write");
    let e = env(&[("HERALD_HTTP_ADDR", "127.0.0.1:2000"), ("HERALD_LOG", "debug")]);
    let flags = Flags { http_addr: Some("127.0.0.1:3000".into()), ..Default::default() };

    let loaded = load(Some(file.path()), &e, &flags).expect("load");
    let c = &loaded.config;
    assert_eq!(c.http_addr.port(), 3000);
    assert_eq!(loaded.sources["http_addr"], Source::Flag);
    assert_eq!(c.log_level.0, "debug");
    assert_eq!(loaded.sources["log_level"], Source::Env);
    assert_eq!(c.jwt_ttl.0.as_secs(), 7200);
    assert_eq!(loaded.sources["jwt_ttl"], Source::File);
    assert_eq!(c.body_limit.0, 2048);
    assert_eq!(c.cors_origins.0, ["https://a.org", "https://b.org"]);
    assert_eq!(loaded.sources["shutdown_timeout"], Source::Default);

    let loaded = load(Some(file.path()), &e, &Flags::default()).expect("load");
    assert_eq!(loaded.config.http_addr.port(), 2000);
}

#[test]
fn every_bad_setting_is_named_with_its_reason() {
    let e = env(&[
        ("HERALD_HTTP_ADDR", "nowhere"),
        ("HERALD_STORE_URL", "mysql://x"),
        ("HERALD_JWT_SECRET", "short"),
        ("HERALD_HTTP_ADRR", "typo is only a warning"),
    ]);
    let err = load(None, &e, &Flags::default()).expect_err("invalid");
    let named: Vec<_> = err.0.iter().map(|e| e.setting.as_str()).collect();
    assert_eq!(named, ["http_addr", "store_url", "jwt_secret"]);
    let text = err.to_string();
    assert!(text.contains("HERALD_JWT_SECRET") && text.contains("at least 32 bytes"), "{text}");
    assert!(!text.contains("short"), "a secret's value leaked into the error: {text}");

    let ok = load(None, &env(&[("HERALD_HTTP_ADRR", "x")]), &Flags::default()).expect("load");
    assert_eq!(ok.unknown_env, ["HERALD_HTTP_ADRR"]);
}

#[test]
fn bad_files_are_reported() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(file, "htp_addr = \"x\"\n[section]\nx = 1").expect("write");
    let err = load(Some(file.path()), &env(&[]), &Flags::default()).expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("unknown setting \"htp_addr\""), "{text}");
    assert!(text.contains("unknown setting \"section\""), "{text}");

    let err =
        load(Some(std::path::Path::new("/no/such/herald.toml")), &env(&[]), &Flags::default()).expect_err("missing");
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn secrets_and_passwords_are_redacted_when_displayed() {
    let secret = "s".repeat(40);
    let e = env(&[("HERALD_JWT_SECRET", &secret), ("HERALD_STORE_URL", "postgres://app:pw@db/herald")]);
    let loaded = load(None, &e, &Flags::default()).expect("load");
    assert_eq!(loaded.config.display("jwt_secret"), "***");
    assert_eq!(loaded.config.display("store_url"), "postgres://app:***@db/herald");
    assert!(!format!("{:?}", loaded.config).contains(&secret));
}

#[test]
fn every_setting_has_env_flag_and_doc() {
    for s in SETTINGS {
        assert!(s.env.starts_with("HERALD_"), "{}", s.name);
        assert!(!s.flag.is_empty() && !s.doc.is_empty(), "{}", s.name);
    }
}

#[test]
fn the_readme_documents_every_setting_and_error_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README.md");
    for s in SETTINGS {
        let row = format!("| `{}` | `{}` | `--{}` |", s.name, s.env, s.flag);
        assert!(readme.contains(&row), "README's configuration table lacks {row}");
    }
    for code in herald_core::error::ErrorCode::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.status());
        assert!(readme.contains(&row), "README's error table lacks {row}");
    }
}

/// `HERALD_COMMANDS`'s documentation names every command group, in the registry's order: the
/// README's configuration row, the operations guide's list and `--help`.
#[test]
fn the_docs_name_every_command_group() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let groups = herald_core::commands::GROUPS;
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let listed = format!("(`{}`)", groups.join(","));
    let row = readme.lines().find(|l| l.starts_with("| `commands` | `HERALD_COMMANDS` |")).expect("the row");
    assert!(row.contains(&listed), "README's HERALD_COMMANDS row should list {listed}: {row}");
    let guide = std::fs::read_to_string(format!("{root}/docs/operations.md")).expect("docs/operations.md");
    let prose = guide.split_whitespace().collect::<Vec<_>>().join(" ");
    let quoted: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
    let sentence = format!("the first part of its name: {}.", quoted.join(", "));
    assert!(prose.contains(&sentence), "docs/operations.md should say: {sentence}");
    let help = SETTINGS.iter().find(|s| s.env == "HERALD_COMMANDS").expect("the setting").doc;
    assert!(help.contains(&format!("all, or some of {};", groups.join(", "))), "--help: {help}");
}

#[test]
fn a_delivery_lease_too_short_for_the_channel_timeouts_is_refused() {
    let err = load(None, &env(&[("HERALD_DELIVERY_LEASE", "10s")]), &Flags::default()).expect_err("10s <= 10s + 5s");
    let text = err.to_string();
    assert!(text.contains("delivery_lease") && text.contains("15s") && text.contains("from env"), "{text}");
    let mut short_calls =
        vec![("HERALD_DELIVERY_LEASE", "8s"), ("HERALD_PROVIDER_TIMEOUT", "2s"), ("HERALD_WEBHOOK_TIMEOUT", "2s")];
    load(None, &env(&short_calls), &Flags::default()).expect("8s leaves room for 2s calls (email is off)");
    short_calls.extend([
        ("HERALD_SMTP_URL", "smtp://127.0.0.1:25?tls=none"),
        ("HERALD_EMAIL_FROM", "noreply@example.org"),
        ("HERALD_SMTP_TIMEOUT", "5s"),
    ]);
    let err = load(None, &env(&short_calls), &Flags::default()).expect_err("with email on, its timeout counts");
    assert!(err.to_string().contains("10s"), "{err}");
}

#[test]
fn email_settings_go_together_and_never_print_the_password() {
    let url = ("HERALD_SMTP_URL", "smtp://mailer:hunter22@mail.example.org:587?tls=starttls");
    let err = load(None, &env(&[url]), &Flags::default()).expect_err("no From");
    assert!(err.to_string().contains("email_from"), "{err}");
    let from = ("HERALD_EMAIL_FROM", "Herald <noreply@example.org>");
    let loaded = load(None, &env(&[url, from]), &Flags::default()).expect("valid");
    let shown = format!("{:?} {}", loaded.config.smtp_url, loaded.config.smtp_url);
    assert!(!shown.contains("hunter22") && shown.contains("mailer:***@"), "{shown}");
    let bad = load(None, &env(&[("HERALD_SMTP_URL", "http://mail.example.org"), from]), &Flags::default());
    assert!(bad.expect_err("not smtp").to_string().contains("smtp_url"));
    let missing = ("HERALD_SMTP_CA_FILE", "/nonexistent/ca.pem");
    let err = load(None, &env(&[url, from, missing]), &Flags::default()).expect_err("no such file");
    assert!(err.to_string().contains("smtp_ca_file"), "{err}");
}

#[test]
fn an_outbound_ca_file_that_cannot_be_used_stops_the_start() {
    let missing = ("HERALD_HTTP_CA_FILE", "/nonexistent/ca.pem");
    let err = load(None, &env(&[missing]), &Flags::default()).expect_err("no such file");
    assert!(err.to_string().contains("http_ca_file"), "{err}");
    let file = std::env::temp_dir().join(format!("herald-http-ca-{}.pem", std::process::id()));
    std::fs::write(&file, "no certificate here\n").expect("write");
    let path = file.display().to_string();
    let err = load(None, &env(&[("HERALD_HTTP_CA_FILE", path.as_str())]), &Flags::default()).expect_err("empty");
    assert!(err.to_string().contains("holds no PEM certificate"), "{err}");
    std::fs::remove_file(&file).ok();
    let provider = load(None, &env(&[("HERALD_PROVIDER_URL", "https://sms.example.org/")]), &Flags::default());
    assert_eq!(
        provider.expect("https is taken").config.provider_url.0.map(|u| u.0),
        Some("https://sms.example.org".into())
    );
}

#[test]
fn files_live_in_a_directory_or_a_bucket_named_once() {
    let loaded = load(None, &env(&[("HERALD_DATA_DIR", "/var/lib/herald")]), &Flags::default()).expect("load");
    assert_eq!(loaded.config.files_url, FilesUrl::Local("/var/lib/herald/files".into()));

    let short = load(None, &env(&[("HERALD_FILES_DIR", "/srv/files")]), &Flags::default()).expect("short form");
    assert_eq!(short.config.files_url, FilesUrl::Local("/srv/files".into()));
    assert_eq!(short.sources["files_url"], Source::Env);
    assert_eq!(short.config.display("files_url"), "file:///srv/files");

    let s3 =
        env(&[("HERALD_FILES_URL", "s3://herald-files/attachments"), ("HERALD_S3_ENDPOINT", "http://127.0.0.1:9000")]);
    let loaded = load(None, &s3, &Flags::default()).expect("s3");
    assert_eq!(loaded.config.display("files_url"), "s3://herald-files/attachments");
    assert_eq!(loaded.config.display("s3_endpoint"), "http://127.0.0.1:9000");

    let both = env(&[("HERALD_FILES_DIR", "/srv/files"), ("HERALD_FILES_URL", "file:///srv/other")]);
    let err = load(None, &both, &Flags::default()).expect_err("both set");
    let text = err.to_string();
    assert!(text.contains("HERALD_FILES_DIR") && text.contains("cannot be set with files_url"), "{text}");
    let flag = Flags { files_url: Some("s3://bucket/p".into()), ..Default::default() };
    assert!(load(None, &env(&[("HERALD_FILES_DIR", "/srv/files")]), &flag).is_err(), "a flag counts as setting it");

    let bad = env(&[("HERALD_FILES_URL", "/srv/files"), ("HERALD_S3_ENDPOINT", "http://key:secret@host")]);
    let err = load(None, &bad, &Flags::default()).expect_err("invalid");
    let named: Vec<_> = err.0.iter().map(|e| e.setting.as_str()).collect();
    assert_eq!(named, ["files_url", "s3_endpoint"]);
    assert!(!err.to_string().contains("secret@"), "{err}");
}

#[test]
fn an_object_store_needs_room_for_one_upload_and_parts_that_fit_the_largest() {
    let s3 = ("HERALD_FILES_URL", "s3://herald-files/attachments");
    let loaded = load(None, &env(&[s3]), &Flags::default()).expect("defaults");
    assert_eq!(loaded.config.display("s3_upload_memory"), "256MiB");
    assert_eq!(loaded.config.s3_options().part_size(), 5 << 20);

    // 60 GiB needs 7 MiB parts (10,000 of 5 MiB hold 48.8 GiB): 21 MiB per upload.
    let large = ("HERALD_MAX_UPLOAD_SIZE", "60GiB");
    let loaded = load(None, &env(&[s3, large]), &Flags::default()).expect("60GiB");
    assert_eq!(loaded.config.s3_options().part_size(), 7 << 20);
    let err = load(None, &env(&[s3, large, ("HERALD_S3_UPLOAD_MEMORY", "20MiB")]), &Flags::default())
        .expect_err("less than one upload");
    let named: Vec<_> = err.0.iter().map(|e| e.setting.as_str()).collect();
    assert_eq!(named, ["s3_upload_memory"]);
    assert!(err.to_string().contains("at least 21MiB") && err.to_string().contains("from env"), "{err}");

    let err = load(None, &env(&[s3, ("HERALD_MAX_UPLOAD_SIZE", "6000GiB")]), &Flags::default())
        .expect_err("larger than S3 stores");
    let named: Vec<_> = err.0.iter().map(|e| e.setting.as_str()).collect();
    assert_eq!(named, ["max_upload_size", "s3_upload_memory"]);

    // A directory has neither limit.
    let local = [("HERALD_MAX_UPLOAD_SIZE", "6000GiB"), ("HERALD_S3_UPLOAD_MEMORY", "1MiB")];
    assert!(load(None, &env(&local), &Flags::default()).is_ok());
}

/// Every URL setting (named `*_url`, `*_issuer` or `*_endpoint`, or with a URL default) is
/// offered a URL of every scheme Herald knows, with a password in its userinfo and every
/// secret-named query parameter: where the setting takes it, neither `herald config` (`display`)
/// nor a `Config` printed whole (`Debug`, as a log would) shows a secret; where it refuses it,
/// the error does not either. A URL setting added later is checked without being named here.
#[test]
fn every_url_setting_prints_without_its_userinfo_or_secret_parameters() {
    let names = [
        "token",
        "sig",
        "signature",
        "pw",
        "pwd",
        "password",
        "session",
        "code",
        "hash",
        "auth",
        "api_key",
        "access_token",
        "secret",
        "key",
        "Access_Token",
        "SIG",
    ];
    let query: Vec<String> = names.iter().map(|n| format!("{n}=hidden-{}", n.to_ascii_lowercase())).collect();
    let query = format!("{}&keep=shown", query.join("&"));
    let secrets: Vec<String> = names.iter().map(|n| format!("hidden-{}", n.to_ascii_lowercase())).collect();
    // The settings the rules between settings ask for beside the one under test.
    let partners = [
        ("HERALD_OIDC_ISSUER", "https://idp.example"),
        ("HERALD_OIDC_CLIENT_ID", "herald"),
        ("HERALD_OIDC_CLIENT_SECRET", "client-secret"),
        ("HERALD_OIDC_REDIRECT_URL", "https://herald.example/api/v1/auth/oidc/callback"),
        ("HERALD_EMAIL_FROM", "noreply@example.org"),
    ];
    load(None, &env(&partners), &Flags::default()).expect("the partners alone load");
    let schemes = [
        "http",
        "https",
        "postgres",
        "postgresql",
        "sqlite",
        "file",
        "s3",
        "amqp",
        "amqps",
        "nats",
        "tls",
        "redis",
        "rediss",
        "smtp",
        "smtps",
    ];
    let is_url = |s: &Setting| {
        s.name.contains("url")
            || s.name.ends_with("_issuer")
            || s.name.ends_with("_endpoint")
            || s.default.contains("://")
    };
    let url_settings: Vec<&Setting> = SETTINGS.iter().filter(|s| is_url(s)).collect();
    let mut takers = std::collections::BTreeSet::new();
    for setting in &url_settings {
        for scheme in schemes {
            for tail in [format!("/h?{query}"), String::new()] {
                let value = format!("{scheme}://alice:hunter2@host.example:4222{tail}");
                let mut e = env(&partners);
                e.insert(setting.env.to_owned(), value.clone());
                let shown = match load(None, &e, &Flags::default()) {
                    Ok(loaded) => {
                        takers.insert(setting.name);
                        [loaded.config.display(setting.name), format!("{:?}", loaded.config)]
                    }
                    Err(err) => {
                        assert!(err.0.iter().all(|e| e.setting == setting.name), "{value} for {}: {err}", setting.name);
                        [err.to_string(), String::new()]
                    }
                };
                for secret in secrets.iter().map(String::as_str).chain(["hunter2"]) {
                    assert!(!shown[0].contains(secret), "{} = {value} shows {secret}: {}", setting.name, shown[0]);
                    assert!(
                        !shown[1].contains(secret),
                        "{} = {value}: the Config's Debug shows {secret}",
                        setting.name
                    );
                }
            }
        }
    }
    let known =
        ["store_url", "files_url", "broker_url", "provider_url", "smtp_url", "oidc_issuer", "oidc_redirect_url"];
    for name in known {
        assert!(takers.contains(name), "{name} took none of the URLs: {takers:?}");
    }
    assert!(url_settings.iter().any(|s| s.name == "s3_endpoint"), "every URL setting is offered them");
}

#[test]
fn a_body_timeout_of_zero_is_refused() {
    let env = BTreeMap::from([("HERALD_HTTP_BODY_TIMEOUT".to_owned(), "0s".to_owned())]);
    let errors = load(None, &env, &Flags::default()).expect_err("refused");
    assert!(errors.0.iter().any(|e| e.setting == "http_body_timeout"), "{errors:?}");
}
