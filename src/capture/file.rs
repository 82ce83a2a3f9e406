//! Capture files (pcap and pcapng, plain, gzip or zstd, or on standard
//! input) read in order as one capture.
//!
//! Framing is pcap-parser's streaming reader over a circular buffer; a
//! `Frame` borrows that buffer, so reading allocates nothing per frame.
//! Compression is told by magic bytes, never by the file name.
//!
//! What can go wrong, and what happens:
//! * a file that is not pcap/pcapng (or is compressed garbage): an error
//!   naming the file and its first bytes;
//! * a file that ends in the middle of a record (or whose compressed stream
//!   is cut): `truncated_files` is counted, nothing is said, the next file
//!   is read;
//! * a corrupt record header in a legacy pcap file: `capture_errors` is
//!   counted, a warning is queued for [`FileSource::take_warnings`], and
//!   reading goes on at the next plausible record (a header with a sane
//!   timestamp and length whose successor is sane too); the bytes passed
//!   over are counted in `capture_skipped_bytes`;
//! * a corrupt block in a pcapng file (whose blocks carry no marker to
//!   resynchronise on): `capture_errors` is counted, a warning is queued,
//!   the rest of that file is skipped;
//! * a file that yields no packet at all (empty, only a file header, cut
//!   inside its header or first record): one warning naming it; an empty
//!   file counts nothing (nothing in it was given up).

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{create_reader, Block, PcapBlockOwned, PcapError};

use super::mapped::Mapped;
use super::Frame;
use crate::stats::Counters;

/// Initial size of the reader's circular buffer (must hold the largest block).
const BUF_CAPACITY: usize = 1 << 20;
/// Largest block accepted before a file is declared corrupt (Wireshark's
/// pcapng limit; far above any legacy pcap record libpcap accepts).
const MAX_BLOCK: usize = 16 << 20;
/// libpcap's MAXIMUM_SNAPLEN: a legacy record longer than this and than the
/// file's snap length is corrupt.
const LEGACY_MAX_SNAPLEN: usize = 262_144;
/// Read buffer under a decompressor.
const DECOMP_INPUT_BUF: usize = 256 << 10;
/// Warnings kept until taken (the first ones of the run).
const MAX_WARNINGS: usize = 20;

const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// Legacy pcap magics as they appear in the file: (bytes, little-endian).
const PCAP_MAGICS: [([u8; 4], bool); 5] = [
    ([0xd4, 0xc3, 0xb2, 0xa1], true),  // µs, little-endian
    ([0xa1, 0xb2, 0xc3, 0xd4], false), // µs, big-endian
    ([0x4d, 0x3c, 0xb2, 0xa1], true),  // ns, little-endian
    ([0xa1, 0xb2, 0x3c, 0x4d], false), // ns, big-endian
    ([0x34, 0xcd, 0xb2, 0xa1], true),  // Kuznetzov's modified pcap
];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// One or several capture files read in order as one capture.
pub struct FileSource {
    inputs: Vec<Input>,
    /// Index in `inputs` of the next file to open.
    next_input: usize,
    /// Index in `inputs` of the file being read (or last read).
    cur_input: usize,
    cur: Option<OpenFile>,
    /// The current file instead of `cur` when it is an uncompressed legacy
    /// pcap file, read in place.
    mapped: Option<MappedFile>,
    /// Bytes of the current block to consume before reading the next one
    /// (the previous `Frame` borrowed them).
    pending_consume: usize,
    /// Raw (compressed) bytes read from files already finished.
    bytes_done: u64,
    /// CPU of the threads that mapped finished files' pages ahead.
    ahead_ns: u64,
    total: Option<u64>,
    frame_no: u64,
    /// Timestamp of the last frame (for pcapng Simple Packet Blocks).
    last_ts: u64,
    warnings: Vec<String>,
    warnings_total: usize,
    /// A warning raised while parsing a block, moved to `warnings`.
    warned: Option<String>,
    /// Counts from opening the first file in `open` (before the caller's
    /// counters were at hand), added on the first `next_frame`.
    early: Option<Counters>,
    /// Frames read from the current file.
    file_frames: u64,
}

struct Input {
    path: PathBuf,
    /// As given on the command line ("-" for standard input).
    name: String,
    stdin: bool,
}

impl Input {
    fn display(&self) -> &str {
        if self.stdin {
            "standard input"
        } else {
            &self.name
        }
    }
}

/// Shared between the reader chain (inside pcap-parser's boxed reader) and
/// the source.
#[derive(Default)]
struct ReadState {
    /// Raw bytes read from the file (before decompression).
    raw_bytes: AtomicU64,
    /// The raw file hit its end.
    raw_eof: AtomicBool,
    /// The decompressor found its stream cut short.
    truncated: AtomicBool,
    /// The last read error, for the warning.
    error: Mutex<Option<String>>,
}

/// An uncompressed legacy pcap file read from a memory map: frames borrow
/// the map, and the record headers are parsed here (16 bytes each).
struct MappedFile {
    map: Mapped,
    /// Offset of the next record header.
    pos: usize,
    /// Legacy, never the modified format.
    format: Format,
    last_sec: Option<u32>,
    damaged: bool,
    /// Offset last told to the map (`Mapped::reached`).
    reported: usize,
}

/// Mapped bytes read between two reports of where the reader is.
const MAP_REPORT_EVERY: usize = 1 << 20;

struct OpenFile {
    reader: Box<dyn PcapReaderIterator + Send>,
    state: Arc<ReadState>,
    capacity: usize,
    format: Format,
    /// pcapng: byte order of the current section.
    ng_big_endian: bool,
    /// pcapng: interfaces of the current section.
    ifaces: Vec<Iface>,
    /// Warned already about a frame on an undeclared interface.
    warned_iface: bool,
    /// Legacy pcap: looking for the next plausible record after a corrupt
    /// header, from this offset of the buffer.
    resync_from: Option<usize>,
    /// Legacy pcap: seconds of the last good record, to judge candidates.
    last_sec: Option<u32>,
    /// A corruption was reported for this file.
    damaged: bool,
}

#[derive(Clone, Copy)]
enum Format {
    Legacy {
        little_endian: bool,
        modified: bool,
        nanos: bool,
        linktype: u32,
        snaplen: u32,
    },
    PcapNg,
}

#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second.
    units: u64,
    /// if_tsoffset, in nanoseconds.
    offset_ns: i128,
}

/// Where a frame lies in the reader's buffer, and what it is.
#[derive(Clone, Copy)]
struct FrameInfo {
    consume: usize,
    ptr: usize,
    len: usize,
    ts: u64,
    linktype: u32,
    wire_len: u32,
}

enum Next {
    Frame(FrameInfo),
    Skip(usize),
    Refill,
    Grow,
    /// A corrupt legacy record header: look for the next plausible one.
    Resync(String),
    End(End),
}

enum End {
    Eof,
    Truncated,
    /// A mapped file cut short while being read (`Mapped::shrunk`).
    Shrunk,
    ReadError,
    Corrupt(String),
}

impl FileSource {
    /// Checks every input exists and opens the first one (so a bad first
    /// file is reported at once). `-` is standard input.
    pub fn open(paths: &[PathBuf]) -> anyhow::Result<FileSource> {
        if paths.is_empty() {
            return Err(anyhow!("no capture file given"));
        }
        let mut inputs = Vec::with_capacity(paths.len());
        let mut total = Some(0u64);
        for p in paths {
            let stdin = p.as_os_str() == "-";
            let name = p.to_string_lossy().into_owned();
            if stdin {
                total = None;
            } else {
                let md = std::fs::metadata(p).with_context(|| format!("cannot open {name}"))?;
                if md.is_dir() {
                    return Err(anyhow!("{name} is a directory, not a capture file"));
                }
                if md.is_file() {
                    total = total.map(|t| t + md.len());
                } else {
                    total = None;
                }
            }
            inputs.push(Input {
                path: p.clone(),
                name,
                stdin,
            });
        }
        let mut src = FileSource {
            inputs,
            next_input: 0,
            cur_input: 0,
            cur: None,
            mapped: None,
            pending_consume: 0,
            bytes_done: 0,
            ahead_ns: 0,
            total,
            frame_no: 0,
            last_ts: 0,
            warnings: Vec::new(),
            warnings_total: 0,
            warned: None,
            early: None,
            file_frames: 0,
        };
        // Open the first file now so that garbage is reported before any
        // work starts; its counters are folded in on the first next_frame.
        let mut early = Counters::default();
        src.open_next_file(&mut early)?;
        src.early = Some(early);
        Ok(src)
    }

