//! Transport-independent commands: each use case is a named command with typed input and output.
//!
//! A command's input schema is derived from its Rust type (the same schema the OpenAPI spec
//! shows). The [`Registry`] checks the caller's access, validates the raw JSON input against that
//! schema, deserialises it and runs the command. REST handlers, Socket.io `call` and NATS
//! request-reply all go through [`Registry::call`], so validation and errors are the same on every
//! transport.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tracing::Instrument as _;
use utoipa::ToSchema;

pub use crate::schema::{SchemaCheck, SchemaDoc};
use crate::{
    body::{Answer, Body, BodyUse},
    error::{ApiError, ErrorCode, FieldError, MAX_FIELD_ERRORS},
    identity::{Caller, Identity},
    services::Services,
    user::Role,
};

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a token.
    Public,
    /// Any authenticated user.
    User,
    /// Authenticated users with the `admin` role.
    Admin,
}

impl Access {
    /// Refuses a caller who may not run a command with this access: 401 without identity, 403
    /// with the wrong role.
    pub fn check(self, caller: &Caller) -> Result<(), ApiError> {
        match (self, caller) {
            (Access::Public, _) => Ok(()),
            (_, Caller::Anonymous) => Err(ApiError::new(ErrorCode::Unauthorized, "an access token is required")),
            // A key acts with its maker's role; its scopes are checked against the command's name.
            (Access::User, Caller::User(_) | Caller::Key(_)) => Ok(()),
            (Access::Admin, Caller::User(Identity { role: Role::Admin, .. })) => Ok(()),
            (Access::Admin, Caller::Key(key)) if key.identity.role == Role::Admin => Ok(()),
            (Access::Admin, Caller::User(_) | Caller::Key(_)) => {
                Err(ApiError::new(ErrorCode::Forbidden, "this command requires the admin role"))
            }
        }
    }
}

/// What a command sees of its caller.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub caller: Caller,
    /// The client's address, where the transport knows one (HTTP and sockets; not NATS or gRPC).
    pub peer: Option<std::net::IpAddr>,
    /// The token the caller presented, which a command forwarded to another process carries.
    pub bearer: Option<crate::identity::Bearer>,
}

impl From<Caller> for Ctx {
    fn from(caller: Caller) -> Self {
        Self { caller, peer: None, bearer: None }
    }
}

impl Ctx {
    /// The authenticated caller; the registry has already refused anonymous callers of
    /// non-public commands, so this only fails for a command that declared `Access::Public`.
    pub fn identity(&self) -> Result<Identity, ApiError> {
        match &self.caller {
            Caller::User(identity) => Ok(*identity),
            Caller::Key(key) => Ok(key.identity),
            Caller::Anonymous => Err(ApiError::new(ErrorCode::Unauthorized, "an access token is required")),
        }
    }
}

/// A use case with a stable name, typed input and output, and an access rule.
#[async_trait]
pub trait Command: Send + Sync + 'static {
    /// Stable dotted name (`auth.register`); the NATS subject and socket `call` use it.
    const NAME: &'static str;
    const ACCESS: Access;
    /// One line for the API documentation.
    const SUMMARY: &'static str;
    type Input: DeserializeOwned + ToSchema + Send + 'static;
    type Output: Serialize + ToSchema + Send + 'static;

    async fn run(&self, svc: &Services, cx: &Ctx, input: Self::Input) -> Result<Self::Output, ApiError>;
}

/// A command that reads a byte stream beside its JSON input (see [`crate::body`]): an upload,
/// an import. Every transport carries the bytes in its own framing; the command sees one
/// [`Body`], and the registry refuses a call that brings none.
#[async_trait]
pub trait UploadCommand: Send + Sync + 'static {
    const NAME: &'static str;
    const ACCESS: Access;
    const SUMMARY: &'static str;
    type Input: DeserializeOwned + ToSchema + Send + 'static;
    type Output: Serialize + ToSchema + Send + 'static;

    async fn run(&self, svc: &Services, cx: &Ctx, input: Self::Input, body: Body) -> Result<Self::Output, ApiError>;
}

/// A command that answers with a byte stream beside its JSON output: a download. The registry
/// refuses a call that brings bytes.
#[async_trait]
pub trait DownloadCommand: Send + Sync + 'static {
    const NAME: &'static str;
    const ACCESS: Access;
    const SUMMARY: &'static str;
    type Input: DeserializeOwned + ToSchema + Send + 'static;
    type Output: Serialize + ToSchema + Send + 'static;

    async fn run(&self, svc: &Services, cx: &Ctx, input: Self::Input) -> Result<(Self::Output, Body), ApiError>;
}

