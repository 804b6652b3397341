//! Identifier rules (PROTOCOL.md section 1).

/// Longest user, group, room, device or client message id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// `1-64 chars of [A-Za-z0-9_.-]`: user, group and room ids.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Device names and client message ids: 1-64 characters, any of them except
/// control characters.
pub fn is_valid_token(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= MAX_ID_LEN && !s.chars().any(char::is_control)
}

/// Request ids: at most 64 characters.
pub fn is_valid_request_id(s: &str) -> bool {
    s.chars().count() <= MAX_ID_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("alice"));
        assert!(is_valid_name("a.b-c_9"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a:b"));
        assert!(!is_valid_name("al ice"));
        assert!(!is_valid_name(&"x".repeat(65)));
        assert!(is_valid_name(&"x".repeat(64)));
    }

    #[test]
    fn tokens() {
        assert!(is_valid_token("phone"));
        assert!(is_valid_token("6f1c-uuid ü"));
        assert!(!is_valid_token(""));
        assert!(!is_valid_token("a\nb"));
    }
}
