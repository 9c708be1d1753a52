//! Stop strings on the text stream: the reply ends where its text would contain one, and no
//! part of a stop string is ever shown (text that could start one is held back until it can't).

/// Watches the pieces of a reply for its stop strings.
#[derive(Debug, Default, Clone)]
pub struct StopStrings {
    stops: Vec<String>,
    held: String,
}

impl StopStrings {
    /// A watcher for `stops` (none: every piece passes at once).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    /// Adds a piece of the reply; returns the text that can be shown now and whether a stop
    /// string was met (then the text is what came before it, and the rest is dropped).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (piece.to_string(), false);
        }
        self.held.push_str(piece);
        // Each push checks, so only the newest stop string can be complete: take the earliest.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let shown = self.held[..at].to_string();
            self.held.clear();
            return (shown, true);
        }
        // Hold back the longest end of the text that some stop string starts with.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep);
        (std::mem::replace(&mut self.held, rest), false)
    }

    /// The text still held back: at the end of a reply it was not a stop string after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces`; returns what was shown, piece by piece, and whether a stop string was met.
    fn feed(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut s = StopStrings::new(stops.iter().map(|s| s.to_string()).collect());
        let mut shown = Vec::new();
        for p in pieces {
            let (text, hit) = s.push(p);
            shown.push(text);
            if hit {
                return (shown, true);
            }
        }
        shown.push(s.finish());
        (shown, false)
    }

    #[test]
    fn without_stop_strings_every_piece_passes() {
        assert_eq!(
            feed(&[], &["a", "b"]),
            (vec!["a".into(), "b".into(), String::new()], false)
        );
    }

    #[test]
    fn a_stop_string_split_over_pieces_is_never_shown() {
        let (shown, hit) = feed(&["END"], &["The e", "nd. E", "N", "D and more"]);
        assert!(hit);
        assert_eq!(shown, ["The e", "nd. ", "", ""]);
        assert_eq!(shown.concat(), "The end. ");
    }

    #[test]
    fn held_text_that_was_no_stop_string_is_shown_later() {
        let (shown, hit) = feed(&["\n\n"], &["one\n", "two\n", "\nthree"]);
        assert!(hit);
        assert_eq!(shown.concat(), "one\ntwo");
        let (shown, hit) = feed(&["ab"], &["xa", "c", "a"]);
        assert!(!hit);
        assert_eq!(shown, ["x", "ac", "", "a"]);
    }

    #[test]
    fn the_earliest_stop_string_wins_and_characters_are_never_split() {
        let (shown, hit) = feed(&["cd", "bcde", "é!"], &["abcd"]);
        assert!(hit);
        assert_eq!(shown.concat(), "ab");
        let (shown, hit) = feed(&["é!"], &["café", "!"]);
        assert!(hit);
        assert_eq!(shown, ["caf", ""]);
    }
}