    /// The next frame of the capture, or `None` at the end of the last file.
    /// The frame borrows the reader's buffer until the next call.
    pub fn next_frame(&mut self, c: &mut Counters) -> anyhow::Result<Option<Frame<'_>>> {
        if let Some(early) = self.early.take() {
            c.add(&early);
        }
        let info = loop {
            if let Some(m) = self.mapped.as_mut() {
                match next_mapped(m) {
                    Next::Frame(info) => break info,
                    Next::Resync(msg) => self.resync_mapped(msg, c),
                    Next::End(end) => self.end_mapped(end, c),
                    Next::Skip(_) | Next::Refill | Next::Grow => {
                        unreachable!("a mapped file is read whole")
                    }
                }
                continue;
            }
            let Some(f) = self.cur.as_mut() else {
                if self.next_input >= self.inputs.len() {
                    return Ok(None);
                }
                self.open_next_file(c)?;
                continue;
            };
            if self.pending_consume > 0 {
                f.reader.consume(self.pending_consume);
                self.pending_consume = 0;
            }
            if let Some(from) = f.resync_from {
                let exhausted = f.reader.reader_exhausted();
                match scan_legacy(f.reader.data(), from, &f.format, f.last_sec, exhausted) {
                    Scan::Found(p) => {
                        f.reader.consume(p);
                        c.capture_skipped_bytes += p as u64;
                        f.resync_from = None;
                    }
                    Scan::More(p) => {
                        f.reader.consume(p);
                        c.capture_skipped_bytes += p as u64;
                        f.resync_from = Some(0);
                        if f.reader.refill().is_err() {
                            self.end_file(End::ReadError, c);
                        }
                    }
                    Scan::Nothing(n) => {
                        f.reader.consume(n);
                        c.capture_skipped_bytes += n as u64;
                        self.end_file(End::Eof, c);
                    }
                }
                continue;
            }
            match next_block(f, &mut self.last_ts, &mut self.warned) {
                Next::Frame(info) => break info,
                Next::Skip(n) => f.reader.consume(n),
                Next::Refill => {
                    let before = f.reader.data().len();
                    if f.reader.refill().is_err() {
                        self.end_file(End::ReadError, c);
                        continue;
                    }
                    if f.reader.data().len() == before && !f.reader.reader_exhausted() {
                        // No room to read into: the block is larger than the buffer.
                        if !grow(f, f.capacity * 2) {
                            let msg = format!("a block larger than {} bytes", f.capacity);
                            self.end_file(End::Corrupt(msg), c);
                        }
                    }
                }
                Next::Grow => match block_len_hint(f) {
                    Ok(n) if grow(f, (n + 4096).max(f.capacity * 2).min(MAX_BLOCK + 4096)) => {
                        if f.reader.refill().is_err() {
                            self.end_file(End::ReadError, c);
                        }
                    }
                    Ok(n) => self.end_file(End::Corrupt(format!("block length {n}")), c),
                    Err(msg) if can_resync(&f.format) => self.start_resync(msg, c),
                    Err(msg) => self.end_file(End::Corrupt(msg), c),
                },
                Next::Resync(msg) => self.start_resync(msg, c),
                Next::End(end) => self.end_file(end, c),
            }
            if let Some(w) = self.warned.take() {
                let name = self.inputs[self.cur_input].display();
                self.warn(format!("{name}: {w}"));
            }
        };
        // The block is still in the buffer (nothing consumed or refilled
        // since it was parsed); find it again by address.
        self.pending_consume = info.consume;
        self.frame_no += 1;
        self.file_frames += 1;
        self.last_ts = info.ts;
        c.packets += 1;
        c.bytes += info.len as u64;
        if (info.len as u64) < u64::from(info.wire_len) {
            c.snaplen_truncated += 1;
        }
        if let Some(m) = self.mapped.as_ref() {
            // `ptr` is an offset into the map.
            let data = m
                .map
                .bytes()
                .get(info.ptr..info.ptr + info.len)
                .ok_or_else(|| anyhow!("internal: frame outside the mapped file"))?;
            return Ok(Some(Frame {
                ts: info.ts,
                frame_no: self.frame_no,
                linktype: info.linktype,
                wire_len: info.wire_len,
                data,
            }));
        }
        let f = self
            .cur
            .as_ref()
            .ok_or_else(|| anyhow!("internal: frame without a file"))?;
        let buf = f.reader.data();
        let start = info.ptr.wrapping_sub(buf.as_ptr() as usize);
        let data = start
            .checked_add(info.len)
            .and_then(|end| buf.get(start..end))
            .ok_or_else(|| anyhow!("internal: frame outside the reader's buffer"))?;
        Ok(Some(Frame {
            ts: info.ts,
            frame_no: self.frame_no,
            linktype: info.linktype,
            wire_len: info.wire_len,
            data,
        }))
    }

    /// Raw bytes read so far from all inputs (compressed size for
    /// compressed files), for a progress bar against [`Self::total_bytes`].
    pub fn bytes_read(&self) -> u64 {
        self.bytes_done
            + self.mapped.as_ref().map_or(0, |m| m.pos as u64)
            + self
                .cur
                .as_ref()
                .map_or(0, |f| f.state.raw_bytes.load(Ordering::Relaxed))
    }

    /// CPU time (ns) of the helper threads that mapped the pages of the
    /// files finished so far ahead of the reader (`Mapped::start_ahead`):
    /// part of reading, though not on the reading thread.
    pub fn helper_cpu_ns(&self) -> u64 {
        self.ahead_ns
    }

    /// Sum of the input files' sizes; `None` when an input is standard
    /// input or another non-regular file (size unknown).
    pub fn total_bytes(&self) -> Option<u64> {
        self.total
    }

    /// The input being read, as given (`-` for standard input).
    pub fn current_file(&self) -> &str {
        self.inputs
            .get(self.cur_input)
            .map_or("", |i| i.name.as_str())
    }

    /// Warnings queued since the last call (corrupt blocks, read errors).
    /// Only the first 20 of the whole run are kept; the rest are counted in
    /// `capture_errors` only.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn warn(&mut self, msg: String) {
        if self.warnings_total < MAX_WARNINGS {
            self.warnings.push(msg);
        }
        self.warnings_total += 1;
    }

    /// A corrupt legacy record header: counted and said once, then the
    /// records are looked for again from the next byte.
    fn start_resync(&mut self, msg: String, c: &mut Counters) {
        let Some(f) = self.cur.as_mut() else { return };
        c.capture_errors += 1;
        f.damaged = true;
        f.resync_from = Some(1);
        let at = f.reader.consumed();
        let name = self.inputs[self.cur_input].display().to_string();
        self.warn(format!(
            "{name}: corrupt record header at byte {at} ({msg}); skipping to the next plausible record"
        ));
    }

    /// A corrupt record header in a mapped file: as `start_resync`, and
    /// the whole rest of the file is at hand to look in.
    fn resync_mapped(&mut self, msg: String, c: &mut Counters) {
        let Some(m) = self.mapped.as_mut() else {
            return;
        };
        c.capture_errors += 1;
        m.damaged = true;
        let at = m.pos;
        let d = &m.map.bytes()[m.pos..];
        let skip = match scan_legacy(d, 1, &m.format, m.last_sec, true) {
            Scan::Found(p) => p,
            Scan::Nothing(n) | Scan::More(n) => n,
        };
        m.pos += skip;
        c.capture_skipped_bytes += skip as u64;
        let name = self.inputs[self.cur_input].display().to_string();
        self.warn(format!(
            "{name}: corrupt record header at byte {at} ({msg}); skipping to the next plausible record"
        ));
    }

    /// The end of a mapped file: counted and said as `end_file` does.
    fn end_mapped(&mut self, end: End, c: &mut Counters) {
        let Some(mut m) = self.mapped.take() else {
            return;
        };
        self.ahead_ns += m.map.stop_ahead();
        self.bytes_done += m.map.bytes().len() as u64;
        let name = self.inputs[self.cur_input].display().to_string();
        if self.file_frames == 0 && !m.damaged {
            match end {
                End::Eof => self.warn(format!("{name}: no packets (only the file header)")),
                End::Truncated => self.warn(format!(
                    "{name}: no packets (the file ends inside its first record)"
                )),
                _ => {}
            }
        }
        if matches!(end, End::Shrunk) {
            self.warn(format!(
                "{name}: the file was cut short while being read ({} bytes when opened); \
                 stopped at byte {}, the rest is lost",
                m.map.bytes().len(),
                m.pos
            ));
        }
        match end {
            End::Eof => {}
            End::Truncated | End::Shrunk => c.truncated_files += 1,
            End::ReadError | End::Corrupt(_) => c.capture_errors += 1,
        }
    }

    fn end_file(&mut self, end: End, c: &mut Counters) {
        self.pending_consume = 0;
        let Some(f) = self.cur.take() else { return };
        let st = &f.state;
        let name = self.inputs[self.cur_input].display().to_string();
        self.bytes_done += st.raw_bytes.load(Ordering::Relaxed);
        let cut = st.truncated.load(Ordering::Relaxed);
        if self.file_frames == 0 && !f.damaged {
            match end {
                End::Eof if !cut => {
                    self.warn(format!("{name}: no packets (only the file header)"));
                }
                End::Eof | End::Truncated => self.warn(format!(
                    "{name}: no packets (the file ends inside its first record)"
                )),
                _ => {}
            }
        }
        match end {
            End::Eof if cut => c.truncated_files += 1,
            End::Eof => {}
            End::Truncated | End::Shrunk => c.truncated_files += 1,
            End::ReadError if cut || st.raw_eof.load(Ordering::Relaxed) => c.truncated_files += 1,
            End::ReadError => {
                c.capture_errors += 1;
                let e = st.error.lock().ok().and_then(|mut e| e.take());
                let e = e.unwrap_or_else(|| "read error".to_string());
                self.warn(format!(
                    "{name}: {e} after {} bytes; skipping the rest of the file",
                    f.reader.consumed()
                ));
            }
            End::Corrupt(msg) => {
                c.capture_errors += 1;
                self.warn(
                    format!("{name}: corrupt capture data at byte {} ({msg}); skipping the rest of the file", f.reader.consumed()),
                );
            }
        }
    }

    /// Opens `inputs[next_input]`. A file too short to hold its header is
    /// counted as truncated and leaves `cur` empty.
    fn open_next_file(&mut self, c: &mut Counters) -> anyhow::Result<()> {
        let idx = self.next_input;
        self.next_input += 1;
        self.cur_input = idx;
        self.pending_consume = 0;
        self.file_frames = 0;
        let input = &self.inputs[idx];
        let name = input.display().to_string();
        let state = Arc::new(ReadState::default());
        let raw: Box<dyn Read + Send> = if input.stdin {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(&input.path).with_context(|| format!("cannot open {name}"))?)
        };
        let mut raw = Counting {
            inner: raw,
            state: state.clone(),
        };
        c.files += 1;

        let prefix = read_up_to(&mut raw, 4).with_context(|| format!("cannot read {name}"))?;
        let stream = Cursor::new(prefix.clone()).chain(raw);
        let (dec, what): (Box<dyn Read + Send>, &str) = if prefix.starts_with(&GZIP_MAGIC) {
            let br = BufReader::with_capacity(DECOMP_INPUT_BUF, stream);
            (
                Box::new(flate2::bufread::MultiGzDecoder::new(br)),
                "gzip-compressed ",
            )
        } else if prefix == ZSTD_MAGIC {
            let br = BufReader::with_capacity(DECOMP_INPUT_BUF, stream);
            let d = zstd::stream::read::Decoder::with_buffer(br)
                .with_context(|| format!("{name}: cannot start the zstd decoder"))?;
            (Box::new(d), "zstd-compressed ")
        } else {
            (Box::new(stream), "")
        };
        let mut dec = Trap {
            inner: dec,
            state: state.clone(),
        };

        let mut head = read_up_to(&mut dec, 4).with_context(|| format!("cannot read {name}"))?;
        let truncated = |s: &mut Self, c: &mut Counters, st: &ReadState| {
            let raw = st.raw_bytes.load(Ordering::Relaxed);
            s.bytes_done += raw;
            // An empty file lost nothing: the warning says what it is, and
            // the health table (input given up) stays clean.
            if raw == 0 {
                s.warn(format!("{name}: no packets (an empty file)"));
            } else {
                c.truncated_files += 1;
                s.warn(format!(
                    "{name}: no packets (the file ends inside its header)"
                ));
            }
        };
        if head.len() < 4 {
            let known = head.is_empty()
                || PCAPNG_SHB.starts_with(&head)
                || PCAP_MAGICS.iter().any(|(m, _)| m.starts_with(&head));
            if known {
                truncated(self, c, &state);
                return Ok(());
            }
            return Err(anyhow!(
                "{name}: not a {what}pcap or pcapng file (only {} bytes: {})",
                head.len(),
                hex(&head)
            ));
        }
        let magic = [head[0], head[1], head[2], head[3]];
        let format = if magic == PCAPNG_SHB {
            // Read the whole Section Header Block, so that pcap-parser's
            // format detection sees it in its first read.
            head.extend(read_up_to(&mut dec, 8).with_context(|| format!("cannot read {name}"))?);
            if head.len() < 12 {
                truncated(self, c, &state);
                return Ok(());
            }
            let big = match [head[8], head[9], head[10], head[11]] {
                [0x1a, 0x2b, 0x3c, 0x4d] => true,
                [0x4d, 0x3c, 0x2b, 0x1a] => false,
                bom => {
                    return Err(anyhow!(
                        "{name}: not a valid pcapng file (bad byte-order magic {})",
                        hex(&bom)
                    ));
                }
            };
            let len = u32_at(&head, 4, big) as usize;
            if len < 28 || len % 4 != 0 || len > BUF_CAPACITY / 2 {
                return Err(anyhow!(
                    "{name}: not a valid pcapng file (section header length {len})"
                ));
            }
            head.extend(
                read_up_to(&mut dec, len - 12).with_context(|| format!("cannot read {name}"))?,
            );
            if head.len() < len {
                truncated(self, c, &state);
                return Ok(());
            }
            Format::PcapNg
        } else if let Some(&(_, le)) = PCAP_MAGICS.iter().find(|(m, _)| *m == magic) {
            head.extend(read_up_to(&mut dec, 20).with_context(|| format!("cannot read {name}"))?);
            if head.len() < 24 {
                truncated(self, c, &state);
                return Ok(());
            }
            if what.is_empty() && !input.stdin && magic != PCAP_MAGICS[4].0 {
                if let Some(m) = map_legacy(&input.path, le, magic) {
                    self.mapped = Some(m);
                    return Ok(());
                }
            }
            Format::Legacy {
                little_endian: le,
                modified: magic == PCAP_MAGICS[4].0,
                nanos: false,
                linktype: 0,
                snaplen: 0,
            }
        } else {
            return Err(anyhow!(
                "{name}: not a {what}pcap or pcapng file (magic 0x{:02x}{:02x}{:02x}{:02x})",
                magic[0],
                magic[1],
                magic[2],
                magic[3]
            ));
        };
        let body = Cursor::new(head).chain(dec);
        let reader = create_reader(BUF_CAPACITY, body).map_err(|e| {
            anyhow!(
                "{name}: not a valid {what}pcap or pcapng file ({})",
                short_err(&e)
            )
        })?;
        self.cur = Some(OpenFile {
            reader,
            state,
            capacity: BUF_CAPACITY,
            format,
            ng_big_endian: false,
            ifaces: Vec::new(),
            warned_iface: false,
            resync_from: None,
            last_sec: None,
            damaged: false,
        });
        Ok(())
    }
}