/// A registered command, its types erased to JSON. The registry has checked the body against
/// the command's [`BodyUse`]: a command that takes bytes gets some, any other gets none.
#[async_trait]
trait DynCommand: Send + Sync {
    async fn call(&self, svc: &Services, cx: &Ctx, input: Value, body: Option<Body>) -> Result<Answer, ApiError>;
}

/// The typed checks' failures (the newtypes' rules: phone, time zone, lengths, …) of the
/// top-level fields of an input not in `reported`, as field errors: every one, up to `max`.
type TypedErrors = fn(input: &Value, reported: &BTreeSet<String>, max: usize) -> Vec<FieldError>;

/// The top-level field of a dotted field path (`filter.tags.0` → `filter`).
fn top_field(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or_default()
}

/// Decodes input the schema accepted into the command's type; a typed check that fails names
/// every field that fails it.
fn decode<I: DeserializeOwned>(input: &Value) -> Result<I, ApiError> {
    serde_path_to_error::deserialize(input).map_err(|err| {
        let mut errors = typed_errors::<I>(input, &BTreeSet::new(), MAX_FIELD_ERRORS + 1);
        if errors.is_empty() {
            let field = err.path().to_string();
            let field = if field == "." { String::new() } else { field };
            errors.push(FieldError::new(field, err.inner().to_string()));
        }
        ApiError::validation(errors)
    })
}

fn typed_errors<I: DeserializeOwned>(input: &Value, reported: &BTreeSet<String>, max: usize) -> Vec<FieldError> {
    let Value::Object(fields) = input else { return Vec::new() };
    let mut fields: serde_json::Map<String, Value> =
        fields.iter().filter(|(name, _)| !reported.contains(*name)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut errors = Vec::new();
    // Serde stops at the first field that fails: record it, take the field out, go on. A field
    // taken out (or one the schema already reported) then fails as missing, after every present
    // field was read, which ends the search.
    for _ in 0..=fields.len().min(max.saturating_sub(1)) {
        let Err(err) = serde_path_to_error::deserialize::<_, I>(Value::Object(fields.clone())) else {
            break;
        };
        let path = err.path().to_string();
        let top = top_field(&path).to_owned();
        if path == "." || fields.remove(&top).is_none() {
            break;
        }
        errors.push(FieldError::new(path, err.inner().to_string()));
    }
    errors
}

struct Typed<C>(C);

#[async_trait]
impl<C: Command> DynCommand for Typed<C> {
    async fn call(&self, svc: &Services, cx: &Ctx, input: Value, _: Option<Body>) -> Result<Answer, ApiError> {
        let output = self.0.run(svc, cx, decode(&input)?).await?;
        Ok(Answer::json(serde_json::to_value(output).map_err(ApiError::internal)?))
    }
}

struct Uploading<C>(C);

#[async_trait]
impl<C: UploadCommand> DynCommand for Uploading<C> {
    async fn call(&self, svc: &Services, cx: &Ctx, input: Value, body: Option<Body>) -> Result<Answer, ApiError> {
        let body = body.ok_or_else(|| ApiError::invalid_field("body", "is required"))?;
        let output = self.0.run(svc, cx, decode(&input)?, body).await?;
        Ok(Answer::json(serde_json::to_value(output).map_err(ApiError::internal)?))
    }
}

struct Downloading<C>(C);

#[async_trait]
impl<C: DownloadCommand> DynCommand for Downloading<C> {
    async fn call(&self, svc: &Services, cx: &Ctx, input: Value, _: Option<Body>) -> Result<Answer, ApiError> {
        let (output, body) = self.0.run(svc, cx, decode(&input)?).await?;
        Ok(Answer { output: serde_json::to_value(output).map_err(ApiError::internal)?, body: Some(body) })
    }
}

/// One command as transports and documentation see it.
pub struct CommandInfo {
    pub name: &'static str,
    pub access: Access,
    pub summary: &'static str,
    pub input: SchemaDoc,
    pub output: SchemaDoc,
    /// Whether it reads or gives a byte stream beside its JSON.
    pub body: BodyUse,
    validator: SchemaCheck,
    /// Checks every answer against the documented output schema in debug builds (so in every
    /// test run); `None` in release builds.
    output_validator: Option<jsonschema::Validator>,
    typed_errors: TypedErrors,
    command: Box<dyn DynCommand>,
}

impl fmt::Debug for CommandInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandInfo").field("name", &self.name).field("access", &self.access).finish()
    }
}

