//! Draws the model with ratatui: a header, the table of the current tab
//! (or a drill-down), and a status line. Pure drawing: the same frame at
//! the same model, whatever the terminal.

use super::model::{Header, KeyDetail, Line as Row_, Model, Prompt, Screen, Sort, Tab};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;

/// Colours, or none (`NO_COLOR`): emphasis then comes from bold and
/// reverse video alone.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub color: bool,
}

impl Look {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn alarm(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        }
    }
    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    fn head(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
}

/// A rate or count in at most 6 characters: 0, 3.5, 812, 12.3k, 4.1M.
pub fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 9.95 {
        format!("{v:.1}")
    } else if v < 99_999.5 {
        format!("{v:.0}")
    } else if v < 999_950.0 {
        format!("{:.1}k", v / 1e3)
    } else if v < 999_950_000.0 {
        format!("{:.1}M", v / 1e6)
    } else {
        format!("{:.1}G", v / 1e9)
    }
}

fn count(v: u64) -> String {
    num(v as f64)
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| format!("{p:.1}"))
}

fn micros(v: Option<u64>) -> String {
    v.map_or("-".into(), |p| num(p as f64))
}

pub fn draw(f: &mut Frame, m: &Model, look: Look) {
    let area = f.area();
    let [top, body, foot] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, top, m, &m.header(), look);
    match m.stack.last() {
        None => draw_table(f, body, m, look),
        Some(Screen::Key(k)) => draw_key(f, body, m, k, m.key_detail(k), look),
        Some(Screen::Client(c)) => draw_client(f, body, m, c, look),
    }
    draw_footer(f, foot, m, look);
    if m.help {
        draw_help(f, area);
    }
}

fn draw_header(f: &mut Frame, area: Rect, m: &Model, h: &Header, look: Look) {
    let mut tabs = vec![Span::styled("memtap top ", look.head())];
    for t in Tab::ALL {
        let s = if t == m.tab {
            look.selected().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        tabs.push(Span::styled(t.title(), s));
        tabs.push(Span::raw(" "));
    }
    let arrow = if m.reverse { "▲" } else { "▼" };
    let span = if h.span < 0.995 {
        format!("{:.2}", h.span)
    } else if h.span < 9.95 {
        format!("{:.1}", h.span)
    } else {
        format!("{:.0}", h.span)
    };
    tabs.push(Span::raw(format!(
        "sort {}{arrow} window {span}s",
        m.sort.title()
    )));
    if m.frozen {
        tabs.push(Span::styled("  FROZEN", look.alarm()));
    }
    let rates = Line::raw(format!(
        "pkts/s {}  bytes/s {}  records/s {}  req/s {}  hit% {}",
        num(h.packets),
        num(h.bytes),
        num(h.records),
        num(h.requests),
        pct(h.hit_pct),
    ));
    let run = Line::from(vec![
        Span::raw(format!(
            "run: requests {}  keys {}  ",
            h.total_requests, h.tracked_keys
        )),
        Span::styled(h.source.clone(), look.fg(Color::DarkGray)),
    ]);
    let mut loss = vec![Span::raw("lost: ")];
    if h.losses.is_empty() {
        loss.push(Span::styled("nothing", look.fg(Color::Green)));
    }
    for (n, v, grew) in &h.losses {
        let s = if *grew {
            look.alarm()
        } else {
            look.fg(Color::Yellow)
        };
        loss.push(Span::styled(
            format!("{n} {v}{}", if *grew { "↑" } else { "" }),
            s,
        ));
        loss.push(Span::raw("  "));
    }
    f.render_widget(
        Paragraph::new(vec![Line::from(tabs), rates, run, Line::from(loss)]),
        area,
    );
}

/// Column titles with the sort marker on the sorted one.
fn titles<'a>(m: &Model, cols: &[(&'a str, Option<Sort>)], look: Look) -> Row<'a> {
    Row::new(cols.iter().map(|(t, s)| {
        let mark = match s {
            Some(s) if *s == m.sort => {
                if m.reverse {
                    "▲"
                } else {
                    "▼"
                }
            }
            _ => "",
        };
        Cell::from(format!("{t}{mark}"))
    }))
    .style(look.head())
}

