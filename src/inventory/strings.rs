//! An identity's own strings (id, aliases, principal ids) packed into one allocation.
//!
//! Separate boxes cost a pointer, a length and an allocator header each, more than the text of
//! a short id. Packed, an identity pays for one header and one length byte per string.
//!
//! Layout: the alias count, then each string as its length followed by its bytes, in the order
//! id, aliases, principals. Numbers are written in ASCII digits of six bits (the seventh bit
//! says another digit follows, least significant first), so the whole stays a `str`: every
//! string starts on a character boundary and reading one needs neither `unsafe` nor UTF-8
//! checks.

/// Set on a digit that is followed by another.
const MORE: u8 = 0x40;
/// The value bits of a digit.
const VALUE: u8 = 0x3f;

#[derive(Clone, PartialEq, Eq)]
pub(super) struct Strings(Box<str>);

impl Strings {
    pub(super) fn pack<'a>(
        id: &'a str,
        aliases: impl ExactSizeIterator<Item = &'a str> + Clone,
        principals: impl Iterator<Item = &'a str> + Clone,
    ) -> Self {
        let all = std::iter::once(id).chain(aliases.clone()).chain(principals);
        // Exactly: a box shrunk from a larger buffer keeps the allocator's larger chunk.
        let size = number_len(aliases.len())
            + all
                .clone()
                .map(|s| number_len(s.len()) + s.len())
                .sum::<usize>();
        let mut out = String::with_capacity(size);
        put_number(&mut out, aliases.len());
        for s in all {
            put_number(&mut out, s.len());
            out.push_str(s);
        }
        debug_assert_eq!(out.len(), size);
        Self(out.into_boxed_str())
    }

    pub(super) fn id(&self) -> &str {
        self.all().next().unwrap_or_default()
    }

    pub(super) fn aliases(&self) -> impl Iterator<Item = &str> + Clone {
        let (count, rest) = self.alias_count();
        Unpacked(rest).skip(1).take(count)
    }

    /// The principal ids, in the order of the profile's targets.
    pub(super) fn principals(&self) -> impl Iterator<Item = &str> + Clone {
        let (count, rest) = self.alias_count();
        Unpacked(rest).skip(1 + count)
    }

    fn alias_count(&self) -> (usize, &str) {
        take_number(&self.0).unwrap_or((0, ""))
    }

    fn all(&self) -> Unpacked<'_> {
        Unpacked(self.alias_count().1)
    }

    /// Bytes held, for tests of the layout's size.
    #[cfg(test)]
    pub(super) fn packed_len(&self) -> usize {
        self.0.len()
    }
}

/// Iterates the length-prefixed strings of a packed text.
#[derive(Clone)]
struct Unpacked<'a>(&'a str);

impl<'a> Iterator for Unpacked<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (len, rest) = take_number(self.0)?;
        let (s, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some(s)
    }
}

fn put_number(out: &mut String, mut n: usize) {
    loop {
        let digit = (n as u8) & VALUE;
        n >>= 6;
        let more = if n == 0 { 0 } else { MORE };
        out.push(char::from(digit | more));
        if n == 0 {
            return;
        }
    }
}

/// How many digits `put_number` writes for `n`.
fn number_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    bits.div_ceil(6).max(1) as usize
}

/// The number at the start of `s` and what follows it; `None` at the end of the text.
fn take_number(s: &str) -> Option<(usize, &str)> {
    let mut n = 0usize;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        n |= usize::from(b & VALUE).checked_shl(6 * i as u32)?;
        if b & MORE == 0 {
            // The digit is ASCII, so `i + 1` is a character boundary.
            return Some((n, s.get(i + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(id: &str, aliases: &[&str], principals: &[&str]) -> Strings {
        Strings::pack(id, aliases.iter().copied(), principals.iter().copied())
    }

    fn round_trips(id: &str, aliases: &[&str], principals: &[&str]) {
        let s = pack(id, aliases, principals);
        assert_eq!(s.id(), id);
        assert_eq!(s.aliases().collect::<Vec<_>>(), aliases);
        assert_eq!(s.principals().collect::<Vec<_>>(), principals);
    }

    #[test]
    fn strings_round_trip() {
        round_trips(
            "svc-0000001",
            &["client-0000001.apps.acme.example"],
            &[
                "arn:aws:iam::111122223333:role/svc-0000001",
                "repo:acme/svc",
            ],
        );
        let many: Vec<String> = (0..300).map(|i| format!("alias-{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        round_trips("svc", &many, &["p"]);
    }

    #[test]
    fn empty_strings_and_fields_round_trip() {
        round_trips("", &[], &[]);
        round_trips("", &["", ""], &["", "x", ""]);
        round_trips("id", &[], &["only-a-principal"]);
    }

    #[test]
    fn long_and_non_ascii_strings_round_trip() {
        let long = "arn:aws:iam::1:role/".repeat(5_000);
        round_trips("ü-id", &["é", &long], &[&long, "日本語", "x"]);
        let s = pack("a", &[], &[&long]);
        // One alias count, and a length of three digits for 100,000 bytes.
        assert_eq!(s.packed_len(), 1 + 1 + 1 + 3 + long.len());
    }

    #[test]
    fn numbers_take_one_ascii_digit_per_six_bits() {
        for n in [0, 1, 63, 64, 4095, 4096, 262_143, 262_144, usize::MAX] {
            let mut out = String::new();
            put_number(&mut out, n);
            assert!(out.is_ascii());
            assert_eq!(out.len(), number_len(n));
            assert_eq!(take_number(&out), Some((n, "")), "{n}");
        }
        assert_eq!(take_number(""), None);
    }

    #[test]
    fn a_short_identity_costs_a_byte_a_string_over_its_text() {
        let s = pack("svc-1", &["client-1"], &["arn:1", "repo:1", "0oa1"]);
        let text = "svc-1client-1arn:1repo:10oa1".len();
        assert_eq!(s.packed_len(), 1 + 5 + text);
    }
}
