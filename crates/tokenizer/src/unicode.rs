//! Code point classification, the GPT-2 byte<->unicode map and small UTF-8 helpers.
//!
//! Categories follow llama.cpp's table (`unicode_cpt_flags`): one general-category flag per
//! code point (letter, number, mark, punctuation, symbol, separator, control; unassigned code
//! points are "undefined") plus the White_Space property. The category data comes from
//! `regex-syntax`'s Unicode tables, so it tracks the Unicode version of that crate; llama.cpp's
//! table is generated from the UCD as well, so they agree except for code points assigned in
//! one version and not the other.

use std::sync::OnceLock;

pub const UNDEFINED: u16 = 0x0001;
pub const NUMBER: u16 = 0x0002;
pub const LETTER: u16 = 0x0004;
pub const SEPARATOR: u16 = 0x0008;
pub const ACCENT_MARK: u16 = 0x0010;
pub const PUNCTUATION: u16 = 0x0020;
pub const SYMBOL: u16 = 0x0040;
pub const CONTROL: u16 = 0x0080;
pub const MASK_CATEGORIES: u16 = 0x00FF;
pub const WHITESPACE: u16 = 0x0100;

const MAX_CODEPOINTS: usize = 0x110000;

/// The White_Space code points (the set llama.cpp treats as `\s`).
const WHITESPACE_CPTS: &[u32] = &[
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
    0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
];

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .expect("built-in unicode class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        _ => Vec::new(),
    }
}

fn flags_table() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![UNDEFINED; MAX_CODEPOINTS];
        let cats: [(&str, u16); 7] = [
            (r"[\p{Cc}\p{Cf}\p{Co}]", CONTROL),
            (r"\p{L}", LETTER),
            (r"\p{M}", ACCENT_MARK),
            (r"\p{N}", NUMBER),
            (r"\p{P}", PUNCTUATION),
            (r"\p{S}", SYMBOL),
            (r"\p{Z}", SEPARATOR),
        ];
        for (pat, flag) in cats {
            for (a, b) in class_ranges(pat) {
                for c in a..=b {
                    t[c as usize] = flag;
                }
            }
        }
        // Surrogates are category Cs (control) in the UCD.
        t[0xD800..=0xDFFF].fill(CONTROL);
        for &c in WHITESPACE_CPTS {
            t[c as usize] |= WHITESPACE;
        }
        t
    })
}

/// Flags of a code point; 0 for values beyond U+10FFFF (llama.cpp's "out of range").
#[inline]
pub fn flags(cpt: u32) -> u16 {
    flags_table().get(cpt as usize).copied().unwrap_or(0)
}

#[inline]
pub fn is_whitespace(f: u16) -> bool {
    f & WHITESPACE != 0
}
#[inline]
pub fn is_letter(f: u16) -> bool {
    f & LETTER != 0
}
#[inline]
pub fn is_number(f: u16) -> bool {
    f & NUMBER != 0
}
#[inline]
pub fn is_mark(f: u16) -> bool {
    f & ACCENT_MARK != 0
}

/// Simple lowercase mapping (first code point of the full mapping).
pub fn to_lower(cpt: u32) -> u32 {
    match char::from_u32(cpt) {
        Some(c) => c.to_lowercase().next().map(|l| l as u32).unwrap_or(cpt),
        None => cpt,
    }
}

/// First code point of the canonical decomposition (llama.cpp's "NFD" table maps each code
/// point to that).
pub fn nfd_first(cpt: u32) -> u32 {
    match char::from_u32(cpt) {
        Some(c) => {
            let mut first = None;
            unicode_normalization_alignments::char::decompose_canonical(c, |d| {
                if first.is_none() {
                    first = Some(d as u32);
                }
            });
            first.unwrap_or(cpt)
        }
        None => cpt,
    }
}

/// GPT-2's byte -> unicode map: printable Latin-1 bytes map to themselves, the other 68
/// bytes to U+0100.. in byte order.
pub fn byte_to_unicode() -> &'static [char; 256] {
    static MAP: OnceLock<[char; 256]> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..256u32 {
            let printable = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            map[b as usize] = if printable {
                char::from_u32(b).unwrap_or('\0')
            } else {
                let c = char::from_u32(256 + n).unwrap_or('\0');
                n += 1;
                c
            };
        }
        map
    })
}

/// Inverse of [`byte_to_unicode`]: code point -> byte, for code points below 0x144.
pub fn unicode_to_byte(c: char) -> Option<u8> {
    static INV: OnceLock<Vec<i16>> = OnceLock::new();
    let inv = INV.get_or_init(|| {
        let mut v = vec![-1i16; 0x144];
        for (b, &c) in byte_to_unicode().iter().enumerate() {
            v[c as usize] = b as i16;
        }
        v
    });
    match inv.get(c as usize) {
        Some(&b) if b >= 0 => Some(b as u8),
        _ => None,
    }
}

/// Length of the UTF-8 sequence introduced by `b`, from its high nibble (llama.cpp's rule;
/// continuation bytes count as 1).
#[inline]
pub fn utf8_len(b: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(b >> 4) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(flags('a' as u32) & MASK_CATEGORIES, LETTER);
        assert_eq!(flags('5' as u32) & MASK_CATEGORIES, NUMBER);
        assert_eq!(flags('$' as u32) & MASK_CATEGORIES, SYMBOL);
        assert_eq!(flags('!' as u32) & MASK_CATEGORIES, PUNCTUATION);
        assert!(is_whitespace(flags(' ' as u32)));
        assert_eq!(flags(' ' as u32) & MASK_CATEGORIES, SEPARATOR);
        assert_eq!(flags(0x0378) & MASK_CATEGORIES, UNDEFINED);
        assert_eq!(flags(0x0301) & MASK_CATEGORIES, ACCENT_MARK);
        assert_eq!(flags(0x200000), 0);
    }

    #[test]
    fn byte_map_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(unicode_to_byte(byte_to_unicode()[b as usize]), Some(b));
        }
        assert_eq!(byte_to_unicode()[b' ' as usize], 'Ġ');
        assert_eq!(byte_to_unicode()[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn nfd_and_lower() {
        assert_eq!(nfd_first('é' as u32), 'e' as u32);
        assert_eq!(to_lower('A' as u32), 'a' as u32);
        assert_eq!(to_lower(0x130), 'i' as u32);
    }
}
