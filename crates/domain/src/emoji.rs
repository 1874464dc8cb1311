//! What counts as one emoji (docs/api.md section 5: "one emoji grapheme cluster"): a pictograph
//! with its optional presentation selector, skin-tone modifier, ZWJ-joined partners or tag
//! sequence; a flag (two regional indicators); or a keycap (`1️⃣`). Anything else that merely
//! is not ASCII — `€`, `→`, a lone combining mark, an invisible zero-width space or a
//! right-to-left override — is not a reaction.

/// Whether `cluster` (one extended grapheme cluster) is an emoji.
///
/// ```
/// use domain::emoji::is_emoji;
/// assert!(is_emoji("👍🏽"));
/// assert!(is_emoji("🇫🇷"));
/// assert!(!is_emoji("€"));
/// assert!(!is_emoji("\u{200B}"));
/// ```
pub fn is_emoji(cluster: &str) -> bool {
    let chars: Vec<char> = cluster.chars().collect();
    match chars.as_slice() {
        // Keycap: 0-9, # or *, an optional VS16, then COMBINING ENCLOSING KEYCAP.
        [base, rest @ ..] if base.is_ascii_digit() || matches!(base, '#' | '*') => {
            matches!(rest, ['\u{20E3}'] | ['\u{FE0F}', '\u{20E3}'])
        }
        // Flag: exactly two regional indicators.
        [a, b] if is_regional_indicator(*a) && is_regional_indicator(*b) => true,
        // A pictograph first, then only what may follow one in an emoji sequence, and
        // after each ZWJ another pictograph.
        [first, rest @ ..] if is_extended_pictographic(*first) => {
            let mut after_zwj = false;
            for &c in rest {
                if after_zwj {
                    if !is_extended_pictographic(c) {
                        return false;
                    }
                    after_zwj = false;
                } else if c == ZWJ {
                    after_zwj = true;
                } else if !(is_modifier(c) || is_selector(c) || is_tag(c)) {
                    return false;
                }
            }
            !after_zwj
        }
        // A skin-tone swatch on its own is an emoji too.
        [modifier] => is_modifier(*modifier),
        _ => false,
    }
}

const ZWJ: char = '\u{200D}';

fn is_regional_indicator(c: char) -> bool {
    matches!(c, '\u{1F1E6}'..='\u{1F1FF}')
}

/// Emoji skin-tone modifiers (Fitzpatrick types 1-2 to 6).
fn is_modifier(c: char) -> bool {
    matches!(c, '\u{1F3FB}'..='\u{1F3FF}')
}

/// VS15 / VS16: text or emoji presentation.
fn is_selector(c: char) -> bool {
    matches!(c, '\u{FE0E}' | '\u{FE0F}')
}

/// Tag characters, as in the flags of England, Scotland and Wales.
fn is_tag(c: char) -> bool {
    matches!(c, '\u{E0020}'..='\u{E007F}')
}