/// Maps an uncompressed legacy pcap file (not the modified format) and
/// reads its file header; `None` to read it with `read()` instead: not a
/// regular file, shorter than its header, mapping refused or turned off
/// (`MEMTAP_NO_MMAP`).
fn map_legacy(path: &std::path::Path, le: bool, magic: [u8; 4]) -> Option<MappedFile> {
    if std::env::var_os("MEMTAP_NO_MMAP").is_some_and(|v| v != "0") {
        return None;
    }
    let file = File::open(path).ok()?;
    let md = file.metadata().ok()?;
    let len = usize::try_from(md.len()).ok()?;
    if !md.is_file() || len < 24 {
        return None;
    }
    let mut map = Mapped::new(&file, len).ok()?;
    let d = map.bytes();
    if d[..4] != magic {
        return None;
    }
    let format = Format::Legacy {
        little_endian: le,
        modified: false,
        nanos: magic == PCAP_MAGICS[2].0 || magic == PCAP_MAGICS[3].0,
        linktype: u32_at(d, 20, !le),
        snaplen: u32_at(d, 16, !le),
    };
    map.start_ahead();
    Some(MappedFile {
        map,
        pos: 24,
        format,
        last_sec: None,
        damaged: false,
        reported: 0,
    })
}

/// The next record of a mapped legacy file, checked as `next_block` checks
/// the streamed ones; `ptr` of a frame is its offset in the map.
fn next_mapped(m: &mut MappedFile) -> Next {
    let Format::Legacy {
        little_endian,
        nanos,
        linktype,
        snaplen,
        ..
    } = m.format
    else {
        return Next::End(End::Corrupt("legacy record in a pcapng file".into()));
    };
    if m.pos - m.reported >= MAP_REPORT_EVERY {
        // Only the frame about to be returned is borrowed: every byte
        // before this record is done with.
        m.map.reached(m.pos);
        m.reported = m.pos;
    }
    if m.map.shrunk() {
        return Next::End(End::Shrunk);
    }
    let d = m.map.bytes();
    let left = d.len() - m.pos;
    if left == 0 {
        return Next::End(End::Eof);
    }
    if left < 16 {
        return Next::End(End::Truncated);
    }
    let be = !little_endian;
    let h = &d[m.pos..m.pos + 16];
    let caplen = u32_at(h, 8, be) as usize;
    if m.map.shrunk() {
        // This header was read from a page of zeros.
        return Next::End(End::Shrunk);
    }
    if legacy_caplen_bad(caplen, snaplen) {
        return Next::Resync(format!("record length {caplen}"));
    }
    if left - 16 < caplen {
        return Next::End(End::Truncated);
    }
    let (sec, frac) = (u32_at(h, 0, be), u32_at(h, 4, be));
    let orig = u32_at(h, 12, be);
    m.last_sec = Some(sec);
    let frac = if nanos {
        u64::from(frac)
    } else {
        u64::from(frac) * 1000
    };
    let start = m.pos + 16;
    m.pos = start + caplen;
    prefetch_next(m, be);
    Next::Frame(FrameInfo {
        consume: 0,
        ptr: start,
        len: caplen,
        ts: u64::from(sec) * 1_000_000_000 + frac,
        linktype,
        wire_len: orig.max(caplen as u32),
    })
}

