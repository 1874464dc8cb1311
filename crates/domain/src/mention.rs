//! Mentions in message text (docs/api.md section 11): `@username`, and `@channel` / `@here`
//! for everyone in the channel.
//!
//! A mention starts a word: `bob@example.com` mentions nobody, nor does `é@bob`. The name is
//! the longest run of username characters after the `@`, without sentence punctuation at its
//! end (`@alice.` mentions `alice`), and must not run into another letter (`@alicé` is not
//! `@alic`) or another `@`. Text in code spans (`` `@alice` `` and fenced blocks) is quoted,
//! not addressed, so it mentions nobody. Names compare case-insensitively.

/// The most distinct names one message mentions; the rest of a longer list is ignored, so a
/// message cannot fan out to an unbounded list by name (`@channel` is the way to reach all).
pub const MAX_MENTIONS: usize = 50;

/// What a message's text mentions: lowercased usernames in order of first appearance (at
/// most [`MAX_MENTIONS`]), and whether it mentions everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mentions {
    pub usernames: Vec<String>,
    pub everyone: bool,
}

impl Mentions {
    pub fn is_empty(&self) -> bool {
        self.usernames.is_empty() && !self.everyone
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Characters that glue an `@` to the word before it (an e-mail address, a path, a handle).
fn joins_previous_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '@' | '/' | '+')
}

/// Finds the mentions in `text`.
///
/// ```
/// use domain::mention::parse;
/// let found = parse("@Alice, ask @here — not me@example.com or `@bob`");
/// assert_eq!(found.usernames, ["alice"]);
/// assert!(found.everyone);
/// ```
pub fn parse(text: &str) -> Mentions {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Mentions::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            i = skip_code_span(&chars, i);
            continue;
        }
        if c != '@' || i.checked_sub(1).is_some_and(|p| joins_previous_word(chars[p])) {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < chars.len() && is_name_char(chars[end]) {
            end += 1;
        }
        let next = chars.get(end).copied();
        let mut name_end = end;
        while name_end > start && matches!(chars[name_end - 1], '.' | '-') {
            name_end -= 1;
        }
        i = end.max(start);
        if next.is_some_and(|n| n.is_alphanumeric() || n == '@') {
            continue;
        }
        let name: String = chars[start..name_end].iter().collect::<String>().to_ascii_lowercase();
        match name.as_str() {
            "channel" | "here" => found.everyone = true,
            _ if (3..=32).contains(&name.len())
                && found.usernames.len() < MAX_MENTIONS
                && !found.usernames.contains(&name) =>
            {
                found.usernames.push(name);
            }
            _ => {}
        }
    }
    found
}

/// From a run of backticks at `at`, the index just past the code span it opens (CommonMark:
/// closed by a run of the same length), or past the run itself when nothing closes it.
fn skip_code_span(chars: &[char], at: usize) -> usize {
    let run = chars[at..].iter().take_while(|&&c| c == '`').count();
    let mut i = at + run;
    while i < chars.len() {
        if chars[i] == '`' {
            let close = chars[i..].iter().take_while(|&&c| c == '`').count();
            if close == run {
                return i + close;
            }
            i += close;
        } else {
            i += 1;
        }
    }
    at + run
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn names(text: &str) -> Vec<String> {
        parse(text).usernames
    }

    #[test]
    fn what_is_and_is_not_a_mention() {
        let table: &[(&str, &[&str], bool)] = &[
            ("@alice", &["alice"], false),
            ("hi @alice!", &["alice"], false),
            ("@Alice and @ALICE", &["alice"], false),
            ("(@bob) [@carol], @dave: @erin?", &["bob", "carol", "dave", "erin"], false),
            ("thanks @alice.", &["alice"], false),
            ("@a.b-c_d works", &["a.b-c_d"], false),
            ("mail bob@example.com", &[], false),
            ("é@alice", &[], false),
            ("@alicé", &[], false),
            ("@alice@example.com", &[], false),
            ("path/@alice", &[], false),
            ("@al", &[], false),
            (&format!("@{}", "a".repeat(33)), &[], false),
            ("`@alice` @bob", &["bob"], false),
            ("```\n@alice\n``` @carol", &["carol"], false),
            ("`` a ` @alice ``", &[], false),
            ("unclosed `@alice", &["alice"], false),
            ("@channel please", &[], true),
            ("@here", &[], true),
            ("@Here.", &[], true),
            ("@channels", &["channels"], false),
            ("@@alice", &[], false),
            ("@", &[], false),
            ("", &[], false),
            ("日本@alice", &[], false),
            ("日本 @alice", &["alice"], false),
            ("\u{200b}@alice", &["alice"], false),
        ];
        for (text, expected, everyone) in table {
            let found = parse(text);
            assert_eq!(found.usernames, *expected, "{text:?}");
            assert_eq!(found.everyone, *everyone, "{text:?}");
        }
    }

    #[test]
    fn at_most_fifty_names() {
        let text = (0..80).map(|n| format!("@user{n:03}")).collect::<Vec<_>>().join(" ");
        assert_eq!(names(&text).len(), MAX_MENTIONS);
        assert_eq!(names(&text)[0], "user000");
    }

    proptest! {
        #[test]
        fn every_name_found_is_in_the_text_after_an_at(text in "[ a-zA-Z@`.,é_\\-]{0,80}") {
            let found = parse(&text);
            let lower = text.to_lowercase();
            prop_assert!(found.usernames.len() <= MAX_MENTIONS);
            for name in &found.usernames {
                prop_assert!(crate::Username::parse(name).is_ok(), "{name:?}");
                prop_assert!(lower.contains(&format!("@{name}")), "{name:?} in {text:?}");
            }
        }

        #[test]
        fn a_lone_name_after_a_space_is_found(name in "[a-z][a-z0-9_]{2,31}", before in "[ (\\[]", after in "[ ,!?:;)]") {
            prop_assume!(name != "channel" && name != "here");
            prop_assert_eq!(names(&format!("x{before}@{name}{after}y")), vec![name]);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }
    }
}
