//! Key families: memcached keys collapsed into patterns, so an operator sees
//! `user:{n}:profile` once instead of a million user ids.
//!
//! A key goes through up to three steps, in this order:
//!
//! 1. **Regex rules** (`[[families.regex]]`), tried in order on the whole
//!    key. The first rule whose pattern matches rewrites every
//!    (non-overlapping) match with its replacement, in the `regex` crate's
//!    syntax (`$1`, `${1}`, `$name`, `${name}`, `$$` for a literal `$`);
//!    later rules are not tried. A rule with `final = true` produces the
//!    family as it stands and skips steps 2 and 3.
//! 2. **Prefix cut**: with `delimiter` and `prefix_segments = N`, the key is
//!    cut before the `N`th delimiter, keeping its first `N` segments (and no
//!    trailing delimiter). A key with fewer segments is kept whole.
//!    `prefix_segments = 0` turns the cut off, delimiter or not.
//! 3. **Built-in collapsing** of numbers (`digits`) and hex ids (`hex`).
//!
//! # Built-in collapsing
//!
//! Only ASCII is classified; every other byte (punctuation, control bytes,
//! UTF-8) is copied as it is and separates tokens. Escaping is the output's
//! job.
//!
//! * A *hex run* is a maximal run of `[0-9a-fA-F]`. When the byte before
//!   the run is an ASCII letter, the run's leading hex letters belong to that
//!   word and are not part of the token (`id12345678` is `id` + `12345678`,
//!   not `i` + a hex id); likewise its trailing hex letters when the byte
//!   after the run is a letter. What is left is the *core*. The one
//!   exception is a `0x`/`0X` prefix: in `0xdeadbeef01` the `x` belongs
//!   to the prefix, not to a word.
//! * A canonical UUID (`8-4-4-4-12` hex digits) starting at the core is one
//!   `{h}` token.
//! * A core becomes `{h}` when it has a hex letter and either is at least 16
//!   long or is at least 8 long and has a digit. A run of decimal digits
//!   alone is a number, never `{h}`, however long (snowflake ids, epoch
//!   milliseconds); fewer than 16 hex letters and no digit (`deadbeef`,
//!   `cafebabe`, `facade`) are taken for a word.
//! * Otherwise each maximal run of ASCII digits in the core becomes `{n}`,
//!   except a single digit right after an ASCII letter, which is kept: it
//!   is nearly always part of a name (`v2`, `s3`, `md5`, `utf8`, `ipv6`),
//!   and a migration from `v2:` to `v3:` keys is worth seeing. The price:
//!   `item7` stays `item7` while `item12` becomes `item{n}`, so single-digit
//!   ordinals glued to a word yield at most ten extra families per
//!   position; a regex rule such as `'^item\d+'` → `'item{n}'` folds them.
//!
//! The placeholders use the letters `n` and `h`, which are not hex digits,
//! so collapsing is idempotent: the family of a family is itself.
//!
//! ```text
//! user:12345:profile                               user:{n}:profile
//! session:9f86d081884c7d65                         session:{h}
//! img/2024/05/thumb_300x200.jpg                    img/{n}/{n}/thumb_{n}x{n}.jpg
//! v2:item:550e8400-e29b-41d4-a716-446655440000     v2:item:{h}
//! cache:deadbeef                                   cache:deadbeef
//! cache:deadbeefdeadbeef                           cache:{h}
//! user12345                                        user{n}
//! id12345678                                       id{n}
//! sess9f86d081884c7d65                             sess{h}
//! ts:1700000000123                                 ts:{n}
//! page7 page10                                     page7 page{n}
//! addr:0xdeadbeef01                                addr:{n}x{h}
//! ```
//!
//! # Cost
//!
//! Without regex rules, `family_into` is one pass over the key and never
//! allocates once `out` has the capacity. A regex rule costs a search per
//! rule per key; a key a rule rewrites borrows a scratch buffer from a small
//! pool (allocation-free in the steady state).

use serde::Deserialize;
use std::sync::Mutex;

/// `[families]` in the TOML config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamilyConfig {
    /// Compute families at all.
    pub enabled: bool,
    /// Runs of ASCII digits become `{n}`.
    pub digits: bool,
    /// Hex ids and UUIDs become `{h}`.
    pub hex: bool,
    /// Segment delimiter for `prefix_segments`, e.g. `":"`.
    pub delimiter: Option<String>,
    /// Keep only the first this many `delimiter`-separated segments; 0 = off.
    pub prefix_segments: usize,
    /// Rewrites tried, in order, before everything else.
    pub regex: Vec<RegexRule>,
}

impl Default for FamilyConfig {
    fn default() -> Self {
        FamilyConfig {
            enabled: true,
            digits: true,
            hex: true,
            delimiter: None,
            prefix_segments: 0,
            regex: Vec::new(),
        }
    }
}

/// `[[families.regex]]`: `pattern`, `replace` and optional `final`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRule {
    pub pattern: String,
    pub replace: String,
    /// `final` in the config: the rewritten key is the family; the prefix
    /// cut and the built-in collapsing are skipped.
    #[serde(rename = "final", default)]
    pub is_final: bool,
}

/// Compiled family rules; cheap to share between threads.
/// A collector's families by number, for keys to remember theirs
/// (`KeyStats::family`) instead of running the rules on every record:
/// with a few rules, a family was about 250 instructions of a record's
/// 3,000 in the collector, and most records are of keys seen before.
/// Number 0 is "not looked for", [`NO_FAMILY`] "none"; at most
/// [`FamilyMemo::MAX`] families get numbers, the rest [`UNNUMBERED`]
/// (their keys run the rules each time).
#[derive(Default)]
pub struct FamilyMemo {
    names: Vec<Box<[u8]>>,
    index: hashbrown::HashMap<Box<[u8]>, u32>,
    scratch: Vec<u8>,
    /// The family of the last [`UNNUMBERED`] lookup.
    unnumbered: Vec<u8>,
}

/// The key has no family.
pub const NO_FAMILY: u32 = u32::MAX;
/// The key's family had no number left: run the rules again.
pub const UNNUMBERED: u32 = u32::MAX - 1;

impl FamilyMemo {
    pub const MAX: usize = 1 << 16;

