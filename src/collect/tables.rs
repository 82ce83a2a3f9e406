//! What a collector keeps: hot keys with their hot clients, hot clients,
//! key families (all bounded heavy-hitter tables), and exact small tables
//! (commands, servers, results, distributions).

use super::batch::{BRec, RecordBatch};
use super::breakdown::Breakdown;
use super::families::FamilyRules;
use super::heavy::{HeavyHitters, Merge, SlotId};
use super::hist::Log2Hist;
use super::insight::{FamilyInsight, InsightTables, KeyInsight};
pub use super::keytables::{
    AddrRow, KeyClients, KeyCommands, KeyServers, DEFAULT_KEY_CLIENTS, KEY_SERVERS, MAX_KEY_CLIENTS,
};
use crate::decode::{Transport, Ts};
use crate::protocol::{Outcome, Proto};
use hashbrown::HashMap;
use std::net::{IpAddr, SocketAddr};

/// How clients are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientGranularity {
    /// One client per host address.
    #[default]
    Ip,
    /// One client per connection endpoint (address and port).
    #[value(name = "ip:port")]
    #[serde(rename = "ip:port")]
    IpPort,
}

/// A client address in a fixed-size form (no allocation per record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientId {
    /// IPv4 addresses are stored mapped into IPv6.
    ip: [u8; 16],
    /// 0 with `ClientGranularity::Ip`.
    port: u16,
    v4: bool,
}

impl ClientId {
    pub fn new(a: SocketAddr, g: ClientGranularity) -> ClientId {
        let (ip, v4) = match a.ip() {
            IpAddr::V4(v) => (v.to_ipv6_mapped().octets(), true),
            IpAddr::V6(v) => (v.octets(), false),
        };
        let port = match g {
            ClientGranularity::Ip => 0,
            ClientGranularity::IpPort => a.port(),
        };
        ClientId { ip, port, v4 }
    }

    /// The bytes under which the client is kept in the heavy-hitter table.
    pub fn bytes(&self) -> [u8; 19] {
        let mut b = [0u8; 19];
        b[..16].copy_from_slice(&self.ip);
        b[16..18].copy_from_slice(&self.port.to_be_bytes());
        b[18] = self.v4 as u8;
        b
    }

    /// A cheap spread of clients over [`SlotHints`]: the address's last
    /// bytes and the port.
    #[inline]
    fn hint(&self) -> usize {
        usize::from(self.ip[15]) ^ usize::from(self.ip[14]) << 4 ^ usize::from(self.port)
    }

    /// Whether `b` is [`bytes`](Self::bytes) of this client, compared
    /// field by field: a byte compare of a fresh `bytes()` reads across
    /// the stores that just made it, which the CPU cannot forward.
    #[inline]
    fn is(&self, b: &[u8]) -> bool {
        b.len() == 19
            && b[..16] == self.ip
            && b[16..18] == self.port.to_be_bytes()
            && b[18] == self.v4 as u8
    }

    pub fn from_bytes(b: &[u8]) -> ClientId {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&b[..16]);
        ClientId {
            ip,
            port: u16::from_be_bytes([b[16], b[17]]),
            v4: b[18] != 0,
        }
    }

    pub fn ip(&self) -> IpAddr {
        let v6 = std::net::Ipv6Addr::from(self.ip);
        if self.v4 {
            IpAddr::V4(
                v6.to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            )
        } else {
            IpAddr::V6(v6)
        }
    }

    /// The client as three words (a key's spilled client table keeps it
    /// so): the address in two, port and family in the third.
    #[inline]
    pub fn words(&self) -> [u64; 3] {
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&self.ip[..8]);
        lo.copy_from_slice(&self.ip[8..]);
        [
            u64::from_ne_bytes(hi),
            u64::from_ne_bytes(lo),
            self.port as u64 | (self.v4 as u64) << 16,
        ]
    }

    /// The inverse of [`words`](Self::words).
    #[inline]
    pub fn from_words(w: &[u64; 3]) -> ClientId {
        let mut ip = [0u8; 16];
        ip[..8].copy_from_slice(&w[0].to_ne_bytes());
        ip[8..].copy_from_slice(&w[1].to_ne_bytes());
        ClientId {
            ip,
            port: w[2] as u16,
            v4: (w[2] >> 16) & 1 != 0,
        }
    }

    /// The address as a socket address (port 0 with `ClientGranularity::Ip`).
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }

    /// A server's address as kept in a key's server table.
    #[inline]
    pub fn server(a: SocketAddr) -> ClientId {
        ClientId::new(a, ClientGranularity::IpPort)
    }

    pub fn render(&self) -> String {
        if self.port == 0 {
            self.ip().to_string()
        } else {
            SocketAddr::new(self.ip(), self.port).to_string()
        }
    }
}