fn is_extended_pictographic(c: char) -> bool {
    let c = u32::from(c);
    EXTENDED_PICTOGRAPHIC
        .binary_search_by(|&(start, end)| {
            if end < c {
                std::cmp::Ordering::Less
            } else if start > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The `Extended_Pictographic` property of Unicode 17 (UTS #51, `emoji-data.txt`), as
/// sorted, disjoint, inclusive ranges; the same data `unicode-segmentation` uses to find
/// grapheme clusters, so the two agree on what one emoji is.
#[rustfmt::skip]
const EXTENDED_PICTOGRAPHIC: &[(u32, u32)] = &[
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328),
    (0x23CF, 0x23CF), (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB),
    (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2604), (0x260E, 0x260E),
    (0x2611, 0x2611), (0x2614, 0x2615), (0x2618, 0x2618), (0x261D, 0x261D), (0x2620, 0x2620),
    (0x2622, 0x2623), (0x2626, 0x2626), (0x262A, 0x262A), (0x262E, 0x262F), (0x2638, 0x263A),
    (0x2640, 0x2640), (0x2642, 0x2642), (0x2648, 0x2653), (0x265F, 0x2660), (0x2663, 0x2663),
    (0x2665, 0x2666), (0x2668, 0x2668), (0x267B, 0x267B), (0x267E, 0x267F), (0x2692, 0x2697),
    (0x2699, 0x2699), (0x269B, 0x269C), (0x26A0, 0x26A1), (0x26A7, 0x26A7), (0x26AA, 0x26AB),
    (0x26B0, 0x26B1), (0x26BD, 0x26BE), (0x26C4, 0x26C5), (0x26C8, 0x26C8), (0x26CE, 0x26CF),
    (0x26D1, 0x26D1), (0x26D3, 0x26D4), (0x26E9, 0x26EA), (0x26F0, 0x26F5), (0x26F7, 0x26FA),
    (0x26FD, 0x26FD), (0x2702, 0x2702), (0x2705, 0x2705), (0x2708, 0x270D), (0x270F, 0x270F),
    (0x2712, 0x2712), (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721),
    (0x2728, 0x2728), (0x2733, 0x2734), (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C),
    (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757), (0x2763, 0x2764), (0x2795, 0x2797),
    (0x27A1, 0x27A1), (0x27B0, 0x27B0), (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07),
    (0x2B1B, 0x2B1C), (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F004, 0x1F004), (0x1F02C, 0x1F02F), (0x1F094, 0x1F09F),
    (0x1F0AF, 0x1F0B0), (0x1F0C0, 0x1F0C0), (0x1F0CF, 0x1F0D0), (0x1F0F6, 0x1F0FF), (0x1F170, 0x1F171),
    (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F1AE, 0x1F1E5), (0x1F201, 0x1F20F),
    (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A), (0x1F23C, 0x1F23F), (0x1F249, 0x1F25F),
    (0x1F266, 0x1F321), (0x1F324, 0x1F393), (0x1F396, 0x1F397), (0x1F399, 0x1F39B), (0x1F39E, 0x1F3F0),
    (0x1F3F3, 0x1F3F5), (0x1F3F7, 0x1F3FA), (0x1F400, 0x1F4FD), (0x1F4FF, 0x1F53D), (0x1F549, 0x1F54E),
    (0x1F550, 0x1F567), (0x1F56F, 0x1F570), (0x1F573, 0x1F57A), (0x1F587, 0x1F587), (0x1F58A, 0x1F58D),
    (0x1F590, 0x1F590), (0x1F595, 0x1F596), (0x1F5A4, 0x1F5A5), (0x1F5A8, 0x1F5A8), (0x1F5B1, 0x1F5B2),
    (0x1F5BC, 0x1F5BC), (0x1F5C2, 0x1F5C4), (0x1F5D1, 0x1F5D3), (0x1F5DC, 0x1F5DE), (0x1F5E1, 0x1F5E1),
    (0x1F5E3, 0x1F5E3), (0x1F5E8, 0x1F5E8), (0x1F5EF, 0x1F5EF), (0x1F5F3, 0x1F5F3), (0x1F5FA, 0x1F64F),
    (0x1F680, 0x1F6C5), (0x1F6CB, 0x1F6D2), (0x1F6D5, 0x1F6E5), (0x1F6E9, 0x1F6E9), (0x1F6EB, 0x1F6F0),
    (0x1F6F3, 0x1F6FF), (0x1F7DA, 0x1F7FF), (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F),
    (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8AF), (0x1F8BC, 0x1F8BF), (0x1F8C2, 0x1F8CF), (0x1F8D9, 0x1F8FF),
    (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1F9FF), (0x1FA58, 0x1FA5F), (0x1FA6E, 0x1FAFF),
    (0x1FC00, 0x1FFFD),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_and_not_emoji() {
        for (input, ok) in [
            ("👍", true),
            ("👍🏽", true),
            ("🇫🇷", true),
            ("👨‍👩‍👧", true),
            ("❤️", true),
            ("❤", true),
            ("©️", true),
            ("☺", true),
            ("1️⃣", true),
            ("#⃣", true),
            ("🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}", true),
            ("🏻", true),
            ("€", false),
            ("→", false),
            ("。", false),
            ("\u{200B}", false),
            ("\u{202E}", false),
            ("\u{200D}", false),
            ("\u{301}", false),
            ("\u{FE0F}", false),
            ("🇫", false),
            ("1", false),
            ("1\u{FE0F}", false),
            ("👍\u{200D}", false),
            ("👍\u{301}", false),
            ("", false),
        ] {
            assert_eq!(is_emoji(input), ok, "input {input:?}");
        }
    }

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        assert!(EXTENDED_PICTOGRAPHIC.iter().all(|(a, b)| a <= b));
        assert!(EXTENDED_PICTOGRAPHIC.windows(2).all(|w| w[0].1 < w[1].0));
    }
}
