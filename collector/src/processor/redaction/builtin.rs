//! Validators of the built-in patterns: a regex finds candidates, these reject the ones that
//! cannot be what the pattern names (so order numbers that fail the Luhn check survive).

use sift_config::BuiltinPattern;

/// Whether `candidate`, found by `pattern`'s regex, really is one.
pub(super) fn accepts(pattern: BuiltinPattern, candidate: &str) -> bool {
    match pattern {
        BuiltinPattern::CreditCard => luhn(candidate),
        BuiltinPattern::UsSsn => plausible_ssn(candidate),
        _ => true,
    }
}

/// The Luhn checksum over the digits of `text` (13 to 19 of them).
fn luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let mut sum = 0;
    for (i, digit) in digits.iter().rev().enumerate() {
        let mut d = *digit;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// SSNs never have area 000, 666 or 9xx, group 00 or serial 0000.
fn plausible_ssn(text: &str) -> bool {
    let mut parts = text.split('-');
    let (Some(area), Some(group), Some(serial)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_real_card_numbers_only() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(luhn("378282246310005"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("1234567890123"));
    }

    #[test]
    fn ssn_plausibility() {
        assert!(plausible_ssn("123-45-6789"));
        assert!(!plausible_ssn("000-45-6789"));
        assert!(!plausible_ssn("666-45-6789"));
        assert!(!plausible_ssn("923-45-6789"));
        assert!(!plausible_ssn("123-00-6789"));
        assert!(!plausible_ssn("123-45-0000"));
    }
}
