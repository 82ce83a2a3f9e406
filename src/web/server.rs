//! The HTTP listener: `/metrics`, `/healthz`, `/api/report`, `/api/windows`,
//! `/api/top`.
//!
//! It runs on its own small tokio runtime (two threads, never the capture
//! or collector threads), so a slow scraper cannot stall the pipeline. The
//! pipeline is reached only through [`ViewSource`]: a replay hands over a
//! finished view once, a live capture builds one on demand from its
//! collectors. Building a view may block (it waits for collector
//! snapshots), so handlers call it on tokio's blocking pool.

use crate::collect::tables::Tables;
use crate::export::prometheus::{self, ExportInput};
use crate::report::{self, LimitsOut, Report, ReportOptions, RunInfo, TotalsOut};
use crate::time::Ts;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The documented default listener: loopback only (the tables name keys
/// and clients; exposing them is a decision), on a port outside the
/// common exporter range.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9718";

/// Everything one request may show: the whole run so far and the recent
/// closed windows.
pub struct View {
    pub run: Tables,
    /// Recent closed windows, oldest first: (start, end, tables).
    pub windows: Vec<(Ts, Ts, Arc<Tables>)>,
    pub info: RunInfo,
    pub limits: LimitsOut,
    pub options: ReportOptions,
    /// Keys and clients in the top-N gauges.
    pub metrics_top: usize,
    /// Windows closed since the start (the retained ones are a suffix).
    pub windows_closed: u64,
    /// Live capture: each thread's counters (capture-N, or reader and
    /// worker-N), for per-thread rates; empty for a replay.
    pub threads: Vec<(String, crate::stats::Counters)>,
    /// Live capture: connections and UDP exchanges open now.
    pub flows_active: u64,
    /// The history store's figures (when there is one).
    pub store: Option<prometheus::StoreFigures>,
    /// What the triggers did, when rules are configured.
    pub triggers: Option<crate::trigger::Summary>,
    /// When `run` was copied (ns since the epoch): wall-clock time for a
    /// live capture, the last packet's time for a finished replay. Rates
    /// are differences of views over the time between them.
    pub taken_ns: Ts,
}

impl View {
    pub fn last_window(&self) -> Option<&(Ts, Ts, Arc<Tables>)> {
        self.windows.last()
    }
}

/// How the pipeline is doing, for `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub ok: bool,
    /// One line per problem (empty when ok).
    pub problems: Vec<String>,
}

/// Where the listener gets its data.
pub trait ViewSource: Send + Sync + 'static {
    /// A consistent view of the tables; may block briefly.
    fn view(&self) -> anyhow::Result<Arc<View>>;
    fn health(&self) -> Health;
}

/// A view that never changes: a finished replay.
pub struct FixedView(pub Arc<View>);

impl ViewSource for FixedView {
    fn view(&self) -> anyhow::Result<Arc<View>> {
        Ok(self.0.clone())
    }
    fn health(&self) -> Health {
        Health {
            ok: true,
            problems: Vec::new(),
        }
    }
}

/// What one listener allows, against clients that open many connections
/// or send half a request and wait.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; a new one past it closes the oldest
    /// idle one, or is closed itself when none frees a slot in time.
    pub max_connections: usize,
    /// Headers must arrive within this; an idle keep-alive connection is
    /// closed after it too.
    pub header_timeout: std::time::Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 256,
            header_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Request heads larger than this are refused (431): every route is a GET
/// with a short query.
const MAX_HEAD: usize = 16 << 10;

/// How long a new connection may wait for a slot when every one is taken
/// (by requests in flight, none idle to close) before it is closed.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Connections the listener closed, by why: `memtap_http_connections_closed_total`.
#[derive(Debug, Default)]
pub struct HttpCounts {
    /// Idle (or half-sent) connections closed, oldest first, to admit a
    /// new one past `max_connections`.
    pub evicted: AtomicU64,
    /// New connections closed at once: no slot came free in time.
    pub refused: AtomicU64,
    /// Requests whose head did not arrive within `header_timeout`, and
    /// idle keep-alive connections past it.
    pub header_timeout: AtomicU64,
}

