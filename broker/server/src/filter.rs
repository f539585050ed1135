//! Tag filtering for pulls: subscription expressions, tag hash codes, collision checks.
//!
//! A consumer subscribes with `*` (everything) or `TagA || TagB`. The ConsumeQueue stores
//! each message's tag as Java's `String.hashCode` (the "tags code"), so most filtering is
//! done on CQ entries without reading the CommitLog. Two tags can share a hash code, so a
//! message whose code matches is checked once more against its real `TAGS` property before
//! it is delivered ([`TagFilter::matches_tags`]).

use std::collections::BTreeSet;

use flotilla_message_store::codec::java_string_hash_code;

/// The subscription expression is not a tag expression this broker understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// An expression type other than `TAG` (e.g. `SQL92`).
    #[error("expression type {0} is not supported (only TAG)")]
    UnsupportedType(String),
}

impl FilterError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedType(_) => "FILTER_UNSUPPORTED_TYPE",
        }
    }
}

/// A parsed tag subscription.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagFilter {
    /// `None` = everything (`*` or empty).
    tags: Option<BTreeSet<String>>,
    codes: BTreeSet<i64>,
}

impl TagFilter {
    /// Everything matches.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses `expression` of `expression_type` (`TAG` when absent).
    pub fn parse(
        expression: Option<&str>,
        expression_type: Option<&str>,
    ) -> Result<Self, FilterError> {
        if let Some(t) = expression_type {
            let t = t.trim();
            if !t.is_empty() && !t.eq_ignore_ascii_case("TAG") {
                return Err(FilterError::UnsupportedType(t.to_string()));
            }
        }
        let expr = expression.map(str::trim).unwrap_or("");
        if expr.is_empty() || expr == "*" {
            return Ok(Self::all());
        }
        let tags: BTreeSet<String> = expr
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        if tags.is_empty() || tags.contains("*") {
            return Ok(Self::all());
        }
        let codes = tags
            .iter()
            .map(|t| i64::from(java_string_hash_code(t)))
            .collect();
        Ok(Self {
            tags: Some(tags),
            codes,
        })
    }

    /// Whether this filter lets everything through.
    pub fn is_all(&self) -> bool {
        self.tags.is_none()
    }

    /// First-stage check on a ConsumeQueue tags code.
    pub fn matches_code(&self, tags_code: i64) -> bool {
        self.tags.is_none() || self.codes.contains(&tags_code)
    }

    /// Second-stage check on the message's real `TAGS` property (hash collisions).
    pub fn matches_tags(&self, tags: Option<&str>) -> bool {
        match &self.tags {
            None => true,
            Some(set) => tags.is_some_and(|t| set.contains(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_empty_match_everything() {
        for e in [None, Some(""), Some("*"), Some(" * "), Some("a || *")] {
            let f = TagFilter::parse(e, None).unwrap();
            assert!(f.is_all());
            assert!(f.matches_code(12345));
            assert!(f.matches_tags(None));
        }
    }

    #[test]
    fn tag_lists_match_by_code_then_by_tag() {
        let f = TagFilter::parse(Some("TagA || TagB ||"), Some("TAG")).unwrap();
        assert!(f.matches_code(i64::from(java_string_hash_code("TagA"))));
        assert!(f.matches_code(i64::from(java_string_hash_code("TagB"))));
        assert!(!f.matches_code(i64::from(java_string_hash_code("TagC"))));
        assert!(f.matches_tags(Some("TagA")));
        assert!(!f.matches_tags(Some("TagC")));
        assert!(!f.matches_tags(None));
    }

    #[test]
    fn colliding_tags_are_told_apart() {
        // "Aa" and "BB" have the same Java hash code.
        assert_eq!(java_string_hash_code("Aa"), java_string_hash_code("BB"));
        let f = TagFilter::parse(Some("Aa"), None).unwrap();
        assert!(f.matches_code(i64::from(java_string_hash_code("BB"))));
        assert!(!f.matches_tags(Some("BB")));
        assert!(f.matches_tags(Some("Aa")));
    }

    #[test]
    fn sql_is_refused() {
        let e = TagFilter::parse(Some("a > 1"), Some("SQL92")).unwrap_err();
        assert_eq!(e.code(), "FILTER_UNSUPPORTED_TYPE");
    }
}