/// Compact per-key histogram: 32 log2 classes of saturating u32 counts
/// (values above 2^31 share the last class), to keep a tracked key small.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SmallHist {
    counts: [u32; 32],
    max: u64,
}

impl SmallHist {
    #[inline]
    pub fn add(&mut self, v: u64) {
        let c = super::hist::class_of(v).min(31);
        self.counts[c] = self.counts[c].saturating_add(1);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, o: &SmallHist) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.max = self.max.max(o.max);
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The class counts, for storing a key's histogram and rebuilding it
    /// later (`store`).
    pub fn counts(&self) -> &[u32; 32] {
        &self.counts
    }

    pub fn from_parts(counts: [u32; 32], max: u64) -> SmallHist {
        SmallHist { counts, max }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| c as u64).sum()
    }

    /// Upper bound of the class holding quantile `q`, capped at the max.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c as u64;
            if seen >= rank {
                // The last class is open-ended: its bound is the maximum.
                if i == 31 {
                    return self.max;
                }
                return super::hist::class_le(i).min(self.max);
            }
        }
        self.max
    }
}

/// Traffic counters shared by keys, clients, families and servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
}

impl Traffic {
    #[inline]
    pub fn add(&mut self, r: &BRec) {
        self.requests += 1;
        match r.result {
            Outcome::Hit => self.hits += 1,
            Outcome::Miss => self.misses += 1,
            Outcome::Error | Outcome::ClientError | Outcome::ServerError => self.errors += 1,
            _ => {}
        }
        self.bytes_in += r.req_bytes;
        self.bytes_out += r.resp_bytes;
    }

    pub fn merge(&mut self, o: &Traffic) {
        self.requests += o.requests;
        self.hits += o.hits;
        self.misses += o.misses;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.errors += o.errors;
    }
}

/// Everything kept per tracked key. Its clients, servers and commands are
/// exact while they fit their tables (see [`super::keytables`]).
#[derive(Clone, Default)]
pub struct KeyStats {
    pub traffic: Traffic,
    pub commands: KeyCommands,
    pub latency_us: SmallHist,
    pub value_size: SmallHist,
    pub servers: KeyServers,
    pub clients: KeyClients,
    pub insight: KeyInsight,
    /// The key's family as the collector last found it, by number in its
    /// [`FamilyMemo`](super::families::FamilyMemo) (0: not looked for):
    /// a key seen again skips the family rules. Not merged: it means
    /// something only to the collector that wrote it.
    pub family: u32,
}

impl KeyStats {
    /// Heap bytes the key's tables hold beyond its entry (clients and
    /// servers past their inline rows, commands past two).
    pub fn heap_bytes(&self) -> usize {
        self.clients.heap_bytes() + self.servers.heap_bytes() + self.commands.heap_bytes()
    }
}

impl Merge for KeyStats {
    fn merge(&mut self, o: &Self) {
        self.merge_or_fold(o, false);
    }
}

impl KeyStats {
    /// [`Merge::merge`] for the same key in a later period of the same
    /// stream: its server and client tables fold (`AddrTable::fold`).
    pub fn fold(&mut self, later: &Self) {
        self.merge_or_fold(later, true);
    }