/// Asks for the lines of the record after the one just handed out, whose
/// header was asked for one record earlier: the start of its payload and
/// its last line (a text response is read at both ends: its first line,
/// then the `\r\n` after the value), and the header after it. A record
/// takes a worker a few hundred nanoseconds, about the time these take to
/// come from memory; asked for only when read, each was a stall.
#[inline]
fn prefetch_next(m: &MappedFile, be: bool) {
    let d = m.map.bytes();
    let first = m.pos + 16;
    let Some(h) = d.get(m.pos..first) else {
        return;
    };
    let end = first.saturating_add(u32_at(h, 8, be) as usize).min(d.len());
    m.map.prefetch(first);
    m.map.prefetch(first + 64);
    m.map.prefetch(end.saturating_sub(1));
    m.map.prefetch(end);
    m.map.prefetch(end + 15);
}

/// Parses the next block and says what to do with it. Owns no borrow of
/// the reader when it returns.
fn next_block(f: &mut OpenFile, last_ts: &mut u64, warned: &mut Option<String>) -> Next {
    let (off, block) = match f.reader.next() {
        Ok(x) => x,
        Err(PcapError::Eof) => return Next::End(End::Eof),
        Err(PcapError::Incomplete(_)) => return Next::Refill,
        Err(PcapError::BufferTooSmall) => return Next::Grow,
        Err(PcapError::UnexpectedEof) => {
            // Nothing left over means the file ended on a block boundary.
            if f.reader.data().is_empty() {
                return Next::End(End::Eof);
            }
            // A record header whose length is corrupt and runs past the
            // end: resync, as the mapped reader does (the same bytes read
            // plain or compressed give the same frames), rather than call
            // the file cut short there. Past the file header only.
            if can_resync(&f.format) && f.reader.consumed() > 0 && f.reader.data().len() >= 16 {
                if let Err(msg) = block_len_hint(f) {
                    return Next::Resync(msg);
                }
            }
            return Next::End(End::Truncated);
        }
        Err(PcapError::ReadError) => return Next::End(End::ReadError),
        Err(e) => return Next::End(End::Corrupt(short_err(&e))),
    };
    match block {
        PcapBlockOwned::LegacyHeader(h) => {
            if let Format::Legacy {
                nanos,
                linktype,
                snaplen,
                ..
            } = &mut f.format
            {
                *nanos = h.is_nanosecond_precision();
                *linktype = h.network.0 as u32;
                *snaplen = h.snaplen;
            }
            Next::Skip(off)
        }
        PcapBlockOwned::Legacy(b) => {
            let Format::Legacy {
                nanos,
                linktype,
                snaplen,
                ..
            } = f.format
            else {
                return Next::End(End::Corrupt("legacy record in a pcapng file".into()));
            };
            let caplen = b.data.len();
            if legacy_caplen_bad(caplen, snaplen) {
                let msg = format!("record length {caplen}");
                if can_resync(&f.format) {
                    return Next::Resync(msg);
                }
                return Next::End(End::Corrupt(msg));
            }
            f.last_sec = Some(b.ts_sec);
            let frac = if nanos {
                u64::from(b.ts_usec)
            } else {
                u64::from(b.ts_usec) * 1000
            };
            let ts = u64::from(b.ts_sec) * 1_000_000_000 + frac;
            Next::Frame(FrameInfo {
                consume: off,
                ptr: b.data.as_ptr() as usize,
                len: caplen,
                ts,
                linktype,
                wire_len: b.origlen.max(caplen as u32),
            })
        }
        PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
            f.ng_big_endian = shb.big_endian();
            f.ifaces.clear();
            Next::Skip(off)
        }
        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
            let units = match ts_units(idb.if_tsresol) {
                Some(u) => u,
                _ => {
                    *warned = Some(format!(
                        "pcapng interface {} has an invalid timestamp resolution ({:#x}); assuming microseconds",
                        f.ifaces.len(),
                        idb.if_tsresol
                    ));
                    1_000_000
                }
            };
            f.ifaces.push(Iface {
                linktype: idb.linktype.0 as u32 & 0xffff,
                snaplen: idb.snaplen,
                units,
                // pcap-parser reads if_tsoffset little-endian in every section.
                offset_ns: i128::from(if f.ng_big_endian {
                    idb.if_tsoffset.swap_bytes()
                } else {
                    idb.if_tsoffset
                }) * 1_000_000_000,
            });
            Next::Skip(off)
        }
        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
            let Some(iface) = f.ifaces.get(epb.if_id as usize).copied() else {
                if !f.warned_iface {
                    f.warned_iface = true;
                    *warned = Some(format!(
                        "pcapng packet on undeclared interface {}; skipping such packets",
                        epb.if_id
                    ));
                }
                return Next::Skip(off);
            };
            let caplen = (epb.caplen as usize).min(epb.data.len());
            let ts = ng_ts(epb.ts_high, epb.ts_low, &iface);
            Next::Frame(FrameInfo {
                consume: off,
                ptr: epb.data.as_ptr() as usize,
                len: caplen,
                ts,
                linktype: iface.linktype,
                wire_len: epb.origlen.max(caplen as u32),
            })
        }
        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
            let Some(iface) = f.ifaces.first().copied() else {
                if !f.warned_iface {
                    f.warned_iface = true;
                    *warned = Some(
                        "pcapng simple packet block before any interface; skipping such packets"
                            .into(),
                    );
                }
                return Next::Skip(off);
            };
            let mut caplen = (spb.origlen as usize).min(spb.data.len());
            if iface.snaplen > 0 {
                caplen = caplen.min(iface.snaplen as usize);
            }
            Next::Frame(FrameInfo {
                consume: off,
                ptr: spb.data.as_ptr() as usize,
                len: caplen,
                ts: *last_ts,
                linktype: iface.linktype,
                wire_len: spb.origlen.max(caplen as u32),
            })
        }
        PcapBlockOwned::NG(_) => Next::Skip(off),
    }
}

/// Legacy pcap records can be found again by their headers; the modified
/// (Kuznetzov) format's longer headers are not looked for.
fn can_resync(f: &Format) -> bool {
    matches!(
        f,
        Format::Legacy {
            modified: false,
            ..
        }
    )
}

enum Scan {
    /// A plausible record starts this many bytes in.
    Found(usize),
    /// None in the first this many bytes; the rest needs more data.
    More(usize),
    /// None in the whole (exhausted) input: skip this many bytes.
    Nothing(usize),
}

/// Length of the record whose 16-byte header is `h`, if the header is
/// plausible: a fraction below one second, a captured length of 1 to the
/// file's snap length, an original length at least that, and (when a good
/// record came before) a time within a day of it.
fn plausible_legacy(h: &[u8], f: &Format, near: Option<u32>) -> Option<(usize, u32)> {
    let Format::Legacy {
        little_endian,
        nanos,
        snaplen,
        ..
    } = *f
    else {
        return None;
    };
    let be = !little_endian;
    let (sec, frac) = (u32_at(h, 0, be), u32_at(h, 4, be));
    let (caplen, orig) = (u32_at(h, 8, be) as usize, u32_at(h, 12, be) as usize);
    let max_frac = if nanos { 1_000_000_000 } else { 1_000_000 };
    let max_len = match snaplen as usize {
        0 => LEGACY_MAX_SNAPLEN,
        n => n.min(MAX_BLOCK),
    };
    let near_ok = near.is_none_or(|l| sec.abs_diff(l) <= 86_400);
    let ok = frac < max_frac
        && (1..=max_len).contains(&caplen)
        && orig >= caplen
        && orig <= MAX_BLOCK
        && near_ok;
    ok.then_some((caplen, sec))
}

