//! The HTTP listener's life around a replay: bound before the files are
//! read (a busy port fails at once, not after an hour of replay), serving
//! the finished view until SIGINT or SIGTERM.

use crate::web::server::{self, Health, Server, View, ViewSource};
use std::sync::{Arc, OnceLock};

/// The view arrives once the pipeline is up (or the replay is done);
/// until then requests get 503.
#[derive(Default)]
pub struct LateView(OnceLock<Arc<dyn ViewSource>>);

impl LateView {
    pub fn set(&self, s: Arc<dyn ViewSource>) {
        let _ = self.0.set(s);
    }
}

impl ViewSource for LateView {
    fn view(&self) -> anyhow::Result<Arc<View>> {
        match self.0.get() {
            Some(s) => s.view(),
            None => anyhow::bail!("replay in progress: no report yet"),
        }
    }
    fn health(&self) -> Health {
        match self.0.get() {
            Some(s) => s.health(),
            None => Health {
                ok: false,
                problems: vec!["replay in progress".into()],
            },
        }
    }
}

pub struct Pending {
    server: Server,
    late: Arc<LateView>,
}

impl Pending {
    pub fn bind(listen: &str, limits: server::HttpLimits) -> anyhow::Result<Pending> {
        let late = Arc::new(LateView::default());
        let server = server::start_limited(listen, late.clone(), None, limits)?;
        announce(&server);
        Ok(Pending { server, late })
    }

    /// Serves `source` until SIGINT or SIGTERM, then stops cleanly.
    pub fn serve_until_signal(self, source: Arc<dyn ViewSource>) -> anyhow::Result<()> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        let _ = self.late.0.set(source);
        eprintln!("memtap: replay done; serving until interrupted (Ctrl-C)");
        let _ = signals.forever().next();
        self.server.stop();
        Ok(())
    }
}

/// The one line scripts (and tests) read to find the port.
pub fn announce(s: &Server) {
    eprintln!(
        "memtap: listening on http://{}/ (/metrics, /healthz, /api/report, /api/windows, /api/top, /api/events)",
        s.local_addr()
    );
}
