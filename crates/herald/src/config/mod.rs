//! Configuration: one typed [`Config`], every setting declared once in [`settings!`] with its env
//! var, flag, default and doc line.
//!
//! Precedence: defaults < TOML file (`--config` / `HERALD_CONFIG`) < `HERALD_*` env < flags. Every
//! value passes through its type's `FromStr`, whatever its source; all errors are collected and
//! reported together, each naming its setting. Loading has no side effects.

mod checks;
mod errors;
mod limits;
mod texts;
mod values;

use std::{collections::BTreeMap, fmt, net::SocketAddr};

use checks::{check_together, expand_short_forms};
pub use errors::{ConfigError, SettingError};
use errors::{Raw, parse};
use herald_broker::BrokerUrl;
use herald_core::{campaign::TimeZone, hosting::Hosted, net::Networks, schedule::Schedule};
use herald_store::{FilesUrl, S3Endpoint, S3Options, StoreUrl};
use herald_workers::email::{EmailFrom, SmtpUrl};
pub use texts::{Dir, FilePath, HeaderText, Name};
pub use values::*;

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
        })
    }
}

/// The description of one setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub env: &'static str,
    pub flag: &'static str,
    /// The default as written; `{data_dir}` stands for the effective data directory.
    pub default: &'static str,
    pub doc: &'static str,
    pub secret: bool,
}

macro_rules! settings {
    ($($name:ident: $ty:ty = $default:literal, env $env:literal, flag $flag:literal, secret $secret:literal, doc $doc:literal;)*) => {
        /// Herald's whole configuration, validated.
        #[derive(Debug, Clone)]
        pub struct Config {
            $(#[doc = $doc] pub $name: $ty,)*
        }

        /// One flag per setting; every flag may follow any subcommand.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct Flags {
            $(#[arg(long = $flag, global = true, value_name = "VALUE", help = $doc, help_heading = "Settings")]
            pub $name: Option<String>,)*
        }

        /// Every setting, in declaration order.
        pub const SETTINGS: &[Setting] = &[
            $(Setting { name: stringify!($name), env: $env, flag: $flag, default: $default, doc: $doc, secret: $secret },)*
        ];

        impl Flags {
            fn get(&self, name: &str) -> Option<&str> {
                match name {
                    $(stringify!($name) => self.$name.as_deref(),)*
                    _ => None,
                }
            }
        }

        impl Config {
            fn from_raw(raw: &BTreeMap<&'static str, Raw>) -> Result<Self, Vec<SettingError>> {
                let mut errors = Vec::new();
                $(let $name = parse::<$ty>(raw, stringify!($name), &mut errors);)*
                match ($($name,)*) {
                    ($(Some($name),)*) => Ok(Self { $($name,)* }),
                    _ => Err(errors),
                }
            }

            /// The effective value of a setting as `herald config` prints it (secrets redacted).
            pub fn display(&self, name: &str) -> String {
                match name {
                    $(stringify!($name) => self.$name.to_string(),)*
                    _ => String::new(),
                }
            }
        }
    };
}

