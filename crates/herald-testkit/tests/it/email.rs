//! The email channel against a real SMTP server on loopback: STARTTLS and implicit TLS through
//! rustls, authentication, and what an untrusted certificate or a wrong password come to.

use std::time::Duration;

use herald_core::delivery::{DeliveryJob, Failure};
use herald_testkit::smtp::{SmtpServer, SmtpTls};
use herald_workers::email::{EmailChannel, EmailConfig};
use serde_json::json;
use uuid::Uuid;

fn job(to: &str) -> DeliveryJob {
    DeliveryJob {
        id: Uuid::now_v7(),
        number: 1,
        kind: "test.mail".into(),
        recipient: to.into(),
        channel: "email".into(),
        payload: json!({"subject": "Über TLS", "text": "Hello over TLS"}),
        source_id: None,
        recipient_id: None,
        attempts: 0,
        deadline: None,
        lease_until: chrono::Utc::now() + chrono::Duration::minutes(1),
        trace_context: None,
    }
}

fn channel(url: String, roots: &str) -> EmailChannel {
    let config = EmailConfig {
        url: url.parse().expect("url"),
        from: "noreply@herald.test".parse().expect("from"),
        timeout: Duration::from_secs(5),
        extra_roots: roots.as_bytes().to_vec(),
    };
    EmailChannel::new(&config).expect("channel")
}

#[tokio::test]
async fn mail_goes_over_starttls_and_implicit_tls_with_a_login() {
    for (tls, scheme, query) in [(SmtpTls::StartTls, "smtp", "?tls=starttls"), (SmtpTls::Implicit, "smtps", "")] {
        let server = SmtpServer::start(tls, Some(("mailer", "s3cret"))).await;
        let port = server.addr.port();
        let email = channel(format!("{scheme}://mailer:s3cret@127.0.0.1:{port}{query}"), &server.certificate_pem);
        let sent = job("ada@example.org");
        email.send(&sent).await.unwrap_or_else(|e| panic!("{scheme}: {e}"));
        let mails = server.mails();
        assert_eq!(mails.len(), 1, "{scheme}");
        assert!(mails[0].tls, "{scheme}: the message came over TLS");
        assert_eq!(mails[0].user.as_deref(), Some("mailer"));
        assert!(mails[0].data.contains("Hello over TLS"), "{}", mails[0].data);

        // A certificate nobody vouches for: no connection, and retried later like one that failed.
        let untrusted = channel(format!("{scheme}://mailer:s3cret@127.0.0.1:{port}{query}"), "");
        assert_eq!(untrusted.send(&job("ada@example.org")).await, Err(Failure::Connection), "{scheme}");
        // A wrong password: the server's 535, final.
        let wrong = channel(format!("{scheme}://mailer:guess@127.0.0.1:{port}{query}"), &server.certificate_pem);
        let refused = wrong.send(&job("ada@example.org")).await.expect_err("refused");
        assert_eq!(refused, Failure::Smtp { code: 535 });
        assert!(!refused.is_transient());
        assert_eq!(server.mails().len(), 1, "{scheme}: nothing else arrived");
    }
}

/// STARTTLS required, and the server offers none: nothing is sent in the clear.
#[tokio::test]
async fn required_starttls_never_falls_back_to_plain() {
    let server = SmtpServer::start(SmtpTls::None, None).await;
    let email = channel(format!("smtp://127.0.0.1:{}?tls=starttls", server.addr.port()), &server.certificate_pem);
    assert!(email.send(&job("ada@example.org")).await.is_err());
    assert!(server.mails().is_empty());
    // Opportunistic TLS sends in the clear to a server without it (a loopback relay).
    let email = channel(format!("smtp://127.0.0.1:{}", server.addr.port()), "");
    email.send(&job("ada@example.org")).await.expect("sent");
    assert!(!server.mails()[0].tls);
}
