//! Feeds arbitrary text into every `parse` constructor of the domain crate and checks the
//! invariants each one promises (docs/api.md sections 2, 4, 5 and 6): a value that parsed once
//! parses again to itself, lengths and character rules hold on the output, and nothing
//! panics, whatever the input.

#![no_main]

use domain::{
    ChannelDescription, ChannelName, Cursor, DisplayName, Email, Emoji, Limit, MessageContent, Password, Username,
    sanitize_filename,
};
use libfuzzer_sys::fuzz_target;
use unicode_segmentation::UnicodeSegmentation as _;

fuzz_target!(|data: &[u8]| {
    // Not valid UTF-8 never reaches the parsers from serde, but the lossy form still makes
    // interesting text out of every input, so no run is wasted.
    let text = String::from_utf8_lossy(data);
    let raw: &str = &text;

    check_username(raw);
    check_email(raw);
    check_password(raw);
    check_display_name(raw);
    check_channel_name(raw);
    check_channel_description(raw);
    check_message_content(raw);
    check_emoji(raw);
    check_filename(raw);
    check_cursor(raw);
    check_limit(data);
});

fn check_username(raw: &str) {
    let Ok(username) = Username::parse(raw) else {
        return;
    };
    assert_eq!(username.as_str(), raw, "usernames are kept as typed");
    assert!((3..=32).contains(&username.as_str().len()));
    assert!(username.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')));
    let again = Username::parse(username.as_str()).expect("a parsed username re-parses");
    assert_eq!(again, username);
    // The uniqueness key is itself a valid username with the same key.
    let key = Username::parse(&username.key()).expect("a username's key is a username");
    assert_eq!(key.key(), username.key());
}

fn check_email(raw: &str) {
    let Ok(email) = Email::parse(raw) else {
        return;
    };
    let s = email.as_str();
    assert!(s.len() <= 254);
    assert_eq!(s.matches('@').count(), 1, "exactly one @ in {s:?}");
    assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
    let again = Email::parse(s).expect("a parsed email re-parses");
    assert_eq!(again, email);
    assert_eq!(again.key(), email.key());
}

fn check_password(raw: &str) {
    let Ok(password) = Password::parse(raw) else {
        return;
    };
    assert!((8..=128).contains(&password.expose().chars().count()));
    assert!(!password.expose().contains('\0'));
    assert_eq!(format!("{password:?}"), "Password([redacted])");
}

fn check_display_name(raw: &str) {
    let Ok(name) = DisplayName::parse(raw) else {
        return;
    };
    let s = name.as_str();
    assert_eq!(s, s.trim(), "display names are stored trimmed");
    assert!((1..=64).contains(&s.chars().count()));
    assert!(!s.chars().any(char::is_control));
    assert_eq!(DisplayName::parse(s).expect("re-parses"), name);
}

fn check_channel_name(raw: &str) {
    let Ok(name) = ChannelName::parse(raw) else {
        return;
    };
    let s = name.as_str();
    assert_eq!(s, s.trim(), "channel names are stored trimmed");
    assert!((1..=80).contains(&s.chars().count()));
    assert!(!s.chars().any(char::is_control));
    let again = ChannelName::parse(s).expect("re-parses");
    assert_eq!(again, name);
    assert_eq!(again.key(), name.key());
}

fn check_channel_description(raw: &str) {
    let Ok(description) = ChannelDescription::parse(raw) else {
        return;
    };
    let s = description.as_str();
    assert_eq!(s, s.trim());
    assert!(s.chars().count() <= 1000);
    assert!(!s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
    assert_eq!(ChannelDescription::parse(s).expect("re-parses"), description);
}

fn check_message_content(raw: &str) {
    let without = MessageContent::parse(raw, false);
    let with = MessageContent::parse(raw, true);
    // Attachments only ever relax the rules: whatever is valid alone is valid with them.
    if let Ok(content) = &without {
        assert!(!content.as_str().is_empty(), "text-only messages are never empty");
        assert_eq!(with.as_ref().ok(), Some(content));
    }
    for (content, has_attachments) in [(without, false), (with, true)] {
        let Ok(content) = content else { continue };
        let s = content.as_str();
        assert_eq!(s, s.trim());
        assert!(s.chars().count() <= domain::message::MAX_CONTENT_CHARS);
        assert!(!s.contains('\0'));
        let again = MessageContent::parse(s, has_attachments).expect("re-parses");
        assert_eq!(again, content);
    }
}

fn check_emoji(raw: &str) {
    // The main property is that this returns at all: no panic on any grapheme soup.
    let Ok(emoji) = Emoji::parse(raw) else {
        return;
    };
    let s = emoji.as_str();
    assert_eq!(Emoji::parse(s).expect("re-parses"), emoji);
    if let Some(code) = s.strip_prefix(':').and_then(|r| r.strip_suffix(':')) {
        assert!((1..=32).contains(&code.len()));
        assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'+' | b'-')));
    } else {
        assert_eq!(s.graphemes(true).count(), 1, "one grapheme cluster: {s:?}");
        assert!(!s.chars().any(char::is_control), "no control characters: {s:?}");
    }
}

fn check_filename(raw: &str) {
    let name = sanitize_filename(raw);
    assert!(!name.is_empty(), "{raw:?} gave an empty file name");
    assert!(name.len() <= 255, "{raw:?} gave {} bytes", name.len());
    assert!(!name.contains(['/', '\\', '"']), "{raw:?} gave {name:?}, which has a path separator or a quote");
    assert!(!name.chars().any(char::is_control), "{raw:?} gave {name:?}, which has a control character");
    assert!(name != "." && name != "..", "{raw:?} gave {name:?}");
    assert!(!name.starts_with('.'), "{raw:?} gave a hidden file name {name:?}");
}

fn check_cursor(raw: &str) {
    // Any string a client sends as a cursor either decodes or is refused, never a panic;
    // a cursor that decodes is the one the server would have made for that key, so
    // cursors cannot be forged in a second spelling.
    if let Ok(key) = Cursor::decode(raw, "after") {
        assert_eq!(Cursor::encode(&key).as_str(), raw);
    }
    // And every key survives the round trip.
    let cursor = Cursor::encode(raw);
    assert_eq!(Cursor::decode(cursor.as_str(), "after").expect("own cursor"), raw);
}

fn check_limit(data: &[u8]) {
    let Some(bytes) = data.get(..8) else { return };
    let mut buf = [0u8; 8];
    buf.copy_from_slice(bytes);
    let n = i64::from_le_bytes(buf);
    match Limit::parse(Some(n)) {
        Ok(limit) => {
            assert!((1..=200).contains(&limit.get()));
            assert_eq!(limit.get(), n);
        }
        Err(_) => assert!(!(1..=200).contains(&n)),
    }
}
