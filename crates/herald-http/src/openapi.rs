//! The OpenAPI 3.1 document, generated from the route table and the command registry: the spec
//! cannot drift from what is served.

use herald_core::{
    Herald,
    command::{Access, SchemaDoc},
    error::{ErrorCode, Problem},
};
use serde_json::{Map, Value, json};
use utoipa::{PartialSchema as _, ToSchema};

use crate::rest::{InputFrom, ROUTES};

/// Builds the whole document.
pub fn document(herald: &Herald) -> Value {
    let mut schemas = Map::new();
    let mut add = |doc: &SchemaDoc| {
        for (name, schema) in &doc.components {
            schemas.insert(name.clone(), to_json(schema));
        }
        schemas.insert(doc.name.clone(), to_json(&doc.schema));
    };
    let mut problem_components = Vec::new();
    Problem::schemas(&mut problem_components);
    add(&SchemaDoc { name: Problem::name().into_owned(), schema: Problem::schema(), components: problem_components });

    let mut paths = Map::new();
    for route in ROUTES {
        #[allow(clippy::expect_used, reason = "every route names a registered command; a test walks them all")]
        let info = herald.commands.get(route.command).expect("routes name registered commands");
        add(&info.input);
        add(&info.output);

        let mut op = Map::new();
        op.insert("operationId".into(), json!(info.name));
        op.insert("summary".into(), json!(info.summary));
        op.insert("description".into(), json!(format!("Runs the `{}` command.", info.name)));
        op.insert("tags".into(), json!([info.name.split('.').next().unwrap_or(info.name)]));
        if info.access != Access::Public {
            op.insert("security".into(), json!([{ "bearer": [] }]));
        }
        let mut errors = vec![ErrorCode::Internal, ErrorCode::Unavailable];
        let mut parameters: Vec<Value> = route
            .path_params()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}))
            .collect();
        let path_fields: Vec<&str> = route.path_params().chain(route.if_match.then_some("if_match")).collect();
        if !path_fields.is_empty() {
            errors.extend([ErrorCode::NotFound, ErrorCode::ValidationFailed]);
        }
        if route.if_match {
            parameters.push(json!({
                "name": "If-Match", "in": "header", "required": false,
                "description": "The task version the change is based on, e.g. `\"3\"`; a stale one answers 412.",
                "schema": {"type": "string"},
            }));
            errors.extend([ErrorCode::PreconditionFailed, ErrorCode::MalformedRequest]);
        }
        match route.input {
            InputFrom::Body => {
                let schema = if path_fields.is_empty() {
                    reference(&info.input.name)
                } else {
                    without_fields(to_json(&info.input.schema), &path_fields)
                };
                op.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": {"application/json": {"schema": schema}}}),
                );
                errors.extend([
                    ErrorCode::MalformedRequest,
                    ErrorCode::UnsupportedMediaType,
                    ErrorCode::PayloadTooLarge,
                    ErrorCode::ValidationFailed,
                    ErrorCode::RequestTimeout,
                ]);
            }
            InputFrom::Query => {
                // Path fields are path parameters only.
                let query = query_parameters(&info.input);
                parameters.extend(query.into_iter().filter(|p| !path_fields.iter().any(|f| p["name"] == *f)));
                errors.extend([ErrorCode::MalformedRequest, ErrorCode::ValidationFailed]);
            }
            InputFrom::Nothing => {}
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        match info.access {
            Access::Public => errors.push(ErrorCode::InvalidToken),
            Access::User => errors.extend([ErrorCode::Unauthorized, ErrorCode::InvalidToken]),
            Access::Admin => errors.extend([ErrorCode::Unauthorized, ErrorCode::InvalidToken, ErrorCode::Forbidden]),
        }
        errors.extend(command_errors(info.name));
        // Behind a trusted proxy, a client with HERALD_HTTP_MAX_CONNECTIONS_PER_ADDRESS requests
        // in flight: on every route.
        errors.push(ErrorCode::TooManyRequests);
        let mut responses = Map::new();
        let success = if route.status == 204 {
            json!({"description": "Done; no content"})
        } else {
            let mut ok = json!({"description": "Success", "content": {"application/json": {"schema": reference(&info.output.name)}}});
            if route.etag {
                ok["headers"] = json!({"ETag": {"description": "The version, quoted", "schema": {"type": "string"}}});
            }
            ok
        };
        if let Some(field) = route.created_when {
            let mut existed = success.clone();
            existed["description"] = json!(format!("Nothing to create: it existed already (`{field}: false`)"));
            responses.insert("200".into(), existed);
        }
        responses.insert(route.status.to_string(), success);
        problem_responses(&mut responses, &errors);
        op.insert("responses".into(), Value::Object(responses));
        let item = paths.entry(route.path).or_insert_with(|| json!({}));
        item[route.method.to_ascii_lowercase()] = Value::Object(op);
    }
    // The streamed commands' HTTP routes are written out below; their JSON types come from the
    // registry like every other command's.
    let mut stream_outputs = std::collections::BTreeMap::new();
    for name in ["attachments.upload", "attachments.download", "clients.import"] {
        #[allow(clippy::expect_used, reason = "the streamed commands are registered; a test renders the document")]
        let info = herald.commands.get(name).expect("registered");
        add(&info.output);
        stream_outputs.insert(name, info.output.name.clone());
    }
    for (path, item) in stream_paths(&stream_outputs).into_iter().chain(sign_in_paths()) {
        // Merge: a path may also have command routes under other methods.
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        if let (Some(entry), Value::Object(methods)) = (entry.as_object_mut(), item) {
            entry.extend(methods);
        }
    }
    paths.insert("/healthz".into(), health_path("Liveness: the process is up", "alive"));
    paths.insert("/readyz".into(), health_path("Readiness: the store and the broker answer", "ready"));

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Herald",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted notification and real-time event delivery. Errors are RFC 9457 \
                problem documents with a stable `code`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}