impl CommandInfo {
    /// In debug builds, refuses an answer its documented schema does not describe: a 500 that
    /// fails the test that met it, naming where the answer and the document disagree.
    fn check_output(&self, output: &Value) -> Result<(), ApiError> {
        let Some(validator) = &self.output_validator else { return Ok(()) };
        let problems: Vec<String> =
            validator.iter_errors(output).map(|e| format!("{} at {:?}", e, e.instance_path().as_str())).collect();
        if problems.is_empty() {
            return Ok(());
        }
        let message = format!("the output of {} does not match its schema: {}", self.name, problems.join("; "));
        tracing::error!(command = self.name, %message, "undocumented output");
        Err(ApiError::internal(std::io::Error::other(message)))
    }

    /// Checks raw input without running the command: the schema, and the typed checks of every
    /// field the schema did not already refuse, so one answer lists every bad field.
    pub fn check_input(&self, input: &Value) -> Result<(), ApiError> {
        self.check_schema(input)?;
        let errors = (self.typed_errors)(input, &BTreeSet::new(), MAX_FIELD_ERRORS + 1);
        if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
    }

    /// The schema check of [`Registry::call`]: when the schema refuses the input, the typed
    /// checks of the other fields are added to its errors. (Input the schema accepts is decoded
    /// once, by the command, which reports every typed failure itself.)
    fn check_schema(&self, input: &Value) -> Result<(), ApiError> {
        let Err(err) = self.validate(input) else { return Ok(()) };
        let mut errors = err.field_errors().to_vec();
        let reported: BTreeSet<String> = errors.iter().map(|e| top_field(&e.field).to_owned()).collect();
        if reported.contains("") || err.errors_truncated() {
            return Err(err);
        }
        errors.extend((self.typed_errors)(input, &reported, MAX_FIELD_ERRORS + 1 - errors.len()));
        Err(ApiError::validation(errors))
    }

    /// Refuses a call whose bytes do not fit the command: none for one that reads them, some for
    /// one that takes JSON only.
    fn check_body(&self, given: bool) -> Result<(), ApiError> {
        match (self.body, given) {
            (BodyUse::Takes, false) => {
                Err(ApiError::invalid_field("body", "is required: this command reads a byte stream"))
            }
            (BodyUse::None | BodyUse::Gives, true) => Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("{} takes JSON input only, not a byte stream", self.name),
            )),
            _ => Ok(()),
        }
    }

    /// Validates raw input against the command's schema, reporting every failing field.
    pub fn validate(&self, input: &Value) -> Result<(), ApiError> {
        self.validator.validate(input)
    }
}

/// Every command Herald knows, by name.
#[derive(Debug, Default)]
pub struct Registry {
    commands: BTreeMap<&'static str, CommandInfo>,
}

impl Registry {
    /// Adds a command. Panics on a duplicate name or an input schema that does not compile:
    /// both are programming errors caught by the first test that builds the registry.
    pub fn register<C: Command>(&mut self, command: C) -> &mut Self {
        self.add::<C::Input, C::Output>(C::NAME, C::ACCESS, C::SUMMARY, BodyUse::None, Box::new(Typed(command)))
    }

    /// Adds a command that reads a byte stream, as [`Registry::register`] does.
    pub fn register_upload<C: UploadCommand>(&mut self, command: C) -> &mut Self {
        self.add::<C::Input, C::Output>(C::NAME, C::ACCESS, C::SUMMARY, BodyUse::Takes, Box::new(Uploading(command)))
    }

    /// Adds a command that answers with a byte stream, as [`Registry::register`] does.
    pub fn register_download<C: DownloadCommand>(&mut self, command: C) -> &mut Self {
        self.add::<C::Input, C::Output>(C::NAME, C::ACCESS, C::SUMMARY, BodyUse::Gives, Box::new(Downloading(command)))
    }

    fn add<I: DeserializeOwned + ToSchema, O: ToSchema>(
        &mut self,
        name: &'static str,
        access: Access,
        summary: &'static str,
        body: BodyUse,
        command: Box<dyn DynCommand>,
    ) -> &mut Self {
        let pascal = pascal_case(name);
        let input = SchemaDoc::of::<I>(format!("{pascal}Input"));
        let output = SchemaDoc::of::<O>(format!("{pascal}Output"));
        let validator = SchemaCheck::compile(&input);
        let info = CommandInfo {
            name,
            access,
            summary,
            input,
            output,
            body,
            validator,
            output_validator: None,
            typed_errors: typed_errors::<I>,
            command,
        };
        assert!(self.commands.insert(name, info).is_none(), "command {name} registered twice");
        self
    }

