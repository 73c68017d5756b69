//! The console's pages are plain HTML written here (no template engine, no
//! front-end build): a layout, escaping, tables, and charts drawn as inline
//! SVG. The one script and the stylesheet are constants in the binary.

use std::fmt::Write;

/// Text made safe to place in HTML (content and quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whole đồng with thousands separated.
pub fn vnd(n: i128) -> String {
    let abs = crate::fees::grouped(u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX));
    if n < 0 { format!("-{abs}") } else { abs }
}

pub const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#0b4f8a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#fff;text-decoration:none}header a.on{text-decoration:underline}
header form{margin-left:auto}main{padding:1.2em}
table{border-collapse:collapse;background:#fff;margin:.6em 0}
th,td{border:1px solid #d5d9de;padding:.3em .6em;text-align:left}td.n{text-align:right}
tr.low td{background:#fde8e8}.card{display:inline-block;background:#fff;border:1px solid #d5d9de;padding:.6em 1em;margin:.3em;min-width:9em}
.card b{display:block;font-size:1.5em}.err{color:#a40000}.ok{color:#176b1d}
pre{background:#fff;border:1px solid #d5d9de;padding:.6em;display:inline-block}
form.inline{display:inline}svg{background:#fff;border:1px solid #d5d9de}
"#;

/// Polls the overview's numbers and redraws its charts.
pub const OVERVIEW_SCRIPT: &str = r#"
async function refresh(){
  const r = await fetch('/api/overview', {credentials:'same-origin'});
  if (!r.ok) return;
  const d = await r.json();
  for (const [id, key] of [['rps','per_s'],['ok','ok_percent'],['p99','p99_ms']]) {
    const pts = d.series.map(s => s[key]);
    const max = Math.max(1, ...pts);
    const w = 600, h = 120;
    const line = pts.map((v,i) => `${(i*(w/Math.max(1,pts.length-1))).toFixed(1)},${(h-v/max*(h-10)).toFixed(1)}`).join(' ');
    document.getElementById(id+'-line').setAttribute('points', line);
    document.getElementById(id+'-now').textContent = pts.length ? pts[pts.length-1].toFixed(1) : '0';
  }
  document.getElementById('queue').textContent = d.reversal_queue;
  document.getElementById('breakers').innerHTML = d.breakers.map(b => `<tr><td>${b.party}</td><td>${b.state}</td></tr>`).join('');
  document.getElementById('lowfloat').innerHTML = d.low_float.map(p => `<tr class="low"><td>${p.post_office}</td><td class="n">${p.efloat}</td></tr>`).join('');
}
refresh(); setInterval(refresh, 2000);
"#;

/// A whole page: the navigation for who is signed in, and `body`.
pub fn page(
    title: &str,
    nav: &[(&str, &str)],
    current: &str,
    csrf: Option<&str>,
    body: &str,
) -> String {
    let mut links = String::new();
    for (href, label) in nav {
        let on = if *href == current {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(links, "<a href=\"{href}\"{on}>{label}</a>");
    }
    let sign_out = csrf.map_or(String::new(), |t| {
        format!(
            "<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button id=\"sign-out\">Sign out</button></form>",
            esc(t)
        )
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · payment switch</title><style>{STYLE}</style></head>\
         <body><header><strong>Payment switch</strong>{links}{sign_out}</header><main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// A CSRF token field for a form.
pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A table of already-escaped cells.
pub fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("<table id=\"{id}\"><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{c}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// Horizontal bars of signed values (net positions): positive to the
/// right, negative to the left of the middle. The floats below are pixel
/// lengths only; every amount shown is the integer, formatted by [`vnd`].
pub fn bars(id: &str, items: &[(String, i128)]) -> String {
    let max = items
        .iter()
        .map(|(_, v)| v.unsigned_abs())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let row = 22;
    let (w, label_w) = (720.0, 160.0);
    let mid = label_w + (w - label_w) / 2.0;
    let half = (w - label_w) / 2.0 - 10.0;
    let mut s = format!(
        "<svg id=\"{id}\" width=\"{w}\" height=\"{}\" role=\"img\" aria-label=\"net positions\">",
        items.len() * row + 10
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = i * row + 5;
        let len = (v.unsigned_abs() as f64 / max) * half;
        let x = if *v >= 0 { mid } else { mid - len };
        let colour = if *v >= 0 { "#176b1d" } else { "#a40000" };
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"{x:.1}\" y=\"{y}\" width=\"{len:.1}\" height=\"{}\" fill=\"{colour}\"><title>{} {}</title></rect>",
            y + 14,
            esc(label),
            row - 6,
            esc(label),
            vnd(*v)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{mid}\" x2=\"{mid}\" y1=\"0\" y2=\"{}\" stroke=\"#888\"/></svg>",
        items.len() * row + 10
    );
    s
}

/// An empty line chart the overview script fills.
pub fn live_chart(id: &str, title: &str, unit: &str) -> String {
    format!(
        "<div class=\"card\"><span>{}</span><b><span id=\"{id}-now\">…</span> {}</b>\
         <svg width=\"600\" height=\"120\"><polyline id=\"{id}-line\" fill=\"none\" stroke=\"#0b4f8a\" stroke-width=\"2\" points=\"\"/></svg></div>",
        esc(title),
        esc(unit)
    )
}