impl HttpCounts {
    fn get(&self) -> [(&'static str, u64); 3] {
        [
            ("evicted", self.evicted.load(Ordering::Relaxed)),
            ("refused", self.refused.load(Ordering::Relaxed)),
            (
                "header_timeout",
                self.header_timeout.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// A running listener; dropping it (or [`Server::stop`]) shuts it down.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, and waits.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `listen` and serves `source` (plus any `extra` routes, e.g. the
/// history pages) until stopped. A bind failure is returned at once, with
/// the address in the message.
pub fn start(
    listen: &str,
    source: Arc<dyn ViewSource>,
    extra: Option<Router>,
) -> anyhow::Result<Server> {
    start_limited(listen, source, extra, HttpLimits::default())
}

/// `start` with the listener's limits.
pub fn start_limited(
    listen: &str,
    source: Arc<dyn ViewSource>,
    extra: Option<Router>,
    limits: HttpLimits,
) -> anyhow::Result<Server> {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        anyhow::anyhow!("--listen {listen}: expected ADDR:PORT, e.g. {DEFAULT_LISTEN}")
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_name("memtap-http")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the HTTP runtime: {e}"))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| anyhow::anyhow!("--listen {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    // With the history pages, they own `/`; otherwise a small index does.
    let mut app = Router::new();
    if extra.is_none() {
        app = app.route("/", get(index));
    }
    let mut app = app
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/report", get(api_report))
        .route("/api/insight", get(api_insight))
        .route("/insight", get(insight_page))
        .route("/api/windows", get(api_windows))
        .route("/api/top", get(api_top))
        .route("/api/events", get(api_events))
        .with_state(source);
    // The chart assets come with the history pages' router; without it,
    // they are mounted here, for pages built on this listener's data.
    app = match extra {
        Some(extra) => app.merge(extra),
        None => app.merge(super::assets::router()),
    };
    let counts = Arc::new(HttpCounts::default());
    let app = app.layer(axum::Extension(counts.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("memtap-http".into())
        .spawn(move || {
            rt.block_on(serve(listener, app, limits, counts, stop_rx));
        })
        .map_err(|e| anyhow::anyhow!("spawning the HTTP thread: {e}"))?;
    Ok(Server {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// The open connections, oldest first, each with whether a request is in
/// flight on it and how to close it, and the slots they hold.
#[derive(Default)]
struct Open {
    next: u64,
    /// Slots taken (at most `max_connections`); a connection closed for a
    /// newer one hands its slot over without giving it back.
    held: usize,
    conns: std::collections::BTreeMap<u64, (Arc<AtomicUsize>, tokio::sync::oneshot::Sender<()>)>,
}

/// How a new connection got in, if it did.
enum Admit {
    /// A slot was free.
    Free(Slot),
    /// The oldest idle connection was closed and its slot taken over.
    Evicted(Slot),
    /// Every connection has a request in flight.
    Full,
}

/// A connection's entry among the open ones.
struct Slot {
    id: u64,
    busy: Arc<AtomicUsize>,
    kill: tokio::sync::oneshot::Receiver<()>,
}

impl Open {
    fn admit(&mut self, max: usize) -> Admit {
        if self.held < max {
            self.held += 1;
            return Admit::Free(self.register());
        }
        if self.evict_oldest_idle() {
            return Admit::Evicted(self.register());
        }
        Admit::Full
    }

    fn register(&mut self) -> Slot {
        let busy = Arc::new(AtomicUsize::new(0));
        let (kill_tx, kill) = tokio::sync::oneshot::channel::<()>();
        let id = self.next;
        self.next += 1;
        self.conns.insert(id, (busy.clone(), kill_tx));
        Slot { id, busy, kill }
    }

    /// Closes the oldest connection with no request in flight: under a
    /// flood of idle or half-sent connections that is a flood connection
    /// (a real scrape sends its request at once and is done in
    /// milliseconds). False when every one is busy.
    fn evict_oldest_idle(&mut self) -> bool {
        let Some(id) = self
            .conns
            .iter()
            .find(|(_, (busy, _))| busy.load(Ordering::Relaxed) == 0)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some((_, kill)) = self.conns.remove(&id) {
            let _ = kill.send(());
        }
        true
    }

    /// A connection ended: its slot is given back, unless it was closed
    /// for a newer one (which took the slot over). True when freed.
    fn release(&mut self, id: u64) -> bool {
        if self.conns.remove(&id).is_some() {
            self.held -= 1;
            return true;
        }
        false
    }
}

fn lock_open(m: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks its connection busy from a request's arrival to its response.
struct Tracked<S> {
    inner: S,
    busy: Arc<AtomicUsize>,
}

/// Takes the mark off when the response is ready (or the request dropped).
struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let guard = BusyGuard(self.busy.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}

/// The accept loop: each connection on hyper's HTTP/1 with a header
/// timeout and a head size limit, at most `max_connections` at once. Past
/// that a new connection closes the oldest idle one and takes over its
/// slot, so a flood of idle or half-sent connections never keeps a scrape
/// out; when every connection has a request in flight it waits
/// `SLOT_WAIT` for one to end, then is closed. Memory stays bounded by
/// `max_connections` either way; each closure is counted (`HttpCounts`),
/// and the start and end of a full spell are logged once each.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    counts: Arc<HttpCounts>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let freed = Arc::new(tokio::sync::Notify::new());
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut stop = stop;
    // A full spell: when it began, and the counts then.
    let mut full_since: Option<(std::time::Instant, u64, u64)> = None;
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            a = listener.accept() => a,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors or memory: wait, rather than spin.
                eprintln!("memtap: warning: HTTP accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn = Conn {
            app: app.clone(),
            limits,
            counts: counts.clone(),
            open: open.clone(),
            freed: freed.clone(),
            closing: closing_rx.clone(),
        };
        let admitted = lock_open(&open).admit(limits.max_connections);
        match admitted {
            Admit::Free(slot) => {
                if let Some((t, ev, re)) = full_since.take() {
                    eprintln!(
                        "memtap: HTTP: below http.max_connections again after {:.1} s; {} idle connections closed for newer ones, {} refused",
                        t.elapsed().as_secs_f64(),
                        counts.evicted.load(Ordering::Relaxed) - ev,
                        counts.refused.load(Ordering::Relaxed) - re
                    );
                }
                tokio::spawn(conn.run(tcp, slot));
                continue;
            }
            Admit::Evicted(slot) => {
                counts.evicted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(conn.run(tcp, slot));
            }
            // Off the accept loop: a short wait for a request to end.
            Admit::Full => {
                tokio::spawn(conn.wait_for_slot(tcp));
            }
        }
        if full_since.is_none() {
            full_since = Some((
                std::time::Instant::now(),
                counts.evicted.load(Ordering::Relaxed),
                counts.refused.load(Ordering::Relaxed),
            ));
            eprintln!(
                "memtap: warning: HTTP: {} connections open (http.max_connections): the oldest idle ones are closed for new ones",
                limits.max_connections
            );
        }
    }
    let _ = closing_tx.send(true);
    // Requests in flight finish (bounded by the graceful timeout below).
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(6);
    while lock_open(&open).held > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What serving one connection needs.
struct Conn {
    app: Router,
    limits: HttpLimits,
    counts: Arc<HttpCounts>,
    open: Arc<Mutex<Open>>,
    /// Told when a slot is given back.
    freed: Arc<tokio::sync::Notify>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    /// Every connection is busy: tries again as slots come free (or idle
    /// ones appear) for `SLOT_WAIT`, then closes `tcp` (counted).
    async fn wait_for_slot(self, tcp: tokio::net::TcpStream) {
        let until = tokio::time::Instant::now() + SLOT_WAIT;
        let notify = self.freed.clone();
        loop {
            let freed = notify.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let admitted = lock_open(&self.open).admit(self.limits.max_connections);
            match admitted {
                Admit::Free(slot) => return self.run(tcp, slot).await,
                Admit::Evicted(slot) => {
                    self.counts.evicted.fetch_add(1, Ordering::Relaxed);
                    return self.run(tcp, slot).await;
                }
                Admit::Full => {}
            }
            // Requests end without a notice: idle ones are looked for
            // again every few ms too.
            let step =
                (tokio::time::Instant::now() + std::time::Duration::from_millis(10)).min(until);
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep_until(step) => {}
            }
            if tokio::time::Instant::now() >= until {
                self.counts.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Serves `tcp` in its slot until it ends, times out, is closed for a
    /// newer one, or the listener stops.
    async fn run(mut self, tcp: tokio::net::TcpStream, slot: Slot) {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use hyper_util::service::TowerToHyperService;
        let Slot { id, busy, mut kill } = slot;
        let svc = Tracked {
            inner: TowerToHyperService::new(self.app),
            busy,
        };
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(MAX_HEAD);
        let conn = b.serve_connection(TokioIo::new(tcp), svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if r.is_err_and(|e| e.is_timeout()) {
                    self.counts.header_timeout.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Closed for a newer connection (counted by the evicter).
            _ = &mut kill => {}
            _ = self.closing.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
            }
        }
        if lock_open(&self.open).release(id) {
            self.freed.notify_waiters();
        }
    }
}

type Src = Arc<dyn ViewSource>;

async fn view_of(src: &Src) -> Result<Arc<View>, Response> {
    let s = src.clone();
    match tokio::task::spawn_blocking(move || s.view()).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}"))),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
}

fn error(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><title>memtap</title><h1>memtap</h1><ul>\
         <li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\
         <li><a href=\"/healthz\">/healthz</a>: pipeline health</li>\
         <li><a href=\"/api/report\">/api/report</a>: the report of the whole run \
         (<a href=\"/api/report?window=last\">?window=last</a>: the last closed window)</li>\
         <li><a href=\"/api/windows\">/api/windows</a>: recent closed windows</li>\
         <li><a href=\"/insight\">/insight</a> (page) and <a href=\"/api/insight\">/api/insight</a>: why gets miss, storms, unread writes, TTLs, slab fit, miss-ratio curves</li>\
         <li><a href=\"/api/top?keys=100\">/api/top</a>: cumulative tables for \
         <code>memtap top --connect</code></li></ul>\n",
    )
}

/// Prometheus text format 0.0.4 unless the scraper asks for OpenMetrics.
async fn metrics(
    State(src): State<Src>,
    axum::Extension(http): axum::Extension<Arc<HttpCounts>>,
    headers: HeaderMap,
) -> Response {
    let v = match view_of(&src).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = render_metrics(&v, Some(&http), openmetrics);
    let ctype = if openmetrics {
        prometheus::Format::OpenMetrics
    } else {
        prometheus::Format::Prometheus004
    }
    .content_type();
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

/// One scrape's text, from a view (and the listener's own counts).
pub fn render_metrics(v: &View, http: Option<&HttpCounts>, openmetrics: bool) -> String {
    let mut out = String::with_capacity(64 << 10);
    let input = ExportInput {
        run: &v.run,
        last_window: v.last_window().map(|(_, _, t)| &**t),
        counters: &v.info.counters,
        top: v.metrics_top,
        redact: &v.options.redact,
        version: env!("CARGO_PKG_VERSION"),
        flows_active: v.flows_active,
        windows_closed: v.windows_closed,
        store: v.store,
        triggers: v.triggers.as_ref().map(|t| &t.stats),
        servers_found: &v.info.servers_found,
    };
    let format = if openmetrics {
        prometheus::Format::OpenMetrics
    } else {
        prometheus::Format::Prometheus004
    };
    prometheus::render(&mut out, &input, format);
    // OpenMetrics ends with `# EOF`: the per-thread families go before it.
    let eof = out.strip_suffix("# EOF\n").is_some();
    if eof {
        out.truncate(out.len() - "# EOF\n".len());
    }
    render_threads(&mut out, &v.threads, openmetrics);
    if let Some(h) = http {
        render_http(&mut out, h, openmetrics);
    }
    if eof {
        out.push_str("# EOF\n");
    }
    out
}

/// Connections the listener closed, by reason: a flood of idle clients
/// shows as `evicted`, one of busy ones as `refused`.
fn render_http(out: &mut String, h: &HttpCounts, om: bool) {
    use std::fmt::Write;
    let fam = if om {
        "memtap_http_connections_closed"
    } else {
        "memtap_http_connections_closed_total"
    };
    let _ = writeln!(
        out,
        "# HELP {fam} HTTP connections the listener closed: evicted (idle, for a newer one past http.max_connections), refused (no slot came free), header_timeout (no request head within http.header_timeout)."
    );
    let _ = writeln!(out, "# TYPE {fam} counter");
    for (reason, n) in h.get() {
        let _ = writeln!(
            out,
            "memtap_http_connections_closed_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

/// Per-thread packet, byte, record and flow counters: the fanout's balance
/// and each thread's rate. Thread names are memtap's own (no escaping).
fn render_threads(out: &mut String, threads: &[(String, crate::stats::Counters)], om: bool) {
    use std::fmt::Write;
    if threads.is_empty() {
        return;
    }
    type Get = fn(&crate::stats::Counters) -> u64;
    let fams: [(&str, &str, Get); 5] = [
        ("packets", "Frames read, by capture thread.", |c| c.packets),
        ("bytes", "Bytes of frames read, by capture thread.", |c| {
            c.bytes
        }),
        ("records", "Records emitted, by thread.", |c| c.records),
        ("tcp_flows", "TCP connections tracked, by thread.", |c| {
            c.tcp_flows
        }),
        (
            "udp_datagrams",
            "UDP datagrams to or from a target, by thread.",
            |c| c.udp_datagrams,
        ),
    ];
    for (name, help, get) in fams {
        // OpenMetrics names the counter family without `_total`.
        let fam = if om {
            format!("memtap_thread_{name}")
        } else {
            format!("memtap_thread_{name}_total")
        };
        let _ = writeln!(out, "# HELP {fam} {help}");
        let _ = writeln!(out, "# TYPE {fam} counter");
        for (t, c) in threads {
            let _ = writeln!(
                out,
                "memtap_thread_{name}_total{{thread=\"{t}\"}} {}",
                get(c)
            );
        }
    }
}

async fn healthz(State(src): State<Src>) -> Response {
    let h = tokio::task::spawn_blocking(move || src.health()).await;
    match h {
        Ok(h) if h.ok => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ok\n",
        )
            .into_response(),
        Ok(h) => error(StatusCode::SERVICE_UNAVAILABLE, &h.problems.join("\n")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct ReportQuery {
    /// `last`, or a window's start in Unix seconds.
    window: Option<String>,
}

async fn api_report(State(src): State<Src>, Query(q): Query<ReportQuery>) -> Response {
    match report_of(&src, &q).await {
        Ok(report) => json(&report),
        Err(r) => r,
    }
}

/// The report `/api/report` answers with (`?window=` as there), or the
/// error response.
async fn report_of(src: &Src, q: &ReportQuery) -> Result<Report, Response> {
    let v = view_of(src).await?;
    let report = match q.window.as_deref() {
        None => whole_run_report(&v),
        Some(w) => {
            let found = match w {
                "last" => v.last_window(),
                s => match s.parse::<f64>() {
                    Ok(secs) => v
                        .windows
                        .iter()
                        .find(|(st, _, _)| report::secs(*st) == secs),
                    Err(_) => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "window: expected `last` or a window start in Unix seconds",
                        ))
                    }
                },
            };
            match found {
                Some((start, end, t)) => window_report(&v, *start, *end, t),
                None => {
                    return Err(error(
                        StatusCode::NOT_FOUND,
                        "no such closed window (see /api/windows)",
                    ))
                }
            }
        }
    };
    Ok(report)
}

/// The report's cache-insight section (`?window=last` or a window start
/// as for `/api/report`).
async fn api_insight(State(src): State<Src>, Query(q): Query<ReportQuery>) -> Response {
    match report_of(&src, &q).await {
        Ok(Report {
            insight: Some(i), ..
        }) => json(&i),
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            "no cache insight: turned off ([insight] enabled = false) or nothing analysed yet",
        ),
        Err(r) => r,
    }
}

/// "Why it misses" as a page: the miss-ratio curves (pool and servers)
/// drawn with the page charts, and the miss classes per server.
async fn insight_page(State(src): State<Src>) -> Response {
    use std::fmt::Write;
    let v = match view_of(&src).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let r = whole_run_report(&v);
    let mut body = String::new();
    match &r.insight {
        None => {
            body.push_str("<p>No cache insight yet (turned off, or no gets or stores seen).</p>")
        }
        Some(ins) => {
            let mut series = Vec::new();
            for s in std::iter::once(&ins.pool).chain(&ins.servers) {
                if let Some(serde_json::Value::Object(m)) = &s.mrc {
                    if m.get("points")
                        .and_then(|p| p.as_array())
                        .is_some_and(|p| !p.is_empty())
                    {
                        let mut m = m.clone();
                        m.insert("name".into(), s.server.clone().into());
                        series.push(serde_json::Value::Object(m));
                    }
                }
            }
            body.push_str("<h2>What more memory would buy</h2>");
            if series.is_empty() {
                body.push_str("<p>Too few gets sampled for a miss-ratio curve yet.</p>");
            } else {
                let j = serde_json::json!({ "series": series }).to_string();
                body.push_str(&crate::web::charts::mrc_chart("mrc", &j));
            }
            body.push_str("<h2>Why gets miss</h2><table><tr><th>server</th><th>misses</th>");
            for c in crate::collect::insight::MISS_CLASSES {
                let _ = write!(body, "<th>{c}</th>");
            }
            body.push_str("</tr>");
            for s in ins.servers.iter().chain(std::iter::once(&ins.pool)) {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td>",
                    esc(&s.server),
                    s.classified_misses
                );
                for c in crate::collect::insight::MISS_CLASSES {
                    let _ = write!(body, "<td>{}</td>", s.misses[c]);
                }
                body.push_str("</tr>");
            }
            body.push_str("</table>");
        }
    }
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>memtap: why it misses</title>{}</head>\
         <body><h1>Why it misses</h1>{body}<p><a href=\"/api/insight\">/api/insight</a></p></body></html>",
        crate::web::assets::head_tags()
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_string_pretty(v) {
        Ok(s) => (
            [(header::CONTENT_TYPE, "application/json")],
            format!("{s}\n"),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The replay report's JSON, for the whole run so far.
pub fn whole_run_report(v: &View) -> Report {
    report::build(&v.run, &[], &v.info, v.limits.clone(), &v.options)
}

/// The same schema over one closed window: its tables, its time span, and
/// the run's health counters so far (counters are not kept per window).
pub fn window_report(v: &View, start: Ts, end: Ts, t: &Tables) -> Report {
    let info = RunInfo {
        files: v.info.files.clone(),
        counters: v.info.counters.clone(),
        first_ts: start,
        last_ts: end,
        servers_found: v.info.servers_found.clone(),
    };
    let limits = LimitsOut {
        tracked_keys: t.keys.len(),
        tracked_clients: t.clients.len(),
        tracked_families: t.families.len(),
        key_evictions: t.keys.evictions(),
        client_evictions: t.clients.evictions(),
        family_evictions: t.families.evictions(),
        ..v.limits.clone()
    };
    report::build(t, &[], &info, limits, &v.options)
}

#[derive(Serialize)]
struct WindowSummary {
    start: f64,
    end: f64,
    totals: TotalsOut,
    results: BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
struct WindowList {
    /// Windows closed since the start; only the most recent are kept.
    windows_closed: u64,
    windows: Vec<WindowSummary>,
}

async fn api_windows(State(src): State<Src>) -> Response {
    let v = match view_of(&src).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let windows = v
        .windows
        .iter()
        .map(|(s, e, t)| {
            let o = report::tables_out(t, &v.options);
            WindowSummary {
                start: report::secs(*s),
                end: report::secs(*e),
                totals: o.totals,
                results: o.results,
            }
        })
        .collect();
    json(&WindowList {
        windows_closed: v.windows_closed,
        windows,
    })
}

#[derive(serde::Deserialize)]
struct TopQuery {
    /// The most requested keys to include; 0 or absent: every tracked key.
    keys: Option<usize>,
}

/// The whole-run tables so far as `memtap top` reads them (compact JSON,
/// `memtap_top: 1`): cumulative counts, so a client takes rates over any
/// window from two of them and the server keeps no history for it.
/// Recent trigger firings and clearings (oldest first), with the
/// triggers' counts; `{"events": []}` when no rule is configured.
async fn api_events(State(src): State<Src>) -> Response {
    let v = match view_of(&src).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let body = match &v.triggers {
        Some(t) => serde_json::to_string(t),
        None => Ok("{\"events\":[]}".to_string()),
    };
    match body {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn api_top(State(src): State<Src>, Query(q): Query<TopQuery>) -> Response {
    let v = match view_of(&src).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let snap = report::top::snapshot(
        &v.run,
        &v.info.counters,
        &v.info.files,
        v.taken_ns,
        &v.options.redact,
        q.keys.unwrap_or(0),
    );
    match serde_json::to_string(&snap) {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