    fn merge_or_fold(&mut self, o: &Self, fold: bool) {
        self.traffic.merge(&o.traffic);
        self.commands.merge(&o.commands);
        self.latency_us.merge(&o.latency_us);
        self.value_size.merge(&o.value_size);
        if fold {
            self.servers.fold(&o.servers);
            self.clients.fold(&o.clients);
        } else {
            self.servers.merge(&o.servers);
            self.clients.merge(&o.clients);
        }
        self.insight.merge(&o.insight);
    }
}

#[derive(Clone, Default)]
pub struct ClientStats {
    pub traffic: Traffic,
}

impl Merge for ClientStats {
    fn merge(&mut self, o: &Self) {
        self.traffic.merge(&o.traffic);
    }
}

#[derive(Clone, Default)]
pub struct FamilyStats {
    pub traffic: Traffic,
    pub insight: FamilyInsight,
}

impl Merge for FamilyStats {
    fn merge(&mut self, o: &Self) {
        self.traffic.merge(&o.traffic);
        self.insight.merge(&o.insight);
    }
}

/// A command as counted in the commands table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId {
    pub proto: &'static str,
    pub transport: &'static str,
    pub command: &'static str,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandCounts {
    /// Commands on the wire.
    pub count: u64,
    /// Key-requests.
    pub requests: u64,
}

/// The commands seen: a handful, so a vector with a one-entry cache beats
/// hashing three strings per record.
#[derive(Debug, Clone, Default)]
pub struct CommandTable {
    list: Vec<(CommandId, CommandCounts)>,
    last: usize,
}

impl CommandId {
    #[inline]
    pub(crate) fn same(&self, o: &CommandId) -> bool {
        let eq = |a: &'static str, b: &'static str| std::ptr::eq(a, b) || a == b;
        eq(self.command, o.command) && eq(self.proto, o.proto) && eq(self.transport, o.transport)
    }

    /// The same static strings: what the parsers hand over for one name,
    /// so nearly every lookup matches so. Comparing the text of each other
    /// command on the way (`get` against `set`: a `memcmp` call) made a
    /// command lookup cost 65 instructions a record.
    #[inline]
    pub(crate) fn same_names(&self, o: &CommandId) -> bool {
        std::ptr::eq(self.command, o.command)
            && std::ptr::eq(self.proto, o.proto)
            && std::ptr::eq(self.transport, o.transport)
    }

    /// Where `id` is in `ids`: by the names' addresses first, then (a
    /// name the same text elsewhere in the binary) by their text.
    #[inline]
    pub(crate) fn find<'a>(
        mut ids: impl Iterator<Item = &'a CommandId> + Clone,
        id: &CommandId,
    ) -> Option<usize> {
        ids.clone()
            .position(|k| k.same_names(id))
            .or_else(|| ids.position(|k| k.same(id)))
    }
}

impl CommandTable {
    #[inline]
    pub fn get(&mut self, id: CommandId) -> &mut CommandCounts {
        if self.last < self.list.len() && self.list[self.last].0.same_names(&id) {
            return &mut self.list[self.last].1;
        }
        let i = match CommandId::find(self.list.iter().map(|(k, _)| k), &id) {
            Some(i) => i,
            None => {
                self.list.push((id, CommandCounts::default()));
                self.list.len() - 1
            }
        };
        self.last = i;
        &mut self.list[i].1
    }

    pub fn iter(&self) -> impl Iterator<Item = (&CommandId, &CommandCounts)> {
        self.list.iter().map(|(k, v)| (k, v))
    }

    pub fn clear(&mut self) {
        self.list.clear();
        self.last = 0;
    }
}

/// Per-server traffic: an index by address and a one-entry cache (records
/// of one batch mostly come from a few servers).
#[derive(Debug, Clone, Default)]
pub struct ServerTable {
    list: Vec<(SocketAddr, Traffic)>,
    index: HashMap<SocketAddr, usize>,
    last: usize,
}

