//! The HTTP boundary of the channel clients: one request out, one answer
//! back, as bytes. The clients build and sign the request and judge the
//! answer; the transport only carries them. [`HttpTransport`] carries them
//! over HTTP(S) with `reqwest` (no redirects followed: a signed body is
//! never re-sent elsewhere); a deterministic simulation puts its own
//! transport in its place, so the real clients (signing, parsing,
//! verifying, judging) run unchanged against a simulated channel.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, DATE};

/// A request for the channel.
#[derive(Clone)]
pub struct Post {
    /// The full URL, `https://api.mch.weixin.qq.com/pay/micropay`.
    pub url: String,
    pub content_type: &'static str,
    /// The signed body (it may hold a payment code: never log it).
    pub body: Vec<u8>,
    /// Present the merchant's client certificate (WeChat `/secapi/`).
    pub client_certificate: bool,
    /// The longest answer read; a longer one is [`TransportError::TooLarge`].
    pub max_bytes: usize,
    /// How long the whole exchange may take.
    pub timeout: Duration,
}

impl fmt::Debug for Post {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may carry a payment code: only its length prints.
        f.debug_struct("Post")
            .field("url", &self.url)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The HTTP `Date` of the answer, when it had a readable one.
    pub date: Option<DateTime<Utc>>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The status as HTTP names it: `500 Internal Server Error`.
    pub fn status_text(&self) -> String {
        reqwest::StatusCode::from_u16(self.status)
            .map_or_else(|_| self.status.to_string(), |status| status.to_string())
    }
}

/// Why no answer came back. Every one is an unknown outcome for a money call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("transport error: {0}")]
    Other(String),
    /// The answer was longer than the request allowed.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// Carries requests to a channel and answers back.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// POSTs `request` and reads the answer (any status).
    async fn post(&self, request: Post) -> Result<Answer, TransportError>;

    /// GETs `url` (a statement file) and reads the answer (any status).
    async fn get(
        &self,
        url: &str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Answer, TransportError>;
}

/// The real transport: HTTP(S) through `reqwest`, redirects never followed.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
    /// Presents the client certificate, when one was given.
    with_certificate: reqwest::Client,
}

impl HttpTransport {
    /// A transport whose connections time out after `timeout`, presenting
    /// `identity` on requests that ask for the client certificate.
    pub fn new(
        timeout: Duration,
        identity: Option<reqwest::Identity>,
    ) -> Result<HttpTransport, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                // A redirect would replay the signed body elsewhere (or turn
                // the POST into a GET); an unexpected 3xx is simply unknown.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("paycode/", env!("CARGO_PKG_VERSION")))
        };
        let http = builder().build()?;
        let with_certificate = match identity {
            Some(identity) => builder().identity(identity).build()?,
            None => http.clone(),
        };
        Ok(HttpTransport {
            http,
            with_certificate,
        })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn post(&self, request: Post) -> Result<Answer, TransportError> {
        let client = if request.client_certificate {
            &self.with_certificate
        } else {
            &self.http
        };
        let response = client
            .post(&request.url)
            .header(CONTENT_TYPE, request.content_type)
            .timeout(request.timeout)
            .body(request.body)
            .send()
            .await
            .map_err(|error| transport_error(error, request.timeout))?;
        read(response, request.max_bytes, request.timeout).await
    }

    async fn get(
        &self,
        url: &str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Answer, TransportError> {
        let response = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| transport_error(error, timeout))?;
        read(response, max_bytes, timeout).await
    }
}

/// The answer's status, date and body, refusing to hold more than `max_bytes`.
async fn read(
    mut response: reqwest::Response,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Answer, TransportError> {
    let status = response.status().as_u16();
    let date = response
        .headers()
        .get(DATE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| DateTime::parse_from_rfc2822(text).ok())
        .map(|date| date.with_timezone(&Utc));
    if response
        .content_length()
        .is_some_and(|length| length > max_bytes as u64)
    {
        return Err(TransportError::TooLarge(max_bytes));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport_error(error, timeout))?
    {
        if body.len().saturating_add(chunk.len()) > max_bytes {
            return Err(TransportError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, date, body })
}

fn transport_error(error: reqwest::Error, timeout: Duration) -> TransportError {
    let error = error.without_url();
    if error.is_timeout() {
        TransportError::Timeout(timeout)
    } else if error.is_connect() {
        TransportError::Connect(error_chain(&error))
    } else {
        TransportError::Other(error_chain(&error))
    }
}

/// An error and its sources, `: `-joined (reqwest hides the cause in the
/// source), without the URL (it is the configured base URL, known anyway).
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