/// Errors a command itself may answer with, beyond the transport's.
fn command_errors(name: &str) -> Vec<ErrorCode> {
    match name {
        "auth.register" => vec![ErrorCode::EmailTaken],
        "auth.login" => vec![ErrorCode::InvalidCredentials],
        "tasks.update" | "clients.create" | "clients.update" | "mailings.update" | "mailings.delete" => {
            vec![ErrorCode::Conflict]
        }
        _ => Vec::new(),
    }
}

fn problem_responses(responses: &mut Map<String, Value>, errors: &[ErrorCode]) {
    for (status, codes) in group_by_status(errors) {
        let list = codes.iter().map(|c| format!("`{}`", c.as_str())).collect::<Vec<_>>().join(", ");
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("Problem: {list}"),
                "content": {"application/problem+json": {"schema": reference("Problem")}},
            }),
        );
    }
}

/// A schema with some properties removed (they come from the path or headers instead).
fn without_fields(mut schema: Value, fields: &[&str]) -> Value {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for field in fields {
            props.remove(*field);
        }
    }
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r.as_str().is_none_or(|r| !fields.contains(&r)));
    }
    schema
}

/// The HTTP framing of the commands with a byte stream: multipart upload, ranged download, NDJSON
/// import; `outputs` names each one's output component.
fn stream_paths(outputs: &std::collections::BTreeMap<&str, String>) -> Vec<(&'static str, Value)> {
    let output = |name: &str| reference(outputs.get(name).map_or("Problem", String::as_str));
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}});
    let common = [
        ErrorCode::Unauthorized,
        ErrorCode::InvalidToken,
        ErrorCode::NotFound,
        ErrorCode::ValidationFailed,
        ErrorCode::Internal,
        ErrorCode::TooManyRequests,
    ];
    let mut upload_responses = Map::new();
    upload_responses.insert(
        "201".into(),
        json!({"description": "Stored", "content": {"application/json": {"schema": output("attachments.upload")}}}),
    );
    let mut upload_errors = common.to_vec();
    upload_errors.extend([
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::MalformedRequest,
        ErrorCode::RequestTimeout,
        ErrorCode::Unavailable,
    ]);
    problem_responses(&mut upload_responses, &upload_errors);

    let mut download_responses = Map::new();
    let binary = json!({"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}});
    download_responses.insert("200".into(), json!({"description": "The content", "content": binary.clone()}));
    download_responses.insert("206".into(), json!({"description": "The requested range", "content": binary}));
    download_responses.insert("304".into(), json!({"description": "Unchanged (If-None-Match matched the ETag)"}));
    let mut download_errors = common.to_vec();
    download_errors.push(ErrorCode::RangeNotSatisfiable);
    problem_responses(&mut download_responses, &download_errors);

    let mut bulk_responses = Map::new();
    bulk_responses.insert(
        "200".into(),
        json!({"description": "What was stored and what was refused", "content": {"application/json": {
            "schema": output("clients.import"),
        }}}),
    );
    let mut bulk_errors = common.to_vec();
    bulk_errors.extend([
        ErrorCode::Forbidden,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::MalformedRequest,
        ErrorCode::RequestTimeout,
    ]);
    problem_responses(&mut bulk_responses, &bulk_errors);

    vec![
        (
            "/api/v1/clients/bulk",
            json!({"post": {
                "operationId": "clients.import",
                "summary": "Import clients from NDJSON, streamed (admin)",
                "description": "One client per line, as `clients.create` takes it. The body is streamed and stored in \
                    batches: valid lines are stored, each refused line (bad JSON, a field error, a phone already \
                    stored, a line over 4096 bytes) is reported with its number and reason.",
                "tags": ["clients"],
                "security": [{"bearer": []}],
                "requestBody": {"required": true, "content": {"application/x-ndjson": {"schema": {"type": "string"},
                    "example": "{\"phone\": \"79161234567\", \"tag\": \"vip\", \"timezone\": \"Europe/Moscow\"}\n"}}},
                "responses": bulk_responses,
            }}),
        ),
        (
            "/api/v1/tasks/{id}/attachments",
            json!({"post": {
                "operationId": "attachments.upload",
                "summary": "Attach a file to a task (multipart field `file`, streamed)",
                "description": "The file is streamed to storage while its size and SHA-256 are computed; beyond the \
                    configured maximum the upload is refused with 413 and nothing is kept. A user with as many \
                    uploads in progress as allowed (`HERALD_UPLOADS_PER_USER`) is refused with 429 before any byte \
                    is stored; 503 when the object store's upload memory is in use. The client's file name is \
                    kept as metadata only.",
                "tags": ["attachments"],
                "security": [{"bearer": []}],
                "parameters": [id.clone()],
                "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}},
                }}}},
                "responses": upload_responses,
            }}),
        ),
        (
            "/api/v1/attachments/{id}/content",
            json!({"get": {
                "operationId": "attachments.download",
                "summary": "Download an attachment (streamed; single byte ranges supported)",
                "tags": ["attachments"],
                "security": [{"bearer": []}],
                "parameters": [
                    id,
                    {"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}, "example": "bytes=0-1023"},
                    {"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"}},
                ],
                "responses": download_responses,
            }}),
        ),
    ]
}