settings! {
    http_addr: SocketAddr = "127.0.0.1:8080", env "HERALD_HTTP_ADDR", flag "http-addr", secret false,
        doc "Address of the HTTP server: REST API, Socket.io, /ws, /demo, /docs, /openapi.json, /healthz, /readyz.";
    grpc_addr: SocketAddr = "127.0.0.1:50051", env "HERALD_GRPC_ADDR", flag "grpc-addr", secret false,
        doc "Address of the gRPC server: herald.calendar.v1.CalendarService and server reflection.";
    admin_addr: SocketAddr = "127.0.0.1:9090", env "HERALD_ADMIN_ADDR", flag "admin-addr", secret false,
        doc "Address of /healthz, /readyz and /metrics for herald relay, scheduler and sender (serve and api have them on http_addr).";
    data_dir: Dir = "./herald-data", env "HERALD_DATA_DIR", flag "data-dir", secret false,
        doc "Directory for the SQLite database, uploaded files and generated secrets.";
    store_url: StoreUrl = "sqlite://{data_dir}/herald.db", env "HERALD_STORE_URL", flag "store-url", secret false,
        doc "Store backend: sqlite://<file> (embedded) or postgres://user:pass@host/db.";
    store_pool_size: Count = "10", env "HERALD_STORE_POOL_SIZE", flag "store-pool-size", secret false,
        doc "Most store connections held open (readers, for SQLite).";
    files_url: FilesUrl = "file://{data_dir}/files", env "HERALD_FILES_URL", flag "files-url", secret false,
        doc "Where attachment files live: file://<dir> (a local directory) or s3://<bucket>/<prefix> (an S3-compatible object store; region and credentials from the AWS_* variables).";
    files_dir: Optional<Dir> = "", env "HERALD_FILES_DIR", flag "files-dir", secret false,
        doc "Short form of files_url=file://<dir>; setting both is an error.";
    s3_endpoint: Optional<S3Endpoint> = "", env "HERALD_S3_ENDPOINT", flag "s3-endpoint", secret false,
        doc "Endpoint of an S3-compatible store other than AWS (http(s)://host:port, addressed path-style, plain HTTP only when it says http://); empty is AWS S3.";
    max_upload_size: ByteSize = "100MiB", env "HERALD_MAX_UPLOAD_SIZE", flag "max-upload-size", secret false,
        doc "Largest attachment accepted; bigger uploads are refused with 413 and nothing is kept.";
    s3_upload_memory: ByteSize = "256MiB", env "HERALD_S3_UPLOAD_MEMORY", flag "s3-upload-memory", secret false,
        doc "Memory all uploads to the object store may hold at once (part buffers and parts in flight, at most 15MiB per upload with 5MiB parts); an upload that finds it in use when it starts, or when it outgrows one MiB, is refused with 503 and nothing is kept.";
    uploads_per_user: Count = "4", env "HERALD_UPLOADS_PER_USER", flag "uploads-per-user", secret false,
        doc "Attachment uploads one user may have in progress at once in one process, on every file store; another is refused with 429 too_many_requests before any byte is stored.";
    gc_interval: Span = "1h", env "HERALD_GC_INTERVAL", flag "gc-interval", secret false,
        doc "How often the orphan-file collector runs: a scheduler job, in serve and in herald scheduler.";
    gc_grace: Span = "1h", env "HERALD_GC_GRACE", flag "gc-grace", secret false,
        doc "A file unreferenced and unwritten for this long is an orphan; protects uploads in flight.";
    broker_url: BrokerUrl = "memory://", env "HERALD_BROKER_URL", flag "broker-url", secret false,
        doc "Broker backend: memory:// (in-process, serve only), amqp://user:pass@host/vhost, nats://host:4222 or redis://host:6379/0 (amqps://, tls://, rediss:// for TLS).";
    broker_namespace: Name = "herald", env "HERALD_BROKER_NAMESPACE", flag "broker-namespace", secret false,
        doc "Prefix of every queue, topic, stream and subject, so deployments can share a broker.";
    commands: Hosted = "all", env "HERALD_COMMANDS", flag "commands", secret false,
        doc "Command groups this process runs: all, or some of auth, users, api_keys, notifications, tasks, attachments, clients, mailings, reports, events, rooms, admin; the others are forwarded over NATS (needs a nats:// broker) to a process that hosts them.";
    command_forward_timeout: Span = "10s", env "HERALD_COMMAND_FORWARD_TIMEOUT", flag "command-forward-timeout",
        secret false, doc "Longest wait for a forwarded command's answer; then the caller gets 503 unavailable.";
    relay_batch: Count = "500", env "HERALD_RELAY_BATCH", flag "relay-batch", secret false,
        doc "Most outbox events the relay publishes per pass.";
    relay_poll_interval: Span = "1s", env "HERALD_RELAY_POLL_INTERVAL", flag "relay-poll-interval", secret false,
        doc "Longest the relay waits between passes when no wake-up comes.";
    outbox_retention: Span = "24h", env "HERALD_OUTBOX_RETENTION", flag "outbox-retention", secret false,
        doc "How long published outbox events are kept before they are pruned: the age window of channel streams.";
    channel_max_events: Count = "1000", env "HERALD_CHANNEL_MAX_EVENTS", flag "channel-max-events", secret false,
        doc "Most published events a channel's stream keeps for resuming sessions; older ones are pruned.";
    session_buffer: Count = "1024", env "HERALD_SESSION_BUFFER", flag "session-buffer", secret false,
        doc "Events a real-time session may have queued; a session that falls further behind is disconnected.";
    session_idle_timeout: Span = "24h", env "HERALD_SESSION_IDLE_TIMEOUT", flag "session-idle-timeout", secret false,
        doc "A session's cursors are forgotten after this long without a subscribe or an ack.";
    scheduler_batch: Count = "500", env "HERALD_SCHEDULER_BATCH", flag "scheduler-batch", secret false,
        doc "Most due deliveries the scheduler claims per pass.";
    scheduler_jobs_per_message: Count = "50", env "HERALD_SCHEDULER_JOBS_PER_MESSAGE", flag "scheduler-jobs-per-message",
        secret false, doc "Claimed deliveries per work-queue message (a sender checks and settles them together).";
    scheduler_max_claimed: Count = "20000", env "HERALD_SCHEDULER_MAX_CLAIMED", flag "scheduler-max-claimed", secret false,
        doc "Most deliveries claimed and not yet reported at once; the scheduler waits for senders beyond it.";
    scheduler_interval: Span = "1s", env "HERALD_SCHEDULER_INTERVAL", flag "scheduler-interval", secret false,
        doc "Longest wait between scheduler passes (how late a due delivery may be picked up).";
    mailings_schedule: Schedule = "@every 1s", env "HERALD_MAILINGS_SCHEDULE", flag "mailings-schedule", secret false,
        doc "When the scheduler starts due mailings and finishes drained ones (cron, @every 10s, or off).";
    report_schedule: Schedule = "off", env "HERALD_REPORT_SCHEDULE", flag "report-schedule", secret false,
        doc "When the scheduler sends administrators the previous day's mailing report, by email when HERALD_SMTP_URL is set, else to their webhook (cron in UTC like 0 7 * * *, CRON_TZ=Europe/Moscow 0 7 * * *, @daily, or off).";
    report_timezone: TimeZone = "UTC", env "HERALD_REPORT_TIMEZONE", flag "report-timezone", secret false,
        doc "The IANA zone whose days the daily report covers (GET /api/v1/reports/daily and the scheduled report).";
    event_retention: Span = "365d", env "HERALD_EVENT_RETENTION", flag "event-retention", secret false,
        doc "Calendar events that ended longer ago than this are deleted by the scheduler.";
    event_retention_schedule: Schedule = "@hourly", env "HERALD_EVENT_RETENTION_SCHEDULE",
        flag "event-retention-schedule", secret false,
        doc "When the scheduler deletes calendar events past retention (cron, @every 1h, or off).";
    notice_retention: Span = "90d", env "HERALD_NOTICE_RETENTION", flag "notice-retention", secret false,
        doc "Settled notices (acknowledged, delivered, expired, failed) made longer ago than this are deleted.";
    notice_retention_schedule: Schedule = "@hourly", env "HERALD_NOTICE_RETENTION_SCHEDULE",
        flag "notice-retention-schedule", secret false,
        doc "When the scheduler deletes settled notices past retention (cron, @every 1h, or off).";
    delivery_lease: Span = "2m", env "HERALD_DELIVERY_LEASE", flag "delivery-lease", secret false,
        doc "How long a claimed delivery is a sender's; after it the rescuer hands it out again.";
    sender_concurrency: Count = "512", env "HERALD_SENDER_CONCURRENCY", flag "sender-concurrency", secret false,
        doc "Most deliveries one sender has in flight at once; it adapts below this by its channels' call times and failures.";
    sender_min_concurrency: Count = "16", env "HERALD_SENDER_MIN_CONCURRENCY", flag "sender-min-concurrency",
        secret false,
        doc "Fewest deliveries in flight the sender adapts down to (set it to HERALD_SENDER_CONCURRENCY for a fixed number).";
    retry_max_attempts: Count = "10", env "HERALD_RETRY_MAX_ATTEMPTS", flag "retry-max-attempts", secret false,
        doc "Attempts per delivery, the first included, before it fails.";
    retry_cap: Span = "10m", env "HERALD_RETRY_CAP", flag "retry-cap", secret false,
        doc "Longest back-off between attempts (they go 1s, 2s, 4s, … up to this).";
    retry_jitter: Fraction = "0", env "HERALD_RETRY_JITTER", flag "retry-jitter", secret false,
        doc "Random spread of each back-off (0.1 = ±10%); 0 keeps the schedule exact.";
    breaker_threshold: Count = "5", env "HERALD_BREAKER_THRESHOLD", flag "breaker-threshold", secret false,
        doc "Consecutive transient failures that open a circuit breaker (one per channel; for webhooks, one per destination host).";
    breaker_open: Span = "30s", env "HERALD_BREAKER_OPEN", flag "breaker-open", secret false,
        doc "How long an open breaker defers its channel before probing (doubles per failed probe, up to 10m).";
    http_ca_file: Optional<FilePath> = "", env "HERALD_HTTP_CA_FILE", flag "http-ca-file", secret false,
        doc "PEM certificates trusted for outbound HTTPS (the provider, webhooks) besides the system's roots: a private CA.";
    https_proxy: Optional<HttpUrl> = "", env "HERALD_HTTPS_PROXY", flag "https-proxy", secret true,
        doc "Proxy outbound https:// calls go through, by CONNECT (http://[user:pass@]host:port); unset: none. The HTTPS_PROXY variable is not read.";
    no_proxy: Optional<HeaderText> = "", env "HERALD_NO_PROXY", flag "no-proxy", secret false,
        doc "Hosts reached directly although HERALD_HTTPS_PROXY is set: comma-separated names, .domain, addresses or CIDRs.";
    provider_url: Optional<HttpUrl> = "", env "HERALD_PROVIDER_URL", flag "provider-url", secret false,
        doc "Base URL of the SMS provider (POST {url}/v1/send/{id}); provider deliveries fail while unset.";
    provider_token: Optional<Token> = "", env "HERALD_PROVIDER_TOKEN", flag "provider-token", secret true,
        doc "Bearer token for the SMS provider.";
    provider_timeout: Span = "10s", env "HERALD_PROVIDER_TIMEOUT", flag "provider-timeout", secret false,
        doc "Longest wait for the provider's answer; a timeout is retried.";
    provider_answer_limit: ByteSize = "64KiB", env "HERALD_PROVIDER_ANSWER_LIMIT", flag "provider-answer-limit",
        secret false, doc "Most bytes of a provider answer's body read (its status decides); the rest is dropped and the connection closed.";
    provider_rate: RateLimit = "unlimited", env "HERALD_PROVIDER_RATE", flag "provider-rate", secret false,
        doc "Most provider calls per sender: unlimited, <n>/s or <n>/m.";
    webhook_secret: Optional<Secret> = "", env "HERALD_WEBHOOK_SECRET", flag "webhook-secret", secret true,
        doc "HMAC-SHA256 key of the Herald-Signature header (32+ bytes); webhook deliveries fail while unset.";
    webhook_timeout: Span = "10s", env "HERALD_WEBHOOK_TIMEOUT", flag "webhook-timeout", secret false,
        doc "Longest wait for a webhook receiver's answer; a timeout is retried.";
    webhook_answer_limit: ByteSize = "64KiB", env "HERALD_WEBHOOK_ANSWER_LIMIT", flag "webhook-answer-limit",
        secret false, doc "Most bytes of a webhook receiver's answer body read (its status decides); the rest is dropped and the connection closed.";
    webhook_rate: RateLimit = "unlimited", env "HERALD_WEBHOOK_RATE", flag "webhook-rate", secret false,
        doc "Most webhook calls per destination host, per sender: unlimited, <n>/s or <n>/m.";
    smtp_url: Optional<SmtpUrl> = "", env "HERALD_SMTP_URL", flag "smtp-url", secret true,
        doc "Mail server of email deliveries: smtp://user:pass@host:587 (STARTTLS when offered; ?tls=starttls requires it, ?tls=none never) or smtps://user:pass@host:465; email deliveries fail while unset.";
    email_from: Optional<EmailFrom> = "", env "HERALD_EMAIL_FROM", flag "email-from", secret false,
        doc "From of email deliveries: noreply@example.org or Herald <noreply@example.org>; required with smtp_url.";
    smtp_timeout: Span = "10s", env "HERALD_SMTP_TIMEOUT", flag "smtp-timeout", secret false,
        doc "Longest one email delivery's SMTP conversation may take; a timeout is retried.";
    smtp_ca_file: Optional<FilePath> = "", env "HERALD_SMTP_CA_FILE", flag "smtp-ca-file", secret false,
        doc "PEM certificate trusted for the mail server besides the system's roots (a private CA).";
    webhook_allowed_networks: Networks = "", env "HERALD_WEBHOOK_ALLOWED_NETWORKS", flag "webhook-allowed-networks",
        secret false,
        doc "Comma-separated CIDRs webhooks may reach although they are internal (loopback, private, link-local, …); empty allows public addresses only.";
    webhook_lookup_rate: RateLimit = "10/m", env "HERALD_WEBHOOK_LOOKUP_RATE", flag "webhook-lookup-rate", secret false,
        doc "Webhook host names one account may have resolved when it sets its webhook: unlimited, <n>/s or <n>/m (bursts of a minute's worth).";
    dns_lookup_concurrency: Count = "8", env "HERALD_DNS_LOOKUP_CONCURRENCY", flag "dns-lookup-concurrency", secret false,
        doc "Host-name look-ups for outbound destinations running at once (each holds a blocking thread until the resolver answers); others wait.";
    webhook_max_hosts: Count = "10000", env "HERALD_WEBHOOK_MAX_HOSTS", flag "webhook-max-hosts", secret false,
        doc "Most webhook destination hosts whose circuit breaker and rate limit a sender keeps (the least recently used are forgotten), and most host names whose answers the resolver remembers.";
    jwt_secret: Optional<Secret> = "", env "HERALD_JWT_SECRET", flag "jwt-secret", secret true,
        doc "HMAC secret for access tokens (32+ bytes); generated into the data dir when unset.";
    jwt_ttl: Span = "1h", env "HERALD_JWT_TTL", flag "jwt-ttl", secret false,
        doc "Lifetime of an access token.";
    password_hash_concurrency: AutoCount = "auto", env "HERALD_PASSWORD_HASH_CONCURRENCY",
        flag "password-hash-concurrency", secret false,
        doc "Password hashes computed at once (each holds 19 MiB while it runs); auto is the number of cores.";
    password_hash_queue: Count = "64", env "HERALD_PASSWORD_HASH_QUEUE", flag "password-hash-queue", secret false,
        doc "Password checks that may wait for a hashing slot; beyond it they are refused with 429.";
    auth_account_rate: RateLimit = "10/m", env "HERALD_AUTH_ACCOUNT_RATE", flag "auth-account-rate", secret false,
        doc "Password checks (login, register) per account, on every transport: unlimited, <n>/s or <n>/m (bursts of a minute's worth).";
    auth_address_rate: RateLimit = "60/m", env "HERALD_AUTH_ADDRESS_RATE", flag "auth-address-rate", secret false,
        doc "Password checks per client IP address, IPv6 by its /64 (HTTP and sockets): unlimited, <n>/s or <n>/m (bursts of a minute's worth).";
    auth_rate_keys: Count = "100000", env "HERALD_AUTH_RATE_KEYS", flag "auth-rate-keys", secret false,
        doc "Most accounts, and most addresses, the password-check limits remember; a new one beyond it is refused while all are busy.";
    trusted_proxies: Networks = "", env "HERALD_TRUSTED_PROXIES", flag "trusted-proxies", secret false,
        doc "Comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client; empty trusts none.";
    http_header_timeout: Span = "30s", env "HERALD_HTTP_HEADER_TIMEOUT", flag "http-header-timeout", secret false,
        doc "A connection that has not sent a whole request head within this long is closed.";
    http_idle_timeout: Span = "75s", env "HERALD_HTTP_IDLE_TIMEOUT", flag "http-idle-timeout", secret false,
        doc "A keep-alive connection with no request for this long is closed.";
    http_max_connections: Count = "10000", env "HERALD_HTTP_MAX_CONNECTIONS", flag "http-max-connections", secret false,
        doc "Most HTTP connections served at once (upgraded sockets count as sessions, not here); more wait to be accepted.";
    http_max_connections_per_address: Count = "2000", env "HERALD_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        flag "http-max-connections-per-address", secret false,
        doc "Most HTTP connections one client address holds (IPv6 by its /64; behind HERALD_TRUSTED_PROXIES, requests in flight per forwarded client, else 429); another is closed at accept.";
    http_body_timeout: Span = "30s", env "HERALD_HTTP_BODY_TIMEOUT", flag "http-body-timeout", secret false,
        doc "Longest a request body may take to arrive (else 408 and the connection closes); uploads and imports get a least rate over each such window instead.";
    http_body_min_rate: ByteSize = "1KiB", env "HERALD_HTTP_BODY_MIN_RATE", flag "http-body-min-rate", secret false,
        doc "Least bytes a second an upload or import body must bring, over each HERALD_HTTP_BODY_TIMEOUT spent waiting for it.";
    sessions_per_user: Count = "100", env "HERALD_SESSIONS_PER_USER", flag "sessions-per-user", secret false,
        doc "Most real-time sessions one user may have open on one gateway; another is refused with too_many_sessions.";
    max_sessions: Count = "50000", env "HERALD_MAX_SESSIONS", flag "max-sessions", secret false,
        doc "Most real-time connections one gateway holds, handshakes in progress included; another is refused with unavailable (HTTP 503 for /ws).";
    subscriptions_per_session: Count = "256", env "HERALD_SUBSCRIPTIONS_PER_SESSION", flag "subscriptions-per-session",
        secret false, doc "Most channels one real-time session may subscribe to; another is refused with too_many_subscriptions.";
    session_calls_in_flight: Count = "16", env "HERALD_SESSION_CALLS_IN_FLIGHT", flag "session-calls-in-flight",
        secret false, doc "Requests (subscribe, call) one real-time session may have unanswered; another is refused with too_many_requests.";
    broker_signing_key: Optional<Secret> = "", env "HERALD_BROKER_SIGNING_KEY", flag "broker-signing-key", secret true,
        doc "HMAC key (32+ bytes) every process signs its broker messages with and checks them by; unsigned or forged messages are dropped. Unset: the broker is trusted.";
    forward_replay_window: Span = "30s", env "HERALD_FORWARD_REPLAY_WINDOW", flag "forward-replay-window", secret false,
        doc "With a signing key: how far (either way) a forwarded command's seal time may be from the host's clock; older or newer requests are dropped.";
    forward_replay_ids: Count = "100000", env "HERALD_FORWARD_REPLAY_IDS", flag "forward-replay-ids", secret false,
        doc "With a signing key: most forwarded request ids a host remembers (each for its replay window) to drop replays; when all are live, new forwarded requests get 503.";
    body_limit: ByteSize = "1MiB", env "HERALD_BODY_LIMIT", flag "body-limit", secret false,
        doc "Largest JSON request body accepted.";
    static_dir: Optional<Dir> = "", env "HERALD_STATIC_DIR", flag "static-dir", secret false,
        doc "A directory served at /static/ (read and hashed at start; index.html for directories, ETag, .br/.gz siblings); empty serves none.";
    static_cache_control: HeaderText = "public, max-age=300", env "HERALD_STATIC_CACHE_CONTROL",
        flag "static-cache-control", secret false,
        doc "The Cache-Control header sent with every static file.";
    cors_origins: Origins = "", env "HERALD_CORS_ORIGINS", flag "cors-origins", secret false,
        doc "Comma-separated origins allowed by CORS, or *; empty turns CORS off.";
    oidc_issuer: Optional<AnyHttpUrl> = "", env "HERALD_OIDC_ISSUER", flag "oidc-issuer", secret false,
        doc "OpenID Connect issuer for single sign-on to the console and the API (its /.well-known/openid-configuration is read); empty turns it off.";
    oidc_client_id: Optional<HeaderText> = "", env "HERALD_OIDC_CLIENT_ID", flag "oidc-client-id", secret false,
        doc "Herald's client id at the OpenID Connect provider; required with oidc_issuer.";
    oidc_client_secret: Optional<Token> = "", env "HERALD_OIDC_CLIENT_SECRET", flag "oidc-client-secret", secret true,
        doc "Herald's client secret at the OpenID Connect provider (sent with HTTP Basic to its token endpoint); required with oidc_issuer.";
    oidc_redirect_url: Optional<AnyHttpUrl> = "", env "HERALD_OIDC_REDIRECT_URL", flag "oidc-redirect-url", secret false,
        doc "Herald's callback as registered at the provider: https://<herald>/api/v1/auth/oidc/callback; required with oidc_issuer.";
    oidc_scopes: HeaderText = "openid email profile", env "HERALD_OIDC_SCOPES", flag "oidc-scopes", secret false,
        doc "Scopes asked of the provider (openid is needed).";
    oidc_role_claim: Name = "groups", env "HERALD_OIDC_ROLE_CLAIM", flag "oidc-role-claim", secret false,
        doc "The ID token claim (a string or a list) that gives the Herald role.";
    oidc_admin_values: List = "herald-admin", env "HERALD_OIDC_ADMIN_VALUES", flag "oidc-admin-values", secret false,
        doc "Comma-separated values of oidc_role_claim that make an administrator; anyone else signs in as a user.";
    oidc_answer_limit: ByteSize = "1MiB", env "HERALD_OIDC_ANSWER_LIMIT", flag "oidc-answer-limit", secret false,
        doc "Most bytes of an OpenID Connect provider's answer (discovery, keys, token) read; a longer one fails the sign-in.";
    log_format: LogFormat = "auto", env "HERALD_LOG_FORMAT", flag "log-format", secret false,
        doc "Log format on stderr: auto (pretty on a terminal, JSON otherwise), pretty or json.";
    log_level: LogFilter = "info", env "HERALD_LOG", flag "log", secret false,
        doc "Log filter in RUST_LOG syntax, e.g. info or info,herald_http=debug.";
    shutdown_timeout: Span = "30s", env "HERALD_SHUTDOWN_TIMEOUT", flag "shutdown-timeout", secret false,
        doc "How long a stopping server waits for in-flight requests.";
}

