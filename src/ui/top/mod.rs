//! `memtap top`: the live full-screen table of the hottest keys, clients,
//! servers, commands and key families. The [`model`] turns snapshots into
//! rows; [`render`] draws them with ratatui; this loop owns the terminal
//! (through ratatui's crossterm backend), maps keys to model actions and
//! redraws at most a few times a second.

pub mod model;
pub mod render;

use crate::report::top::Snapshot;
use crossbeam_channel::Receiver;
use model::{Action, Model, Prompt, Sort, Tab};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the sources send the view.
pub enum Feed {
    /// The next cumulative snapshot.
    Snap(Box<Snapshot>),
    /// The source is done (a replay reached the end); the view stays.
    Done(String),
    /// Something is wrong but may pass (an unreachable remote).
    Problem(String),
}

pub struct Options {
    pub window_ns: u64,
    pub sort: Sort,
    pub color: bool,
}

/// The view redraws at most this often (and at once on a key press).
const REDRAW: Duration = Duration::from_millis(250);

/// `top` draws a full screen: without a terminal it says so and stops,
/// before anything is opened.
pub fn check_terminal() -> anyhow::Result<()> {
    anyhow::ensure!(
        std::io::stdout().is_terminal(),
        "memtap top needs a terminal, and standard output is not one (for a report on a pipe or file use `memtap replay` or `memtap capture`)"
    );
    Ok(())
}

/// Colour unless `NO_COLOR` is set to anything but the empty string.
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The key bindings (also the help overlay's).
pub fn action_of(k: &KeyEvent, prompt: bool, page: i64) -> Option<Action> {
    if k.modifiers.contains(KeyModifiers::CONTROL) {
        return match k.code {
            KeyCode::Char('c') => Some(Action::Quit),
            _ => None,
        };
    }
    if prompt {
        return match k.code {
            KeyCode::Char(c) => Some(Action::Type(c)),
            KeyCode::Backspace => Some(Action::Erase),
            KeyCode::Enter => Some(Action::Enter),
            KeyCode::Esc => Some(Action::Back),
            _ => None,
        };
    }
    Some(match k.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Tab => Action::NextTab,
        KeyCode::BackTab => Action::PrevTab,
        KeyCode::Char(c @ '1'..='6') => Action::Tab(Tab::ALL[(c as u8 - b'1') as usize]),
        KeyCode::Char('r') => Action::Sort(Sort::Requests),
        KeyCode::Char('h') => Action::Sort(Sort::Hits),
        KeyCode::Char('m') => Action::Sort(Sort::Misses),
        KeyCode::Char('b') => Action::Sort(Sort::Bytes),
        KeyCode::Char('l') => Action::Sort(Sort::Latency),
        KeyCode::Char('t') => Action::Sort(Sort::Total),
        KeyCode::Char('i') => Action::Reverse,
        KeyCode::Char(' ') => Action::Freeze,
        KeyCode::Char('x') => Action::Reset,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('/') => Action::Prompt(Prompt::Key),
        KeyCode::Char('s') => Action::Prompt(Prompt::Server),
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::Page(-page),
        KeyCode::PageDown => Action::Page(page),
        KeyCode::Home => Action::Home,
        KeyCode::End => Action::End,
        KeyCode::Enter => Action::Enter,
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left => Action::Back,
        _ => return None,
    })
}

/// Runs the view until `q` (or until `quit` is set elsewhere, e.g. a
/// capture's --duration ran out); sets `quit` on the way out. The terminal
/// is restored whatever happens, panics included (ratatui's hook).
pub fn run(feed: Receiver<Feed>, o: Options, quit: &AtomicBool) -> anyhow::Result<Model> {
    let mut term = ratatui::try_init()?;
    let look = render::Look { color: o.color };
    let mut m = Model::new(o.window_ns, o.sort);
    let res = (|| -> anyhow::Result<()> {
        let mut dirty = true;
        let mut last_draw = Instant::now() - REDRAW;
        let mut page = 10i64;
        loop {
            while let Ok(msg) = feed.try_recv() {
                match msg {
                    Feed::Snap(s) => {
                        m.ingest(*s);
                        if m.status.as_deref().is_some_and(|s| s.starts_with("cannot")) {
                            m.status = None;
                        }
                    }
                    Feed::Done(s) | Feed::Problem(s) => m.status = Some(s),
                }
                dirty = true;
            }
            if dirty && last_draw.elapsed() >= REDRAW {
                let f = term.draw(|f| render::draw(f, &m, look))?;
                page = (f.area.height as i64 - 8).max(1);
                last_draw = Instant::now();
                dirty = false;
            }
            if quit.load(Ordering::Relaxed) || m.quit {
                break;
            }
            if event::poll(Duration::from_millis(50))? {
                match event::read()? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        if let Some(a) = action_of(&k, m.prompt.is_some(), page) {
                            m.act(a);
                            // Input is answered at once, not at the next tick.
                            last_draw = Instant::now() - REDRAW;
                            dirty = true;
                        }
                    }
                    Event::Resize(_, _) => {
                        term.autoresize()?;
                        last_draw = Instant::now() - REDRAW;
                        dirty = true;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    })();
    quit.store(true, Ordering::Relaxed);
    ratatui::try_restore()?;
    res.map(|_| m)
}