    fn intern(&mut self, f: &[u8]) -> u32 {
        if let Some(&id) = self.index.get(f) {
            return id;
        }
        if self.names.len() >= Self::MAX {
            self.unnumbered.clear();
            self.unnumbered.extend_from_slice(f);
            return UNNUMBERED;
        }
        self.names.push(f.into());
        let id = self.names.len() as u32;
        self.index.insert(f.into(), id);
        id
    }

    /// The family numbered `id` (none for [`NO_FAMILY`]; for
    /// [`UNNUMBERED`], the one just found).
    pub fn name(&self, id: u32) -> Option<&[u8]> {
        match id {
            0 | NO_FAMILY => None,
            UNNUMBERED => Some(&self.unnumbered),
            id => Some(&self.names[id as usize - 1]),
        }
    }

    /// The number to remember for a key whose family lookup gave `id`.
    pub fn memo(id: u32) -> u32 {
        if id == UNNUMBERED {
            0
        } else {
            id
        }
    }
}

pub struct FamilyRules {
    enabled: bool,
    digits: bool,
    hex: bool,
    cut: Option<(memchr::memmem::Finder<'static>, usize)>,
    rules: Vec<Rule>,
    pool: Mutex<Vec<Scratch>>,
}

struct Rule {
    re: regex::bytes::Regex,
    /// Literal bytes of the replacement, indexed by `Piece::Lit`.
    lits: Vec<u8>,
    pieces: Vec<Piece>,
    needs_groups: bool,
    is_final: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Lit(usize, usize),
    Group(usize),
}

/// Per-call working memory for regex rewrites, pooled.
struct Scratch {
    buf: Vec<u8>,
    locs: Vec<Option<regex::bytes::CaptureLocations>>,
}

impl FamilyRules {
    /// Compiles and checks a config; errors name the offending setting.
    pub fn new(cfg: &FamilyConfig) -> Result<FamilyRules, String> {
        let cut = match (&cfg.delimiter, cfg.prefix_segments) {
            (None, 0) => None,
            (Some(d), _) if d.is_empty() => {
                return Err("families.delimiter must not be empty".into())
            }
            // A delimiter with prefix_segments = 0: the cut is off.
            (Some(_), 0) => None,
            (None, n) => {
                return Err(format!(
                    "families.prefix_segments = {n} needs families.delimiter (e.g. \":\")"
                ))
            }
            (Some(d), n) => Some((memchr::memmem::Finder::new(d.as_bytes()).into_owned(), n)),
        };
        let mut rules = Vec::with_capacity(cfg.regex.len());
        for (i, r) in cfg.regex.iter().enumerate() {
            rules.push(Rule::new(i, r)?);
        }
        Ok(FamilyRules {
            enabled: cfg.enabled,
            digits: cfg.digits,
            hex: cfg.hex,
            cut,
            rules,
            pool: Mutex::new(Vec::new()),
        })
    }

    /// The family of `key` as a number in `memo` (see [`FamilyMemo`]),
    /// found with the rules when `known` is 0, else `known` itself.
    pub fn family_id(&self, key: &[u8], known: u32, memo: &mut FamilyMemo) -> u32 {
        if known != 0 {
            return known;
        }
        let mut out = std::mem::take(&mut memo.scratch);
        let id = if self.family_into(key, &mut out) {
            memo.intern(&out)
        } else {
            NO_FAMILY
        };
        memo.scratch = out;
        id
    }

    /// Whether families are computed at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Writes the family of `key` into `out` (cleared first); false, with
    /// `out` left empty, when families are disabled.
    pub fn family_into(&self, key: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        if !self.enabled {
            return false;
        }
        for (idx, rule) in self.rules.iter().enumerate() {
            let mut matches = rule.re.find_iter(key);
            let Some(first) = matches.next() else {
                continue;
            };
            let mut scratch = self.take_scratch();
            let Scratch { buf, locs } = &mut scratch;
            buf.clear();
            let mut last = 0;
            for m in std::iter::once(first).chain(matches) {
                buf.extend_from_slice(&key[last..m.start()]);
                rule.expand(&mut locs[idx], key, m.start(), buf);
                last = m.end();
            }
            buf.extend_from_slice(&key[last..]);
            if rule.is_final {
                out.extend_from_slice(buf);
            } else {
                self.finish(buf, out);
            }
            self.put_scratch(scratch);
            return true;
        }
        self.finish(key, out);
        true
    }

    /// Steps 2 and 3: the prefix cut and the built-in collapsing.
    #[inline]
    fn finish(&self, mut src: &[u8], out: &mut Vec<u8>) {
        if let Some((finder, n)) = &self.cut {
            if let Some(p) = finder.find_iter(src).nth(n - 1) {
                src = &src[..p];
            }
        }
        if self.digits || self.hex {
            collapse(src, self.digits, self.hex, out);
        } else {
            out.extend_from_slice(src);
        }
    }

    fn take_scratch(&self) -> Scratch {
        let popped = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        popped.unwrap_or_else(|| Scratch {
            buf: Vec::with_capacity(256),
            locs: (0..self.rules.len()).map(|_| None).collect(),
        })
    }