    /// In debug builds (every test run), compiles each command's output schema against the
    /// components of every command, as the OpenAPI document holds them, so [`Registry::call`]
    /// refuses an answer its document does not describe. Call once all commands are registered.
    pub fn check_outputs(&mut self) -> &mut Self {
        if !cfg!(debug_assertions) {
            return self;
        }
        let mut components = serde_json::Map::new();
        for info in self.commands.values() {
            for doc in [&info.input, &info.output] {
                for (name, schema) in doc.components.iter().chain([(doc.name.clone(), doc.schema.clone())].iter()) {
                    components.insert(name.clone(), serde_json::to_value(schema).unwrap_or(Value::Null));
                }
            }
        }
        for info in self.commands.values_mut() {
            let document = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": format!("#/components/schemas/{}", info.output.name),
                "components": { "schemas": components.clone() },
            });
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&document)
                .unwrap_or_else(|err| panic!("output schema of {} does not compile: {err}", info.name));
            info.output_validator = Some(validator);
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&CommandInfo> {
        self.commands.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &CommandInfo> {
        self.commands.values()
    }

    /// Runs a command for a caller: access check, schema validation, typed decoding, the use case,
    /// in a `command` span (for traces: the events and deliveries it writes continue it).
    pub async fn call(&self, svc: &Services, cx: Ctx, name: &str, input: Value) -> Result<Value, ApiError> {
        self.call_body(svc, cx, name, input, None).await.map(|answer| answer.output)
    }

    /// [`Registry::call`] with the caller's byte stream, for a command that reads one; the
    /// answer carries the command's bytes, for one that gives them.
    pub async fn call_body(
        &self,
        svc: &Services,
        cx: Ctx,
        name: &str,
        input: Value,
        body: Option<Body>,
    ) -> Result<Answer, ApiError> {
        let info =
            self.get(name).ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no command named {name:?}")))?;
        let span = tracing::info_span!(
            target: crate::trace::TARGET,
            "command",
            otel.name = info.name,
            command = info.name,
            otel.status_code = tracing::field::Empty,
            error.code = tracing::field::Empty,
        );
        let result = async {
            let cx = Ctx { caller: crate::caller::current(svc.store.as_ref(), cx.caller).await?, ..cx };
            info.access.check(&cx.caller)?;
            if let Caller::Key(key) = &cx.caller {
                key.check(info.name)?;
            }
            info.check_schema(&input)?;
            info.check_body(body.is_some())?;
            let answer = info.command.call(svc, &cx, input, body).await?;
            info.check_output(&answer.output)?;
            Ok::<_, ApiError>(answer)
        }
        .instrument(span.clone())
        .await;
        if let Err(err) = &result {
            span.record("error.code", err.code().as_str());
            if err.is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
        }
        result
    }
}

fn pascal_case(name: &str) -> String {
    name.split(['.', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_convert() {
        assert_eq!(pascal_case("auth.register"), "AuthRegister");
        assert_eq!(pascal_case("users.list_all"), "UsersListAll");
    }

    #[test]
    fn access_rules() {
        let user = Caller::User(Identity { user_id: crate::user::UserId::new(), role: Role::User });
        let admin = Caller::User(Identity { user_id: crate::user::UserId::new(), role: Role::Admin });
        assert!(Access::Public.check(&Caller::Anonymous).is_ok());
        assert_eq!(Access::User.check(&Caller::Anonymous).map_err(|e| e.code()), Err(ErrorCode::Unauthorized));
        assert!(Access::User.check(&user).is_ok());
        assert_eq!(Access::Admin.check(&user).map_err(|e| e.code()), Err(ErrorCode::Forbidden));
        assert!(Access::Admin.check(&admin).is_ok());
    }

    /// Every answer of the real registry is checked against its schema in debug builds: one that
    /// its document does not describe is refused as an internal error naming the mismatch.
    #[test]
    fn an_answer_its_schema_does_not_describe_is_refused() {
        let registry = crate::commands::registry();
        let info = registry.get("tasks.get").expect("registered");
        assert!(info.output_validator.is_some(), "debug builds check outputs");
        let task = json!({
            "id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f",
            "title": "Buy milk",
            "description": "",
            "status": "todo",
            "due_at": null,
            "version": 1,
            "created_at": "2026-11-22T10:00:00Z",
            "updated_at": "2026-11-22T10:00:00Z",
        });
        info.check_output(&task).expect("a task as documented");
        let mut undocumented = task.clone();
        undocumented["status"] = json!("lost");
        let err = info.check_output(&undocumented).expect_err("a status the document does not list");
        assert_eq!(err.code(), ErrorCode::Internal);
        assert!(err.cause_chain().to_string().contains("/status"), "{}", err.cause_chain());
        let mut missing = task;
        missing.as_object_mut().expect("object").remove("version");
        assert!(info.check_output(&missing).is_err(), "a required field missing");
    }
}
