//! REST as a thin adapter over commands: each route names a command, where its input comes from
//! and the status of success. The OpenAPI document is generated from this same table.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{RawPathParams, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, on},
};
use herald_core::command::CommandInfo;
use serde_json::Value;

use herald_core::error::ErrorCode;

use crate::{
    extract::{CallOf, JsonBody, query_object},
    peer::Peer,
    problem::HttpError,
    state::AppState,
};

/// The version in `If-Match: "3"` (or `3`); `*` and absence mean no condition.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, HttpError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| HttpError::new(ErrorCode::MalformedRequest, "If-Match must be a task version, like \"3\""))
}

/// Where a route takes its command's input from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFrom {
    /// The JSON request body.
    Body,
    /// The query string.
    Query,
    /// Nothing: the command takes `{}`.
    Nothing,
}

/// One REST route over one command. Path parameters (`{id}`) become input fields of the same name.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub command: &'static str,
    pub input: InputFrom,
    /// Success status; 204 answers carry no body.
    pub status: u16,
    /// The `If-Match` header (a version) becomes the `if_match` input field.
    pub if_match: bool,
    /// The output's `version` is also sent as `ETag`.
    pub etag: bool,
    /// A boolean output field saying whether the call created something: `status` when it is
    /// true, 200 when it is false (the thing existed already).
    pub created_when: Option<&'static str>,
}

impl Route {
    const fn new(
        method: &'static str,
        path: &'static str,
        command: &'static str,
        input: InputFrom,
        status: u16,
    ) -> Self {
        Self { method, path, command, input, status, if_match: false, etag: false, created_when: None }
    }

    const fn versioned(mut self) -> Self {
        self.etag = true;
        self
    }

    const fn conditional(mut self) -> Self {
        self.if_match = true;
        self
    }

    const fn created_when(mut self, field: &'static str) -> Self {
        self.created_when = Some(field);
        self
    }

    /// The status of a successful `output`.
    fn success(&self, output: &Value) -> StatusCode {
        let existed = self.created_when.is_some_and(|field| output.get(field) == Some(&Value::Bool(false)));
        if existed { StatusCode::OK } else { StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK) }
    }

    /// Names of the path parameters, in order.
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        self.path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }
}

use InputFrom::{Body, Nothing, Query};