    fn put_scratch(&self, s: Scratch) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
}

impl Default for FamilyRules {
    /// The rules of `FamilyConfig::default()`.
    fn default() -> Self {
        FamilyRules::new(&FamilyConfig::default()).expect("default family config is valid")
    }
}

impl Clone for FamilyRules {
    fn clone(&self) -> Self {
        FamilyRules {
            enabled: self.enabled,
            digits: self.digits,
            hex: self.hex,
            cut: self.cut.clone(),
            rules: self.rules.clone(),
            pool: Mutex::new(Vec::new()),
        }
    }
}

impl Clone for Rule {
    fn clone(&self) -> Self {
        Rule {
            re: self.re.clone(),
            lits: self.lits.clone(),
            pieces: self.pieces.clone(),
            needs_groups: self.needs_groups,
            is_final: self.is_final,
        }
    }
}

impl std::fmt::Debug for FamilyRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyRules")
            .field("enabled", &self.enabled)
            .field("digits", &self.digits)
            .field("hex", &self.hex)
            .field(
                "cut",
                &self
                    .cut
                    .as_ref()
                    .map(|(f, n)| (String::from_utf8_lossy(f.needle()).into_owned(), *n)),
            )
            .field(
                "regex",
                &self
                    .rules
                    .iter()
                    .map(|r| (r.re.as_str(), r.is_final))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Rule {
    fn new(i: usize, r: &RegexRule) -> Result<Rule, String> {
        let what = || format!("families.regex[{i}] (pattern {:?})", r.pattern);
        if r.pattern.is_empty() {
            return Err(format!("{}: the pattern is empty", what()));
        }
        let re = regex::bytes::Regex::new(&r.pattern)
            .map_err(|e| format!("{}: bad pattern: {e}", what()))?;
        let (lits, pieces) = parse_replacement(&r.replace, &re)
            .map_err(|e| format!("{}: replacement {:?}: {e}", what(), r.replace))?;
        let needs_groups = pieces.iter().any(|p| matches!(p, Piece::Group(_)));
        Ok(Rule {
            re,
            lits,
            pieces,
            needs_groups,
            is_final: r.is_final,
        })
    }

    /// Appends the replacement for the match that starts at `start`.
    fn expand(
        &self,
        locs: &mut Option<regex::bytes::CaptureLocations>,
        key: &[u8],
        start: usize,
        buf: &mut Vec<u8>,
    ) {
        let locs = if self.needs_groups {
            let l = locs.get_or_insert_with(|| self.re.capture_locations());
            // The leftmost-first match from `start` is the one `find_iter`
            // reported (same haystack, so look-around sees the same bytes).
            let found = self.re.captures_read_at(l, key, start);
            debug_assert_eq!(found.map(|m| m.start()), Some(start));
            Some(&*l)
        } else {
            None
        };
        for p in &self.pieces {
            match *p {
                Piece::Lit(a, b) => buf.extend_from_slice(&self.lits[a..b]),
                Piece::Group(g) => {
                    if let Some((a, b)) = locs.and_then(|l| l.get(g)) {
                        buf.extend_from_slice(&key[a..b]);
                    }
                }
            }
        }
    }
}

/// Parses a replacement with the `regex` crate's rules (see
/// `regex::bytes::Regex::replace`), except that a reference to a group the
/// pattern does not have is an error rather than an empty string: `$1id`
/// names a group `1id`, a classic slip for `${1}id`.
fn parse_replacement(rep: &str, re: &regex::bytes::Regex) -> Result<(Vec<u8>, Vec<Piece>), String> {
    let mut lits = Vec::new();
    let mut pieces = Vec::new();
    let mut lit_start = 0;
    let flush = |lits: &Vec<u8>, pieces: &mut Vec<Piece>, lit_start: &mut usize| {
        if lits.len() > *lit_start {
            pieces.push(Piece::Lit(*lit_start, lits.len()));
        }
        *lit_start = lits.len();
    };
    let mut rest = rep.as_bytes();
    while !rest.is_empty() {
        let Some(i) = memchr::memchr(b'$', rest) else {
            break;
        };
        lits.extend_from_slice(&rest[..i]);
        rest = &rest[i..];
        if rest.get(1) == Some(&b'$') {
            lits.push(b'$');
            rest = &rest[2..];
            continue;
        }
        let Some((name, end)) = cap_ref(rest) else {
            lits.push(b'$');
            rest = &rest[1..];
            continue;
        };
        rest = &rest[end..];
        let group = match name.parse::<usize>() {
            Ok(g) if g < re.captures_len() => g,
            Ok(g) => {
                return Err(format!(
                    "group {g} does not exist (the pattern has groups 0 to {})",
                    re.captures_len() - 1
                ))
            }
            Err(_) => match re.capture_names().position(|n| n == Some(name)) {
                Some(g) => g,
                None => {
                    let hint = match name.find(|c: char| !c.is_ascii_digit()) {
                        Some(k) if k > 0 => {
                            format!(
                                " (write ${{{}}}{} for group {} then text)",
                                &name[..k],
                                &name[k..],
                                &name[..k]
                            )
                        }
                        _ => String::new(),
                    };
                    return Err(format!("no capture group named {name:?}{hint}"));
                }
            },
        };
        flush(&lits, &mut pieces, &mut lit_start);
        pieces.push(Piece::Group(group));
    }
    lits.extend_from_slice(rest);
    flush(&lits, &mut pieces, &mut lit_start);
    Ok((lits, pieces))
}

/// A capture reference at the start of `rep` (which starts with `$`): its
/// name and the length of the reference.
fn cap_ref(rep: &[u8]) -> Option<(&str, usize)> {
    if rep.len() <= 1 || rep[0] != b'$' {
        return None;
    }
    if rep[1] == b'{' {
        let close = memchr::memchr(b'}', &rep[2..])?;
        let name = std::str::from_utf8(&rep[2..2 + close]).ok()?;
        return Some((name, 2 + close + 1));
    }
    let n = rep[1..]
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_')
        .count();
    if n == 0 {
        return None;
    }
    // ASCII alphanumerics are valid UTF-8.
    let name = std::str::from_utf8(&rep[1..1 + n]).ok()?;
    Some((name, 1 + n))
}

const DIGIT: u8 = 1;
const HEX_LETTER: u8 = 2;
const LETTER: u8 = 4;
const HEX: u8 = DIGIT | HEX_LETTER;

/// Character classes of every byte value.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            DIGIT
        } else if matches!(c, b'a'..=b'f' | b'A'..=b'F') {
            HEX_LETTER | LETTER
        } else if c.is_ascii_alphabetic() {
            LETTER
        } else {
            0
        };
        b += 1;
    }
    t
};

#[inline(always)]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

/// Whether a canonical UUID starts at `p` and is not followed by more hex.
#[inline]
fn uuid_at(src: &[u8], p: usize) -> bool {
    let Some(u) = src.get(p..p + 36) else {
        return false;
    };
    for (j, &b) in u.iter().enumerate() {
        let ok = if matches!(j, 8 | 13 | 18 | 23) {
            b == b'-'
        } else {
            class(b) & HEX != 0
        };
        if !ok {
            return false;
        }
    }
    src.get(p + 36).is_none_or(|&b| class(b) & HEX == 0)
}