impl ServerTable {
    #[inline]
    pub fn get(&mut self, s: SocketAddr) -> &mut Traffic {
        if self.last < self.list.len() && self.list[self.last].0 == s {
            return &mut self.list[self.last].1;
        }
        let i = match self.index.get(&s) {
            Some(&i) => i,
            None => {
                self.list.push((s, Traffic::default()));
                self.index.insert(s, self.list.len() - 1);
                self.list.len() - 1
            }
        };
        self.last = i;
        &mut self.list[i].1
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &Traffic)> {
        self.list.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn clear(&mut self) {
        self.list.clear();
        self.index.clear();
        self.last = 0;
    }
}

/// Bounds of a collector's tables.
#[derive(Debug, Clone, Copy)]
pub struct TableLimits {
    pub max_keys: usize,
    pub max_clients: usize,
    pub max_families: usize,
    pub client_granularity: ClientGranularity,
    /// Size of each key's client table (`--key-clients`): exact counts
    /// for keys with at most this many clients.
    pub key_clients: usize,
    /// Keys on several servers kept as examples.
    pub insight_examples: usize,
}

/// The statistics of one collector for one period (the whole run, or one
/// window).
pub struct Tables {
    pub keys: HeavyHitters<KeyStats>,
    pub clients: HeavyHitters<ClientStats>,
    pub families: HeavyHitters<FamilyStats>,
    pub commands: CommandTable,
    pub servers: ServerTable,
    /// Records per outcome, indexed by `Outcome as usize`.
    pub results: [u64; Outcome::ALL.len()],
    pub value_size: Log2Hist,
    pub latency_us: Log2Hist,
    pub totals: Totals,
    /// Joint counts for the metrics exporter: requests by (server,
    /// command, result), latency and value size by (server, class).
    pub breakdown: Breakdown,
    /// Cache insight (filled by the collector's [`super::insight::Insight`]).
    pub insight: InsightTables,
    granularity: ClientGranularity,
    key_clients: usize,
    /// Where recent clients and families sat in their tables: most records
    /// come from a few clients (a proxy, one app tier) and a few families,
    /// and a hint that still holds its key spares hashing and looking up.
    client_hints: SlotHints,
    family_hints: SlotHints,
}

/// A few table slots, direct-mapped by a cheap index the caller picks;
/// only hints: [`HeavyHitters::update_hinted`] checks the key.
#[derive(Clone, Copy, Default)]
struct SlotHints([Option<SlotId>; SlotHints::N]);

impl SlotHints {
    const N: usize = 16;

    #[inline]
    fn update<T: Default>(
        &mut self,
        table: &mut HeavyHitters<T>,
        key: &[u8],
        index: usize,
        same: impl Fn(&[u8]) -> bool,
    ) -> SlotId {
        let h = &mut self.0[index % Self::N];
        let s = table.update_hinted(key, *h, 1, same);
        *h = Some(s);
        s
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub commands: u64,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Records without a key (stats, version, noop, ...).
    pub keyless: u64,
}

impl Tables {
    pub fn new(l: &TableLimits) -> Tables {
        Tables {
            keys: HeavyHitters::new(l.max_keys.max(1)),
            // Any collector may see any client or family: their tables
            // remember what they dropped, so that merging collectors'
            // tables does not raise the exact count of an item that some
            // collector never saw (keys are sharded, see `merge`).
            clients: HeavyHitters::with_dropped_filter(l.max_clients.max(1)),
            families: HeavyHitters::with_dropped_filter(l.max_families.max(1)),
            commands: CommandTable::default(),
            servers: ServerTable::default(),
            results: [0; Outcome::ALL.len()],
            value_size: Log2Hist::default(),
            latency_us: Log2Hist::default(),
            totals: Totals::default(),
            breakdown: Breakdown::default(),
            insight: InsightTables {
                examples_cap: l.insight_examples,
                ..InsightTables::default()
            },
            granularity: l.client_granularity,
            key_clients: l.key_clients.clamp(1, MAX_KEY_CLIENTS),
            client_hints: SlotHints::default(),
            family_hints: SlotHints::default(),
        }
    }

