//! The context's `.dockerignore` as the context tree's filter.

use std::sync::Arc;

use kiln_dockerfile::{DirDecision, PatternMatcher};

use crate::copy::source::ContextFilter;

/// The context's `.dockerignore` as a [`ContextFilter`].
#[derive(Debug)]
pub(crate) struct IgnoreFilter {
    matcher: Option<PatternMatcher>,
}

impl IgnoreFilter {
    /// Excludes what `matcher` matches.
    pub(crate) fn new(matcher: PatternMatcher) -> Self {
        Self {
            matcher: Some(matcher),
        }
    }

    /// Excludes nothing (no `.dockerignore`, or a local directory's named context).
    pub(crate) fn none() -> Self {
        Self { matcher: None }
    }

    /// The patterns, when there is a `.dockerignore` (the `CopyIgnoredFile` check's input).
    pub(crate) fn matcher(&self) -> Option<&PatternMatcher> {
        self.matcher.as_ref()
    }
}

impl ContextFilter for IgnoreFilter {
    fn is_excluded(&self, path: &str) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.matches_or_parent_matches(path).unwrap_or(false))
    }

    fn may_reinclude_below(&self, dir: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| {
            matches!(
                m.exclusion_state(dir),
                Ok(DirDecision::Excluded {
                    may_reinclude_children: true
                })
            )
        })
    }

    fn excludes_nothing(&self) -> bool {
        self.matcher.is_none()
    }
}

impl ContextFilter for Arc<IgnoreFilter> {
    fn is_excluded(&self, path: &str) -> bool {
        (**self).is_excluded(path)
    }

    fn may_reinclude_below(&self, dir: &str) -> bool {
        (**self).may_reinclude_below(dir)
    }

    fn excludes_nothing(&self) -> bool {
        (**self).excludes_nothing()
    }
}
