//! The SDK's one error type.

use tern_proto::ErrorCode;

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error (`error` frame or HTTP error body).
    #[error("server said {code}: {message}")]
    Server {
        /// The protocol code, as sent (`rate_limited`, `not_member`, ...).
        code: String,
        message: String,
        /// HTTP status, for HTTP calls.
        status: Option<u16>,
        /// `Retry-After` of a 429, in seconds.
        retry_after: Option<u64>,
    },
    /// No answer within `ClientConfig::request_timeout`.
    #[error("no answer in time")]
    Timeout,
    /// The connection dropped before the answer came (the session
    /// reconnects by itself; `send` retries).
    #[error("disconnected before the answer")]
    Disconnected,
    /// The session has ended for good (closed, token revoked, replaced by a
    /// newer login of the same device).
    #[error("session closed: {0}")]
    Closed(String),
    /// The outgoing queue (`ClientConfig::outgoing_queue`) is full.
    #[error("outgoing queue full")]
    QueueFull,
    /// This call needs a token: log in first.
    #[error("not logged in")]
    NoToken,
    /// A bad URL or argument, found before anything was sent.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An answer that is not what the protocol says.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("http transport")]
    Http(#[source] reqwest::Error),
    #[error("websocket transport")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
}

impl Error {
    /// The protocol error code, if the server sent one this version knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }

    /// True for failures that a retry of the same request may cure:
    /// `rate_limited`, `unavailable`, timeouts and dropped connections.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Server { code, .. } => {
                code == ErrorCode::RateLimited.as_str() || code == ErrorCode::Unavailable.as_str()
            }
            Error::Timeout | Error::Disconnected | Error::QueueFull => true,
            Error::Http(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            Error::WebSocket(_) => true,
            _ => false,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Http(e)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An HTTP answer that is no success (a call, or a refused WebSocket
/// upgrade): the code and message of its `{"code","message"}` body, or
/// `http_<status>` and the text when the body is not that.
pub(crate) fn http_error(status: u16, retry_after: Option<u64>, body: &str) -> Error {
    let (code, message) = match serde_json::from_str::<tern_proto::wire::ErrorBody>(body) {
        Ok(b) => (b.code.into_owned(), b.message.into_owned()),
        Err(_) => (format!("http_{status}"), body.to_owned()),
    };
    Error::Server {
        code,
        message,
        status: Some(status),
        retry_after,
    }
}