/// Every REST route over a command. Uploads and downloads, whose bodies are byte streams, are
/// in [`crate::attachments`].
pub const ROUTES: &[Route] = &[
    Route::new("POST", "/api/v1/auth/register", "auth.register", Body, 201),
    Route::new("POST", "/api/v1/auth/login", "auth.login", Body, 200),
    Route::new("GET", "/api/v1/me", "users.me", Nothing, 200),
    Route::new("PATCH", "/api/v1/me", "users.update_me", Body, 200),
    Route::new("GET", "/api/v1/me/preferences", "users.preferences", Nothing, 200),
    Route::new("PUT", "/api/v1/me/preferences", "users.set_preferences", Body, 200),
    Route::new("POST", "/api/v1/api-keys", "api_keys.create", Body, 201),
    Route::new("GET", "/api/v1/api-keys", "api_keys.list", Query, 200),
    Route::new("DELETE", "/api/v1/api-keys/{id}", "api_keys.revoke", Nothing, 204),
    Route::new("GET", "/api/v1/quarantine", "admin.quarantined", Query, 200),
    Route::new("POST", "/api/v1/quarantine/{id}/retry", "admin.retry_quarantined", Nothing, 200),
    Route::new("POST", "/api/v1/notifications", "notifications.create", Body, 201).created_when("created"),
    Route::new("GET", "/api/v1/notifications", "notifications.list", Query, 200),
    Route::new("GET", "/api/v1/notifications/{id}", "notifications.get", Nothing, 200),
    Route::new("GET", "/api/v1/me/notifications", "notifications.inbox", Query, 200),
    Route::new("POST", "/api/v1/me/notifications/read-all", "notifications.read_all", Nothing, 200),
    Route::new("POST", "/api/v1/me/notifications/{id}/read", "notifications.read", Nothing, 200),
    Route::new("GET", "/api/v1/users", "users.list", Query, 200),
    Route::new("PATCH", "/api/v1/users/{id}", "users.set_role", Body, 200),
    Route::new("DELETE", "/api/v1/users/{id}", "users.delete", Nothing, 204),
    Route::new("GET", "/api/v1/me/webhook", "users.webhook", Nothing, 200),
    Route::new("PUT", "/api/v1/me/webhook", "users.set_webhook", Body, 200),
    Route::new("POST", "/api/v1/me/webhook/rotate-secret", "users.rotate_webhook_secret", Nothing, 200),
    Route::new("POST", "/api/v1/tasks", "tasks.create", Body, 201).versioned(),
    Route::new("GET", "/api/v1/tasks", "tasks.list", Query, 200),
    Route::new("GET", "/api/v1/tasks/{id}", "tasks.get", Nothing, 200).versioned(),
    Route::new("PATCH", "/api/v1/tasks/{id}", "tasks.update", Body, 200).versioned().conditional(),
    Route::new("DELETE", "/api/v1/tasks/{id}", "tasks.delete", Nothing, 204),
    Route::new("GET", "/api/v1/tasks/{id}/attachments", "attachments.list", Nothing, 200),
    Route::new("DELETE", "/api/v1/attachments/{id}", "attachments.delete", Nothing, 204),
    Route::new("POST", "/api/v1/clients", "clients.create", Body, 201),
    Route::new("GET", "/api/v1/clients", "clients.list", Query, 200),
    Route::new("GET", "/api/v1/clients/{id}", "clients.get", Nothing, 200),
    Route::new("PATCH", "/api/v1/clients/{id}", "clients.update", Body, 200),
    Route::new("DELETE", "/api/v1/clients/{id}", "clients.delete", Nothing, 204),
    Route::new("POST", "/api/v1/mailings", "mailings.create", Body, 201),
    Route::new("GET", "/api/v1/mailings", "mailings.list", Query, 200),
    Route::new("GET", "/api/v1/mailings/stats", "mailings.stats", Query, 200),
    Route::new("GET", "/api/v1/mailings/{id}", "mailings.get", Nothing, 200),
    Route::new("PATCH", "/api/v1/mailings/{id}", "mailings.update", Body, 200),
    Route::new("DELETE", "/api/v1/mailings/{id}", "mailings.delete", Nothing, 204),
    Route::new("GET", "/api/v1/mailings/{id}/stats", "mailings.stats_one", Nothing, 200),
    Route::new("GET", "/api/v1/mailings/{id}/messages", "mailings.messages", Query, 200),
    Route::new("GET", "/api/v1/mailings/{id}/timeline", "mailings.timeline", Query, 200),
    Route::new("GET", "/api/v1/reports/daily", "reports.daily", Query, 200),
    Route::new("POST", "/api/v1/events", "events.create", Body, 201),
    Route::new("GET", "/api/v1/events", "events.list", Query, 200),
    Route::new("GET", "/api/v1/events/{id}", "events.get", Nothing, 200),
    Route::new("PUT", "/api/v1/events/{id}", "events.update", Body, 200),
    Route::new("DELETE", "/api/v1/events/{id}", "events.delete", Nothing, 204),
    Route::new("GET", "/api/v1/events/{id}/notifications", "events.notifications", Nothing, 200),
    Route::new("POST", "/api/v1/rooms", "rooms.create", Body, 201),
    Route::new("GET", "/api/v1/rooms", "rooms.list", Query, 200),
    Route::new("POST", "/api/v1/rooms/{room}/members", "rooms.add_member", Body, 201).created_when("added"),
    Route::new("DELETE", "/api/v1/rooms/{room}/members/{user}", "rooms.remove_member", Nothing, 204),
    Route::new("POST", "/api/v1/rooms/{room}/messages", "rooms.post_message", Body, 201),
    Route::new("GET", "/api/v1/rooms/{room}/messages", "rooms.messages", Query, 200),
];