/// Sign-in through an OpenID Connect provider: browser redirects, not JSON commands.
fn sign_in_paths() -> Vec<(&'static str, Value)> {
    let mut start = Map::new();
    start.insert(
        "302".into(),
        json!({"description": "To the provider's authorization endpoint, with a sign-in cookie (HttpOnly, 10 minutes)"}),
    );
    problem_responses(&mut start, &[ErrorCode::NotFound, ErrorCode::Unavailable, ErrorCode::Internal]);
    let mut callback = Map::new();
    callback.insert(
        "303".into(),
        json!({"description": "Back to the page the sign-in started from, with `#access_token=<Herald token>`"}),
    );
    problem_responses(
        &mut callback,
        &[
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::ValidationFailed,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ],
    );
    let query = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}});
    vec![
        (
            "/api/v1/auth/oidc",
            json!({"get": {
                "operationId": "auth.oidc",
                "summary": "Whether single sign-on through an OpenID Connect provider is configured",
                "tags": ["auth"],
                "responses": {"200": {"description": "On or off", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}},
                }}}}},
            }}),
        ),
        (
            "/api/v1/auth/oidc/start",
            json!({"get": {
                "operationId": "auth.oidc_start",
                "summary": "Start a single sign-on (authorization code with PKCE)",
                "tags": ["auth"],
                "parameters": [query("to", "A path of this origin to return to (default /admin/)")],
                "responses": start,
            }}),
        ),
        (
            "/api/v1/auth/oidc/callback",
            json!({"get": {
                "operationId": "auth.oidc_callback",
                "summary": "The provider's redirect back: exchanges the code and signs in",
                "description": "Accounts are keyed by issuer and subject; an existing account is linked by email \
                    only when the provider says the email is verified. The role comes from the configured claim.",
                "tags": ["auth"],
                "parameters": [query("code", "The authorization code"), query("state", "The sign-in's state"),
                    query("error", "The provider's refusal"), query("error_description", "Why")],
                "responses": callback,
            }}),
        ),
    ]
}

fn group_by_status(codes: &[ErrorCode]) -> std::collections::BTreeMap<u16, Vec<ErrorCode>> {
    let mut by_status: std::collections::BTreeMap<u16, Vec<ErrorCode>> = Default::default();
    for code in codes {
        let entry = by_status.entry(code.status()).or_default();
        if !entry.contains(code) {
            entry.push(*code);
        }
    }
    by_status
}

fn query_parameters(input: &SchemaDoc) -> Vec<Value> {
    let schema = to_json(&input.schema);
    let required: Vec<&str> =
        schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, prop)| {
                    json!({
                        "name": name,
                        "in": "query",
                        "required": required.contains(&name.as_str()),
                        "description": prop.get("description").cloned().unwrap_or(Value::Null),
                        "schema": prop,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn health_path(summary: &str, status: &str) -> Value {
    json!({"get": {
        "operationId": summary.split(':').next().unwrap_or(summary).to_lowercase(),
        "summary": summary,
        "tags": ["health"],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"example": {"status": status}}}},
            "503": {"description": "Not ready", "content": {"application/problem+json": {"schema": reference("Problem")}}},
        },
    }})
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    #[allow(clippy::expect_used, reason = "generated schemas are plain data; a test renders them all")]
    serde_json::to_value(value).expect("schemas serialise")
}
