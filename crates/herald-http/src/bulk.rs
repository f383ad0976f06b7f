//! `POST /api/v1/clients/bulk`: clients as NDJSON, one JSON object per line, streamed. The body
//! is never held whole: lines are cut as chunks arrive, checked one by one, and stored in
//! batches. Valid lines are stored; each bad line is reported with its number and reason.

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::header,
    routing::post,
};
use bytes::{Buf as _, BytesMut};
use herald_core::{
    campaign::Client,
    command::Access,
    commands::clients::ClientInput,
    error::{ApiError, ErrorCode},
};
use http_body_util::BodyExt as _;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::{AppState, extract::CallerOf, problem::HttpError};

/// Longest line accepted, in bytes; a longer one is reported and skipped.
pub const MAX_LINE: usize = 4096;
/// Clients stored per store call.
const BATCH: usize = 1000;
/// Bad lines listed in the answer; the rest are only counted.
pub const MAX_ERRORS: usize = 1000;

/// The answer of a bulk import.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BulkReport {
    /// Clients stored.
    pub created: u64,
    /// Lines refused.
    pub failed: u64,
    /// The first refused lines, with their reasons.
    pub errors: Vec<LineError>,
    /// More lines were refused than `errors` lists.
    pub errors_truncated: bool,
}

/// One refused line.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    pub message: String,
}

impl BulkReport {
    fn refuse(&mut self, line: u64, message: impl Into<String>) {
        self.failed += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(LineError { line, message: message.into() });
        } else {
            self.errors_truncated = true;
        }
    }
}

/// The bulk import route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/clients/bulk", post(import))
}

async fn import(
    State(state): State<AppState>,
    CallerOf(caller): CallerOf,
    request: Request,
) -> Result<Json<BulkReport>, HttpError> {
    Access::Admin.check(&caller)?;
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(essence.as_str(), "application/x-ndjson" | "application/ndjson" | "application/jsonl") {
        return Err(HttpError::new(
            ErrorCode::UnsupportedMediaType,
            "send clients as application/x-ndjson: one JSON object per line",
        ));
    }
    let mut import = Import::new(&state);
    let mut body: Body = request.into_body();
    let mut buffer = BytesMut::new();
    // While a line is over the limit its bytes are dropped until its end.
    let mut skipping = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            HttpError::new(ErrorCode::MalformedRequest, format!("the request body could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else { continue };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line = buffer.split_to(end + 1);
            if std::mem::take(&mut skipping) {
                import.line_too_long();
            } else {
                import.line(&line[..end]).await?;
            }
        }
        if buffer.len() > MAX_LINE {
            skipping = true;
            buffer.advance(buffer.len());
        }
    }
    if skipping {
        import.line_too_long();
    } else if !buffer.is_empty() {
        import.line(&buffer).await?;
    }
    import.flush().await?;
    // Duplicates are found when their batch is stored, after later bad lines: list in line order.
    import.report.errors.sort_by_key(|e| e.line);
    tracing::info!(created = import.report.created, failed = import.report.failed, "clients imported");
    Ok(Json(import.report))
}

struct Import<'a> {
    state: &'a AppState,
    report: BulkReport,
    line: u64,
    /// The clients waiting to be stored, and the line each came from.
    batch: Vec<Client>,
    batch_lines: Vec<u64>,
}

impl<'a> Import<'a> {
    fn new(state: &'a AppState) -> Self {
        Self {
            state,
            report: BulkReport::default(),
            line: 0,
            batch: Vec::with_capacity(BATCH),
            batch_lines: Vec::with_capacity(BATCH),
        }
    }

    fn line_too_long(&mut self) {
        self.line += 1;
        self.report.refuse(self.line, format!("the line is longer than {MAX_LINE} bytes"));
    }

    async fn line(&mut self, raw: &[u8]) -> Result<(), HttpError> {
        self.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if raw.len() > MAX_LINE {
            self.report.refuse(self.line, format!("the line is longer than {MAX_LINE} bytes"));
            return Ok(());
        }
        match self.parse(raw) {
            Ok(client) => {
                self.batch.push(client);
                self.batch_lines.push(self.line);
                if self.batch.len() >= BATCH {
                    self.flush().await?;
                }
            }
            Err(message) => self.report.refuse(self.line, message),
        }
        Ok(())
    }

    /// The client a line describes, checked as `clients.create` checks its input.
    fn parse(&self, raw: &[u8]) -> Result<Client, String> {
        let value: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
        let herald = &self.state.herald;
        let info = herald.commands.get("clients.create").ok_or("clients.create is not registered")?;
        info.validate(&value).map_err(|e| describe(&e))?;
        let input = deserialize(value)?;
        Ok(input.into_client(herald.services.clock.now()))
    }

    async fn flush(&mut self) -> Result<(), HttpError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let skipped = self.state.herald.services.store.insert_clients(&self.batch).await.map_err(ApiError::from)?;
        self.report.created += (self.batch.len() - skipped.len()) as u64;
        for i in skipped {
            if let Some(line) = self.batch_lines.get(i).copied() {
                self.report.refuse(line, "a client with this phone exists already");
            }
        }
        self.batch.clear();
        self.batch_lines.clear();
        Ok(())
    }
}

/// Deserializes a checked line; a newtype's own check (an unknown zone) names its field.
fn deserialize(value: Value) -> Result<ClientInput, String> {
    serde_path_to_error::deserialize(value).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn describe(err: &ApiError) -> String {
    let fields = err.field_errors();
    if fields.is_empty() {
        return err.public_detail().to_owned();
    }
    fields
        .iter()
        .map(|f| if f.field.is_empty() { f.message.clone() } else { format!("{}: {}", f.field, f.message) })
        .collect::<Vec<_>>()
        .join("; ")
}
