//! "Did you mean" suggestions: BuildKit's `util/suggest.Search` over agext/levenshtein's
//! unit-cost edit distance (insert, delete, substitute, counted in runes).

/// BuildKit `suggest.Search`: the first option closer than 3 edits, each later option only
/// if strictly closer; `None` when `value` is one of the options or nothing is close.
pub(super) fn search<'a>(
    value: &str,
    options: impl IntoIterator<Item = &'a str>,
    is_case_sensitive: bool,
) -> Option<String> {
    // Same threshold as HCL's suggestions, which BuildKit copies.
    const MAX_DISTANCE: usize = 3;
    let fold = |s: &str| {
        if is_case_sensitive {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    let value_folded = fold(value);
    let mut best: Option<String> = None;
    let mut min_distance = MAX_DISTANCE;
    for option in options {
        let option_folded = fold(option);
        if option_folded == value_folded {
            return None;
        }
        let distance = levenshtein(&value_folded, &option_folded);
        if distance < min_distance {
            best = Some(if is_case_sensitive {
                option.to_owned()
            } else {
                match_case(&option_folded, value)
            });
            min_distance = distance;
        }
    }
    best
}

/// BuildKit `matchCase`: the suggestion in the case of the original when that is all lower
/// or all upper.
fn match_case(suggestion: &str, original: &str) -> String {
    if original == original.to_lowercase() {
        suggestion.to_lowercase()
    } else if original == original.to_uppercase() {
        suggestion.to_uppercase()
    } else {
        suggestion.to_owned()
    }
}

/// Unit-cost Levenshtein distance over chars.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_match_buildkit() {
        assert_eq!(levenshtein("PAHT", "PATH"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(search("PAHT", ["PATH"], true).as_deref(), Some("PATH"));
        assert_eq!(
            search(
                "DIR_ASSET",
                ["DIR_BINARIES", "DIR_ASSETS", "DIR_CONFIG"],
                true
            )
            .as_deref(),
            Some("DIR_ASSETS")
        );
        assert_eq!(search("PATH", ["PATH", "PAT"], true), None);
        assert_eq!(search("version", ["tag"], true), None);
        assert_eq!(search("badcmd", ["add", "arg"], false), None);
        assert_eq!(search("COPPY", ["copy"], false).as_deref(), Some("COPY"));
    }
}