/// Fields of a command's input that a query string must turn into numbers or booleans.
#[derive(Debug, Default, Clone)]
struct QueryTypes {
    numeric: Vec<String>,
    boolean: Vec<String>,
}

impl QueryTypes {
    fn of(info: &CommandInfo) -> Self {
        let schema = info.input.to_json_schema();
        let properties = schema["components"]["schemas"][&info.input.name]["properties"].as_object().cloned();
        let mut types = Self::default();
        for (name, prop) in properties.unwrap_or_default() {
            let kinds: Vec<&str> = match &prop["type"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if kinds.iter().any(|k| *k == "integer" || *k == "number") {
                types.numeric.push(name);
            } else if kinds.contains(&"boolean") {
                types.boolean.push(name);
            }
        }
        types
    }
}

/// The routes of [`ROUTES`], wired to the command registry.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut by_path: BTreeMap<&str, MethodRouter<AppState>> = BTreeMap::new();
    for route in ROUTES {
        let info =
            state.herald.commands.get(route.command).unwrap_or_else(|| {
                panic!("route {} {} names unknown command {}", route.method, route.path, route.command)
            });
        let query_types = Arc::new(QueryTypes::of(info));
        let route = *route;
        let handler = move |State(state): State<AppState>,
                            CallOf(mut cx): CallOf,
                            Peer(peer): Peer,
                            params: RawPathParams,
                            request: Request| {
            let query_types = query_types.clone();
            async move {
                let if_match = if route.if_match { if_match(request.headers())? } else { None };
                let mut input = match route.input {
                    InputFrom::Body => JsonBody::from_request_checked(request, &state).await?,
                    InputFrom::Query => {
                        query_object(request.uri().query(), &query_types.numeric, &query_types.boolean)?
                    }
                    InputFrom::Nothing => Value::Object(Default::default()),
                };
                if let Value::Object(fields) = &mut input {
                    // The path names the resource; a body cannot redirect the change elsewhere.
                    for (name, value) in &params {
                        fields.insert(name.to_owned(), Value::String(value.to_owned()));
                    }
                    if let Some(version) = if_match {
                        fields.insert("if_match".into(), Value::from(version));
                    }
                }
                cx.peer = peer;
                let output = state.herald.call(cx, route.command, input).await.map_err(HttpError)?;
                let status = route.success(&output);
                if status == StatusCode::NO_CONTENT {
                    return Ok::<Response, HttpError>(status.into_response());
                }
                let etag = output.get("version").and_then(Value::as_i64).filter(|_| route.etag);
                let mut response = (status, Json(output)).into_response();
                if let Some(version) = etag
                    && let Ok(value) = HeaderValue::from_str(&format!("\"{version}\""))
                {
                    response.headers_mut().insert(header::ETAG, value);
                }
                Ok(response)
            }
        };
        #[allow(clippy::expect_used, reason = "the routes are a constant table, checked by every API test")]
        let filter = Method::from_bytes(route.method.as_bytes())
            .ok()
            .and_then(|method| axum::routing::MethodFilter::try_from(method).ok())
            .expect("route methods are valid and routable");
        let entry = by_path.remove(route.path).unwrap_or_default();
        by_path.insert(route.path, entry.merge(on(filter, handler)));
    }
    by_path.into_iter().fold(Router::new(), |router, (path, methods)| router.route(path, methods))
}

impl JsonBody {
    async fn from_request_checked(request: Request, state: &AppState) -> Result<Value, HttpError> {
        use axum::extract::FromRequest as _;
        Ok(JsonBody::from_request(request, state).await?.0)
    }
}
