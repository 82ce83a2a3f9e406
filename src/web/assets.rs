//! The pages' scripts and styles, compiled into the binary: the charts
//! work offline and behind firewalls, with no CDN and nothing to install
//! next to the binary.
//!
//! Served under `/assets/`; pages link them with `?v=HASH` (a hash of
//! the bytes) so they can be cached for a year and a new binary's files
//! still load at once.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::OnceLock;

/// uPlot (MIT, vendored unmodified: see assets/uplot/README.md).
pub const UPLOT_JS: &str = include_str!("assets/uplot/uPlot.iife.min.js");
pub const UPLOT_CSS: &str = include_str!("assets/uplot/uPlot.min.css");
pub const UPLOT_LICENSE: &str = include_str!("assets/uplot/LICENSE");
/// memtap's chart code over uPlot: reads each chart's embedded JSON.
pub const CHARTS_JS: &str = include_str!("assets/charts.js");
pub const CHARTS_CSS: &str = include_str!("assets/charts.css");

/// (path, content type, body).
const FILES: &[(&str, &str, &str)] = &[
    (
        "/assets/uplot.js",
        "text/javascript; charset=utf-8",
        UPLOT_JS,
    ),
    ("/assets/uplot.css", "text/css; charset=utf-8", UPLOT_CSS),
    (
        "/assets/uplot-LICENSE.txt",
        "text/plain; charset=utf-8",
        UPLOT_LICENSE,
    ),
    (
        "/assets/charts.js",
        "text/javascript; charset=utf-8",
        CHARTS_JS,
    ),
    ("/assets/charts.css", "text/css; charset=utf-8", CHARTS_CSS),
];

/// FNV-1a over every file: changes whenever any of them does.
fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (_, _, body) in FILES {
            for &b in body.as_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        format!("{:012x}", h & 0xffff_ffff_ffff)
    })
}

/// The `<link>` and `<script>` tags a page with charts puts in its head.
pub fn head_tags() -> String {
    let v = version();
    format!(
        "<link rel=\"stylesheet\" href=\"/assets/uplot.css?v={v}\">\
         <link rel=\"stylesheet\" href=\"/assets/charts.css?v={v}\">\
         <script src=\"/assets/uplot.js?v={v}\"></script>\
         <script src=\"/assets/charts.js?v={v}\" defer></script>"
    )
}

/// The same, inlined: for a page saved as one file (and the tests'
/// pages opened from disk).
pub fn inline_head_tags() -> String {
    // A script's text ends at the first `</script`; neither file has one.
    format!(
        "<style>{UPLOT_CSS}</style><style>{CHARTS_CSS}</style>\
         <script>{UPLOT_JS}</script><script>{CHARTS_JS}</script>"
    )
}

/// A whole page around `body` with the assets inlined, opening offline
/// from a file.
pub fn standalone_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title>{}</head><body>{body}</body></html>",
        super::charts::esc(title),
        inline_head_tags()
    )
}

/// The `/assets/...` routes. Both listeners mount them: `memtap serve`
/// (through the history pages' router) and the live capture's.
pub fn router() -> axum::Router {
    let mut r = axum::Router::new();
    for &(path, ctype, body) in FILES {
        r = r.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, ctype),
                        // The URL carries the version: a year, never revalidated.
                        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                    ],
                    body,
                )
                    .into_response()
            }),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_whole_and_versioned() {
        assert!(UPLOT_JS.starts_with("/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
        assert!(UPLOT_LICENSE.contains("The MIT License"));
        for (_, _, body) in FILES {
            assert!(!body.contains("</script"), "inlining needs no </script");
        }
        let t = head_tags();
        assert_eq!(t.matches(&format!("?v={}", version())).count(), 4, "{t}");
        assert_eq!(version().len(), 12);
    }
}