/// Whether `src[..s]` ends with a `0x` or `0X` that starts a token.
#[inline]
fn after_0x(src: &[u8], s: usize) -> bool {
    s >= 2
        && src[s - 1] | 0x20 == b'x'
        && src[s - 2] == b'0'
        && (s == 2 || class(src[s - 3]) & (LETTER | DIGIT) == 0)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// For 8 bytes, the top bit of each byte that is an ASCII digit, and of
/// each that is a-f or A-F.
#[inline(always)]
fn hex_masks(w: &[u8]) -> (u64, u64) {
    let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
    // Bytes are cut to 7 bits so that no sum carries into the next byte;
    // bytes that had the top bit set are neither.
    let ascii = !w & HI;
    let x = w & !HI;
    let digit = (x + (0x80 - 0x30) * LO) & !(x + (0x80 - 0x3a) * LO) & ascii;
    let y = x | (0x20 * LO);
    let hexl = (y + (0x80 - 0x61) * LO) & !(y + (0x80 - 0x67) * LO) & ascii;
    (digit, hexl)
}

/// The first hex byte at or after `i` (`src.len()` if none), eight bytes
/// a step: a byte loop's branch on every byte mispredicts at each word.
#[inline]
fn next_hex(src: &[u8], mut i: usize) -> usize {
    while let Some(w) = src.get(i..i + 8) {
        let (digit, hexl) = hex_masks(w);
        let hex = digit | hexl;
        if hex != 0 {
            return i + hex.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    next_hex_bytes(src, i)
}

fn next_hex_bytes(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && class(src[i]) & HEX == 0 {
        i += 1;
    }
    i
}

/// The end of the maximal run of hex digits that starts at `s` (a hex
/// byte), and the classes seen in it. Eight bytes a step: key runs are
/// ids of 8 to 32 digits, where a byte loop spent most of `collapse`.
#[inline]
fn hex_run(src: &[u8], s: usize) -> (usize, u8) {
    let mut e = s;
    let mut seen = 0u8;
    while let Some(w) = src.get(e..e + 8) {
        let (digit, hexl) = hex_masks(w);
        let other = !(digit | hexl) & HI;
        // The bytes of the run in this word: up to the first other byte.
        let upto = if other == 0 {
            u64::MAX
        } else {
            (other & other.wrapping_neg()).wrapping_sub(1)
        };
        if digit & upto != 0 {
            seen |= DIGIT;
        }
        if hexl & upto != 0 {
            seen |= HEX_LETTER | LETTER;
        }
        if other != 0 {
            return (e + other.trailing_zeros() as usize / 8, seen);
        }
        e += 8;
    }
    let (e, rest) = hex_run_bytes(src, e);
    (e, seen | rest)
}

fn hex_run_bytes(src: &[u8], mut e: usize) -> (usize, u8) {
    let mut seen = 0;
    while e < src.len() && class(src[e]) & HEX != 0 {
        seen |= class(src[e]);
        e += 1;
    }
    (e, seen)
}

/// Step 3: one pass over `src`, appending to `out`. Bytes are copied in
/// ranges; only tokens break a range.
fn collapse(src: &[u8], digits: bool, hex: bool, out: &mut Vec<u8>) {
    collapse_with::<true>(src, digits, hex, out)
}

/// Appends `b`: short pieces (a key's words between its tokens) byte by
/// byte, where a `memcpy` call costs more than the copy.
#[inline(always)]
fn put(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() <= 8 {
        out.reserve(b.len());
        for &x in b {
            out.push(x);
        }
    } else {
        out.extend_from_slice(b);
    }
}

/// `collapse`, with its word-at-a-time scans and its digits-only fast
/// path (`FAST`) or without them: the tests check that both agree.
fn collapse_with<const FAST: bool>(src: &[u8], digits: bool, hex: bool, out: &mut Vec<u8>) {
    const N: &[u8] = b"{n}";
    const H: &[u8] = b"{h}";
    let n = src.len();
    // Start of the bytes not yet copied.
    let mut lit = 0;
    let mut i = 0;
    loop {
        i = if FAST {
            next_hex(src, i)
        } else {
            next_hex_bytes(src, i)
        };
        if i >= n {
            break;
        }
        // The maximal hex run [s, e).
        let s = i;
        let (e, seen) = if FAST {
            hex_run(src, s)
        } else {
            hex_run_bytes(src, s)
        };
        i = e;
        // Fast path: a few hex letters inside a word ("user", "profile").
        if seen & DIGIT == 0 && e - s < 8 {
            continue;
        }
        // Fast path: digits only ("k:00035761", "user:42:"). No letter in
        // the run, so there is nothing to strip, and no hex token unless
        // it opens a UUID.
        if FAST && seen & HEX_LETTER == 0 && !(hex && e - s == 8 && src.get(e) == Some(&b'-')) {
            let glued = s > 0 && class(src[s - 1]) & LETTER != 0;
            if digits && !(e - s == 1 && glued) {
                put(out, &src[lit..s]);
                out.extend_from_slice(N);
                lit = e;
            }
            continue;
        }
        // Its core [cs, ce): hex letters glued to a word on either side
        // stay with the word.
        let mut cs = s;
        if s > 0 && class(src[s - 1]) & LETTER != 0 && !after_0x(src, s) {
            while cs < e && class(src[cs]) & DIGIT == 0 {
                cs += 1;
            }
        }
        if hex && e - cs == 8 && uuid_at(src, cs) {
            put(out, &src[lit..cs]);
            out.extend_from_slice(H);
            lit = cs + 36;
            i = lit;
            continue;
        }
        let mut ce = e;
        if e < n && class(src[e]) & LETTER != 0 {
            while ce > cs && class(src[ce - 1]) & DIGIT == 0 {
                ce -= 1;
            }
        }
        if cs == ce {
            continue;
        }
        if hex {
            let len = ce - cs;
            if len >= 8 {
                let mut seen = 0;
                for &b in &src[cs..ce] {
                    seen |= class(b);
                }
                let has_letter = seen & HEX_LETTER != 0;
                let has_digit = seen & DIGIT != 0;
                if has_letter && (len >= 16 || has_digit) {
                    put(out, &src[lit..cs]);
                    out.extend_from_slice(H);
                    lit = ce;
                    continue;
                }
            }
        }
        if digits {
            let mut j = cs;
            while j < ce {
                if class(src[j]) & DIGIT == 0 {
                    j += 1;
                    continue;
                }
                let a = j;
                while j < ce && class(src[j]) & DIGIT != 0 {
                    j += 1;
                }
                let glued = a > 0 && class(src[a - 1]) & LETTER != 0;
                if j - a == 1 && glued {
                    continue;
                }
                put(out, &src[lit..a]);
                out.extend_from_slice(N);
                lit = j;
            }
        }
    }
    put(out, &src[lit..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(cfg: &FamilyConfig) -> FamilyRules {
        FamilyRules::new(cfg).unwrap()
    }

    fn fam(r: &FamilyRules, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(r.family_into(key, &mut out));
        out
    }

    /// A key's remembered number gives the family the rules give; a key
    /// not looked for (0) runs them; families get one number each until
    /// `MAX`, then each lookup says `UNNUMBERED`, names the family found,
    /// and leaves the key nothing to remember.
    #[test]
    fn family_numbers_stand_for_what_the_rules_say() {
        let r = rules(&FamilyConfig::default());
        let mut m = FamilyMemo::default();
        let a = r.family_id(b"user:17:profile", 0, &mut m);
        let b = r.family_id(b"user:99:profile", 0, &mut m);
        let c = r.family_id(b"session:abc", 0, &mut m);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(m.name(a), Some(&fam(&r, b"user:17:profile")[..]));
        assert_eq!(m.name(c), Some(&fam(&r, b"session:abc")[..]));
        // Remembered: the rules are not asked (a key of another family
        // with `a` remembered keeps `a`).
        assert_eq!(r.family_id(b"session:abc", a, &mut m), a);
        assert_eq!(FamilyMemo::memo(a), a);
        assert_eq!(m.name(0), None);
        assert_eq!(m.name(NO_FAMILY), None);
        let off = FamilyRules::new(&FamilyConfig {
            enabled: false,
            ..FamilyConfig::default()
        })
        .unwrap();
        assert_eq!(off.family_id(b"user:1", 0, &mut m), NO_FAMILY);
        // Past MAX numbers.
        let mut m = FamilyMemo::default();
        for i in 0..FamilyMemo::MAX {
            assert_eq!(m.intern(format!("f{i}").as_bytes()), i as u32 + 1);
        }
        assert_eq!(m.intern(b"f7"), 8);
        let u = m.intern(b"one too many");
        assert_eq!(u, UNNUMBERED);
        assert_eq!(m.name(u), Some(&b"one too many"[..]));
        assert_eq!(FamilyMemo::memo(u), 0);
    }

    fn check(r: &FamilyRules, cases: &[(&str, &str)]) {
        for (key, want) in cases {
            let got = fam(r, key.as_bytes());
            assert_eq!(String::from_utf8_lossy(&got), *want, "key {key:?}");
        }
    }

    #[test]
    fn documented_examples() {
        check(
            &FamilyRules::default(),
            &[
                ("user:12345:profile", "user:{n}:profile"),
                ("session:9f86d081884c7d65", "session:{h}"),
                (
                    "img/2024/05/thumb_300x200.jpg",
                    "img/{n}/{n}/thumb_{n}x{n}.jpg",
                ),
                (
                    "v2:item:550e8400-e29b-41d4-a716-446655440000",
                    "v2:item:{h}",
                ),
                ("cache:deadbeef", "cache:deadbeef"),
                ("cache:deadbeefdeadbeef", "cache:{h}"),
                ("user12345", "user{n}"),
                ("id12345678", "id{n}"),
                ("sess9f86d081884c7d65", "sess{h}"),
                ("ts:1700000000123", "ts:{n}"),
                ("page7 page10", "page7 page{n}"),
                ("addr:0xdeadbeef01", "addr:{n}x{h}"),
            ],
        );
    }

    #[test]
    fn more_keys() {
        check(
            &FamilyRules::default(),
            &[
                ("", ""),
                ("0", "{n}"),
                ("a", "a"),
                ("a1", "a1"),
                ("a12", "a{n}"),
                ("1a", "{n}a"),
                (":", ":"),
                ("{n}", "{n}"),
                ("{h}", "{h}"),
                ("{n}5", "{n}{n}"),
                ("key", "key"),
                ("foo:bar", "foo:bar"),
                // Names with a single glued digit survive.
                ("md5:utf8:ipv6:s3", "md5:utf8:ipv6:s3"),
                ("sha256:abc", "sha{n}:abc"),
                ("h264", "h{n}"),
                ("a1b2c3", "a1b2c3"),
                // 8 hex with digits and letters: an id.
                ("a1b2c3d4", "{h}"),
                ("x:a1b2c3d4:y", "x:{h}:y"),
                // 7 is too short for {h}; its numbers still collapse.
                ("x:a1b2c34", "x:a1b2c{n}"),
                ("ABCDEF0123", "{h}"),
                ("tok:9F86D081884C7D65", "tok:{h}"),
                // All digits: a number, however long.
                ("1234567890123456789012345", "{n}"),
                ("snowflake:1234567890123456", "snowflake:{n}"),
                // Hex letters only: a word below 16, an id from 16.
                ("facade", "facade"),
                ("cafebabe", "cafebabe"),
                ("cafebabecafebab", "cafebabecafebab"),
                ("cafebabecafebabe", "{h}"),
                // Glued hex letters stay with the word.
                ("feed12345678", "{h}"),
                ("xfeed12345678", "xfeed{n}"),
                ("12345678feedx", "{n}feedx"),
                ("xcafebabecafebabex", "xcafebabecafebabex"),
                ("9f86d081884c7d65abcz", "{h}abcz"),
                // UUIDs: lower, upper, glued to a word, in a path; malformed
                // ones fall back to the ordinary rules.
                ("550e8400-e29b-41d4-a716-446655440000", "{h}"),
                ("550E8400-E29B-41D4-A716-446655440000", "{h}"),
                ("id550e8400-e29b-41d4-a716-446655440000", "id{h}"),
                ("/u/550e8400-e29b-41d4-a716-446655440000/x", "/u/{h}/x"),
                ("550e8400-e29b-41d4-a716-446655440000-1", "{h}-{n}"),
                (
                    "550e8400-e29b-41d4-a716-4466554400001",
                    "{h}-e{n}b-{n}d4-a{n}-{n}",
                ),
                ("550e8400e29b41d4a716446655440000", "{h}"),
                // Separators of every kind, spaces, UTF-8.
                ("a.1,2;3 4\t5", "a.{n},{n};{n} {n}\t{n}"),
                ("größe:42", "größe:{n}"),
                ("日本:123", "日本:{n}"),
                ("é5", "é{n}"),
                ("-42", "-{n}"),
                ("3.14159", "{n}.{n}"),
                ("1e10", "{n}e{n}"),
                ("0x1f", "{n}x1f"),
                ("0xdeadbeef01", "{n}x{h}"),
                ("addr:0Xdeadbeef01", "addr:{n}X{h}"),
                ("10xdeadbeef01", "{n}xdeadbeef{n}"),
                ("0xab12", "{n}xab{n}"),
            ],
        );
    }

    #[test]
    fn binary_bytes_are_copied() {
        let r = FamilyRules::default();
        assert_eq!(fam(&r, b"\x00\xff12\x01"), b"\x00\xff{n}\x01");
        assert_eq!(fam(&r, b"\x80\x80"), b"\x80\x80");
        assert_eq!(fam(&r, b"k\r\n7"), b"k\r\n{n}");
        assert_eq!(fam(&r, &[0u8; 5]), [0u8; 5]);
    }

    #[test]
    fn very_long_keys() {
        let r = FamilyRules::default();
        let key = format!("big:{}:tail", "9".repeat(100_000));
        assert_eq!(fam(&r, key.as_bytes()), b"big:{n}:tail");
        let key = format!("big:{}:tail", "ab12".repeat(50_000));
        assert_eq!(fam(&r, key.as_bytes()), b"big:{h}:tail");
        let key = "x:1".repeat(10_000);
        assert_eq!(fam(&r, key.as_bytes()), "x:{n}".repeat(10_000).as_bytes());
        let key = "word ".repeat(10_000);
        assert_eq!(fam(&r, key.as_bytes()), key.as_bytes());
    }

    #[test]
    fn switches() {
        let digits_only = rules(&FamilyConfig {
            hex: false,
            ..Default::default()
        });
        check(
            &digits_only,
            &[
                ("session:9f86d081884c7d65", "session:{n}f{n}d{n}c7d{n}"),
                (
                    "u:550e8400-e29b-41d4-a716-446655440000",
                    "u:{n}e{n}-e{n}b-{n}d4-a{n}-{n}",
                ),
                ("user:12345:profile", "user:{n}:profile"),
            ],
        );
        let hex_only = rules(&FamilyConfig {
            digits: false,
            ..Default::default()
        });
        check(
            &hex_only,
            &[
                ("session:9f86d081884c7d65:12", "session:{h}:12"),
                (
                    "v2:item:550e8400-e29b-41d4-a716-446655440000",
                    "v2:item:{h}",
                ),
            ],
        );
        let neither = rules(&FamilyConfig {
            digits: false,
            hex: false,
            ..Default::default()
        });
        check(
            &neither,
            &[("user:12345:9f86d081884c7d65", "user:12345:9f86d081884c7d65")],
        );

        let off = rules(&FamilyConfig {
            enabled: false,
            ..Default::default()
        });
        let mut out = b"stale".to_vec();
        assert!(!off.family_into(b"user:1", &mut out));
        assert!(out.is_empty());
        assert!(!off.enabled());
        assert!(FamilyRules::default().enabled());
    }

    #[test]
    fn prefix_cut() {
        let r = rules(&FamilyConfig {
            delimiter: Some(":".into()),
            prefix_segments: 2,
            ..Default::default()
        });
        check(
            &r,
            &[
                ("user:12345:profile", "user:{n}"),
                ("user:12345:profile:x", "user:{n}"),
                ("user:12345", "user:{n}"),
                ("user", "user"),
                ("", ""),
                ("::", ":"),
                (":a:b", ":a"),
            ],
        );
        let r = rules(&FamilyConfig {
            delimiter: Some("::".into()),
            prefix_segments: 1,
            ..Default::default()
        });
        check(&r, &[("App::User::42", "App"), ("a:b", "a:b"), ("::x", "")]);
        let r = rules(&FamilyConfig {
            delimiter: Some("/".into()),
            prefix_segments: 3,
            digits: false,
            hex: false,
            ..Default::default()
        });
        check(&r, &[("img/2024/05/thumb.jpg", "img/2024/05")]);
    }

    fn rule(pattern: &str, replace: &str, is_final: bool) -> RegexRule {
        RegexRule {
            pattern: pattern.into(),
            replace: replace.into(),
            is_final,
        }
    }

    #[test]
    fn regex_rules() {
        let r = rules(&FamilyConfig {
            regex: vec![
                rule(r"^(tenant:)[^:]+", "${1}{tenant}", false),
                rule(r"^item\d+", "item{n}", false),
                rule(r"^(?P<pre>raw:).*", "$pre*", true),
                rule(r"[A-Z]{2}\d{4}", "{sku}", false),
                rule(r"^user:", "U:", false),
            ],
            ..Default::default()
        });
        check(
            &r,
            &[
                // First matching rule wins, then the built-ins still run.
                ("tenant:acme:user:42", "tenant:{tenant}:user:{n}"),
                ("item7", "item{n}"),
                ("item12:v2", "item{n}:v2"),
                // `final`: verbatim, no collapsing.
                ("raw:123:abc", "raw:*"),
                // Every match of the winning rule is replaced.
                ("cart:AB1234,CD5678:7", "cart:{sku},{sku}:{n}"),
                // No rule matches: built-ins only.
                ("other:99", "other:{n}"),
                ("user:99", "U:{n}"),
            ],
        );
        let r = rules(&FamilyConfig {
            delimiter: Some(":".into()),
            prefix_segments: 2,
            regex: vec![
                rule(r"^[^:]+@", "{email}@", false),
                rule(r"^keep:", "keep:", true),
            ],
            ..Default::default()
        });
        // Regex, then the cut, then collapsing; `final` skips the cut too.
        check(
            &r,
            &[
                ("bob@example.com:7:x", "{email}@example.com:{n}"),
                ("keep:1:2:3", "keep:1:2:3"),
            ],
        );
    }

    #[test]
    fn replacement_syntax_matches_the_regex_crate() {
        let cases = [
            (r"(\w+):(\d+)", "$2-$1"),
            (r"(\w+):(\d+)", "${2}x${1}"),
            (r"(?P<a>\w+):(?P<b>\d+)", "$b$a"),
            (r"(?P<a>\w+):(?P<b>\d+)", "${b}_${a}"),
            (r"(\w+)", "$$1 $ $- ${1"),
            (r"(\w+)", "${01}"),
            (r"(\w+)(x)?", "[$2]"),
            (r"x*", "-"),
            (r"\b", "|"),
            (r"", "."),
        ];
        let keys: &[&[u8]] = &[b"", b"abc:123", b"k:1 x:22", b"xxaxx", b"\xffx\x00"];
        for (pat, rep) in cases {
            let re = regex::bytes::Regex::new(pat).unwrap();
            let (lits, pieces) = parse_replacement(rep, &re).unwrap();
            let rl = Rule {
                needs_groups: pieces.iter().any(|p| matches!(p, Piece::Group(_))),
                re: re.clone(),
                lits,
                pieces,
                is_final: true,
            };
            for key in keys {
                let want = re.replace_all(key, rep.as_bytes());
                let mut got = Vec::new();
                let mut locs = None;
                let mut last = 0;
                for m in re.find_iter(key) {
                    got.extend_from_slice(&key[last..m.start()]);
                    rl.expand(&mut locs, key, m.start(), &mut got);
                    last = m.end();
                }
                got.extend_from_slice(&key[last..]);
                assert_eq!(got, &*want, "pattern {pat:?} replace {rep:?} key {key:?}");
            }
        }
    }

    #[test]
    fn bad_configs() {
        let err = |cfg: FamilyConfig| FamilyRules::new(&cfg).unwrap_err();
        let e = err(FamilyConfig {
            regex: vec![rule("ok", "", false), rule("user:(\\d+", "x", false)],
            ..Default::default()
        });
        assert!(
            e.starts_with("families.regex[1] (pattern \"user:(\\\\d+\"): bad pattern: "),
            "{e}"
        );
        assert!(e.contains("unclosed group"), "{e}");
        assert_eq!(
            err(FamilyConfig {
                regex: vec![rule("", "x", false)],
                ..Default::default()
            }),
            "families.regex[0] (pattern \"\"): the pattern is empty"
        );
        assert_eq!(
            err(FamilyConfig {
                regex: vec![rule("^(a)", "$1id", false)],
                ..Default::default()
            }),
            "families.regex[0] (pattern \"^(a)\"): replacement \"$1id\": no capture group \
             named \"1id\" (write ${1}id for group 1 then text)"
        );
        assert_eq!(
            err(FamilyConfig {
                regex: vec![rule("^(a)", "$2", false)],
                ..Default::default()
            }),
            "families.regex[0] (pattern \"^(a)\"): replacement \"$2\": group 2 does not \
             exist (the pattern has groups 0 to 1)"
        );
        assert_eq!(
            err(FamilyConfig {
                regex: vec![rule("^a", "${name}", false)],
                ..Default::default()
            }),
            "families.regex[0] (pattern \"^a\"): replacement \"${name}\": no capture group \
             named \"name\""
        );
        assert_eq!(
            err(FamilyConfig {
                delimiter: Some(String::new()),
                prefix_segments: 1,
                ..Default::default()
            }),
            "families.delimiter must not be empty"
        );
        // A delimiter alone is allowed: prefix_segments = 0 is "off".
        let r = rules(&FamilyConfig {
            delimiter: Some(":".into()),
            ..Default::default()
        });
        check(&r, &[("a:1:b", "a:{n}:b")]);
        assert_eq!(
            err(FamilyConfig {
                prefix_segments: 2,
                ..Default::default()
            }),
            "families.prefix_segments = 2 needs families.delimiter (e.g. \":\")"
        );
        // Bad rules are rejected even while families are disabled.
        assert!(FamilyRules::new(&FamilyConfig {
            enabled: false,
            regex: vec![rule("(", "", false)],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn toml_config() {
        let cfg: FamilyConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, FamilyConfig::default());
        let cfg: FamilyConfig = toml::from_str(
            r#"
            digits = false
            delimiter = ":"
            prefix_segments = 3
            [[regex]]
            pattern = '^(tenant:)[^:]+'
            replace = '${1}{tenant}'
            [[regex]]
            pattern = '^raw:'
            replace = 'raw:'
            final = true
            "#,
        )
        .unwrap();
        assert!(cfg.enabled && !cfg.digits && cfg.hex);
        assert_eq!(cfg.delimiter.as_deref(), Some(":"));
        assert_eq!(cfg.prefix_segments, 3);
        assert_eq!(
            cfg.regex,
            [
                rule("^(tenant:)[^:]+", "${1}{tenant}", false),
                rule("^raw:", "raw:", true)
            ]
        );
        FamilyRules::new(&cfg).unwrap();
        let e = toml::from_str::<FamilyConfig>("digit = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("digit"), "{e}");
        let e = toml::from_str::<FamilyConfig>("[[regex]]\npattern = 'x'\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("replace"), "{e}");
        let e =
            toml::from_str::<FamilyConfig>("[[regex]]\npattern = 'x'\nreplace = ''\nfinal = 1\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("final") || e.contains("bool"), "{e}");
    }

    #[test]
    fn out_is_reused() {
        let r = rules(&FamilyConfig {
            regex: vec![rule(r"^(t:)\w+", "${1}{t}", false)],
            ..Default::default()
        });
        let mut out = Vec::with_capacity(1024);
        let ptr = out.as_ptr();
        for key in [&b"user:1:x"[..], b"t:abc:12", b"", b"zz", b"t:abc:12"] {
            out.extend_from_slice(b"junk");
            r.family_into(key, &mut out);
            assert_eq!(out.as_ptr(), ptr);
        }
        assert_eq!(out, b"t:{t}:{n}");
        // A clone works on its own pool.
        assert_eq!(fam(&r.clone(), b"t:x:1"), b"t:{t}:{n}");
        assert!(format!("{r:?}").contains("FamilyRules"));
    }

    #[test]
    fn shared_between_threads() {
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<FamilyRules>();
        let r = std::sync::Arc::new(rules(&FamilyConfig {
            regex: vec![rule(r"^(t:)(\w+)", "${1}<$2>", false)],
            ..Default::default()
        }));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..2000 {
                        let key = format!("t:w{t}x:{i}");
                        r.family_into(key.as_bytes(), &mut out);
                        assert_eq!(out, format!("t:<w{t}x>:{{n}}").as_bytes());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    /// Not a benchmark, not asserted: prints ns/key for a realistic mix
    /// (`cargo test --release --lib families::tests::timing -- --nocapture`).
    #[test]
    fn timing() {
        let keys: Vec<Vec<u8>> = (0..1024u64)
            .map(|i| match i % 6 {
                0 => format!("user:{}:profile", i * 7919).into_bytes(),
                1 => format!("session:{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).into_bytes(),
                2 => format!("img/2024/05/thumb_{i}x200.jpg").into_bytes(),
                3 => format!("v2:item:550e8400-e29b-41d4-a716-{:012x}", i).into_bytes(),
                4 => format!("memtier-{}", i * 31).into_bytes(),
                _ => b"cache:deadbeef:config".to_vec(),
            })
            .collect();
        let mean_len = keys.iter().map(|k| k.len()).sum::<usize>() as f64 / keys.len() as f64;
        let plain = FamilyRules::default();
        let with_regex = rules(&FamilyConfig {
            regex: vec![
                rule(r"^(tenant:)[^:]+", "${1}{tenant}", false),
                rule(r"^memtier-", "mt-", false),
            ],
            ..Default::default()
        });
        let mut out = Vec::with_capacity(256);
        let rounds = if cfg!(debug_assertions) { 20 } else { 2000 };
        for (name, r) in [("built-ins", &plain), ("2 regex rules", &with_regex)] {
            let t = std::time::Instant::now();
            let mut total = 0usize;
            for _ in 0..rounds {
                for k in &keys {
                    r.family_into(std::hint::black_box(k), &mut out);
                    total += out.len();
                }
            }
            let ns = t.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64;
            std::hint::black_box(total);
            println!("family_into, {name}: {ns:.1} ns/key (mean key {mean_len:.1} bytes)");
        }
    }

    fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
        let alphabet: Vec<u8> = b"0123456789abcdefABCxyzXxn{}h:-_/. \xff\x00".to_vec();
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(proptest::sample::select(alphabet), 0..80),
            (
                proptest::collection::vec(proptest::sample::select(b"0a1bx:-".to_vec()), 0..6),
                proptest::collection::vec(proptest::sample::select(b"0a1bx:-".to_vec()), 0..6),
            )
                .prop_map(|(a, b)| {
                    let mut k = a;
                    k.extend_from_slice(b"550e8400-e29b-41d4-a716-446655440000");
                    k.extend_from_slice(&b);
                    k
                }),
        ]
    }

    /// The word-at-a-time classes are the byte table's, for every byte
    /// value in every lane, beside every other value.
    #[test]
    fn hex_masks_agree_with_the_class_table() {
        for b in 0..=255u8 {
            for other in [b'0', b'g', 0x80, 0xff, b'/', b':', b'`', b'F'] {
                for lane in 0..8 {
                    let mut w = [other; 8];
                    w[lane] = b;
                    let (digit, hexl) = hex_masks(&w);
                    let bit = 0x80u64 << (8 * lane);
                    assert_eq!(
                        digit & bit != 0,
                        class(b) & DIGIT != 0,
                        "{b:#x} lane {lane}"
                    );
                    assert_eq!(
                        hexl & bit != 0,
                        class(b) & HEX_LETTER != 0,
                        "{b:#x} lane {lane}"
                    );
                }
            }
        }
    }

    /// Every byte value at every position of runs of digits and of hex
    /// letters, long and short: the fast paths give what the byte loops
    /// give.
    #[test]
    fn word_scans_agree_with_byte_scans() {
        let bases: [&[u8]; 5] = [
            b"k:00035761234567890123",
            b"x:deadbeefcafebabe0123",
            b"id9-12345678-1234-1234-1234-123456789012z",
            b"user:42:profile:v2",
            b"0x1f2e3d4c5b6a79889",
        ];
        let mut fast = Vec::new();
        let mut slow = Vec::new();
        for base in bases {
            for p in 0..base.len() {
                for b in 0..=255u8 {
                    let mut k = base.to_vec();
                    k[p] = b;
                    for cut in [k.len(), p + 1, p + 8] {
                        let k = &k[..cut.min(k.len())];
                        for (digits, hex) in [(true, true), (true, false), (false, true)] {
                            fast.clear();
                            slow.clear();
                            collapse_with::<true>(k, digits, hex, &mut fast);
                            collapse_with::<false>(k, digits, hex, &mut slow);
                            assert_eq!(
                                fast,
                                slow,
                                "{:?} {digits} {hex}",
                                String::from_utf8_lossy(k)
                            );
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn fast_and_byte_paths_agree(key in key_strategy(), digits: bool, hex: bool) {
            let mut fast = Vec::new();
            let mut slow = Vec::new();
            collapse_with::<true>(&key, digits, hex, &mut fast);
            collapse_with::<false>(&key, digits, hex, &mut slow);
            prop_assert_eq!(fast, slow, "key {:?}", String::from_utf8_lossy(&key));
        }

        #[test]
        fn never_panics_and_is_idempotent(key in key_strategy(), digits: bool, hex: bool) {
            let r = rules(&FamilyConfig { digits, hex, ..Default::default() });
            let once = fam(&r, &key);
            let twice = fam(&r, &once);
            prop_assert_eq!(&twice, &once, "key {:?}", String::from_utf8_lossy(&key));
            if !digits && !hex {
                prop_assert_eq!(&once, &key);
            }
        }

        #[test]
        fn rules_and_cuts_never_panic(key in key_strategy(), segs in 0usize..4) {
            let r = rules(&FamilyConfig {
                delimiter: (segs > 0).then(|| ":".to_string()),
                prefix_segments: segs,
                regex: vec![rule(r"x+", "-", false), rule(r"(a)(b)?", "$2$1", true)],
                ..Default::default()
            });
            let mut out = Vec::new();
            prop_assert!(r.family_into(&key, &mut out));
        }
    }
}
