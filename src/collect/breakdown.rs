//! Joint breakdowns for the metrics exporter: key-requests by (server,
//! command, result), and latency and value-size histograms by (server,
//! command class).
//!
//! The other tables each count one dimension exactly (commands, servers,
//! results); Prometheus wants the joint counts so that any sum over labels
//! is exact: the sum of every cell's requests equals `Totals::requests`,
//! and the cells of one server add up to its `Traffic::requests`.
//!
//! Bounded: at most [`MAX_SERVERS`] distinct server addresses get their
//! own cells; records of further servers go into one overflow entry
//! (`server == None`, exported as `server="overflow"`), so sums stay exact,
//! and are counted in [`Breakdown::overflow_records`]. Per server, the
//! commands are the protocol's (a few dozen at most) and the classes six.
//!
//! The report shows every server's (command, result) counts, past the
//! bound too: a server without cells of its own keeps exact command counts
//! (no histograms) beside the overflow entry, as the per-server traffic
//! table does. [`Breakdown::server_commands`] joins both; it does not
//! depend on which servers got cells first, so the report is the same for
//! any number of workers and collectors.
//!
//! Cost per record: a one-entry cache hit on the server and on the
//! command (pointer comparisons of static names), an array increment, and
//! a 16-entry binary search per histogram. Nothing is allocated once a
//! (server, command) pair has been seen.

use super::batch::BRec;
use super::tables::CommandId;
use crate::protocol::Outcome;
use hashbrown::HashMap;
use std::net::SocketAddr;

/// Distinct server addresses with cells of their own; the rest share the
/// overflow entry.
pub const MAX_SERVERS: usize = 64;

/// What a command does, for the per-class histograms. A fixed, small set
/// so that the histogram series stay few:
///
/// * `get`: retrievals (text `get gets gat gats`, meta `mg`, binary
///   `get getq getk getkq gat gatq gatk gatkq`);
/// * `store`: storage (`set add replace append prepend cas`, meta `ms`,
///   binary `set add replace append prepend` and their quiet forms);
/// * `delete`: `delete`, meta `md`, binary `delete deleteq`;
/// * `arith`: `incr decr`, meta `ma`, binary `increment decrement` (and
///   quiet forms);
/// * `touch`: `touch` (text and binary);
/// * `other`: everything else (`version stats noop mn flush_all`, SASL,
///   unknown commands, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandClass {
    Get,
    Store,
    Delete,
    Arith,
    Touch,
    Other,
}

impl CommandClass {
    /// Every class, in declaration order (`c as usize` indexes it).
    pub const ALL: [CommandClass; 6] = [
        CommandClass::Get,
        CommandClass::Store,
        CommandClass::Delete,
        CommandClass::Arith,
        CommandClass::Touch,
        CommandClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandClass::Get => "get",
            CommandClass::Store => "store",
            CommandClass::Delete => "delete",
            CommandClass::Arith => "arith",
            CommandClass::Touch => "touch",
            CommandClass::Other => "other",
        }
    }

    /// The class of a command by its wire name (as in `Record::command`).
    pub fn of(command: &str) -> CommandClass {
        match command {
            "get" | "gets" | "gat" | "gats" | "mg" | "getq" | "getk" | "getkq" | "gatq"
            | "gatk" | "gatkq" => CommandClass::Get,
            "set" | "add" | "replace" | "append" | "prepend" | "cas" | "ms" | "setq" | "addq"
            | "replaceq" | "appendq" | "prependq" => CommandClass::Store,
            "delete" | "md" | "deleteq" => CommandClass::Delete,
            "incr" | "decr" | "ma" | "increment" | "decrement" | "incrementq" | "decrementq" => {
                CommandClass::Arith
            }
            "touch" => CommandClass::Touch,
            _ => CommandClass::Other,
        }
    }
}