/// A loaded configuration with the source of every value.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub sources: BTreeMap<&'static str, Source>,
    /// `HERALD_*` variables that name no setting (typos, usually).
    pub unknown_env: Vec<String>,
}

/// Loads the configuration. `env` is the process environment (tests pass their own);
/// `file` is the TOML file named by `--config`, if any.
pub fn load(
    file: Option<&std::path::Path>,
    env: &BTreeMap<String, String>,
    flags: &Flags,
) -> Result<Loaded, ConfigError> {
    let mut errors = Vec::new();
    let file_values = match file {
        Some(path) => read_file(path, &mut errors),
        None => BTreeMap::new(),
    };
    let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();
    for s in SETTINGS {
        let layered = flags
            .get(s.name)
            .map(|v| (v.to_owned(), Source::Flag))
            .or_else(|| env.get(s.env).map(|v| (v.clone(), Source::Env)))
            .or_else(|| file_values.get(s.name).map(|v| (v.clone(), Source::File)));
        let (value, source) = layered.unwrap_or_else(|| (s.default.to_owned(), Source::Default));
        raw.insert(s.name, Raw { value, source });
    }
    // Defaults may refer to the effective data directory.
    let data_dir = raw["data_dir"].value.trim_end_matches('/').to_owned();
    for r in raw.values_mut().filter(|r| r.source == Source::Default) {
        r.value = r.value.replace("{data_dir}", &data_dir);
    }
    expand_short_forms(&mut raw, &mut errors);
    let config = Config::from_raw(&raw).map_err(|mut e| {
        errors.append(&mut e);
        ConfigError(errors.clone())
    })?;
    check_together(&config, &raw, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigError(errors));
    }
    let unknown_env = env
        .keys()
        .filter(|k| k.starts_with("HERALD_") && !k.starts_with("HERALD_TEST_") && k.as_str() != "HERALD_CONFIG")
        .filter(|k| !SETTINGS.iter().any(|s| s.env == k.as_str()))
        .cloned()
        .collect();
    Ok(Loaded { config, sources: raw.iter().map(|(k, r)| (*k, r.source)).collect(), unknown_env })
}