    /// The size of each key's client table.
    pub fn key_clients(&self) -> usize {
        self.key_clients
    }

    /// Adds one record. `family` is scratch space for the family name.
    pub fn add(
        &mut self,
        b: &RecordBatch,
        r: &BRec,
        rules: Option<&FamilyRules>,
        family: &mut Vec<u8>,
    ) {
        let fam = match (rules, b.key(r)) {
            (Some(rules), Some(key)) => rules.family_into(key, family),
            _ => false,
        };
        self.add_in_family(b, r, fam.then_some(&family[..]))
    }

    /// Adds one record whose key's family is already known.
    pub fn add_in_family(&mut self, b: &RecordBatch, r: &BRec, family: Option<&[u8]>) {
        self.add_hashed(b, r, family, None, None);
    }

    /// [`add_in_family`](Self::add_in_family) with the key's hash in the key
    /// table ([`KeyAhead`]) when the caller made it ahead, and `key_slot`
    /// when the caller counted the key already (where
    /// [`HeavyHitters::update_at`] left it: to read the entry's family
    /// memo before the family is known). Returns where the record's key
    /// and family entries are, for cache insight to book into them without
    /// looking them up again.
    pub fn add_hashed(
        &mut self,
        b: &RecordBatch,
        r: &BRec,
        family: Option<&[u8]>,
        key_hash: Option<u64>,
        key_slot: Option<SlotId>,
    ) -> Added {
        let mut added = Added::default();
        if r.echo {
            return added;
        }
        let t = &mut self.totals;
        t.requests += 1;
        if r.first {
            t.commands += 1;
        }
        match r.result {
            Outcome::Hit => t.hits += 1,
            Outcome::Miss => t.misses += 1,
            _ => {}
        }
        t.bytes_in += r.req_bytes;
        t.bytes_out += r.resp_bytes;

        let cmd = self.commands.get(CommandId {
            proto: r.proto.as_str(),
            transport: r.transport.as_str(),
            command: r.command,
        });
        cmd.requests += 1;
        cmd.count += r.first as u64;
        self.servers.get(r.server).add(r);
        self.results[r.result as usize] += 1;

        let size = if r.req_bytes > 0 {
            Some(r.req_bytes)
        } else if r.resp_bytes > 0 {
            Some(r.resp_bytes)
        } else {
            None
        };
        if let Some(s) = size {
            self.value_size.add(s);
        }
        let lat_us = r.latency_ns.map(|ns| ns / 1000);
        if let Some(l) = lat_us {
            self.latency_us.add(l);
        }
        self.breakdown.add(r, r.latency_ns, size);

        let client = ClientId::new(r.client, self.granularity);
        let s = self
            .client_hints
            .update(&mut self.clients, &client.bytes(), client.hint(), |k| {
                client.is(k)
            });
        self.clients.at_mut(s).stats.traffic.add(r);

        let Some(key) = b.key(r) else {
            self.totals.keyless += 1;
            return added;
        };
        let slot = match key_slot {
            Some(s) => s,
            None => {
                let hash = key_hash.unwrap_or_else(|| self.keys.hash_key(key));
                self.keys.update_at(key, hash, 1)
            }
        };
        added.key = Some(slot);
        let k = &mut self.keys.at_mut(slot).stats;
        k.traffic.add(r);
        k.commands.add(r.command, 1);
        if let Some(l) = lat_us {
            k.latency_us.add(l);
        }
        if let Some(s) = size {
            k.value_size.add(s);
        }
        k.servers.add(ClientId::server(r.server), 1, KEY_SERVERS);
        k.clients.add(client, 1, self.key_clients);

        if let Some(f) = family {
            // A family's name comes from the collector's memo, one place
            // per family: its address picks the hint.
            let slot =
                self.family_hints
                    .update(&mut self.families, f, f.as_ptr() as usize >> 3, |k| k == f);
            self.families.at_mut(slot).stats.traffic.add(r);
            added.family = Some(slot);
        }
        added
    }

