//! Base64 for `format: byte` fields (fingerprints, etags).
//!
//! Google renders bytes fields in standard base64 but decodes them in either
//! alphabet, with or without padding: clients such as gcloud (apitools) send them
//! back URL-safe encoded (`-`, `_`). So bytes fields are compared as bytes, never
//! as strings.

/// Standard base64 with padding, as Google renders bytes fields.
pub fn encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard or URL-safe base64, padded or not; `None` when malformed.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing character carries fewer than 8 bits: not base64.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// Whether two renderings of a bytes field hold the same bytes.
pub fn same_bytes(a: &str, b: &str) -> bool {
    match (decode(a), decode(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_round_trip() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(raw), enc);
            assert_eq!(decode(enc).unwrap(), raw);
        }
    }

    #[test]
    fn either_alphabet_and_optional_padding() {
        let raw = [0xfb, 0xff, 0xbf, 0x3e, 0x01];
        let std = encode(&raw);
        assert_eq!(std, "+/+/PgE=");
        assert_eq!(decode("-_-_PgE").unwrap(), raw);
        assert!(same_bytes(&std, "-_-_PgE="));
        assert!(same_bytes(&std, "-_-_PgE"));
        assert!(!same_bytes(&std, "-_-_PgA="));
        assert!(decode("a").is_none());
        assert!(decode("ab*c").is_none());
        assert!(!same_bytes("!!", "!!"));
    }
}
