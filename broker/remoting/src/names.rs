//! RocketMQ's rules for topic and group names (Java's `TopicValidator`).
//!
//! A name is at most 127 characters from `[%|a-zA-Z0-9_-]` and not blank. Broker and
//! nameserver check every name that would create something — topics and groups created by
//! admin requests or auto-created by clients, and the topics of a broker registration —
//! so a peer sending junk gets INVALID_PARAMETER and changes nothing.

/// `TopicValidator.TOPIC_MAX_LENGTH`.
pub const MAX_NAME_LEN: usize = 127;

/// Why a name is refused (the texts are Java's `validateTopic` remarks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or whitespace.
    #[error("The specified {0} is blank.")]
    Blank(&'static str),
    /// A character outside `[%|a-zA-Z0-9_-]`.
    #[error(
        "The specified {what} {name:?} contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
    )]
    IllegalCharacters {
        /// `topic` or `group`.
        what: &'static str,
        /// The name (shortened to 200 characters).
        name: String,
    },
    /// Longer than [`MAX_NAME_LEN`].
    #[error(
        "The specified {what} is longer than {what} max length {MAX_NAME_LEN} ({len} characters)."
    )]
    TooLong {
        /// `topic` or `group`.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

impl NameError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Blank(_) => "NAME_BLANK",
            Self::IllegalCharacters { .. } => "NAME_ILLEGAL_CHARACTERS",
            Self::TooLong { .. } => "NAME_TOO_LONG",
        }
    }
}

fn check(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.trim().is_empty() {
        return Err(NameError::Blank(what));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'%' | b'|' | b'-' | b'_'))
    {
        return Err(NameError::IllegalCharacters {
            what,
            name: name.chars().take(200).collect(),
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            len: name.len(),
        });
    }
    Ok(())
}

/// Checks a topic name.
pub fn check_topic(name: &str) -> Result<(), NameError> {
    check("topic", name)
}

/// Checks a consumer or producer group name.
pub fn check_group(name: &str) -> Result<(), NameError> {
    check("group", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_rules() {
        assert!(check_topic("%RETRY%g-1_a|b").is_ok());
        assert!(check_topic(&"x".repeat(127)).is_ok());
        assert!(matches!(
            check_topic(&"x".repeat(128)),
            Err(NameError::TooLong { len: 128, .. })
        ));
        assert_eq!(check_topic(" "), Err(NameError::Blank("topic")));
        for bad in ["a.b", "a b", "tópico", "a/b", "a\0b", "a:b"] {
            assert!(
                matches!(check_group(bad), Err(NameError::IllegalCharacters { .. })),
                "{bad:?}"
            );
        }
    }
}
