//! `quality.svg`, written by a calibrated `convert` beside `quality.json`: the relative
//! reconstruction error `‖X·Wᵀ − X·Ŵᵀ‖² / ‖X·Wᵀ‖²` of every block linear (log scale) against
//! its decoder layer, one line per linear kind (q, k, v, o, gate, up, down); INT8 tensors are
//! drawn as squares, INT4 as circles. Plain SVG 1.1 written by hand (no plotting dependency).

use super::pipeline::{LinearReport, LINEARS};
use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 420.0;
/// Plot area: left, top, right, bottom margins.
const M: (f64, f64, f64, f64) = (70.0, 40.0, 130.0, 50.0);
const COLORS: [&str; 7] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];

/// `(layer, kind)` of a block linear's name (`…layers.{l}.{kind}.weight`).
fn parse(name: &str) -> Option<(usize, usize)> {
    let rest = &name[name.find("layers.")? + 7..];
    let (l, tail) = rest.split_once('.')?;
    let k = LINEARS.iter().position(|k| tail.starts_with(k))?;
    Some((l.parse().ok()?, k))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SVG document for `layers` (reports of one calibrated conversion) under `title`.
pub fn svg(layers: &[LinearReport], title: &str) -> String {
    let pts: Vec<(usize, usize, f64, bool)> = layers
        .iter()
        .filter_map(|r| parse(&r.name).map(|(l, k)| (l, k, r.rel_err.max(1e-12), r.format == "int8")))
        .collect();
    let n_layers = pts.iter().map(|p| p.0 + 1).max().unwrap_or(1);
    let lo = pts.iter().map(|p| p.2.log10()).fold(f64::INFINITY, f64::min).floor();
    let hi = pts.iter().map(|p| p.2.log10()).fold(f64::NEG_INFINITY, f64::max).ceil();
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (-6.0, 0.0) };
    let (pw, ph) = (W - M.0 - M.2, H - M.1 - M.3);
    let x = |l: usize| M.0 + pw * (l as f64 + 0.5) / n_layers as f64;
    let y = |e: f64| M.1 + ph * (hi - e.log10()) / (hi - lo);
    let mut s = String::new();
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         version=\"1.1\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" \
         font-size=\"12\">\n<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
    axes(&mut s, n_layers, lo as i32, hi as i32, &x, &y);
    for (k, name) in LINEARS.iter().enumerate() {
        let mut mine: Vec<_> = pts.iter().filter(|p| p.1 == k).collect();
        mine.sort_by_key(|p| p.0);
        let c = COLORS[k];
        let line: Vec<String> = mine.iter().map(|p| format!("{:.1},{:.1}", x(p.0), y(p.2))).collect();
        let _ = writeln!(s, "<polyline class=\"{name}\" fill=\"none\" stroke=\"{c}\" points=\"{}\"/>", line.join(" "));
        for p in &mine {
            let (px, py) = (x(p.0), y(p.2));
            let _ = if p.3 {
                writeln!(s, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"6\" fill=\"{c}\"/>", px - 3.0, py - 3.0)
            } else {
                writeln!(s, "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"{c}\"/>")
            };
        }
        legend_line(&mut s, k, c, name.rsplit('.').next().unwrap_or(name));
    }
    legend_markers(&mut s);
    s.push_str("</svg>\n");
    s
}

/// Legend entry `k`: a line of colour `c` and the linear's short name.
fn legend_line(s: &mut String, k: usize, c: &str, name: &str) {
    let ly = M.1 + 18.0 * k as f64;
    let _ = writeln!(
        s,
        "<line x1=\"{0}\" y1=\"{ly}\" x2=\"{1}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/>\
         <text x=\"{2}\" y=\"{3}\">{4}</text>",
        W - M.2 + 10.0,
        W - M.2 + 30.0,
        W - M.2 + 35.0,
        ly + 4.0,
        esc(name)
    );
}

/// Legend of the markers: circle INT4, square INT8.
fn legend_markers(s: &mut String) {
    let ly = M.1 + 18.0 * 7.5;
    let _ = writeln!(
        s,
        "<circle cx=\"{0}\" cy=\"{ly}\" r=\"3\" fill=\"#555\"/><text x=\"{1}\" y=\"{2}\">INT4</text>\n\
         <rect x=\"{3}\" y=\"{4}\" width=\"6\" height=\"6\" fill=\"#555\"/><text x=\"{1}\" y=\"{5}\">INT8</text>",
        W - M.2 + 20.0,
        W - M.2 + 35.0,
        ly + 4.0,
        W - M.2 + 17.0,
        ly + 15.0,
        ly + 22.0
    );
}

/// Frame, decade grid lines on the y axis, layer ticks on the x axis, axis titles.
fn axes(s: &mut String, n_layers: usize, lo: i32, hi: i32, x: &dyn Fn(usize) -> f64, y: &dyn Fn(f64) -> f64) {
    let (x0, x1, y0, y1) = (M.0, W - M.2, M.1, H - M.3);
    let _ = writeln!(
        s,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#000\"/>",
        x1 - x0,
        y1 - y0
    );
    for d in lo..=hi {
        let yy = y(10f64.powi(d));
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" y1=\"{yy:.1}\" x2=\"{x1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">1e{d}</text>",
            x0 - 6.0,
            yy + 4.0
        );
    }
    let step = n_layers.div_ceil(15).max(1);
    for l in (0..n_layers).step_by(step) {
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{l}</text>", x(l), y1 + 16.0);
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">decoder layer</text>\n\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">relative \
         reconstruction error</text>",
        (x0 + x1) / 2.0,
        H - 10.0,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
}
