//! Error codes (PROTOCOL.md 2.10, 3) and WebSocket close codes.

/// Declares [`ErrorCode`] with its wire name and HTTP status, and its
/// complete list [`ErrorCode::ALL`]: a code cannot be added without being
/// listed (tests check that each listed code is documented).
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $s:literal, $status:literal;)*) => {
        /// Every error code a client can see, in `error` frames and HTTP bodies.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: [ErrorCode; [$($s),*].len()] = [$(ErrorCode::$name),*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $s,)*
                }
            }

            /// The HTTP status that carries this code (PROTOCOL.md 3, 6).
            pub const fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $status,)*
                }
            }
        }
    };
}

error_codes! {
    BadFrame = "bad_frame", 400;
    UnknownType = "unknown_type", 400;
    Invalid = "invalid", 400;
    Unauthenticated = "unauthenticated", 401;
    BadCredentials = "bad_credentials", 401;
    Forbidden = "forbidden", 403;
    NotMember = "not_member", 403;
    NoSuchUser = "no_such_user", 404;
    NoSuchGroup = "no_such_group", 404;
    UserExists = "user_exists", 409;
    ContentTooLarge = "content_too_large", 413;
    RateLimited = "rate_limited", 429;
    Unavailable = "unavailable", 503;
    /// HTTP only: no such endpoint (404).
    NotFound = "not_found", 404;
    /// HTTP only: the endpoint exists, not with this method (405).
    MethodNotAllowed = "method_not_allowed", 405;
    /// HTTP only: the request was not read or answered in time (408).
    Timeout = "timeout", 408;
    // 5.4 and blocks
    /// The recipient blocked the sender (5.3).
    Blocked = "blocked", 403;
    /// The sender is muted in the group, or `muted_all` is on (5.4).
    Muted = "muted", 403;
    // 5.5 media
    /// The upload's type is not in `media.allowed_types`, or its bytes are
    /// not of the image type it declares (415).
    UnsupportedMedia = "unsupported_media", 415;
    /// HTTP only: a `Range` wholly past the end of the media (416).
    RangeNotSatisfiable = "range_not_satisfiable", 416;
    // 5.6
    /// The before-send hook refused the message (its reason is the
    /// error's message).
    Rejected = "rejected", 403;
}

impl ErrorCode {
    /// The code of this name, if this version knows it.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
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

/// WebSocket close codes used by the server (PROTOCOL.md 7).
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
    /// A backend failed while the session started (after an `error` frame,
    /// usually `unavailable`).
    pub const INTERNAL: u16 = 1011;
    /// Bad or missing token, or a frame before `auth`.
    pub const UNAUTHENTICATED: u16 = 4001;
    /// Over the frame rate for too long, or a reader too slow for its queue.
    pub const POLICY: u16 = 4008;
    /// The same user logged in again with the same device.
    pub const REPLACED: u16 = 4009;

    /// Every close code the server sends.
    pub const ALL: [u16; 9] = [
        NORMAL,
        GOING_AWAY,
        PROTOCOL,
        INVALID_DATA,
        TOO_BIG,
        INTERNAL,
        UNAUTHENTICATED,
        POLICY,
        REPLACED,
    ];
}