/// Upper bounds (inclusive, ns) of the latency buckets: 10 µs to 1 s in
/// 1-2-5 steps. Slower answers count only in `+Inf`.
pub const LATENCY_BOUNDS_NS: [u64; 16] = [
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

/// Upper bounds (inclusive, bytes) of the value-size buckets: powers of 4
/// from 16 B to 1 GiB (memcached's largest possible item).
pub const VALUE_SIZE_BOUNDS: [u64; 14] = [
    16,
    64,
    256,
    1 << 10,
    1 << 12,
    1 << 14,
    1 << 16,
    1 << 18,
    1 << 20,
    1 << 22,
    1 << 24,
    1 << 26,
    1 << 28,
    1 << 30,
];

/// A histogram over fixed bounds, with an exact sum (saturating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedHist<const N: usize> {
    /// Non-cumulative counts per bucket: `counts[i]` holds values in
    /// `(bounds[i-1], bounds[i]]`.
    counts: [u64; N],
    /// Values above the last bound.
    over: u64,
    sum: u64,
}

impl<const N: usize> Default for FixedHist<N> {
    fn default() -> Self {
        FixedHist {
            counts: [0; N],
            over: 0,
            sum: 0,
        }
    }
}

impl<const N: usize> FixedHist<N> {
    #[inline]
    pub fn add(&mut self, v: u64, bounds: &[u64; N]) {
        let i = bounds.partition_point(|&b| b < v);
        match self.counts.get_mut(i) {
            Some(c) => *c += 1,
            None => self.over += 1,
        }
        self.sum = self.sum.saturating_add(v);
    }

    pub fn merge(&mut self, o: &Self) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.over += o.over;
        self.sum = self.sum.saturating_add(o.sum);
    }

    /// Cumulative counts, one per bound (`+Inf` is [`Self::total`]).
    pub fn cumulative(&self) -> [u64; N] {
        let mut out = self.counts;
        let mut acc = 0;
        for c in out.iter_mut() {
            acc += *c;
            *c = acc;
        }
        out
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }

    /// The sum of the values added (saturating at `u64::MAX`).
    pub fn sum(&self) -> u64 {
        self.sum
    }
}

pub type LatencyHist = FixedHist<{ LATENCY_BOUNDS_NS.len() }>;
pub type SizeHist = FixedHist<{ VALUE_SIZE_BOUNDS.len() }>;

/// Counts of one (server, command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCell {
    pub id: CommandId,
    pub class: CommandClass,
    /// Commands on the wire.
    pub count: u64,
    /// Key-requests per outcome, indexed by `Outcome as usize`.
    pub requests: [u64; Outcome::ALL.len()],
}

/// The cell of `id` in `cells` (added when missing); `last` caches the
/// position of the previous lookup.
#[inline]
fn cell_in<'a>(
    cells: &'a mut Vec<CommandCell>,
    last: &mut usize,
    id: CommandId,
) -> &'a mut CommandCell {
    if *last < cells.len() && cells[*last].id.same_names(&id) {
        return &mut cells[*last];
    }
    let i = match CommandId::find(cells.iter().map(|c| &c.id), &id) {
        Some(i) => i,
        None => {
            cells.push(CommandCell {
                id,
                class: CommandClass::of(id.command),
                count: 0,
                requests: [0; Outcome::ALL.len()],
            });
            cells.len() - 1
        }
    };
    *last = i;
    &mut cells[i]
}

impl CommandCell {
    /// Adds another cell's counts (same command).
    fn add(&mut self, o: &CommandCell) {
        self.count += o.count;
        for (a, b) in self.requests.iter_mut().zip(o.requests.iter()) {
            *a += b;
        }
    }

    /// Key-requests of this command, all outcomes.
    pub fn total(&self) -> u64 {
        self.requests.iter().sum()
    }
}

/// Everything kept for one server (or the overflow entry).
#[derive(Debug, Clone)]
pub struct ServerCells {
    /// `None`: the overflow entry (servers past [`MAX_SERVERS`]).
    pub server: Option<SocketAddr>,
    pub commands: Vec<CommandCell>,
    last: usize,
    /// Latency in ns of answered key-requests, by `CommandClass as usize`.
    pub latency: [LatencyHist; 6],
    /// Value sizes in bytes (request payload, else response payload), by
    /// class.
    pub value_size: [SizeHist; 6],
}