/// Looks for the next plausible legacy record in `d` from `from`: its
/// header and its successor's must both be plausible (or it must end the
/// input exactly).
fn scan_legacy(d: &[u8], from: usize, f: &Format, near: Option<u32>, exhausted: bool) -> Scan {
    let mut p = from;
    while p + 16 <= d.len() {
        if let Some((len, sec)) = plausible_legacy(&d[p..p + 16], f, near) {
            let next = p + 16 + len;
            if next + 16 <= d.len() {
                if plausible_legacy(&d[next..next + 16], f, Some(sec)).is_some() {
                    return Scan::Found(p);
                }
            } else if exhausted {
                if next == d.len() {
                    return Scan::Found(p);
                }
            } else {
                return Scan::More(p);
            }
        }
        p += 1;
    }
    if exhausted {
        Scan::Nothing(d.len())
    } else {
        Scan::More(p.min(d.len()))
    }
}

fn legacy_caplen_bad(caplen: usize, snaplen: u32) -> bool {
    caplen > MAX_BLOCK || (caplen > LEGACY_MAX_SNAPLEN && caplen > snaplen as usize)
}

/// Length of the block at the head of the buffer, from its header, or why
/// that length is corrupt.
fn block_len_hint(f: &OpenFile) -> Result<usize, String> {
    let d = f.reader.data();
    match f.format {
        Format::Legacy {
            little_endian,
            modified,
            snaplen,
            ..
        } => {
            if d.len() < 16 {
                return Err("a record header larger than the buffer".into());
            }
            let caplen = u32_at(d, 8, !little_endian) as usize;
            if legacy_caplen_bad(caplen, snaplen) {
                return Err(format!("record length {caplen}"));
            }
            Ok(caplen + if modified { 24 } else { 16 })
        }
        Format::PcapNg => {
            if d.len() < 12 {
                return Err("a block header larger than the buffer".into());
            }
            let big = if d[..4] == PCAPNG_SHB {
                d[8..12] == [0x1a, 0x2b, 0x3c, 0x4d]
            } else {
                f.ng_big_endian
            };
            let n = u32_at(d, 4, big) as usize;
            if n > MAX_BLOCK {
                return Err(format!("block length {n}"));
            }
            Ok(n)
        }
    }
}

fn grow(f: &mut OpenFile, new_cap: usize) -> bool {
    if new_cap <= f.capacity || new_cap > MAX_BLOCK + 4096 {
        return false;
    }
    f.reader.grow(new_cap);
    f.capacity = new_cap;
    true
}

/// Timestamp units per second from `if_tsresol` (pcap-parser 0.17's own
/// helper rejects every power-of-two resolution).
fn ts_units(r: u8) -> Option<u64> {
    let e = u32::from(r & 0x7f);
    if r & 0x80 != 0 {
        (e <= 63).then(|| 1u64 << e)
    } else {
        10u64.checked_pow(e)
    }
}

/// Packet timestamp of an Enhanced Packet Block, in ns since the epoch.
fn ng_ts(high: u32, low: u32, iface: &Iface) -> u64 {
    let t = (u64::from(high) << 32) | u64::from(low);
    let ns: i128 = match iface.units {
        1_000_000_000 => i128::from(t),
        1_000_000 => i128::from(t) * 1000,
        u => {
            let u = u128::from(u);
            let t = u128::from(t);
            ((t / u) * 1_000_000_000 + (t % u) * 1_000_000_000 / u) as i128
        }
    };
    (ns + iface.offset_ns).clamp(0, i128::from(u64::MAX)) as u64
}

fn u32_at(d: &[u8], at: usize, big: bool) -> u32 {
    let b = [d[at], d[at + 1], d[at + 2], d[at + 3]];
    if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// pcap-parser's `Display` dumps the whole input for parse errors; keep
/// only the kind.
fn short_err<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::NomError(_, k) | PcapError::OwnedNomError(_, k) => {
            format!("invalid block: {k:?}")
        }
        PcapError::Eof => "end of file".into(),
        PcapError::BufferTooSmall => "block too large".into(),
        PcapError::UnexpectedEof => "unexpected end of file".into(),
        PcapError::ReadError => "read error".into(),
        PcapError::Incomplete(_) => "incomplete header".into(),
        PcapError::HeaderNotRecognized => "header not recognized".into(),
    }
}

/// Reads until `n` bytes or the end of the stream.
fn read_up_to<R: Read>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut v = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut v)?;
    Ok(v)
}

