//! Stop strings: text is handed out only once it can no longer become one.

use super::Run;

/// Hand out the generated text that can no longer turn into a stop string: everything
/// before a stop string that occurred, everything at the end of the run, and otherwise all
/// but the longest tail that is a prefix of some stop string.
pub(super) fn take_text(run: &mut Run) -> String {
    let end = if let Some(i) = first_stop(&run.text, &run.params.stop) {
        i
    } else if run.stop.is_some() {
        run.text.len()
    } else {
        run.text.len() - held_back(&run.text, &run.params.stop)
    };
    let end = end.max(run.emitted);
    let out = run.text[run.emitted..end].to_string();
    run.emitted = end;
    out
}

/// Byte offset of the earliest stop string in `text`.
fn first_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

/// Length of the longest tail of `text` that is a proper prefix of a stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for s in stops {
        for (i, _) in s.char_indices().skip(1) {
            if i > best && text.ends_with(&s[..i]) {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_string_tails_are_held_back() {
        let stops = vec!["</s>".to_string(), "User:".to_string()];
        assert_eq!(held_back("hello </", &stops), 2);
        assert_eq!(held_back("hello Us", &stops), 2);
        assert_eq!(held_back("hello", &stops), 0);
        assert_eq!(first_stop("a User: b </s>", &stops), Some(2));
        assert_eq!(first_stop("abc", &stops), None);
    }
}