impl ServerCells {
    fn new(server: Option<SocketAddr>) -> ServerCells {
        ServerCells {
            server,
            commands: Vec::new(),
            last: 0,
            latency: Default::default(),
            value_size: Default::default(),
        }
    }

    #[inline]
    fn cell(&mut self, id: CommandId) -> &mut CommandCell {
        cell_in(&mut self.commands, &mut self.last, id)
    }

    /// Key-requests of this server, all commands and outcomes.
    pub fn requests(&self) -> u64 {
        self.commands
            .iter()
            .map(|c| c.requests.iter().sum::<u64>())
            .sum()
    }
}

/// The joint breakdowns of one [`super::tables::Tables`].
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    servers: Vec<ServerCells>,
    index: HashMap<SocketAddr, usize>,
    overflow: Option<usize>,
    last: usize,
    /// Key-requests of servers past [`MAX_SERVERS`] (counted in the
    /// overflow entry).
    pub overflow_records: u64,
    /// Exact command counts of the servers whose records went to the
    /// overflow entry (here or in a merged breakdown), for the report.
    extra: HashMap<SocketAddr, Vec<CommandCell>>,
}

impl Breakdown {
    /// The entry of `s` and whether it is the overflow entry.
    #[inline]
    fn slot(&mut self, s: SocketAddr) -> (usize, bool) {
        if self.last < self.servers.len() && self.servers[self.last].server == Some(s) {
            return (self.last, false);
        }
        if let Some(&i) = self.index.get(&s) {
            self.last = i;
            return (i, false);
        }
        if self.index.len() < MAX_SERVERS {
            self.servers.push(ServerCells::new(Some(s)));
            let i = self.servers.len() - 1;
            self.index.insert(s, i);
            self.last = i;
            return (i, false);
        }
        (self.overflow_slot(), true)
    }

    fn overflow_slot(&mut self) -> usize {
        match self.overflow {
            Some(i) => i,
            None => {
                self.servers.push(ServerCells::new(None));
                let i = self.servers.len() - 1;
                self.overflow = Some(i);
                i
            }
        }
    }

    /// Adds one record; `latency_ns` and `size` as `Tables::add` derives
    /// them (size: request payload, else response payload, else none).
    #[inline]
    pub fn add(&mut self, r: &BRec, latency_ns: Option<u64>, size: Option<u64>) {
        let (i, over) = self.slot(r.server);
        let id = CommandId {
            proto: r.proto.as_str(),
            transport: r.transport.as_str(),
            command: r.command,
        };
        if over {
            self.overflow_records += 1;
            let c = cell_in(self.extra.entry(r.server).or_default(), &mut 0, id);
            c.requests[r.result as usize] += 1;
            c.count += r.first as u64;
        }
        let sc = &mut self.servers[i];
        let c = sc.cell(id);
        c.requests[r.result as usize] += 1;
        c.count += r.first as u64;
        let k = c.class as usize;
        if let Some(l) = latency_ns {
            sc.latency[k].add(l, &LATENCY_BOUNDS_NS);
        }
        if let Some(s) = size {
            sc.value_size[k].add(s, &VALUE_SIZE_BOUNDS);
        }
    }

    pub fn merge(&mut self, o: &Breakdown) {
        for src in &o.servers {
            let i = match src.server {
                Some(s) => {
                    let (i, over) = self.slot(s);
                    if over {
                        self.overflow_records += src.requests();
                        let dst = self.extra.entry(s).or_default();
                        for c in &src.commands {
                            cell_in(dst, &mut 0, c.id).add(c);
                        }
                    }
                    i
                }
                None => self.overflow_slot(),
            };
            let dst = &mut self.servers[i];
            for c in &src.commands {
                dst.cell(c.id).add(c);
            }
            for (a, b) in dst.latency.iter_mut().zip(src.latency.iter()) {
                a.merge(b);
            }
            for (a, b) in dst.value_size.iter_mut().zip(src.value_size.iter()) {
                a.merge(b);
            }
        }
        // Their records are in `o`'s overflow entry, merged above: they
        // stay beside ours, never in a server's own cells.
        for (s, cells) in &o.extra {
            let dst = self.extra.entry(*s).or_default();
            for c in cells {
                cell_in(dst, &mut 0, c.id).add(c);
            }
        }
        self.overflow_records += o.overflow_records;
    }