/// Counts raw bytes and notes the raw end of file.
struct Counting {
    inner: Box<dyn Read + Send>,
    state: Arc<ReadState>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.state.raw_eof.store(true, Ordering::Relaxed);
        }
        self.state.raw_bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Sits on top of the decompressor: a stream that stops short (the file
/// was cut) reads as end of file with `truncated` set; other errors are
/// kept for the warning (pcap-parser drops the `io::Error`).
struct Trap {
    inner: Box<dyn Read + Send>,
    state: Arc<ReadState>,
}

impl Read for Trap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::UnexpectedEof
                        || self.state.raw_eof.load(Ordering::Relaxed)
                    {
                        self.state.truncated.store(true, Ordering::Relaxed);
                        return Ok(0);
                    }
                    if let Ok(mut slot) = self.state.error.lock() {
                        *slot = Some(e.to_string());
                    }
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;

    /// (frame_no, ts, linktype, wire_len, data)
    type Got = (u64, u64, u32, u32, Vec<u8>);

    fn collect(src: &mut FileSource, c: &mut Counters) -> anyhow::Result<Vec<Got>> {
        let mut out = Vec::new();
        while let Some(f) = src.next_frame(c)? {
            out.push((f.frame_no, f.ts, f.linktype, f.wire_len, f.data.to_vec()));
        }
        Ok(out)
    }

    fn read_all(paths: &[PathBuf]) -> (Vec<Got>, Counters, Vec<String>) {
        let mut src = FileSource::open(paths).unwrap();
        let mut c = Counters::default();
        let got = collect(&mut src, &mut c).unwrap();
        assert_eq!(src.bytes_read(), src.total_bytes().unwrap());
        let w = src.take_warnings();
        (got, c, w)
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    // ---- legacy pcap ----

    struct Rec {
        sec: u32,
        frac: u32,
        data: Vec<u8>,
        orig: u32,
    }

    fn rec(sec: u32, frac: u32, data: Vec<u8>) -> Rec {
        let orig = data.len() as u32;
        Rec {
            sec,
            frac,
            data,
            orig,
        }
    }

    fn pcap(le: bool, nanos: bool, linktype: u32, recs: &[Rec]) -> Vec<u8> {
        let w = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() })
        };
        let mut v = Vec::new();
        w(&mut v, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        let (maj, min) = (2u16, 4u16);
        v.extend_from_slice(&if le {
            maj.to_le_bytes()
        } else {
            maj.to_be_bytes()
        });
        v.extend_from_slice(&if le {
            min.to_le_bytes()
        } else {
            min.to_be_bytes()
        });
        w(&mut v, 0);
        w(&mut v, 0);
        w(&mut v, 65535);
        w(&mut v, linktype);
        for r in recs {
            w(&mut v, r.sec);
            w(&mut v, r.frac);
            w(&mut v, r.data.len() as u32);
            w(&mut v, r.orig);
            v.extend_from_slice(&r.data);
        }
        v
    }

    fn three_records() -> Vec<Rec> {
        let mut cut = rec(1_700_000_001, 999_999, data(60, 2));
        cut.orig = 1514;
        vec![
            rec(1_700_000_000, 1, data(54, 1)),
            cut,
            rec(1_700_000_002, 0, data(1, 3)),
        ]
    }

    #[test]
    fn pcap_microseconds_little_endian() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.pcap",
            &pcap(true, false, 1, &three_records()),
        );
        let (got, c, w) = read_all(std::slice::from_ref(&p));
        assert_eq!(
            got,
            vec![
                (1, 1_700_000_000_000_001_000, 1, 54, data(54, 1)),
                (2, 1_700_000_001_999_999_000, 1, 1514, data(60, 2)),
                (3, 1_700_000_002_000_000_000, 1, 1, data(1, 3)),
            ]
        );
        assert_eq!(
            (c.packets, c.bytes, c.files, c.snaplen_truncated),
            (3, 115, 1, 1)
        );
        assert_eq!((c.truncated_files, c.capture_errors), (0, 0));
        assert!(w.is_empty());
    }

    #[test]
    fn pcap_nanoseconds_big_endian() {
        let dir = tempfile::tempdir().unwrap();
        let recs = vec![
            rec(10, 123_456_789, data(40, 9)),
            rec(11, 999_999_999, data(20, 8)),
        ];
        let p = write(dir.path(), "b.pcap", &pcap(false, true, 101, &recs));
        let mut src = FileSource::open(std::slice::from_ref(&p)).unwrap();
        assert_eq!(src.current_file(), p.to_str().unwrap());
        assert_eq!(src.total_bytes(), Some(24 + 16 + 40 + 16 + 20));
        let mut c = Counters::default();
        let got = collect(&mut src, &mut c).unwrap();
        assert_eq!(
            got,
            vec![
                (1, 10_123_456_789, 101, 40, data(40, 9)),
                (2, 11_999_999_999, 101, 20, data(20, 8))
            ]
        );
        assert_eq!((c.packets, c.bytes, c.files), (2, 60, 1));
        // At the end it stays at the end.
        assert!(src.next_frame(&mut c).unwrap().is_none());
    }

    // ---- pcapng ----

    fn ng_u16(big: bool, x: u16) -> [u8; 2] {
        if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }

    fn ng_u32(big: bool, x: u32) -> [u8; 4] {
        if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }

    fn ng_block(big: bool, btype: u32, body: &[u8]) -> Vec<u8> {
        let mut b = body.to_vec();
        while b.len() % 4 != 0 {
            b.push(0);
        }
        let len = (b.len() + 12) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&ng_u32(big, btype));
        v.extend_from_slice(&ng_u32(big, len));
        v.extend_from_slice(&b);
        v.extend_from_slice(&ng_u32(big, len));
        v
    }

    fn shb(big: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ng_u32(big, 0x1a2b_3c4d));
        b.extend_from_slice(&ng_u16(big, 1));
        b.extend_from_slice(&ng_u16(big, 0));
        b.extend_from_slice(&[0xff; 8]); // section length: unknown
                                         // shb_userappl option, then end of options.
        b.extend_from_slice(&ng_u16(big, 4));
        b.extend_from_slice(&ng_u16(big, 6));
        b.extend_from_slice(b"memtap\0\0");
        b.extend_from_slice(&[0; 4]);
        ng_block(big, 0x0a0d_0d0a, &b)
    }

    fn idb(big: bool, linktype: u16, snaplen: u32, tsresol: Option<u8>) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ng_u16(big, linktype));
        b.extend_from_slice(&ng_u16(big, 0));
        b.extend_from_slice(&ng_u32(big, snaplen));
        if let Some(r) = tsresol {
            b.extend_from_slice(&ng_u16(big, 9));
            b.extend_from_slice(&ng_u16(big, 1));
            b.extend_from_slice(&[r, 0, 0, 0]);
            b.extend_from_slice(&[0; 4]);
        }
        ng_block(big, 1, &b)
    }

    fn epb(big: bool, if_id: u32, ts: u64, data: &[u8], orig: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ng_u32(big, if_id));
        b.extend_from_slice(&ng_u32(big, (ts >> 32) as u32));
        b.extend_from_slice(&ng_u32(big, ts as u32));
        b.extend_from_slice(&ng_u32(big, data.len() as u32));
        b.extend_from_slice(&ng_u32(big, orig));
        b.extend_from_slice(data);
        ng_block(big, 6, &b)
    }

    fn spb(big: bool, data: &[u8], orig: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ng_u32(big, orig));
        b.extend_from_slice(data);
        ng_block(big, 3, &b)
    }

    /// Two sections: LE with Ethernet (ns) + raw IP (µs) interfaces, then
    /// BE with one NULL interface (2^-10 s units); other blocks between.
    fn pcapng_sample() -> (Vec<u8>, Vec<Got>) {
        let mut v = shb(false);
        v.extend(idb(false, 1, 0, Some(9)));
        v.extend(ng_block(false, 0x0bad_0001, &[1, 2, 3])); // unknown block
        v.extend(idb(false, 101, 65535, None));
        v.extend(epb(false, 0, 1_600_000_000_123_456_789, &data(61, 1), 61));
        v.extend(epb(false, 1, 1_600_000_001_000_002, &data(40, 2), 100));
        // Interface statistics block.
        let mut isb = Vec::new();
        isb.extend_from_slice(&[0; 4]);
        isb.extend_from_slice(&[0; 8]);
        v.extend(ng_block(false, 5, &isb));
        v.extend(spb(false, &data(33, 3), 33));
        v.extend(shb(true));
        v.extend(idb(true, 0, 0, Some(0x80 | 10)));
        v.extend(epb(
            true,
            0,
            (1_600_000_002u64 << 10) | 512,
            &data(44, 4),
            44,
        ));
        v.extend(epb(true, 1, 0, &data(10, 5), 10)); // no interface 1 in this section
        v.extend(epb(true, 0, 5 << 10, &data(8, 6), 8));
        let want = vec![
            (1, 1_600_000_000_123_456_789, 1, 61, data(61, 1)),
            (2, 1_600_000_001_000_002_000, 101, 100, data(40, 2)),
            (3, 1_600_000_001_000_002_000, 1, 33, data(33, 3)),
            (4, 1_600_000_002_500_000_000, 0, 44, data(44, 4)),
            (5, 5_000_000_000, 0, 8, data(8, 6)),
        ];
        (v, want)
    }

    #[test]
    fn pcapng_sections_interfaces_and_block_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, want) = pcapng_sample();
        let p = write(dir.path(), "c.pcapng", &bytes);
        let (got, c, w) = read_all(&[p]);
        assert_eq!(got, want);
        assert_eq!(
            (c.packets, c.bytes, c.snaplen_truncated, c.files),
            (5, 186, 1, 1)
        );
        assert_eq!((c.capture_errors, c.truncated_files), (0, 0));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("c.pcapng: pcapng packet on undeclared interface 1"),
            "{w:?}"
        );
    }

    #[test]
    fn pcapng_timestamp_offset_in_both_byte_orders() {
        let dir = tempfile::tempdir().unwrap();
        let idb_off = |big: bool, off: i64| {
            let mut b = Vec::new();
            b.extend_from_slice(&ng_u16(big, 1));
            b.extend_from_slice(&ng_u16(big, 0));
            b.extend_from_slice(&ng_u32(big, 0));
            b.extend_from_slice(&ng_u16(big, 14)); // if_tsoffset
            b.extend_from_slice(&ng_u16(big, 8));
            b.extend_from_slice(&if big {
                off.to_be_bytes()
            } else {
                off.to_le_bytes()
            });
            b.extend_from_slice(&ng_u16(big, 9)); // if_tsresol: ms
            b.extend_from_slice(&ng_u16(big, 1));
            b.extend_from_slice(&[3, 0, 0, 0]);
            b.extend_from_slice(&[0; 4]);
            ng_block(big, 1, &b)
        };
        let mut v = Vec::new();
        for big in [false, true] {
            v.extend(shb(big));
            v.extend(idb_off(big, 1_000_000_000));
            v.extend(epb(big, 0, 1_234, &data(4, 1), 4));
        }
        let p = write(dir.path(), "off.pcapng", &v);
        let (got, _, w) = read_all(&[p]);
        let ts: Vec<u64> = got.iter().map(|g| g.1).collect();
        assert_eq!(ts, vec![1_000_000_001_234_000_000; 2]);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn pcapng_block_larger_than_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let big = data(3 << 20, 7);
        let mut v = shb(false);
        v.extend(idb(false, 1, 0, None));
        v.extend(epb(false, 0, 1, &data(100, 1), 100));
        v.extend(epb(false, 0, 2, &big, big.len() as u32));
        v.extend(epb(false, 0, 3, &data(100, 2), 100));
        let p = write(dir.path(), "big.pcapng", &v);
        let (got, c, _) = read_all(&[p]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].4, big);
        assert_eq!(got[2], (3, 3000, 1, 100, data(100, 2)));
        assert_eq!(c.capture_errors, 0);
    }

    // ---- compression, several files ----

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_and_zstd_by_magic_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, want) = pcapng_sample();
        let gz = write(dir.path(), "plain-looking.pcapng", &gzip(&bytes));
        let zs = write(
            dir.path(),
            "x.gz",
            &zstd::encode_all(&bytes[..], 3).unwrap(),
        );
        // Two gzip members, split in the middle of a block.
        let mut multi = gzip(&bytes[..100]);
        multi.extend(gzip(&bytes[100..]));
        let mg = write(dir.path(), "multi", &multi);
        for p in [gz, zs, mg] {
            let (got, c, _) = read_all(std::slice::from_ref(&p));
            assert_eq!(got, want, "{}", p.display());
            assert_eq!((c.packets, c.truncated_files, c.capture_errors), (5, 0, 0));
        }
    }

    #[test]
    fn several_files_are_one_capture() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "1.pcap",
            &pcap(true, false, 1, &three_records()),
        );
        let (ng, _) = pcapng_sample();
        let b = write(
            dir.path(),
            "2.pcapng.zst",
            &zstd::encode_all(&ng[..], 1).unwrap(),
        );
        let cc = write(
            dir.path(),
            "3.pcap.gz",
            &gzip(&pcap(false, true, 113, &[rec(7, 7, data(20, 1))])),
        );
        let mut src = FileSource::open(&[a.clone(), b.clone(), cc.clone()]).unwrap();
        let total = std::fs::metadata(&a).unwrap().len()
            + std::fs::metadata(&b).unwrap().len()
            + std::fs::metadata(&cc).unwrap().len();
        assert_eq!(src.total_bytes(), Some(total));
        let mut c = Counters::default();
        let mut seen = Vec::new();
        while let Some(f) = src.next_frame(&mut c).unwrap() {
            let (no, lt) = (f.frame_no, f.linktype);
            seen.push((
                no,
                lt,
                src.current_file().rsplit('/').next().unwrap().to_string(),
            ));
        }
        let names: Vec<_> = seen.iter().map(|s| (s.0, s.1, s.2.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (1, 1, "1.pcap"),
                (2, 1, "1.pcap"),
                (3, 1, "1.pcap"),
                (4, 1, "2.pcapng.zst"),
                (5, 101, "2.pcapng.zst"),
                (6, 1, "2.pcapng.zst"),
                (7, 0, "2.pcapng.zst"),
                (8, 0, "2.pcapng.zst"),
                (9, 113, "3.pcap.gz"),
            ]
        );
        assert_eq!((c.files, c.packets), (3, 9));
        assert_eq!(src.bytes_read(), total);
    }

    // ---- truncated, garbage, corrupt ----

    #[test]
    fn a_file_cut_short_while_mapped_stops_with_a_warning() {
        // 4,000 frames of 1,000 bytes (~4 MB, mapped), and 20,000 (~20 MB,
        // whose pages a helper maps ahead of the reader); after 100 frames
        // the file is truncated in place to 1 MB. Reading the pages gone
        // would kill the process with SIGBUS; the reader stops instead.
        for frames in [4_000u32, 20_000] {
            cut_short_while_mapped(frames);
        }
    }

    fn cut_short_while_mapped(frames: u32) {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<Rec> = (0..frames)
            .map(|i| rec(1000 + i, 0, data(1000, i as u8)))
            .collect();
        let p = write(dir.path(), "cut.pcap", &pcap(true, false, 1, &recs));
        let mut src = FileSource::open(std::slice::from_ref(&p)).unwrap();
        let mut c = Counters::default();
        let mut n = 0u32;
        while n < 100 {
            src.next_frame(&mut c).unwrap().unwrap();
            n += 1;
        }
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(1 << 20).unwrap();
        while let Some(fr) = src.next_frame(&mut c).unwrap() {
            // Touch every byte, as decoding does.
            std::hint::black_box(fr.data.iter().map(|&b| b as u64).sum::<u64>());
            n += 1;
        }
        // 1 MiB holds 1,032 whole records of 1,016 bytes after the 24-byte
        // header, and the next one's header: that frame is handed out, its
        // bytes past 1 MiB read as zeros, and the reader stops there.
        assert_eq!(n, 1033);
        assert_eq!(c.truncated_files, 1);
        let w = src.take_warnings();
        assert!(
            w.iter().any(|w| w.contains("cut short while being read")),
            "{w:?}"
        );
    }

    #[test]
    fn truncated_at_every_byte_of_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(
            dir.path(),
            "good.pcap",
            &pcap(true, false, 1, &[rec(1, 0, data(10, 0))]),
        );
        let full = pcap(true, false, 1, &three_records());
        let last_start = full.len() - 16 - 1;
        for cut in last_start..full.len() {
            let p = write(dir.path(), "cut.pcap", &full[..cut]);
            let (got, c, w) = read_all(&[p, good.clone()]);
            let frames: Vec<_> = got.iter().map(|g| g.0).collect();
            assert_eq!(frames, vec![1, 2, 3], "cut {cut}");
            assert_eq!(got[2].4, data(10, 0));
            assert_eq!(c.truncated_files, u64::from(cut > last_start), "cut {cut}");
            assert_eq!((c.capture_errors, c.files), (0, 2));
            assert!(w.is_empty());
        }
        // pcapng cut anywhere in its last block.
        let (ng, want) = pcapng_sample();
        let last = ng.len() - (12 + 20 + 8);
        for cut in last + 1..ng.len() {
            let p = write(dir.path(), "cut.pcapng", &ng[..cut]);
            let (got, c, _) = read_all(&[p]);
            assert_eq!(got, want[..4].to_vec(), "cut {cut}");
            assert_eq!((c.truncated_files, c.capture_errors), (1, 0), "cut {cut}");
        }
    }

    #[test]
    fn truncated_inside_the_file_header() {
        let dir = tempfile::tempdir().unwrap();
        let full = pcap(true, false, 1, &three_records());
        let (ng, _) = pcapng_sample();
        let shb_len = shb(false).len();
        for (bytes, upto) in [(&full, 24), (&ng, shb_len)] {
            for cut in 0..upto {
                let p = write(dir.path(), "h", &bytes[..cut]);
                let (got, c, _) = read_all(&[p]);
                assert!(got.is_empty());
                // Nothing at all is an empty file, not a cut one.
                let cut_files = u64::from(cut > 0);
                assert_eq!((c.truncated_files, c.files), (cut_files, 1), "cut {cut}");
            }
        }
    }

    #[test]
    fn truncated_compressed_files() {
        let dir = tempfile::tempdir().unwrap();
        let full = pcap(true, false, 1, &three_records());
        for (kind, z) in [
            ("gz", gzip(&full)),
            ("zst", zstd::encode_all(&full[..], 3).unwrap()),
        ] {
            let min = if kind == "gz" { 2 } else { 4 };
            for cut in min..z.len() {
                let p = write(dir.path(), "z", &z[..cut]);
                let mut src = FileSource::open(&[p]).unwrap();
                let mut c = Counters::default();
                let got =
                    collect(&mut src, &mut c).unwrap_or_else(|e| panic!("{kind} cut {cut}: {e:#}"));
                assert!(got.len() <= 3, "{kind} cut {cut}");
                assert_eq!(
                    (c.truncated_files, c.capture_errors),
                    (1, 0),
                    "{kind} cut {cut}: {:?}",
                    src.take_warnings()
                );
            }
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let g = write(dir.path(), "notes.pcap", b"hello, this is not a capture");
        let e = FileSource::open(std::slice::from_ref(&g))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("notes.pcap"), "{e}");
        assert!(
            e.contains("not a pcap or pcapng file (magic 0x68656c6c)"),
            "{e}"
        );
        let gz = write(dir.path(), "notes.gz", &gzip(b"<html></html>"));
        let e = FileSource::open(&[gz]).err().unwrap().to_string();
        assert!(
            e.contains("not a gzip-compressed pcap or pcapng file (magic 0x3c68746d)"),
            "{e}"
        );
        // Garbage as a later file: frames of the first, then the error.
        let good = write(
            dir.path(),
            "good.pcap",
            &pcap(true, false, 1, &three_records()),
        );
        let mut src = FileSource::open(&[good, g]).unwrap();
        let mut c = Counters::default();
        for _ in 0..3 {
            assert!(src.next_frame(&mut c).unwrap().is_some());
        }
        let e = src.next_frame(&mut c).err().unwrap().to_string();
        assert!(
            e.contains("notes.pcap") && e.contains("magic 0x68656c6c"),
            "{e}"
        );
        // Missing file and empty list.
        let e = FileSource::open(&[dir.path().join("nope.pcap")])
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("nope.pcap"), "{e:#}");
        assert!(FileSource::open(&[]).is_err());
        assert!(FileSource::open(&[dir.path().to_path_buf()]).is_err());
    }

    #[test]
    fn corrupt_block_stops_the_file_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = shb(false);
        v.extend(idb(false, 1, 0, None));
        v.extend(epb(false, 0, 1, &data(20, 1), 20));
        let mut bad = epb(false, 0, 2, &data(20, 2), 20);
        let n = bad.len();
        bad[n - 4] ^= 0x40; // trailing length differs from the leading one
        v.extend(bad);
        v.extend(epb(false, 0, 3, &data(20, 3), 20));
        let ng = write(dir.path(), "bad.pcapng", &v);
        // Legacy: a record claiming 16 MiB.
        let mut l = pcap(true, false, 1, &three_records()[..1]);
        l.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0x00,
        ]);
        l.extend_from_slice(&[0; 64]);
        let lg = write(dir.path(), "bad.pcap", &l);
        let good = write(
            dir.path(),
            "good.pcap",
            &pcap(true, false, 1, &[rec(1, 0, data(10, 0))]),
        );
        let (got, c, w) = read_all(&[ng, lg, good]);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(got[2].4, data(10, 0));
        assert_eq!((c.capture_errors, c.truncated_files, c.files), (2, 0, 3));
        // The legacy file's bad header and the 64 bytes after it hold no
        // plausible record.
        assert_eq!(c.capture_skipped_bytes, 16 + 64);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("bad.pcapng") && w[0].contains("skipping the rest"),
            "{w:?}"
        );
        assert!(
            w[1].contains("bad.pcap:") && w[1].contains("16777215"),
            "{w:?}"
        );
    }

    /// Five records of 40..44 bytes, one second apart.
    fn five_records() -> Vec<Rec> {
        (0..5u8)
            .map(|i| {
                rec(
                    1_700_000_000 + u32::from(i),
                    0,
                    data(40 + usize::from(i), i),
                )
            })
            .collect()
    }

    #[test]
    fn a_corrupt_length_running_past_the_end_resyncs_plain_or_compressed() {
        // Found by the capture fuzz target: a record whose length field
        // says 570,699 (over the snap length) and more than is left. The
        // mapped plain file resynced at it; the streamed gzip copy called
        // the file truncated there and lost the records after it.
        let dir = tempfile::tempdir().unwrap();
        let recs = five_records();
        let mut bytes = pcap(true, false, 1, &recs);
        let second = 24 + 16 + recs[0].data.len();
        bytes[second + 8..second + 12].copy_from_slice(&570_699u32.to_le_bytes());
        let plain = write(dir.path(), "c.pcap", &bytes);
        let gz = write(dir.path(), "c.pcap.gz", &gzip(&bytes));
        let (a, ca, wa) = read_all(&[plain]);
        let (b, cb, wb) = read_all(&[gz]);
        let times = |g: &[Got]| g.iter().map(|x| x.1).collect::<Vec<_>>();
        // Records 1, 3, 4 and 5: the resync finds the third record.
        assert_eq!(a.len(), 4, "{wa:?}");
        assert_eq!(times(&a), times(&b));
        assert_eq!(
            a.iter().map(|x| &x.4).collect::<Vec<_>>(),
            b.iter().map(|x| &x.4).collect::<Vec<_>>()
        );
        for c in [&ca, &cb] {
            assert_eq!(c.capture_errors, 1);
            assert_eq!(c.truncated_files, 0);
            assert_eq!(c.capture_skipped_bytes, (16 + recs[1].data.len()) as u64);
        }
        assert!(wb[0].contains("record length 570699"), "{wb:?}");
    }

    #[test]
    fn corrupt_legacy_header_resyncs_at_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        for le in [true, false] {
            let mut v = pcap(le, false, 1, &five_records());
            // Record 3's caplen (24-byte file header, 16 + 40 + 16 + 41
            // bytes of records 1 and 2, then 8 bytes into its header).
            let at = 24 + 56 + 57 + 8;
            v[at..at + 4].copy_from_slice(&[0x00, 0xff, 0xff, 0x00]);
            let p = write(dir.path(), "mid.pcap", &v);
            let (got, c, w) = read_all(&[p]);
            let lens: Vec<usize> = got.iter().map(|g| g.4.len()).collect();
            assert_eq!(lens, vec![40, 41, 43, 44], "le {le}");
            assert_eq!(got[2].4, data(43, 3));
            assert_eq!(got[3].1, 1_700_000_004_000_000_000);
            assert_eq!(c.capture_errors, 1);
            assert_eq!(c.capture_skipped_bytes, 16 + 42);
            assert_eq!(c.truncated_files, 0);
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(
                w[0].contains("mid.pcap: corrupt record header at byte 137")
                    && w[0].contains("skipping to the next plausible record"),
                "{w:?}"
            );
        }
    }

    #[test]
    fn resync_scans_past_the_read_buffer() {
        // Two MiB of garbage after a corrupt header: more than the reader's
        // buffer holds at once.
        let dir = tempfile::tempdir().unwrap();
        let recs = five_records();
        let mut v = pcap(true, false, 1, &recs[..2]);
        v.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 0]);
        v.extend(std::iter::repeat_n(0xee, 2 << 20));
        let tail = pcap(true, false, 1, &recs[2..]);
        v.extend_from_slice(&tail[24..]);
        let p = write(dir.path(), "long.pcap", &v);
        let (got, c, w) = read_all(&[p]);
        let lens: Vec<usize> = got.iter().map(|g| g.4.len()).collect();
        assert_eq!(lens, vec![40, 41, 42, 43, 44]);
        assert_eq!(c.capture_errors, 1);
        assert_eq!(c.capture_skipped_bytes, 16 + (2 << 20));
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn files_without_packets_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.pcap", b"");
        let header = write(dir.path(), "header.pcap", &pcap(true, false, 1, &[]));
        let half = pcap(true, false, 1, &five_records()[..1]);
        let half = write(dir.path(), "half.pcap", &half[..30]);
        let good = write(
            dir.path(),
            "good.pcap",
            &pcap(true, false, 1, &five_records()),
        );
        let (got, c, w) = read_all(&[empty.clone(), header.clone(), half.clone(), good]);
        assert_eq!(got.len(), 5);
        // The empty file counts no truncated_files; the one cut inside
        // its first record does.
        assert_eq!((c.files, c.truncated_files, c.capture_errors), (4, 1, 0));
        assert_eq!(
            w,
            vec![
                format!("{}: no packets (an empty file)", empty.display()),
                format!("{}: no packets (only the file header)", header.display()),
                format!(
                    "{}: no packets (the file ends inside its first record)",
                    half.display()
                ),
            ]
        );
    }

    #[test]
    fn warnings_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = pcap(true, false, 1, &[]);
        l.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        let p = write(dir.path(), "bad.pcap", &l);
        let paths = vec![p; 25];
        let mut src = FileSource::open(&paths).unwrap();
        let mut c = Counters::default();
        assert!(collect(&mut src, &mut c).unwrap().is_empty());
        assert_eq!(c.capture_errors, 25);
        assert_eq!(src.take_warnings().len(), 20);
        assert!(src.take_warnings().is_empty());
    }

    // ---- public captures ----

    /// The README's table: file → packets column.
    fn readme_packets(root: &Path) -> Vec<(String, u64)> {
        let text = std::fs::read_to_string(root.join("README.md")).unwrap_or_default();
        let mut out = Vec::new();
        for line in text.lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            if cols.len() > 6 && cols[1].contains('/') && !cols[1].contains(' ') {
                if let Ok(n) = cols[4].replace(',', "").parse::<u64>() {
                    out.push((cols[1].to_string(), n));
                }
            }
        }
        out
    }

    #[test]
    fn public_captures_frame_counts() {
        let root = Path::new("/work/shared/pcaps/public");
        if !root.is_dir() {
            eprintln!("skipped: {} is absent", root.display());
            return;
        }
        let table = readme_packets(root);
        assert!(
            table.len() >= 30,
            "README table not found ({} rows)",
            table.len()
        );
        let mut checked = 0;
        for (file, packets) in &table {
            let p = root.join(file);
            if !p.is_file() {
                continue;
            }
            let mut src = FileSource::open(std::slice::from_ref(&p)).unwrap();
            let mut c = Counters::default();
            let got = collect(&mut src, &mut c).unwrap();
            assert_eq!(got.len() as u64, *packets, "{file}");
            assert_eq!((c.truncated_files, c.capture_errors), (0, 0), "{file}");
            checked += 1;
        }
        assert!(checked >= 30);
        // The whole folder as one capture.
        let paths: Vec<PathBuf> = table
            .iter()
            .map(|(f, _)| root.join(f))
            .filter(|p| p.is_file())
            .collect();
        let (got, c, _) = read_all(&paths);
        let want: u64 = table
            .iter()
            .filter(|(f, _)| root.join(f).is_file())
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            (got.len() as u64, c.packets, c.files),
            (want, want, paths.len() as u64)
        );
        assert_eq!(got.last().unwrap().0, want);
    }
}