#[allow(clippy::too_many_arguments)]
fn draw_rows(
    f: &mut Frame,
    area: Rect,
    header: Row<'_>,
    rows: Vec<Vec<String>>,
    widths: Vec<Constraint>,
    selected: usize,
    title: String,
    look: Look,
) {
    let n = rows.len();
    let table = Table::new(
        rows.into_iter()
            .map(|r| Row::new(r.into_iter().map(Cell::from))),
        widths,
    )
    .header(header)
    .column_spacing(1)
    .row_highlight_style(look.selected())
    .block(Block::default().borders(Borders::TOP).title(title));
    // Lazily: with no rows, `n - 1` must not be computed at all.
    let mut st = TableState::default().with_selected((n > 0).then(|| selected.min(n - 1)));
    f.render_stateful_widget(table, area, &mut st);
}

fn right(w: u16) -> Constraint {
    Constraint::Length(w)
}

fn filters(m: &Model) -> String {
    let mut s = String::new();
    if let Some(k) = &m.key_filter {
        s.push_str(&format!(" key~{}", k.text));
    }
    if let Some(k) = &m.server_filter {
        s.push_str(&format!(" server~{}", k.text));
    }
    s
}

/// The rows that fit under a table's title and column line, scrolled so
/// the selected one shows, and its index among them: only those are
/// formatted (a 100k-key table would otherwise cost a million strings per
/// frame).
fn visible<T>(rows: &[T], selected: usize, area: Rect) -> (&[T], usize) {
    let h = (area.height as usize).saturating_sub(2).max(1);
    let sel = selected.min(rows.len().saturating_sub(1));
    let start = sel.saturating_sub(h - 1);
    let end = (start + h).min(rows.len());
    (&rows[start..end], sel - start)
}

fn draw_table(f: &mut Frame, area: Rect, m: &Model, look: Look) {
    let all = m.rows();
    let (rows, sel) = visible(&all, m.selected, area);
    let wide = area.width >= 100;
    let title = format!("{} ({}){}", m.tab.title(), all.len(), filters(m));
    use Sort::*;
    type Columns<'a> = Vec<(&'a str, Option<Sort>)>;
    let (cols, cells): (Columns, Vec<Vec<String>>) = match m.tab {
        Tab::Keys | Tab::Clients | Tab::Families => {
            let keys = m.tab == Tab::Keys;
            let name = match m.tab {
                Tab::Keys => "KEY",
                Tab::Clients => "CLIENT",
                _ => "FAMILY",
            };
            let mut cols = vec![
                (name, None),
                ("REQ/s", Some(Requests)),
                ("HIT/s", Some(Hits)),
                ("MISS/s", Some(Misses)),
                ("HIT%", None),
            ];
            if wide {
                cols.push(("IN/s", Some(Bytes)));
                cols.push(("OUT/s", None));
            } else {
                cols.push(("B/s", Some(Bytes)));
            }
            if keys {
                if wide {
                    cols.push(("P50µs", None));
                }
                cols.push(("P99µs", Some(Latency)));
            }
            cols.push(("TOTAL", Some(Total)));
            let cells = rows
                .iter()
                .map(|l| {
                    let mut c = vec![
                        l.name.clone(),
                        num(l.rate.requests),
                        num(l.rate.hits),
                        num(l.rate.misses),
                        pct(l.rate.hit_pct()),
                    ];
                    if wide {
                        c.push(num(l.rate.bytes_in));
                        c.push(num(l.rate.bytes_out));
                    } else {
                        c.push(num(l.rate.bytes_in + l.rate.bytes_out));
                    }
                    if keys {
                        if wide {
                            c.push(micros(l.p50));
                        }
                        c.push(micros(l.p99));
                    }
                    c.push(count(l.total.requests));
                    c
                })
                .collect();
            (cols, cells)
        }
        Tab::Servers => (
            vec![
                ("SERVER", None),
                ("SHARE%", None),
                ("REQ/s", Some(Requests)),
                ("HIT/s", Some(Hits)),
                ("MISS/s", Some(Misses)),
                ("HIT%", None),
                ("IN/s", Some(Bytes)),
                ("OUT/s", None),
                ("TOTAL", Some(Total)),
            ],
            rows.iter()
                .map(|l| {
                    vec![
                        l.name.clone(),
                        pct(l.share),
                        num(l.rate.requests),
                        num(l.rate.hits),
                        num(l.rate.misses),
                        pct(l.rate.hit_pct()),
                        num(l.rate.bytes_in),
                        num(l.rate.bytes_out),
                        count(l.total.requests),
                    ]
                })
                .collect(),
        ),
        Tab::Insight => {
            let mut cols: Columns = vec![("SERVER", None), ("MISS/s", Some(Misses))];
            cols.extend([
                ("FIRST", None),
                ("EXPIRED", None),
                ("DELETED", None),
                ("EVICTED", None),
                ("FORGOT", None),
                ("NO-TTL", None),
                ("EVICT%", None),
                ("STORMS", None),
                ("UNREAD", None),
            ]);
            let cells = rows
                .iter()
                .map(|l| {
                    let mut c = vec![l.name.clone(), num(l.rate.misses)];
                    c.extend(l.classes.iter().take(6).map(|&n| count(n)));
                    let all: u64 = l.classes.iter().take(6).sum();
                    let ev = l.classes.get(3).copied().unwrap_or(0);
                    c.push(pct((all > 0).then(|| 100.0 * ev as f64 / all as f64)));
                    c.extend(l.classes.iter().skip(6).map(|&n| count(n)));
                    c
                })
                .collect();
            (cols, cells)
        }
        Tab::Commands => (
            vec![
                ("COMMAND", None),
                ("PROTO", None),
                ("CMD/s", Some(Hits)),
                ("REQ/s", Some(Requests)),
                ("COMMANDS", None),
                ("REQUESTS", Some(Total)),
            ],
            rows.iter()
                .map(|l| {
                    vec![
                        l.name.clone(),
                        l.detail.clone(),
                        num(l.rate.hits),
                        num(l.rate.requests),
                        count(l.total.hits),
                        count(l.total.requests),
                    ]
                })
                .collect(),
        ),
    };
    let widths = cols
        .iter()
        .enumerate()
        .map(|(i, (t, _))| {
            if i == 0 {
                Constraint::Fill(1)
            } else {
                right((t.chars().count() as u16 + 1).max(6))
            }
        })
        .collect();
    let header = titles(m, &cols, look);
    draw_rows(f, area, header, cells, widths, sel, title, look);
}

