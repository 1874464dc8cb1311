//! Rules for free text that comes from clients: what may reach the database, and what is
//! invisible and therefore dropped from names people read.

use unicode_segmentation::UnicodeSegmentation as _;

use crate::emoji::is_emoji;
use crate::error::DomainError;

/// The longest search text accepted, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// Text a client searches with (`GET /api/users?q=`, `GET /api/search/messages?q=`): at most
/// 200 characters and no NUL. PostgreSQL refuses NUL in `text`, so a NUL that reached a
/// query would be a 500; here it is the client's 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(String);

impl SearchText {
    pub fn parse(raw: &str, field: &'static str) -> Result<Self, DomainError> {
        if raw.chars().count() > MAX_SEARCH_CHARS {
            return Err(DomainError::invalid(field, format!("must be at most {MAX_SEARCH_CHARS} characters long")));
        }
        if raw.contains('\0') {
            return Err(DomainError::invalid(field, "must not contain NUL characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt): characters that
/// render as nothing — zero-width spaces and joiners, bidi marks, embeddings, overrides and
/// isolates (`U+202E` turns `txt.exe` into `exe.txt` on screen), variation selectors, tags,
/// fillers and the soft hyphen.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{34F}'
            | '\u{61C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// `raw` without its invisible characters ([`is_default_ignorable`]), so a name shows what
/// it is: no hidden text direction, nothing between letters that makes two names differ
/// only in bytes. Emoji keep their joiners, selectors and tags (`👨‍👩‍👧`, `❤️`, `🏴󠁧󠁢󠁳󠁣󠁴󠁿`),
/// since there those characters are part of a visible picture.
///
/// ```
/// use domain::text::strip_invisible;
/// assert_eq!(strip_invisible("invoice\u{202E}txt.exe"), "invoicetxt.exe");
/// assert_eq!(strip_invisible("a\u{200B}lice 👨\u{200D}👩\u{200D}👧"), "alice 👨\u{200D}👩\u{200D}👧");
/// ```
pub fn strip_invisible(raw: &str) -> String {
    if !raw.chars().any(is_default_ignorable) {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    for cluster in raw.graphemes(true) {
        if is_emoji(cluster) {
            out.push_str(cluster);
        } else {
            out.extend(cluster.chars().filter(|c| !is_default_ignorable(*c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_stripped_outside_emoji() {
        for (raw, shown) in [
            ("alice", "alice"),
            ("a\u{200B}lice", "alice"),
            ("al\u{200C}\u{200D}ice", "alice"),
            ("\u{202E}exe.txt", "exe.txt"),
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("\u{2066}isolated\u{2069}", "isolated"),
            ("\u{200E}\u{200F}\u{61C}marks", "marks"),
            ("soft\u{AD}hyphen", "softhyphen"),
            ("\u{FEFF}bom", "bom"),
            ("word\u{2060}joiner", "wordjoiner"),
            ("\u{3164}\u{115F}", ""),
            ("tag\u{E0041}", "tag"),
            ("a\u{FE0F}", "a"),
            ("👨\u{200D}👩\u{200D}👧", "👨\u{200D}👩\u{200D}👧"),
            ("I \u{2764}\u{FE0F} Rust", "I \u{2764}\u{FE0F} Rust"),
            (
                "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
                "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            ),
            ("José", "José"),
            ("日本語", "日本語"),
            ("", ""),
        ] {
            assert_eq!(strip_invisible(raw), shown, "raw {raw:?}");
        }
    }

    #[test]
    fn search_text_rules() {
        for (raw, ok) in [
            ("al", true),
            ("", true),
            ("'; DROP TABLE users; --", true),
            ("al\0ice", false),
            ("\0", false),
            (&"q".repeat(200) as &str, true),
            (&"q".repeat(201), false),
            (&"é".repeat(200), true),
        ] {
            assert_eq!(SearchText::parse(raw, "q").is_ok(), ok, "raw {raw:?}");
        }
        assert_eq!(SearchText::parse("al\0", "q").unwrap_err().field, "q");
    }
}