    /// Folds another collector's tables for the same period into these (or
    /// copies `o` into empty tables). Keys are sharded by collector, so a
    /// key absent from one collector's table never occurred there: the key
    /// tables merge as disjoint, and a key exact in its collector stays
    /// exact. Not for tables of different periods that share keys.
    pub fn merge(&mut self, o: &Tables) {
        self.merge_impl(o, false);
    }

    /// Folds the same collector's tables for a later period into these
    /// (a closed window into the run's): a key may be in both. See
    /// [`HeavyHitters::fold_with`]: exact while both are, Space-Saving's
    /// bounds otherwise.
    pub fn fold(&mut self, later: &Tables) {
        self.fold_part(later, 0, usize::MAX);
    }

    /// Part of [`fold`](Self::fold), to spread a large one over time:
    /// everything but the keys with the part from 0, and `later`'s keys
    /// from item `from` on, at most `n` of them. Returns where the next
    /// part starts; `later.keys.len()` once all is folded.
    pub fn fold_part(&mut self, later: &Tables, from: usize, n: usize) -> usize {
        if from == 0 {
            self.merge_impl(later, true);
        }
        self.keys
            .fold_part_with(&later.keys, from, n, |a, b| a.fold(b))
    }

    /// Everything but the key table when `fold` (the key table is folded
    /// by [`fold_part`](Self::fold_part)).
    fn merge_impl(&mut self, o: &Tables, fold: bool) {
        if fold {
            self.clients.fold(&o.clients);
            self.families.fold(&o.families);
        } else {
            self.keys.merge_disjoint(&o.keys);
            self.clients.merge(&o.clients);
            self.families.merge(&o.families);
        }
        for (k, v) in o.commands.iter() {
            let e = self.commands.get(*k);
            e.count += v.count;
            e.requests += v.requests;
        }
        for (k, v) in o.servers.iter() {
            self.servers.get(*k).merge(v);
        }
        for (a, b) in self.results.iter_mut().zip(o.results.iter()) {
            *a += b;
        }
        self.value_size.merge(&o.value_size);
        self.latency_us.merge(&o.latency_us);
        self.breakdown.merge(&o.breakdown);
        self.insight.merge(&o.insight);
        let t = &mut self.totals;
        let u = &o.totals;
        t.commands += u.commands;
        t.requests += u.requests;
        t.hits += u.hits;
        t.misses += u.misses;
        t.bytes_in += u.bytes_in;
        t.bytes_out += u.bytes_out;
        t.keyless += u.keyless;
    }

    pub fn clear(&mut self) {
        self.keys.clear();
        self.clients.clear();
        self.families.clear();
        self.commands.clear();
        self.servers.clear();
        self.results = [0; Outcome::ALL.len()];
        self.value_size.clear();
        self.latency_us.clear();
        self.breakdown.clear();
        self.insight.clear();
        self.totals = Totals::default();
    }
}

/// Where [`Tables::add_hashed`] left a record's key and family entries
/// (`None`: the record has none there). Valid until the tables next
/// change.
#[derive(Debug, Clone, Copy, Default)]
pub struct Added {
    pub key: Option<SlotId>,
    pub family: Option<SlotId>,
}

/// The key table's lookups for a batch, started ahead of the records.
///
/// Why: the key table is far larger than the caches (an item is 648
/// bytes, 100,000 of them per collector by default), and a record waited
/// on its index cells, then its item, then its key bytes, one miss after
/// the other. Each record's key hash is made once, and its three fetches
/// are asked for `FAR`, `MID` and `NEAR` records before it is added, each
/// reading only what the one before brought in.
#[derive(Default)]
pub struct KeyAhead {
    /// The key table's hash of each record's key (None: no key, or an
    /// echo, which the tables skip).
    hashes: Vec<Option<u64>>,
    /// With per-window tables: each record's window (its place in the
    /// open windows when the batch began, and its start) and the
    /// key's hash in that window's key table, when the window was open
    /// before the batch (a window opened by the batch is looked up
    /// without help). The window's table is as large as the run's and
    /// was the one lookup left waiting on memory.
    pub window_hashes: Vec<Option<(usize, Ts, u64)>>,
}

impl KeyAhead {
    pub const FAR: usize = 12;
    pub const MID: usize = 6;
    pub const NEAR: usize = 3;