fn draw_key(f: &mut Frame, area: Rect, m: &Model, key: &str, d: Option<KeyDetail>, look: Look) {
    let Some(d) = d else {
        f.render_widget(
            Paragraph::new(format!("key {key}: no longer tracked (Esc: back)"))
                .block(Block::default().borders(Borders::TOP)),
            area,
        );
        return;
    };
    let [info, spark, table] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Min(2),
    ])
    .areas(area);
    let l: &Row_ = &d.line;
    let bound = if d.error_bound > 0 {
        format!(" (±{})", d.error_bound)
    } else {
        String::new()
    };
    let text = vec![
        Line::from(vec![
            Span::styled("key ", look.head()),
            Span::styled(
                l.name.clone(),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ]),
        Line::raw(format!(
            "req/s {}  hits/s {}  misses/s {}  hit% {}  in/s {}  out/s {}",
            num(l.rate.requests),
            num(l.rate.hits),
            num(l.rate.misses),
            pct(l.rate.hit_pct()),
            num(l.rate.bytes_in),
            num(l.rate.bytes_out),
        )),
        Line::raw(format!(
            "latency over the window: p50 {}µs  p99 {}µs",
            micros(l.p50),
            micros(l.p99),
        )),
        Line::raw(format!(
            "total: {} requests{bound}, {} hits, {} misses, {} errors; servers: {}",
            l.total.requests,
            l.total.hits,
            l.total.misses,
            l.total.errors,
            d.servers.join(", ")
        )),
        Line::raw(format!(
            "commands: {}",
            d.commands
                .iter()
                .map(|(c, r, n)| format!("{c} {}/s ({n})", num(*r)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    ];
    f.render_widget(Paragraph::new(text), info);
    let pts: Vec<u64> = d.spark.iter().map(|v| v.round() as u64).collect();
    let shown = pts.len().min(spark.width as usize);
    let peak = d.spark.iter().copied().fold(0.0, f64::max);
    f.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::TOP).title(format!(
                "requests/s, last {}s (peak {})",
                shown,
                num(peak)
            )))
            .style(look.fg(Color::Green))
            .data(pts[pts.len() - shown..].to_vec()),
        spark,
    );
    // A `±` column once some count is not exact (the key had more clients
    // than its table holds).
    let bounded = d.client_bounds.iter().any(|&b| b > 0);
    let mut cols = vec![("CLIENT", None), ("REQ/s", None), ("TOTAL", None)];
    if bounded {
        cols.push(("±", None));
    }
    let header = titles(m, &cols, look);
    let cells = d
        .clients
        .iter()
        .zip(&d.client_bounds)
        .map(|((c, r, n), b)| {
            let mut row = vec![c.clone(), num(*r), count(*n)];
            if bounded {
                row.push(count(*b));
            }
            row
        })
        .collect();
    let mut widths = vec![Constraint::Fill(1), right(8), right(8)];
    if bounded {
        widths.push(right(8));
    }
    draw_rows(
        f,
        table,
        header,
        cells,
        widths,
        m.selected,
        "its hottest clients (Enter: the client's keys, Esc: back)".into(),
        look,
    );
}

fn draw_client(f: &mut Frame, area: Rect, m: &Model, client: &str, look: Look) {
    let all = m.client_keys(client);
    let (rows, sel) = visible(&all, m.selected, area);
    let header = titles(
        m,
        &[
            ("KEY", None),
            ("REQ/s", Some(Sort::Requests)),
            ("TOTAL", Some(Sort::Total)),
        ],
        look,
    );
    let title = format!(
        "client {client}: {} keys it is a top client of{} (Enter: key, Esc: back)",
        all.len(),
        filters(m)
    );
    let cells = rows
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                num(l.rate.requests),
                count(l.total.requests),
            ]
        })
        .collect();
    draw_rows(
        f,
        area,
        header,
        cells,
        vec![Constraint::Fill(1), right(8), right(8)],
        sel,
        title,
        look,
    );
}

