//! A mail server on loopback for tests: enough of SMTP (RFC 5321) for a real client — `EHLO`,
//! `AUTH PLAIN` and `LOGIN`, `MAIL`, `RCPT`, `DATA` (dot-unstuffed), `RSET`, `NOOP`, `QUIT` —
//! over plain TCP, `STARTTLS` or implicit TLS with a certificate made for the test (rustls with
//! ring). It keeps what it received and answers `RCPT` as the test says: accept, try later (451)
//! or never (550).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpListener,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

/// How the server secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain TCP only.
    None,
    /// Plain, offering `STARTTLS`.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// How `RCPT` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpAnswer {
    Accept,
    /// `451 4.7.1`: try again later.
    TryLater,
    /// `550 5.1.1`: no such mailbox.
    Refuse,
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message, headers and body, as sent (line ends `\r\n`).
    pub data: String,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The user it authenticated as.
    pub user: Option<String>,
}

#[derive(Debug)]
struct State {
    mails: Vec<ReceivedMail>,
    answer: SmtpAnswer,
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    pub addr: SocketAddr,
    /// The server's certificate (PEM), for the client to trust.
    pub certificate_pem: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl SmtpServer {
    /// Starts a server on a free loopback port; `auth` is the one user and password it accepts
    /// (without it, no authentication is asked).
    pub async fn start(tls: SmtpTls, auth: Option<(&str, &str)>) -> Self {
        let cert = crate::tls::ServerCert::self_signed(&["localhost", "127.0.0.1"]);
        let certificate_pem = cert.pem.clone();
        let acceptor = TlsAcceptor::from(Arc::new(cert.server_config()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State { mails: Vec::new(), answer: SmtpAnswer::Accept }));
        let auth = auth.map(|(user, password)| (user.to_owned(), password.to_owned()));
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (state, acceptor, auth) = (state.clone(), acceptor.clone(), auth.clone());
                    tokio::spawn(async move {
                        let stream: Box<dyn Io> = match tls {
                            SmtpTls::Implicit => match acceptor.accept(stream).await {
                                Ok(stream) => Box::new(stream),
                                Err(_) => return,
                            },
                            _ => Box::new(stream),
                        };
                        let session = Session { state, acceptor, auth, tls, secure: tls == SmtpTls::Implicit };
                        let _ = session.run(stream).await;
                    });
                }
            }
        });
        Self { addr, certificate_pem, state, task }
    }

    /// How `RCPT` is answered from now on.
    pub fn answer(&self, answer: SmtpAnswer) {
        self.state.lock().expect("state").answer = answer;
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.state.lock().expect("state").mails.clone()
    }
}

struct Session {
    state: Arc<Mutex<State>>,
    acceptor: TlsAcceptor,
    auth: Option<(String, String)>,
    tls: SmtpTls,
    secure: bool,
}

fn b64(raw: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

impl Session {
    async fn run(mut self, stream: Box<dyn Io>) -> std::io::Result<()> {
        let mut io = BufReader::new(stream);
        io.write_all(b"220 herald-test ESMTP\r\n").await?;
        let (mut user, mut from, mut to) = (None::<String>, String::new(), Vec::<String>::new());
        let mut line = String::new();
        loop {
            line.clear();
            if io.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_owned();
            let verb = command.split(' ').next().unwrap_or_default().to_ascii_uppercase();
            let reply: String = match verb.as_str() {
                "EHLO" => {
                    let mut reply = "250-herald-test\r\n".to_owned();
                    if self.auth.is_some() {
                        reply.push_str("250-AUTH PLAIN LOGIN\r\n");
                    }
                    if self.tls == SmtpTls::StartTls && !self.secure {
                        reply.push_str("250-STARTTLS\r\n");
                    }
                    reply + "250 8BITMIME\r\n"
                }
                "HELO" | "NOOP" => "250 OK\r\n".into(),
                "RSET" => {
                    (from, to) = (String::new(), Vec::new());
                    "250 OK\r\n".into()
                }
                "STARTTLS" if self.tls == SmtpTls::StartTls && !self.secure => {
                    io.write_all(b"220 go ahead\r\n").await?;
                    let plain = io.into_inner();
                    let upgraded = self.acceptor.accept(plain).await?;
                    io = BufReader::new(Box::new(upgraded));
                    self.secure = true;
                    continue;
                }
                "AUTH" => {
                    let mut parts = command.splitn(3, ' ').skip(1);
                    let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
                    let initial = parts.next().map(str::to_owned);
                    let (name, password) = match mechanism.as_str() {
                        "PLAIN" => {
                            let response = match initial {
                                Some(response) => response,
                                None => self.ask(&mut io, "334 \r\n").await?,
                            };
                            let decoded = b64(&response);
                            let mut fields = decoded.split('\0').skip(1);
                            (fields.next().unwrap_or_default().to_owned(), fields.next().unwrap_or_default().to_owned())
                        }
                        "LOGIN" => {
                            let name = b64(&self.ask(&mut io, "334 VXNlcm5hbWU6\r\n").await?);
                            (name, b64(&self.ask(&mut io, "334 UGFzc3dvcmQ6\r\n").await?))
                        }
                        _ => {
                            io.write_all(b"504 5.5.4 unknown mechanism\r\n").await?;
                            continue;
                        }
                    };
                    if self.auth.as_ref().is_some_and(|(u, p)| *u == name && *p == password) {
                        user = Some(name);
                        "235 2.7.0 authenticated\r\n".into()
                    } else {
                        "535 5.7.8 bad credentials\r\n".into()
                    }
                }
                "MAIL" if self.auth.is_some() && user.is_none() => "530 5.7.0 authentication required\r\n".into(),
                "MAIL" => {
                    from = address(&command);
                    "250 OK\r\n".into()
                }
                "RCPT" => {
                    let answer = self.state.lock().expect("state").answer;
                    match answer {
                        SmtpAnswer::Accept => {
                            to.push(address(&command));
                            "250 OK\r\n".into()
                        }
                        SmtpAnswer::TryLater => "451 4.7.1 try again later\r\n".into(),
                        SmtpAnswer::Refuse => "550 5.1.1 no such mailbox\r\n".into(),
                    }
                }
                "DATA" if to.is_empty() => "554 5.5.1 no valid recipients\r\n".into(),
                "DATA" => {
                    io.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                    let mut data = String::new();
                    loop {
                        line.clear();
                        if io.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        if line == ".\r\n" {
                            break;
                        }
                        data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    }
                    let mail = ReceivedMail {
                        from: std::mem::take(&mut from),
                        to: std::mem::take(&mut to),
                        data,
                        tls: self.secure,
                        user: user.clone(),
                    };
                    self.state.lock().expect("state").mails.push(mail);
                    "250 2.0.0 queued\r\n".into()
                }
                "QUIT" => {
                    io.write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => "502 5.5.2 not implemented\r\n".into(),
            };
            io.write_all(reply.as_bytes()).await?;
        }
    }

    /// Sends a continuation and reads the client's answer line.
    async fn ask(&self, io: &mut BufReader<Box<dyn Io>>, prompt: &str) -> std::io::Result<String> {
        io.write_all(prompt.as_bytes()).await?;
        let mut answer = String::new();
        io.read_line(&mut answer).await?;
        Ok(answer.trim_end().to_owned())
    }
}

/// The address in `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    command.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(a, _)| a.to_owned()).unwrap_or_default()
}
