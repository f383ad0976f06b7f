//! Sending a request and reading what its status needs of the answer.

/// Why an answer's body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is longer than {0} bytes")]
    TooLong(usize),
    #[error("the answer broke off: {0}")]
    Broken(String),
}

/// Reads an answer's whole body, at most `limit` bytes, a chunk at a time; a longer one is
/// refused as soon as it passes the limit (its connection dropped with it).
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len().saturating_add(chunk.len()) > limit {
                    return Err(BodyError::TooLong(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(BodyError::Broken(herald_core::quarantine::with_causes(&e))),
        }
    }
}

/// What an answer said: its status decides; the body is read only so the connection can be
/// reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `Retry-After` header, as text.
    pub retry_after: Option<String>,
}

/// Sends `request` and reads its answer's body, a chunk at a time, up to `answer_limit` bytes,
/// within the request's timeout. A body that is longer, breaks off or is still coming at the
/// timeout does not undo the answer: it is dropped unread, and its connection with it.
pub async fn send(request: reqwest::RequestBuilder, answer_limit: usize) -> Result<Answer, reqwest::Error> {
    let mut response = request.send().await?;
    let retry_after =
        response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let status = response.status().as_u16();
    let mut read = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read = read.saturating_add(chunk.len());
                if read > answer_limit {
                    tracing::debug!(status, answer_limit, "an answer is longer than allowed; dropped");
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(status, error = %e, "an answer's body broke off");
                break;
            }
        }
    }
    Ok(Answer { status, retry_after })
}
