//! The application as every transport sees it: its services, its commands and where they run.

use serde_json::Value;

use crate::{
    apikey,
    body::{Answer, Body},
    command::{Ctx, Registry},
    commands,
    error::{ApiError, ErrorCode},
    hosting::Hosting,
    identity::{Bearer, Caller, KeyCaller},
    services::Services,
};

/// The application as every transport sees it: its services and its commands.
#[derive(Debug)]
pub struct Herald {
    pub services: Services,
    pub commands: Registry,
    /// Which commands run here and how the others are reached; every command runs here by default.
    pub hosting: Hosting,
}

impl Herald {
    pub fn new(services: Services) -> Self {
        Self { services, commands: commands::registry(), hosting: Hosting::default() }
    }

    /// This process runs only the commands `hosting` hosts, and forwards the others.
    pub fn with_hosting(mut self, hosting: Hosting) -> Self {
        self.hosting = hosting;
        self
    }

    /// The context of a call with this `Authorization` value, for every transport: anonymous
    /// without one, a user with a valid `Bearer` token, a service with a live API key; a present
    /// but malformed, forged, expired or revoked one is refused outright, even for public
    /// commands. The token is kept in case the command runs in another process. Whether its
    /// account still exists, and with which role, is read when the command runs ([`crate::caller`]).
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Ctx, ApiError> {
        let Some(value) = authorization else { return Ok(Caller::Anonymous.into()) };
        let token = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken, "expected `Authorization: Bearer <token>`"))?;
        let svc = &self.services;
        let caller = if apikey::is_key(token) {
            let refused = || ApiError::new(ErrorCode::InvalidToken, "the API key is not valid or was revoked");
            let key = svc.store.api_key_by_hash(&apikey::hash(token)).await?.ok_or_else(refused)?;
            if key.revoked_at.is_some() {
                return Err(refused());
            }
            Caller::Key(KeyCaller::of(&key))
        } else {
            Caller::User(svc.tokens.verify(token, svc.clock.now())?)
        };
        Ok(Ctx { caller, peer: None, bearer: Some(Bearer(token.into())) })
    }

    /// Runs the command `name` for a caller (a [`Caller`], or a [`Ctx`] with the
    /// client's address and token) with raw JSON input: here, when this process hosts it (see
    /// [`Registry::call`]), else in the process that does.
    pub async fn call(&self, cx: impl Into<Ctx>, name: &str, input: Value) -> Result<Value, ApiError> {
        self.call_body(cx, name, input, None).await.map(|answer| answer.output)
    }

    /// [`Herald::call`] with the caller's byte stream (an upload, an import), answering with the
    /// command's bytes for one that gives them (a download).
    pub async fn call_body(
        &self,
        cx: impl Into<Ctx>,
        name: &str,
        input: Value,
        body: Option<Body>,
    ) -> Result<Answer, ApiError> {
        let cx = cx.into();
        if self.commands.get(name).is_some() && !self.hosting.hosted.hosts(name) {
            return self.hosting.forward(name, &cx, input, body).await;
        }
        self.commands.call_body(&self.services, cx, name, input, body).await
    }
}
