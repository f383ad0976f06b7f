//! `clients.import`: clients as NDJSON, one JSON object per line, read from the call's byte
//! stream. The body is never held whole: lines are cut as chunks arrive, checked one by one as
//! `clients.create` checks its input, and stored in batches. Valid lines are stored; each bad
//! line is reported with its number and reason.

use async_trait::async_trait;
use bytes::{Buf as _, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{
    body::Body,
    campaign::Client,
    command::{Access, Ctx, SchemaCheck, UploadCommand},
    error::ApiError,
    services::Services,
};

use crate::shapes::ClientInput;

/// Longest line accepted, in bytes; a longer one is reported and skipped.
pub const MAX_LINE: usize = 4096;
/// Clients stored per store call.
const BATCH: usize = 1000;
/// Bad lines listed in the answer; the rest are only counted.
pub const MAX_ERRORS: usize = 1000;

/// Input of `clients.import`: nothing beside the NDJSON body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportInput {}

/// The answer of an import.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BulkReport {
    /// Clients stored.
    pub created: u64,
    /// Lines refused.
    pub failed: u64,
    /// The first refused lines (at most 1000), with their reasons.
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

/// Imports clients from NDJSON.
#[derive(Debug)]
pub struct Import {
    /// `clients.create`'s input schema, which every line must meet.
    line_schema: SchemaCheck,
}

impl Default for Import {
    fn default() -> Self {
        Self { line_schema: SchemaCheck::of::<ClientInput>("ClientsCreateInput".into()) }
    }
}

#[async_trait]
impl UploadCommand for Import {
    const NAME: &'static str = "clients.import";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Import clients from NDJSON, streamed";
    type Input = ImportInput;
    type Output = BulkReport;

    async fn run(&self, svc: &Services, _: &Ctx, _: ImportInput, mut body: Body) -> Result<BulkReport, ApiError> {
        let mut import = Lines::new(svc, &self.line_schema);
        let mut buffer = BytesMut::new();
        // While a line is over the limit its bytes are dropped until its end.
        let mut skipping = false;
        while let Some(chunk) = body.next().await {
            buffer.extend_from_slice(&chunk?);
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
        Ok(import.report)
    }
}

/// An import in progress.
struct Lines<'a> {
    svc: &'a Services,
    schema: &'a SchemaCheck,
    report: BulkReport,
    line: u64,
    /// The clients waiting to be stored, and the line each came from.
    batch: Vec<Client>,
    batch_lines: Vec<u64>,
}

impl<'a> Lines<'a> {
    fn new(svc: &'a Services, schema: &'a SchemaCheck) -> Self {
        Self {
            svc,
            schema,
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

    async fn line(&mut self, raw: &[u8]) -> Result<(), ApiError> {
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
        self.schema.validate(&value).map_err(|e| describe(&e))?;
        // A newtype's own check (an unknown zone) names its field.
        let input: ClientInput =
            serde_path_to_error::deserialize(value).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        Ok(input.into_client(self.svc.clock.now()))
    }

    async fn flush(&mut self) -> Result<(), ApiError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let skipped = self.svc.store.insert_clients(&self.batch).await?;
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
