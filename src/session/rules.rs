//! What memcached does with a request line it rejects: whether it answers
//! (and whether every server version agrees), and whether it swallows the
//! data block a storage line announced. The reference is memcached's own
//! parser (`proto_text.c` of 1.6.18 and the `proto_parser.c` based one of
//! 1.6.40 on); `docs/command-cases.md` has the cases, checked against a
//! real server by `tests/command_cases.rs`.

use crate::protocol::line::{parse_u64, tokens};

/// Whether a rejected line is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Every version answers (an error).
    Yes,
    /// No version answers: the line ends in `noreply` and its handler
    /// honours it even for its errors.
    No,
    /// 1.6.18 answers, newer servers stay silent (their dispatcher checks
    /// the last token for `noreply` before the arguments).
    Maybe,
}

/// What happens to the data block a rejected storage line announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swallow {
    /// Not swallowed: the bytes that follow are read as commands.
    None,
    /// Swallowed by every version (`ms` rejected after its datalen).
    Certain(u64),
    /// Swallowed by newer servers only (text storage whose length parsed,
    /// `ms` with an over-long key); 1.6.18 reads them as commands.
    Maybe(u64),
}

const STORAGE: &[&[u8]] = &[b"set", b"add", b"replace", b"append", b"prepend"];
const RETRIEVAL: &[&[u8]] = &[b"get", b"gets", b"gat", b"gats", b"bget"];
const KNOWN: &[&[u8]] = &[
    b"get",
    b"gets",
    b"gat",
    b"gats",
    b"bget",
    b"set",
    b"add",
    b"replace",
    b"append",
    b"prepend",
    b"cas",
    b"delete",
    b"incr",
    b"decr",
    b"touch",
    b"stats",
    b"flush_all",
    b"version",
    b"quit",
    b"shutdown",
    b"verbosity",
    b"cache_memlimit",
    b"lru",
    b"lru_crawler",
    b"slabs",
    b"watch",
    b"extstore",
    b"refresh_certs",
    b"mg",
    b"ms",
    b"md",
    b"ma",
    b"mn",
    b"me",
];
/// Longest text key (KEY_MAX_LENGTH).
const KEY_MAX: usize = 250;
/// INT_MAX - 2: the largest data length memcached accepts.
const LEN_MAX: u64 = (i32::MAX - 2) as u64;

/// A data length as memcached reads it (`strtol`: an optional `+`).
fn data_len(t: &[u8]) -> Option<u64> {
    let t = t.strip_prefix(b"+").unwrap_or(t);
    parse_u64(t).ok().filter(|&n| n <= LEN_MAX)
}

/// The answer to a line memtap's parser rejected, and the fate of the data
/// block it may have announced. `line` excludes its terminator.
pub fn rejected(line: &[u8]) -> (Answer, Swallow) {
    let mut toks = tokens(line);
    let word = toks.next().unwrap_or_default();
    let args: Vec<&[u8]> = toks.take(32).collect();
    let n = args.len();
    let last_noreply = args.last() == Some(&&b"noreply"[..]);
    if !KNOWN.contains(&word) {
        // 1.6.18: `ERROR`; newer: silent when it ends in noreply. A line
        // that looks like HTTP makes the server close the connection.
        let http = args.last().is_some_and(|t| t.starts_with(b"HTTP/"));
        let a = if last_noreply || http {
            Answer::Maybe
        } else {
            Answer::Yes
        };
        return (a, Swallow::None);
    }
    let storage = STORAGE.contains(&word);
    let count_ok = match word {
        _ if RETRIEVAL.contains(&word) => n >= 1,
        _ if storage => (4..=5).contains(&n),
        b"cas" => (5..=6).contains(&n),
        b"incr" | b"decr" | b"touch" => (2..=3).contains(&n),
        b"delete" => (1..=3).contains(&n),
        b"flush_all" => n <= 2,
        b"verbosity" | b"cache_memlimit" => (1..=2).contains(&n),
        b"lru" | b"mg" | b"ms" | b"md" | b"ma" => n >= 1,
        _ => true,
    };
    let swallow = match word {
        _ if (storage || word == b"cas") && n >= 4 => match data_len(args[3]) {
            Some(len) => Swallow::Maybe(len),
            None => Swallow::None,
        },
        b"ms" if n >= 2 => match data_len(args[1]) {
            // 1.6.18 checks the key and the token count (at most 20
            // words) before it reads the datalen; newer servers after.
            Some(len) if args[0].len() > KEY_MAX || n >= 20 => Swallow::Maybe(len),
            Some(len) => Swallow::Certain(len),
            None => Swallow::None,
        },
        _ => Swallow::None,
    };
    let checks_first = storage
        || RETRIEVAL.contains(&word)
        || matches!(word, b"cas" | b"incr" | b"decr" | b"touch" | b"delete");
    if !count_ok {
        // 1.6.18 counts tokens before it looks for noreply.
        let a = if last_noreply && checks_first {
            Answer::Maybe
        } else {
            Answer::Yes
        };
        return (a, swallow);
    }
    let honours = storage
        || match word {
            b"cas" | b"incr" | b"decr" | b"touch" | b"delete" | b"flush_all" | b"verbosity"
            | b"cache_memlimit" | b"lru" | b"watch" | b"extstore" | b"refresh_certs" => true,
            b"slabs" => args.first() == Some(&&b"automove"[..]),
            _ => false,
        };
    let a = if honours && last_noreply {
        Answer::No
    } else {
        Answer::Yes
    };
    (a, swallow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_memcached() {
        use Answer::*;
        for (line, want) in [
            (&b"delete k 10 noreply"[..], No),
            (b"delete k 10", Yes),
            (b"incr k abc noreply", No),
            (b"incr k noreply", No),
            (b"touch k noreply", No),
            (b"incr k 1 2 noreply", Maybe),
            (b"verbosity noreply", No),
            (b"verbosity", Yes),
            (b"flush_all abc noreply", No),
            (b"flush_all noreply 0", Yes),
            (b"foo noreply", Maybe),
            (b"foo", Yes),
            (b"GET k", Yes),
            (b"stats noreply", Yes),
            (b"slabs automove 9 noreply", No),
            (b"slabs reassign 1 2 noreply", Yes),
            (b"set k 0 0 1 noreply extra", Yes),
            (b"set k abc 0 1 noreply", No),
            (b"mg k noreply", Yes),
            (b"lru noreply", No),
        ] {
            assert_eq!(rejected(line).0, want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn data_blocks_follow_memcached() {
        use Swallow::*;
        for (line, want) in [
            (&b"cas foo 0 0 6 "[..], Maybe(6)),
            (b"set k 0 0 -1", None),
            (b"set k x 0 5", Maybe(5)),
            (b"set k 0 0 +3 x y", Maybe(3)),
            (b"set k 0 0", None),
            (b"ms k 2 !x", Certain(2)),
            (b"ms k x", None),
            (b"delete k 0 0", None),
        ] {
            assert_eq!(rejected(line).1, want, "{}", String::from_utf8_lossy(line));
        }
        let long = format!("ms {} 2 T0", "k".repeat(251));
        assert_eq!(rejected(long.as_bytes()).1, Maybe(2));
    }
}
