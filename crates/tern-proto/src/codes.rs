//! Error codes (PROTOCOL.md 2.10, 3) and WebSocket close codes.

/// Every error code a client can see, in `error` frames and HTTP bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadFrame,
    UnknownType,
    Invalid,
    Unauthenticated,
    BadCredentials,
    Forbidden,
    NotMember,
    NoSuchUser,
    NoSuchGroup,
    UserExists,
    ContentTooLarge,
    RateLimited,
    Unavailable,
    /// HTTP only: no such endpoint (404).
    NotFound,
    /// HTTP only: the endpoint exists, not with this method (405).
    MethodNotAllowed,
    /// HTTP only: the request was not read or answered in time (408).
    Timeout,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadFrame,
        ErrorCode::UnknownType,
        ErrorCode::Invalid,
        ErrorCode::Unauthenticated,
        ErrorCode::BadCredentials,
        ErrorCode::Forbidden,
        ErrorCode::NotMember,
        ErrorCode::NoSuchUser,
        ErrorCode::NoSuchGroup,
        ErrorCode::UserExists,
        ErrorCode::ContentTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Timeout,
    ];

    /// The code of this name, if this version knows it.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::NoSuchGroup => "no_such_group",
            ErrorCode::UserExists => "user_exists",
            ErrorCode::ContentTooLarge => "content_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Timeout => "timeout",
        }
    }

    /// The HTTP status that carries this code (PROTOCOL.md 3).
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadFrame | ErrorCode::UnknownType | ErrorCode::Invalid => 400,
            ErrorCode::Unauthenticated | ErrorCode::BadCredentials => 401,
            ErrorCode::Forbidden | ErrorCode::NotMember => 403,
            ErrorCode::NoSuchUser | ErrorCode::NoSuchGroup => 404,
            ErrorCode::UserExists => 409,
            ErrorCode::ContentTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Timeout => 408,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_inverts_as_str() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }
}

/// WebSocket close codes used by the server.
pub mod close {
    /// Normal closure: the client closed, or it was idle too long.
    pub const NORMAL: u16 = 1000;
    /// Server shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A WebSocket protocol violation (RFC 6455): an unmasked client
    /// frame, RSV bits, a reserved opcode, a control frame over 125 bytes
    /// or fragmented, a continuation frame with nothing to continue.
    pub const PROTOCOL: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A text frame over the frame limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot serve the connection now (a backend is down).
    pub const UNAVAILABLE: u16 = 1011;
    /// Bad or missing token, or a frame before `auth`.
    pub const UNAUTHENTICATED: u16 = 4001;
    /// Over the frame rate for too long, or a reader too slow for its queue.
    pub const POLICY: u16 = 4008;
    /// The same user logged in again with the same device.
    pub const REPLACED: u16 = 4009;
}
