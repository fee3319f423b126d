//! Tracking numbers people can read out and type: `MK` + 10 Crockford base32 characters
//! (50 random bits) + one check character (Luhn mod 32), e.g. `MK7Z2K9QW4HD3X`.
//!
//! Crockford's alphabet leaves out I, L, O and U; when reading one back, lowercase is accepted,
//! I and L read as 1, O as 0, and spaces and hyphens are ignored. The check character catches
//! every single mistyped character and most swapped neighbours before the store is asked.

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const PREFIX: &str = "MK";
const BODY_LEN: usize = 10;

/// A well-formed tracking number in canonical form (stored as its text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TrackingNumber(String);

fn value_of(c: u8) -> Option<u32> {
    let c = match c.to_ascii_uppercase() {
        b'I' | b'L' => b'1',
        b'O' => b'0',
        c => c,
    };
    ALPHABET.iter().position(|&a| a == c).map(|i| i as u32)
}

/// Luhn mod N over the body's values (N = 32).
fn check_value(values: &[u32]) -> u32 {
    let n = 32;
    let mut sum = 0;
    let mut factor = 2;
    for &v in values.iter().rev() {
        let addend = factor * v;
        sum += addend / n + addend % n;
        factor = if factor == 2 { 1 } else { 2 };
    }
    (n - sum % n) % n
}

/// The canonical text of a number's body and check character.
fn render(values: &[u32]) -> String {
    let chars = values.iter().map(|&v| ALPHABET[v as usize] as char);
    PREFIX.chars().chain(chars).collect()
}

impl TrackingNumber {
    /// A new number from 50 bits of randomness (the low 50 bits of `random`).
    pub fn from_random(random: u64) -> Self {
        let mut values: Vec<u32> = (0..BODY_LEN)
            .map(|i| ((random >> (5 * (BODY_LEN - 1 - i))) & 31) as u32)
            .collect();
        values.push(check_value(&values));
        Self(render(&values))
    }

    /// Reads a number as a person may have typed it; `None` when it cannot be one.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > 64 {
            return None;
        }
        let compact: Vec<u8> = raw.bytes().filter(|b| !matches!(b, b' ' | b'-')).collect();
        if compact.len() != PREFIX.len() + BODY_LEN + 1
            || !compact[..2].eq_ignore_ascii_case(PREFIX.as_bytes())
        {
            return None;
        }
        let values: Vec<u32> = compact[2..]
            .iter()
            .map(|&c| value_of(c))
            .collect::<Option<_>>()?;
        let (body, check) = values.split_at(BODY_LEN);
        (check_value(body) == check[0]).then(|| Self(render(&values)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_numbers_have_the_documented_shape_and_parse_back() {
        for seed in [0u64, 1, 0x3_ffff_ffff_ffff, 0xdead_beef_cafe] {
            let t = TrackingNumber::from_random(seed);
            assert_eq!(t.as_str().len(), 13);
            assert!(t.as_str().starts_with("MK"));
            assert_eq!(TrackingNumber::parse(t.as_str()), Some(t.clone()));
        }
    }

    #[test]
    fn typing_slack_is_forgiven() {
        let t = TrackingNumber::from_random(0x1234_5678_9abc);
        let typed = t.as_str().to_ascii_lowercase();
        let spaced = format!("{} {}-{}", &typed[..4], &typed[4..8], &typed[8..]);
        assert_eq!(TrackingNumber::parse(&spaced), Some(t.clone()));
        let with_o = t.as_str().replace('0', "O");
        assert_eq!(TrackingNumber::parse(&with_o), Some(t));
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let t = TrackingNumber::from_random(0x2bad_f00d_1234);
        let s = t.as_str().as_bytes().to_vec();
        for i in 2..s.len() {
            for &c in ALPHABET.iter().filter(|&&c| c != s[i]) {
                let mut typo = s.clone();
                typo[i] = c;
                let typo = String::from_utf8(typo).unwrap();
                assert!(TrackingNumber::parse(&typo).is_none(), "{typo}");
            }
        }
    }

    #[test]
    fn garbage_is_not_a_tracking_number() {
        for s in [
            "",
            "MK",
            "XX1234567890A",
            "MK12345678901234",
            "MK!!!!!!!!!!!",
            "../../etc",
        ] {
            assert!(TrackingNumber::parse(s).is_none(), "{s}");
        }
    }
}
