// memtap's charts: every <figure class="mt-chart"> carries its data as
// JSON (src/web/charts.rs writes it); this draws it with uPlot. Times are
// UTC everywhere, like the reports. Dragging across a time chart zooms
// every time chart of the page, fills the form's since/until boxes and
// records the zoom in the URL (#zoom=FROM,TO, Unix seconds), so a reload
// or a shared link shows the same view; "apply" reloads the whole page
// (tables included) for that range.
(function () {
  "use strict";

  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var GRID = { stroke: "#e6e6e6", width: 1 };
  var TICKS = { stroke: "#999", width: 1, size: 4 };

  // Three significant digits, trailing zeros trimmed (as charts.rs does).
  function sig3(v) {
    var a = Math.abs(v);
    var s = a >= 100 || a === 0 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
    if (s.indexOf(".") >= 0) s = s.replace(/0+$/, "").replace(/\.$/, "");
    return s;
  }
  function fmtSI(v) {
    var a = Math.abs(v), p = [[1e15, " P"], [1e12, " T"], [1e9, " G"], [1e6, " M"], [1e3, " k"]];
    for (var i = 0; i < p.length; i++) if (a >= p[i][0]) return sig3(v / p[i][0]) + p[i][1];
    return sig3(v);
  }
  function fmtIEC(v) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"], i = 0;
    while (Math.abs(v) >= 1024 && i + 1 < u.length) { v /= 1024; i++; }
    return sig3(v) + " " + u[i];
  }
  function fmtPct(v) { return v.toFixed(1) + " %"; }
  var FMT = { si: fmtSI, iec: fmtIEC, pct: fmtPct };
  var TICK = { si: fmtSI, iec: fmtIEC, pct: function (v) { return sig3(v) + " %"; } };
  // Room on the right for the last time tick's label.
  var PADDING = [12, 40, 0, 0];

  function replaceUrl(url) {
    // A page opened from a file may refuse it; the zoom still works.
    try { history.replaceState(null, "", url); } catch (e) { /* ignored */ }
  }

  function pad(n, w) { n = String(n); while (n.length < w) n = "0" + n; return n; }
  function ymd(d) { return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1, 2) + "-" + pad(d.getUTCDate(), 2); }
  function hms(d) { return pad(d.getUTCHours(), 2) + ":" + pad(d.getUTCMinutes(), 2) + ":" + pad(d.getUTCSeconds(), 2); }
  // "2026-12-06 19:35:00", with ".250" when there are milliseconds: the
  // form the since/until boxes show and accept.
  function utc(secs) {
    var ms = Math.round(secs * 1000), d = new Date(ms), f = ((ms % 1000) + 1000) % 1000;
    return ymd(d) + " " + hms(d) + (f ? "." + pad(f, 3) : "");
  }

  // Tick labels for a time axis: as fine as the tick spacing, the date on
  // the first tick and wherever it changes.
  function timeTicks(u, splits, ai, space, incr) {
    var prev = null;
    return splits.map(function (s) {
      var d = new Date(Math.round(s * 1000)), day = ymd(d), t;
      if (incr >= 86400) t = day;
      else {
        t = incr >= 60 ? hms(d).slice(0, 5) : hms(d);
        if (incr < 1) t += "." + pad(d.getUTCMilliseconds(), 3);
        if (day !== prev) t += "\n" + day;
      }
      prev = day;
      return t;
    });
  }

  function readData(fig) {
    var el = fig.querySelector("script.mt-data");
    try { return el ? JSON.parse(el.textContent) : null; } catch (e) { return null; }
  }

  function width(fig) {
    var w = fig.parentElement ? fig.parentElement.clientWidth : 640;
    return Math.max(320, Math.min(w - 24, 640));
  }

  // The axis tick labels uPlot drew, for the tests and for anyone
  // inspecting the page (canvas text is not in the DOM).
  function recordTicks(u, fig) {
    fig.setAttribute("data-ticks-x", JSON.stringify(u.axes[0]._values || []));
    fig.setAttribute("data-ticks-y", JSON.stringify(u.axes[1]._values || []));
  }

  function marker(u, cls, attrs, title, label, color) {
    var m = document.createElement("div");
    m.className = cls;
    for (var k in attrs) m.setAttribute(k, attrs[k]);
    m.title = title;
    if (color) m.style.borderColor = color;
    if (label) {
      var l = document.createElement("span");
      l.textContent = label;
      if (color) l.style.color = color;
      m.appendChild(l);
    }
    u.over.appendChild(m);
    return m;
  }

  // Places DOM markers (lines over the plot) at their values; hidden when
  // out of the visible range.
  function placeMarkers(u, list) {
    list.forEach(function (m) {
      var pos = u.valToPos(m.v, m.scale);
      var dim = m.scale === "x" ? u.over.clientWidth : u.over.clientHeight;
      var out = !(pos >= -0.5 && pos <= dim + 0.5) || !isFinite(pos);
      m.el.style.display = out ? "none" : "";
      if (m.scale === "x") {
        m.el.style.left = pos + "px";
        // Near the right edge the label goes on the line's left.
        if (m.el.firstChild) m.el.classList.toggle("flip", pos > dim * 0.7);
      }
      else m.el.style.top = pos + "px";
      m.el.setAttribute("data-px", out ? "" : pos.toFixed(1));
    });
  }

  var timeCharts = [];
  var syncing = false;
  var fullRange = null; // [min, max] of the time charts' data
  var boxes = null; // the form's original since/until values
  var intervals = []; // [start, length] of every time chart's intervals

  function zoomBar() {
    var bar = document.getElementById("zoom");
    if (bar) return bar;
    bar = document.createElement("p");
    bar.id = "zoom";
    bar.className = "mt-zoom";
    bar.hidden = true;
    var first = document.querySelector(".mt-chart[data-kind=time]");
    if (first) first.parentElement.parentElement.insertBefore(bar, first.parentElement);
    return bar;
  }

  function onZoom(min, max) {
    var since = document.getElementById("since"), until = document.getElementById("until");
    if (boxes === null) boxes = [since ? since.value : "", until ? until.value : ""];
    var bar = zoomBar();
    var full = fullRange && min <= fullRange[0] && max >= fullRange[1];
    if (full) {
      if (since) since.value = boxes[0];
      if (until) until.value = boxes[1];
      bar.hidden = true;
      if (location.hash.indexOf("#zoom=") === 0) replaceUrl(location.pathname + location.search);
      return;
    }
    // The range of the intervals whose start is visible: from the first
    // one's start to the last one's end, so [since, until) selects them.
    var s = null, e = null;
    intervals.forEach(function (iv) {
      if (iv[0] >= min && iv[0] <= max) {
        if (s === null || iv[0] < s) s = iv[0];
        if (e === null || iv[0] + iv[1] > e) e = iv[0] + iv[1];
      }
    });
    if (s === null) { s = Math.ceil(min * 1000 - 1e-6) / 1000; e = Math.floor(max * 1000 + 1e-6) / 1000 + 0.001; }
    if (since) since.value = utc(s);
    if (until) until.value = utc(e);
    var q = new URLSearchParams(location.search);
    q.set("since", utc(s));
    q.set("until", utc(e));
    bar.innerHTML = "";
    bar.appendChild(document.createTextNode("Zoomed to " + utc(s) + " – " + utc(e) + " UTC: "));
    var a = document.createElement("a");
    a.id = "zoom-apply";
    a.href = location.pathname + "?" + q.toString();
    a.textContent = "apply to the whole page";
    bar.appendChild(a);
    bar.appendChild(document.createTextNode(" · "));
    var r = document.createElement("button");
    r.type = "button";
    r.id = "zoom-reset";
    r.textContent = "reset zoom";
    r.onclick = function () { setZoom(fullRange[0], fullRange[1]); };
    bar.appendChild(r);
    bar.appendChild(document.createTextNode(" (or double-click a chart)"));
    bar.hidden = false;
    replaceUrl(location.pathname + location.search + "#zoom=" + min + "," + max);
  }

  function setZoom(min, max) {
    syncing = true;
    timeCharts.forEach(function (u) { u.setScale("x", { min: min, max: max }); });
    syncing = false;
    onZoom(min, max);
  }

  function timeChart(fig, d) {
    var fmt = FMT[d.fmt] || fmtSI;
    var suffix = d.fmt === "pct" ? "" : d.fmt === "iec" ? "/s" : " " + d.unit;
    // One more x at the last interval's end (no values): the axis then
    // covers the whole span, and events in the last interval show.
    var n = d.x.length;
    var xs = d.x.slice();
    var end = n ? d.x[n - 1] + (d.dur[n - 1] || 0) : 0;
    if (n && end > xs[n - 1]) xs.push(end);
    var data = [xs];
    var series = [{
      label: "time (UTC)",
      value: function (u, v) { return v == null ? "—" : utc(v); }
    }];
    d.series.forEach(function (s, i) {
      var vals = s.values.slice();
      while (vals.length < xs.length) vals.push(null);
      data.push(vals);
      series.push({
        label: s.name,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        points: { show: true, size: 5 },
        value: function (u, v, si, idx) {
          if (v == null || idx == null || idx >= n) return "—";
          var c = s.counts[idx], of = s.of ? s.of[idx] : null;
          var txt = fmt(v) + suffix;
          if (c != null) txt += " (" + c + " " + d.count_unit + (of != null ? " of " + of : "") + ")";
          return txt;
        }
      });
    });
    var markers = [];
    var opts = {
      width: width(fig),
      height: 240,
      padding: PADDING,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      cursor: {
        sync: { key: "mt-time" },
        drag: { x: true, y: false, setScale: true },
        points: { size: 7 }
      },
      scales: {
        x: { time: true },
        y: {
          range: d.fmt === "pct" ? [0, 100] : function (u, mn, mx) {
            return uPlot.rangeNum(0, mx > 0 ? mx : 1, 0.1, true);
          }
        }
      },
      axes: [
        { values: timeTicks, grid: GRID, ticks: TICKS, size: 48, space: 70 },
        {
          label: d.unit,
          values: function (u, splits) { return splits.map(function (v) { return (TICK[d.fmt] || fmtSI)(v); }); },
          grid: GRID, ticks: TICKS, size: 64
        }
      ],
      series: series,
      hooks: {
        ready: [function (u) {
          (d.events || []).forEach(function (ev) {
            markers.push({
              v: ev[0], scale: "x",
              el: marker(u, "mt-event event", { "data-x": String(ev[0]) }, ev[1], "", "#c00")
            });
          });
          placeMarkers(u, markers);
          u.mtReady = true;
        }],
        draw: [function (u) { placeMarkers(u, markers); recordTicks(u, fig); }],
        setScale: [function (u, key) {
          if (key !== "x" || syncing || !u.mtReady) return;
          var sc = u.scales.x;
          setZoom(sc.min, sc.max);
        }]
      }
    };
    var u = new uPlot(opts, data, fig.querySelector(".mt-plot"));
    if (n) {
      fullRange = fullRange
        ? [Math.min(fullRange[0], xs[0]), Math.max(fullRange[1], xs[xs.length - 1])]
        : [xs[0], xs[xs.length - 1]];
    }
    d.x.forEach(function (x, i) { intervals.push([x, d.dur[i] || 0]); });
    timeCharts.push(u);
    return u;
  }

  function mrcChart(fig, d) {
    var bytes = d.unit !== "objects";
    var fmtSize = bytes ? fmtIEC : function (v) { return fmtSI(v) + " objects"; };
    var xsSet = {};
    d.series.forEach(function (c) {
      c.points.forEach(function (p) { xsSet[p[0]] = true; });
    });
    var xs = Object.keys(xsSet).map(Number).sort(function (a, b) { return a - b; });
    var data = [xs];
    var lo = xs.length ? xs[0] : 1024, hi = xs.length ? xs[xs.length - 1] : 2048;
    var series = [{ label: "cache size", value: function (u, v) { return v == null ? "—" : fmtSize(v); } }];
    d.series.forEach(function (c, i) {
      var at = {};
      c.points.forEach(function (p) { at[p[0]] = p[1] * 100; });
      data.push(xs.map(function (x) { return x in at ? at[x] : null; }));
      (c.targets || []).forEach(function (t) {
        if (t[1] != null) { lo = Math.min(lo, t[1]); hi = Math.max(hi, t[1]); }
      });
      series.push({
        label: c.name,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        spanGaps: true,
        points: { show: xs.length <= 64, size: 4 },
        value: function (u, v, si, idx) {
          if (v == null || idx == null) return "—";
          return "with " + fmtSize(xs[idx]) + ", hit ratio " + v.toFixed(1) + " %";
        }
      });
    });
    var lo2 = Math.pow(2, Math.floor(Math.log2(lo))), hi2 = Math.pow(2, Math.ceil(Math.log2(hi)));
    if (hi2 <= lo2) hi2 = lo2 * 2;
    var markers = [];
    var opts = {
      width: width(fig),
      height: 300,
      padding: PADDING,
      cursor: { drag: { x: true, y: false, setScale: true }, points: { size: 7 } },
      scales: {
        x: {
          time: false, distr: 3, log: 2,
          range: function (u, mn, mx) { return mn == null || mn < lo2 ? [lo2, hi2] : [mn, mx]; }
        },
        y: { range: [0, 100] }
      },
      axes: [
        {
          label: bytes ? "cache size" : "cache size (objects)",
          // Powers of two, thinned to fit: 1 KiB, 1 MiB... at the widest.
          splits: function (u, ai, mn, mx) {
            var e0 = Math.ceil(Math.log2(mn) - 1e-9), e1 = Math.floor(Math.log2(mx) + 1e-9);
            var fit = Math.max(2, Math.floor(u.bbox.width / (window.devicePixelRatio || 1) / 64));
            var step = [1, 2, 5, 10, 20].find(function (s) { return (e1 - e0) / s + 1 <= fit; }) || 20;
            var out = [];
            for (var e = e0; e <= e1; e++) if (e % step === 0) out.push(Math.pow(2, e));
            return out;
          },
          // The splits are thinned already: no label hidden (uPlot's log
          // filter would pass nulls).
          filter: function (u, splits) { return splits; },
          values: function (u, splits) { return splits.map(function (v) { return v == null ? null : fmtSize(v); }); },
          grid: GRID, ticks: TICKS, size: 48
        },
        {
          label: "hit ratio (%)",
          values: function (u, splits) { return splits.map(function (v) { return v + " %"; }); },
          grid: GRID, ticks: TICKS, size: 56
        }
      ],
      series: series,
      hooks: {
        ready: [function (u) {
          var nTargets = 0;
          d.series.forEach(function (c, i) {
            var col = PALETTE[i % PALETTE.length];
            if (c.current_hit_ratio != null) {
              var pct = c.current_hit_ratio * 100;
              markers.push({
                v: pct, scale: "y",
                el: marker(u, "mt-current", { "data-series": c.name, "data-ratio": String(c.current_hit_ratio) },
                  c.name + ": hit ratio now " + pct.toFixed(1) + " %", "now " + pct.toFixed(1) + " %", col)
              });
            }
            (c.targets || []).forEach(function (t) {
              if (t[1] == null) return;
              var title = c.name + ": " + Math.round(t[0] * 100) + " % of attainable hits" +
                (c.attainable_hit_ratio != null ? " (hit ratio " + (t[0] * c.attainable_hit_ratio * 100).toFixed(1) + " %)" : "") +
                " with " + fmtSize(t[1]);
              var el = marker(u, "mt-target", { "data-series": c.name, "data-target": String(t[0]), "data-size": String(t[1]) },
                title, Math.round(t[0] * 100) + " %: " + fmtSize(t[1]), col);
              // Labels one under the other, so close sizes stay readable.
              el.firstChild.style.top = (2 + 13 * nTargets++) + "px";
              markers.push({ v: t[1], scale: "x", el: el });
            });
          });
          placeMarkers(u, markers);
        }],
        draw: [function (u) { placeMarkers(u, markers); recordTicks(u, fig); }]
      }
    };
    return new uPlot(opts, data, fig.querySelector(".mt-plot"));
  }

  // The cursor at a value, through uPlot's own mouse handling (so the
  // legend shows what a pointer there would): #at=SECONDS on a page.
  function pointAt(u, x, y) {
    var r = u.over.getBoundingClientRect();
    var left = u.valToPos(x, "x"), top = y == null ? r.height / 2 : u.valToPos(y, "y");
    u.over.dispatchEvent(new MouseEvent("mousemove", {
      clientX: r.left + left, clientY: r.top + top, bubbles: true, movementX: 1, movementY: 1
    }));
  }

  function init() {
    var charts = {};
    document.querySelectorAll("figure.mt-chart").forEach(function (fig) {
      var d = readData(fig);
      if (!d || !fig.querySelector(".mt-plot") || typeof uPlot === "undefined") return;
      var u = d.kind === "mrc" || fig.getAttribute("data-kind") === "mrc" ? mrcChart(fig, d) : timeChart(fig, d);
      charts[fig.id] = u;
      fig.setAttribute("data-rendered", "true");
    });
    window.memtapCharts = charts;
    window.memtapCharts.pointAt = pointAt;
    // After uPlot's first layout (it sizes the plots on a microtask).
    setTimeout(function () {
      var z = /^#zoom=([0-9.eE+-]+),([0-9.eE+-]+)$/.exec(location.hash);
      if (z && timeCharts.length) setZoom(Number(z[1]), Number(z[2]));
      var at = /^#at=([0-9.]+)$/.exec(location.hash);
      if (at && timeCharts.length) pointAt(timeCharts[0], Number(at[1]));
    }, 0);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
