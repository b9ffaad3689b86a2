//! Postfix queue ids in both shapes, generated from the arrival time and a fake inode number.
//!
//! Short ids (the default) are 5 upper-case hex digits of the microseconds followed by the inode
//! number in hex (`7EE668039`). Long ids (`enable_long_queue_ids = yes`) are the seconds in
//! base 52 (6 chars), the microseconds in base 52 (4 chars), a `z`, then the inode number in base
//! 51, which never contains `z` (`4KJd2L6vmtz9sQ6`). Both alphabets are Postfix's vowel-free
//! "safe" characters.

use super::rng::Rng;

/// Postfix's `safe_ultostr` alphabet: digits and consonants, so ids never spell words.
const SAFE_CHARS: &[u8; 52] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/// Hands out queue ids that are unique for the generator's lifetime: the inode part comes from a
/// strictly increasing counter (with jitter smaller than the stride), so no two ids share it.
#[derive(Debug, Clone)]
pub(crate) struct QueueIdGen {
    next_inode: u64,
}

impl QueueIdGen {
    pub(crate) fn new(rng: &mut Rng) -> Self {
        Self {
            next_inode: rng.range(0x1000, 0x3_FFFF),
        }
    }

    fn inode(&mut self, rng: &mut Rng) -> u64 {
        let inode = self.next_inode + rng.below(3);
        self.next_inode += 3;
        inode
    }

    /// A queue id for a file created at `unix_micros`.
    pub(crate) fn next(&mut self, rng: &mut Rng, unix_micros: i64, long: bool) -> String {
        let secs = unix_micros.div_euclid(1_000_000) as u64;
        let usecs = unix_micros.rem_euclid(1_000_000) as u64;
        let inode = self.inode(rng);
        if long {
            let mut id = String::with_capacity(16);
            push_base(&mut id, secs, 52, 6);
            push_base(&mut id, usecs, 52, 4);
            id.push('z');
            push_base(&mut id, inode, 51, 1);
            id
        } else {
            format!("{usecs:05X}{inode:X}")
        }
    }
}

/// Appends `value` in `base` using [`SAFE_CHARS`], left-padded with `0` to `min_width`.
fn push_base(out: &mut String, mut value: u64, base: u64, min_width: usize) {
    let mut digits = [0u8; 16];
    let mut n = 0;
    loop {
        digits[n] = SAFE_CHARS[(value % base) as usize];
        n += 1;
        value /= base;
        if value == 0 {
            break;
        }
    }
    for _ in n..min_width {
        out.push('0');
    }
    for &d in digits[..n].iter().rev() {
        out.push(d as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str, base: u64) -> u64 {
        s.bytes().fold(0, |acc, b| {
            let d = SAFE_CHARS.iter().position(|&c| c == b).unwrap() as u64;
            assert!(d < base, "digit {} out of base {base}", b as char);
            acc * base + d
        })
    }

    #[test]
    fn long_id_encodes_time_and_inode() {
        let mut rng = Rng::new(3);
        let mut ids = QueueIdGen::new(&mut rng);
        let at = 1_729_966_430_123_456;
        let id = ids.next(&mut rng, at, true);
        let (time, inode) = id.rsplit_once('z').unwrap();
        assert_eq!(time.len(), 10, "{id}");
        assert_eq!(decode(&time[..6], 52), 1_729_966_430);
        assert_eq!(decode(&time[6..], 52), 123_456);
        assert!(!inode.is_empty() && !inode.contains('z'));
        decode(inode, 51);
    }

    #[test]
    fn short_id_is_usec_hex_then_inode_hex() {
        let mut rng = Rng::new(3);
        let mut ids = QueueIdGen::new(&mut rng);
        let id = ids.next(&mut rng, 1_729_966_430_000_001, false);
        assert!(id.starts_with("00001"), "{id}");
        assert!(id.len() >= 9 && id.len() <= 12, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
    }

    #[test]
    fn ids_are_unique_even_in_the_same_microsecond() {
        let mut rng = Rng::new(9);
        let mut ids = QueueIdGen::new(&mut rng);
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            assert!(seen.insert(ids.next(&mut rng, 1_700_000_000_000_000, i % 2 == 0)));
        }
    }
}