    /// Runs `add(i, hash)` for `n` records in order, record `i` being
    /// `at(i)` (from one batch or several), with the record's key hash in
    /// `t`'s key table, prefetching ahead.
    pub fn run_over<'b>(
        &mut self,
        t: &mut Tables,
        n: usize,
        at: impl Fn(usize) -> (&'b RecordBatch, &'b BRec),
        mut add: impl FnMut(&mut Tables, usize, Option<u64>),
    ) {
        self.hashes.clear();
        self.hashes.extend((0..n).map(|i| {
            let (b, r) = at(i);
            match b.key(r) {
                Some(k) if !r.echo => Some(t.keys.hash_key(k)),
                _ => None,
            }
        }));
        let n = self.hashes.len();
        for j in 0..n + Self::FAR {
            if let Some(Some(h)) = self.hashes.get(j) {
                t.keys.prefetch_index(*h);
            }
            if let Some(Some(h)) = j
                .checked_sub(Self::FAR - Self::MID)
                .and_then(|i| self.hashes.get(i))
            {
                t.keys.prefetch_item(*h);
            }
            if let Some(Some(h)) = j
                .checked_sub(Self::FAR - Self::NEAR)
                .and_then(|i| self.hashes.get(i))
            {
                t.keys.prefetch_key(*h);
            }
            if let Some(i) = j.checked_sub(Self::FAR) {
                add(t, i, self.hashes[i]);
            }
        }
    }
}

/// Interprets the proto/transport strings back (for reports).
pub fn proto_of(s: &str) -> Option<Proto> {
    match s {
        "text" => Some(Proto::Text),
        "meta" => Some(Proto::Meta),
        "binary" => Some(Proto::Binary),
        _ => None,
    }
}

pub fn transport_of(s: &str) -> Option<Transport> {
    match s {
        "tcp" => Some(Transport::Tcp),
        "udp" => Some(Transport::Udp),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_round_trip() {
        for (a, g, want) in [
            ("10.1.2.3:555", ClientGranularity::Ip, "10.1.2.3"),
            ("10.1.2.3:555", ClientGranularity::IpPort, "10.1.2.3:555"),
            ("[fe80::1]:7", ClientGranularity::IpPort, "[fe80::1]:7"),
            ("[::1]:7", ClientGranularity::Ip, "::1"),
        ] {
            let c = ClientId::new(a.parse().unwrap(), g);
            assert_eq!(c.render(), want);
            assert_eq!(ClientId::from_bytes(&c.bytes()), c);
            assert!(c.is(&c.bytes()));
            let other = ClientId::new("10.1.2.3:556".parse().unwrap(), g);
            assert_eq!(c.is(&other.bytes()), c.bytes() == other.bytes());
            assert!(!c.is(&c.bytes()[..18]));
        }
    }

    #[test]
    fn small_hist_quantiles() {
        let mut h = SmallHist::default();
        for v in [1u64, 2, 3, 100, 5000] {
            h.add(v);
        }
        assert_eq!(h.quantile(0.5), 3);
        assert_eq!(h.quantile(0.99), 5000);
        assert_eq!(h.max(), 5000);
        h.add(u64::MAX);
        assert_eq!(h.quantile(1.0), u64::MAX);
    }

    #[test]
    fn key_tables_are_exact_per_record() {
        let limits = TableLimits {
            max_keys: 10,
            max_clients: 10,
            max_families: 10,
            client_granularity: ClientGranularity::Ip,
            key_clients: 4,
            insight_examples: 16,
        };
        let t = Tables::new(&limits);
        assert_eq!(t.key_clients(), 4);
        let s = ClientId::server("10.0.0.1:11211".parse().unwrap());
        assert_eq!(s.socket_addr().to_string(), "10.0.0.1:11211");
        assert_eq!(
            ClientId::server("[::1]:7".parse().unwrap())
                .socket_addr()
                .to_string(),
            "[::1]:7"
        );
        // What a tracked key costs before its client, server or command
        // tables spill to the heap (README, "Speed and memory").
        assert_eq!(std::mem::size_of::<KeyStats>(), 608);
    }

    /// The prefetching path adds exactly what plain adds do, through a key
    /// table that churns (evictions move items while their prefetches are
    /// in flight) and across batches shorter and longer than the lookahead.
    #[test]
    fn key_ahead_adds_what_plain_adds_add() {
        use crate::decode::Transport;
        use crate::protocol::{Outcome, Proto};
        use crate::session::record::Record;
        let limits = TableLimits {
            max_keys: 50,
            max_clients: 10,
            max_families: 10,
            client_granularity: ClientGranularity::Ip,
            key_clients: 4,
            insight_examples: 16,
        };
        let (mut plain, mut ahead) = (Tables::new(&limits), Tables::new(&limits));
        let mut la = KeyAhead::default();
        let mut x = 1u64;
        for (n, len) in [0usize, 1, 5, 13, 700, 40].into_iter().enumerate() {
            let mut b = RecordBatch::default();
            let keys: Vec<String> = (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Skewed: a few hot keys and a long tail that churns.
                    format!("k{}", (x >> 33) % if x & 1 == 0 { 8 } else { 400 })
                })
                .collect();
            for (i, k) in keys.iter().enumerate() {
                let mut rec = Record {
                    ts: 1,
                    client: format!("10.0.0.{}:1", i % 7).parse().unwrap(),
                    server: "10.1.0.1:11211".parse().unwrap(),
                    transport: Transport::Tcp,
                    proto: Proto::Text,
                    command: "get",
                    first: true,
                    key: (i % 11 != 3).then_some(k.as_bytes()),
                    result: if i % 3 == 0 {
                        Outcome::Miss
                    } else {
                        Outcome::Hit
                    },
                    req_bytes: 0,
                    exptime: None,
                    resp_bytes: i as u64,
                    latency_ns: Some(1000 * i as u64),
                };
                if i % 17 == 5 {
                    rec.command = "set";
                }
                b.push(&rec, n as u64);
            }
            let fam = |i: usize| Some(if i % 2 == 0 { &b"even"[..] } else { b"odd" });
            for (i, r) in b.recs.iter().enumerate() {
                plain.add_in_family(&b, r, fam(i));
            }
            la.run_over(
                &mut ahead,
                b.recs.len(),
                |i| (&b, &b.recs[i]),
                |t, i, h| {
                    let r = &b.recs[i];
                    // Every other record counts its key first, as the
                    // collector does to read the key's family memo.
                    let slot = match (b.key(r), h) {
                        (Some(k), Some(h)) if i % 2 == 1 => Some(t.keys.update_at(k, h, 1)),
                        _ => None,
                    };
                    let at = t.add_hashed(&b, r, fam(i), h, slot);
                    // Where it says the entries are, until the next add.
                    assert_eq!(
                        at.key.map(|s| t.keys.at_mut(s).key().to_vec()),
                        b.key(r).map(|k| k.to_vec())
                    );
                    // A keyless record has no family either.
                    assert_eq!(
                        at.family.map(|s| t.families.at_mut(s).key().to_vec()),
                        b.key(r).and(fam(i)).map(|f| f.to_vec())
                    );
                },
            );
        }
        assert!(plain.keys.evictions() > 100, "{}", plain.keys.evictions());
        assert_eq!(ahead.keys.evictions(), plain.keys.evictions());
        assert_eq!(ahead.totals.requests, plain.totals.requests);
        assert_eq!(ahead.totals.keyless, plain.totals.keyless);
        let rows = |t: &Tables| {
            t.keys
                .iter()
                .map(|e| {
                    (
                        e.key().to_vec(),
                        e.count(),
                        e.error_bound(),
                        e.stats.traffic,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(rows(&ahead), rows(&plain));
    }
}