impl Config {
    /// The longest a sender's call to one channel may take (the email channel's only when it is
    /// on, so a configuration without it keeps the lease it had).
    pub fn longest_channel_call(&self) -> std::time::Duration {
        let smtp = if self.smtp_url.0.is_some() { self.smtp_timeout.0 } else { std::time::Duration::ZERO };
        self.provider_timeout.0.max(self.webhook_timeout.0).max(smtp)
    }

    /// How outbound HTTP calls are made: TLS trusting the system's roots and `http_ca_file`.
    /// `Err` when that file cannot be used.
    pub fn egress(&self) -> Result<herald_egress::Egress, SettingError> {
        let options = herald_egress::EgressOptions {
            ca_file: self.http_ca_file.0.as_ref().map(|f| f.0.clone()),
            https_proxy: self.https_proxy.0.as_ref().map(|u| u.0.clone()),
            no_proxy: self.no_proxy.0.as_ref().map(|t| t.to_string()),
        };
        herald_egress::Egress::new(&options).map_err(|e| {
            let setting = match e {
                herald_egress::EgressError::Tls(_) => "http_ca_file",
                herald_egress::EgressError::Proxy(_) => "https_proxy",
            };
            SettingError { setting: setting.to_owned(), message: e.to_string() }
        })
    }