    /// Adds `count` commands and, per outcome (`Outcome as usize`),
    /// `requests` key-requests of one (server, command) without latency
    /// or size: how stored history is folded back into tables.
    pub fn add_counts(
        &mut self,
        server: SocketAddr,
        id: CommandId,
        count: u64,
        requests: &[u64; Outcome::ALL.len()],
    ) {
        let cell = CommandCell {
            id,
            class: CommandClass::of(id.command),
            count,
            requests: *requests,
        };
        let (i, over) = self.slot(server);
        if over {
            self.overflow_records += cell.total();
            cell_in(self.extra.entry(server).or_default(), &mut 0, id).add(&cell);
        }
        self.servers[i].cell(id).add(&cell);
    }

    /// Every server's exact (command, result) counts, servers past the
    /// bound included: sorted by server address, each server's commands
    /// by (proto, transport, command). The overflow entry is not a server
    /// and is left out.
    pub fn server_commands(&self) -> Vec<(SocketAddr, Vec<CommandCell>)> {
        let mut by: std::collections::BTreeMap<SocketAddr, Vec<CommandCell>> =
            std::collections::BTreeMap::new();
        let own = self
            .servers
            .iter()
            .filter_map(|s| Some((s.server?, &s.commands)));
        for (s, cells) in own.chain(self.extra.iter().map(|(s, c)| (*s, c))) {
            let dst = by.entry(s).or_default();
            for c in cells {
                cell_in(dst, &mut 0, c.id).add(c);
            }
        }
        by.into_iter()
            .map(|(s, mut cells)| {
                cells.sort_by_key(|c| c.id);
                (s, cells)
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.servers.clear();
        self.index.clear();
        self.overflow = None;
        self.last = 0;
        self.overflow_records = 0;
        self.extra.clear();
    }

    /// Every entry, in first-seen order (the overflow entry wherever it
    /// was first needed).
    pub fn iter(&self) -> impl Iterator<Item = &ServerCells> {
        self.servers.iter()
    }

    /// Entries sorted by server address, the overflow entry last.
    pub fn sorted(&self) -> Vec<&ServerCells> {
        let mut v: Vec<&ServerCells> = self.servers.iter().collect();
        v.sort_by_key(|s| (s.server.is_none(), s.server));
        v
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_the_protocols() {
        for (c, want) in [
            ("get", CommandClass::Get),
            ("gats", CommandClass::Get),
            ("mg", CommandClass::Get),
            ("getkq", CommandClass::Get),
            ("cas", CommandClass::Store),
            ("ms", CommandClass::Store),
            ("prependq", CommandClass::Store),
            ("md", CommandClass::Delete),
            ("deleteq", CommandClass::Delete),
            ("ma", CommandClass::Arith),
            ("decrementq", CommandClass::Arith),
            ("touch", CommandClass::Touch),
            ("mn", CommandClass::Other),
            ("version", CommandClass::Other),
            ("unknown", CommandClass::Other),
        ] {
            assert_eq!(CommandClass::of(c), want, "{c}");
        }
        for (i, c) in CommandClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    #[test]
    fn fixed_buckets_are_inclusive_upper_bounds() {
        let mut h = LatencyHist::default();
        for v in [0, 10_000, 10_001, 1_000_000_000, 1_000_000_001, u64::MAX] {
            h.add(v, &LATENCY_BOUNDS_NS);
        }
        let c = h.cumulative();
        assert_eq!(c[0], 2);
        assert_eq!(c[1], 3);
        assert_eq!(c[15], 4);
        assert_eq!(h.total(), 6);
        assert_eq!(h.sum(), u64::MAX);
        let mut g = LatencyHist::default();
        g.merge(&h);
        g.merge(&h);
        assert_eq!(g.total(), 12);
        assert_eq!(g.cumulative()[15], 8);
    }

    #[test]
    fn servers_past_the_bound_share_the_overflow_entry_and_sums_stay_exact() {
        use crate::collect::batch::RecordBatch;
        use crate::collect::tables::{ClientGranularity, TableLimits, Tables};
        use crate::decode::Transport;
        use crate::protocol::Proto;
        use crate::session::Record;
        let limits = TableLimits {
            max_keys: 10,
            max_clients: 10,
            max_families: 10,
            client_granularity: ClientGranularity::Ip,
            key_clients: 32,
            insight_examples: 16,
        };
        let mut b = RecordBatch::default();
        let n = MAX_SERVERS + 6;
        for i in 0..n {
            for (cmd, res) in [
                ("get", Outcome::Hit),
                ("mg", Outcome::Miss),
                ("set", Outcome::Stored),
            ] {
                b.push(
                    &Record {
                        ts: 1,
                        client: "10.0.0.1:1".parse().unwrap(),
                        server: SocketAddr::from((
                            [10, 1, (i / 200) as u8, (i % 200) as u8],
                            11211,
                        )),
                        transport: Transport::Tcp,
                        proto: if cmd == "mg" {
                            Proto::Meta
                        } else {
                            Proto::Text
                        },
                        command: cmd,
                        first: true,
                        key: Some(b"k"),
                        result: res,
                        req_bytes: if cmd == "set" { 100 } else { 0 },
                        exptime: None,
                        resp_bytes: 0,
                        latency_ns: Some(15_000),
                    },
                    1,
                );
            }
        }
        let mut whole = Tables::new(&limits);
        let (mut a, mut c) = (Tables::new(&limits), Tables::new(&limits));
        let mut fam = Vec::new();
        for (i, r) in b.recs.iter().enumerate() {
            whole.add(&b, r, None, &mut fam);
            if i % 2 == 0 { &mut a } else { &mut c }.add(&b, r, None, &mut fam);
        }
        a.merge(&c);
        for t in [&whole, &a] {
            let bd = &t.breakdown;
            assert_eq!(bd.len(), MAX_SERVERS + 1);
            assert_eq!(bd.overflow_records, 6 * 3);
            let sorted = bd.sorted();
            let last = sorted.last().unwrap();
            assert_eq!(last.server, None);
            assert_eq!(last.requests(), 6 * 3);
            let sum: u64 = bd.iter().map(|s| s.requests()).sum();
            assert_eq!(sum, t.totals.requests);
            let lat: u64 = bd
                .iter()
                .flat_map(|s| s.latency.iter())
                .map(|h| h.total())
                .sum();
            assert_eq!(lat, t.latency_us.total());
            let size: u64 = bd
                .iter()
                .flat_map(|s| s.value_size.iter())
                .map(|h| h.total())
                .sum();
            assert_eq!(size, t.value_size.total());
            for s in bd.iter() {
                assert_eq!(s.commands.len(), 3);
                assert_eq!(
                    s.latency[CommandClass::Get as usize].cumulative()[1],
                    if s.server.is_some() { 2 } else { 12 }
                );
                assert_eq!(
                    s.value_size[CommandClass::Store as usize].sum(),
                    if s.server.is_some() { 100 } else { 600 }
                );
            }
        }
    }

    /// The report's per-server commands are exact for every server, past
    /// the bound too, whichever servers got cells of their own first and
    /// in whatever order collectors are merged or history is folded back.
    #[test]
    fn server_commands_are_exact_for_every_server_in_any_order() {
        use crate::collect::batch::RecordBatch;
        use crate::collect::tables::{ClientGranularity, TableLimits, Tables};
        use crate::decode::Transport;
        use crate::protocol::Proto;
        use crate::session::Record;
        let limits = TableLimits {
            max_keys: 10,
            max_clients: 10,
            max_families: 10,
            client_granularity: ClientGranularity::Ip,
            key_clients: 32,
            insight_examples: 16,
        };
        let n = MAX_SERVERS + 9;
        let server =
            |i: usize| SocketAddr::from(([10, 2, (i / 200) as u8, (i % 200) as u8], 11211));
        let mut b = RecordBatch::default();
        // Server i gets i % 3 + 1 gets (hits then a miss) and i % 2 sets.
        for i in 0..n {
            for j in 0..(i % 3 + 1 + i % 2) {
                let set = j > i % 3;
                b.push(
                    &Record {
                        ts: 1,
                        client: "10.0.0.1:1".parse().unwrap(),
                        server: server(i),
                        transport: Transport::Tcp,
                        proto: Proto::Text,
                        command: if set { "set" } else { "get" },
                        first: true,
                        key: Some(b"k"),
                        result: match (set, j == i % 3) {
                            (true, _) => Outcome::Stored,
                            (false, true) => Outcome::Miss,
                            (false, false) => Outcome::Hit,
                        },
                        req_bytes: 0,
                        exptime: None,
                        resp_bytes: 0,
                        latency_ns: Some(1_000),
                    },
                    1,
                );
            }
        }
        let mut fam = Vec::new();
        let mut whole = Tables::new(&limits);
        // Two collectors seeing the servers in opposite orders: each fills
        // its cells with different servers.
        let (mut a, mut c) = (Tables::new(&limits), Tables::new(&limits));
        for (i, r) in b.recs.iter().enumerate() {
            whole.add(&b, r, None, &mut fam);
            if i % 2 == 0 { &mut a } else { &mut c }.add(&b, r, None, &mut fam);
        }
        let mut rev = Tables::new(&limits);
        for r in b.recs.iter().rev() {
            rev.add(&b, r, None, &mut fam);
        }
        let mut ac = Tables::new(&limits);
        ac.merge(&a);
        ac.merge(&c);
        let mut ca = Tables::new(&limits);
        ca.merge(&c);
        ca.merge(&a);
        // History: the per-server cells folded back with add_counts.
        let mut folded = Breakdown::default();
        for (s, cells) in rev.breakdown.server_commands().into_iter().rev() {
            for cell in cells {
                folded.add_counts(s, cell.id, cell.count, &cell.requests);
            }
        }
        let want = whole.breakdown.server_commands();
        assert_eq!(want.len(), n);
        for (s, cells) in &want {
            let i = (0..n).find(|&i| server(i) == *s).unwrap();
            let get = cells.iter().find(|c| c.id.command == "get").unwrap();
            assert_eq!(get.requests[Outcome::Hit as usize], (i % 3) as u64);
            assert_eq!(get.requests[Outcome::Miss as usize], 1);
            assert_eq!(get.count, (i % 3 + 1) as u64);
            let set = cells.iter().find(|c| c.id.command == "set");
            assert_eq!(set.map_or(0, |c| c.total()), (i % 2) as u64);
            let traffic = whole.servers.iter().find(|(a, _)| *a == s).unwrap().1;
            assert_eq!(
                cells.iter().map(|c| c.total()).sum::<u64>(),
                traffic.requests
            );
        }
        for (label, got) in [
            ("reversed", rev.breakdown.server_commands()),
            ("a+c", ac.breakdown.server_commands()),
            ("c+a", ca.breakdown.server_commands()),
            ("folded", folded.server_commands()),
        ] {
            assert_eq!(got, want, "{label}");
        }
        // The exporter's view is unchanged: 64 servers and the overflow
        // entry, sums exact.
        for t in [&whole, &ac, &ca] {
            assert_eq!(t.breakdown.len(), MAX_SERVERS + 1);
            let sum: u64 = t.breakdown.iter().map(|s| s.requests()).sum();
            assert_eq!(sum, t.totals.requests);
        }
        let sum: u64 = folded.iter().map(|s| s.requests()).sum();
        assert_eq!(sum, whole.totals.requests);
    }
}