fn draw_footer(f: &mut Frame, area: Rect, m: &Model, look: Look) {
    let line = if let Some((p, text)) = &m.prompt {
        let what = match p {
            Prompt::Key => "key filter (substring, ~regex)",
            Prompt::Server => "server filter (substring, ~regex)",
        };
        Line::from(vec![
            Span::styled(format!("{what}: "), look.head()),
            Span::raw(format!("{text}_")),
        ])
    } else if let Some(s) = &m.status {
        Line::styled(s.clone(), look.alarm())
    } else {
        Line::raw("q quit ? help Tab tabs r/h/m/b/l/t sort / filter space freeze Enter drill")
    };
    f.render_widget(Paragraph::new(line), area);
}

pub const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    (
        "Tab, Shift-Tab, 1-6",
        "keys, clients, servers, commands, families",
    ),
    (
        "r h m b l t",
        "sort by req/s, hits/s, misses/s, bytes/s, p99, total",
    ),
    ("same sort key, i", "reverse the order"),
    ("↑ ↓ PgUp PgDn Home End", "move"),
    ("Enter", "drill down (key: its clients; client: its keys)"),
    ("Esc, Backspace", "back"),
    ("/", "key filter: substring, or ~regex (empty: none)"),
    ("s", "server filter: substring, or ~regex"),
    ("space", "freeze / thaw the view"),
    ("x", "reset rates (restart the window now)"),
];

fn draw_help(f: &mut Frame, area: Rect) {
    let w = area.width.min(72);
    let h = (HELP.len() as u16 + 4).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| Line::raw(format!("{k:>22}  {v}")))
        .chain([Line::raw(""), Line::raw("  any key closes this help")])
        .collect();
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" help ")),
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first frame, before any snapshot: every table is empty.
    #[test]
    fn an_empty_model_draws() {
        let m = Model::new(10_000_000_000, Sort::Requests);
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(100, 30)).unwrap();
        t.draw(|f| draw(f, &m, Look { color: false })).unwrap();
        let text: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(text.contains("lost: nothing"), "{text}");
    }

    #[test]
    fn numbers_fit_six_columns() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(3.25), "3.2");
        assert_eq!(num(812.0), "812");
        assert_eq!(num(99_999.0), "99999");
        assert_eq!(num(123_456.0), "123.5k");
        assert_eq!(num(4_100_000.0), "4.1M");
        assert_eq!(num(41_000_000.0), "41.0M");
    }
}