    /// The email channel's settings, when `smtp_url` and `email_from` are set; reads
    /// `smtp_ca_file`. `Err` names the setting that is wrong.
    pub fn email(&self) -> Result<Option<herald_workers::email::EmailConfig>, SettingError> {
        let (Some(url), Some(from)) = (&self.smtp_url.0, &self.email_from.0) else { return Ok(None) };
        let extra_roots = match &self.smtp_ca_file.0 {
            None => Vec::new(),
            Some(path) => std::fs::read(&path.0).map_err(|e| SettingError {
                setting: "smtp_ca_file".to_owned(),
                message: format!("{} cannot be read: {e}", path.0.display()),
            })?,
        };
        let config = herald_workers::email::EmailConfig {
            url: url.clone(),
            from: from.clone(),
            timeout: self.smtp_timeout.0,
            extra_roots,
        };
        // The TLS settings are built once here, so a bad certificate stops the start.
        herald_workers::email::EmailChannel::check(&config)
            .map_err(|message| SettingError { setting: "smtp_ca_file".to_owned(), message })?;
        Ok(Some(config))
    }
}

impl Config {
    /// How uploads to an object store are cut and how much memory they may hold.
    pub fn s3_options(&self) -> S3Options {
        S3Options { max_upload_size: self.max_upload_size.0, upload_memory: self.s3_upload_memory.0 }
    }
}

impl Config {
    /// Single sign-on's settings, when `oidc_issuer` is set (the others are checked with it).
    pub fn oidc(&self) -> Option<herald_core::oidc::OidcSettings> {
        let issuer = self.oidc_issuer.0.as_ref()?;
        Some(herald_core::oidc::OidcSettings {
            issuer: issuer.0.clone(),
            client_id: self.oidc_client_id.0.as_ref()?.0.clone(),
            client_secret: self.oidc_client_secret.0.as_ref()?.expose().to_owned(),
            redirect_url: self.oidc_redirect_url.0.as_ref()?.0.clone(),
            scopes: self.oidc_scopes.0.clone(),
            role_claim: self.oidc_role_claim.0.clone(),
            admin_values: self.oidc_admin_values.0.clone(),
        })
    }
}

fn scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => other.type_str().to_owned(),
    }
}

/// Reads a TOML file of `setting = value` lines into raw strings.
fn read_file(path: &std::path::Path, errors: &mut Vec<SettingError>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut fail = |message: String| errors.push(SettingError { setting: "config file".into(), message });
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            fail(format!("cannot read {}: {e}", path.display()));
            return out;
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            fail(format!("{} is not valid TOML: {e}", path.display()));
            return out;
        }
    };
    for (key, value) in table {
        if !SETTINGS.iter().any(|s| s.name == key) {
            fail(format!("{}: unknown setting {key:?}", path.display()));
            continue;
        }
        let text = match value {
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
            toml::Value::Table(_) | toml::Value::Datetime(_) => {
                fail(format!("{}: {key} cannot be a {}", path.display(), value.type_str()));
                continue;
            }
            scalar_value => scalar(&scalar_value),
        };
        out.insert(key, text);
    }
    out
}

#[cfg(test)]
mod tests;
