//! Latency CDFs as SVG, drawn with plotters' SVG backend: one line per
//! series on a log-x axis. Used by the HTML report (per tier, and the
//! demo's traced/untraced response times) and by the demo's standalone
//! `latency-cdf.svg`.

use plotters::prelude::*;

use crate::sink::Hist;

/// One line of a CDF chart.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CdfSeries {
    pub label: String,
    /// `#rrggbb`.
    pub color: String,
    /// Samples behind the line (shown in the legend).
    pub count: u64,
    /// `(duration_ns, fraction <= duration)`, fraction ascending in 0..=1.
    pub points: Vec<(f64, f64)>,
}

impl CdfSeries {
    /// The CDF of a histogram, as 200 quantiles (within the histogram's
    /// ~6% resolution).
    pub fn from_hist(label: impl Into<String>, color: impl Into<String>, h: &Hist) -> CdfSeries {
        let mut points = Vec::with_capacity(202);
        if h.count > 0 {
            points.push((h.quantile(0.0) as f64, 0.0));
            for i in 1..=200 {
                let q = i as f64 / 200.0;
                points.push((h.quantile(q) as f64, q));
            }
        }
        CdfSeries {
            label: label.into(),
            color: color.into(),
            count: h.count,
            points,
        }
    }

    /// The CDF of raw samples (ns), as up to 400 quantiles.
    pub fn from_samples(label: impl Into<String>, color: impl Into<String>, ns: &[u64]) -> Self {
        let mut v = ns.to_vec();
        v.sort_unstable();
        let mut points = Vec::new();
        if let Some(&first) = v.first() {
            points.push((first as f64, 0.0));
            let n = v.len().min(400);
            for i in 1..=n {
                let q = i as f64 / n as f64;
                let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
                points.push((v[k] as f64, q));
            }
        }
        CdfSeries {
            label: label.into(),
            color: color.into(),
            count: v.len() as u64,
            points,
        }
    }
}

/// A duration for an axis tick: `250 µs`, `1.5 ms`, `2 s`.
pub fn short_duration(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s} {unit}")
}

fn rgb(hex: &str) -> RGBColor {
    let h = hex.trim_start_matches('#');
    let p = |i: usize| u8::from_str_radix(h.get(i..i + 2).unwrap_or("80"), 16).unwrap_or(128);
    RGBColor(p(0), p(2), p(4))
}

/// Renders `series` as an SVG element of class `cdf`; each line is a
/// `polyline.cdf-line` with `data-series` = its index. `None` when no
/// series has a point.
pub fn cdf_svg(series: &[CdfSeries], width: u32, height: u32, x_desc: &str) -> Option<String> {
    // The axis starts at the smallest 1st percentile: a few zero-length
    // spans (cut short by loss) would otherwise stretch it over decades.
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for s in series {
        if let Some(&(x, _)) = s.points.iter().find(|p| p.1 >= 0.01).or(s.points.first()) {
            lo = lo.min(x.max(1.0));
        }
        for &(x, _) in &s.points {
            hi = hi.max(x.max(1.0));
        }
    }
    if lo > hi {
        return None;
    }
    // Whole decades around the data keep the log axis readable.
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf((hi * 1.0001).log10().ceil()).max(lo * 10.0);
    // Distinct stroke colours so each line can be found again in the SVG.
    let mut colors: Vec<RGBColor> = Vec::new();
    for s in series {
        let mut c = rgb(&s.color);
        while colors.contains(&c) {
            c = RGBColor(c.0, c.1, c.2.wrapping_add(1));
        }
        colors.push(c);
    }
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let text = RGBColor(0x4b, 0x55, 0x63);
        let mut chart = ChartBuilder::on(&root)
            .margin_top(12)
            .margin_right(22)
            .margin_left(6)
            .margin_bottom(6)
            .x_label_area_size(48)
            .y_label_area_size(62)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)
            .ok()?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("fraction ≤ x")
            .x_labels(12)
            .y_labels(6)
            .x_label_formatter(&|v| short_duration(*v))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style(("sans-serif", 13, &text))
            .axis_desc_style(("sans-serif", 14, &text))
            .axis_style(RGBColor(0x9c, 0xa3, 0xaf))
            .bold_line_style(RGBColor(0xe5, 0xe7, 0xeb))
            .light_line_style(RGBColor(0xf3, 0xf4, 0xf6))
            .draw()
            .ok()?;
        for (s, c) in series.iter().zip(&colors) {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x.max(lo), y)).collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .ok()?;
        }
        root.present().ok()?;
    }
    // Tag the series' polylines (their stroke colours are unique; the mesh
    // is drawn in greys with `line` elements or other colours).
    let mut out = String::with_capacity(buf.len() + 64 * series.len());
    let mut rest = buf.as_str();
    while let Some(k) = rest.find("<polyline") {
        out.push_str(&rest[..k]);
        let end = rest[k..].find("/>").map_or(rest.len(), |e| k + e + 2);
        let el = &rest[k..end];
        let which = colors.iter().position(|c| {
            el.contains(&format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2))
                && el.contains("stroke-width=\"2\"")
        });
        match which {
            Some(i) => {
                out.push_str(&format!(
                    "<polyline class=\"cdf-line\" data-series=\"{i}\"{}",
                    &el["<polyline".len()..]
                ));
            }
            None => out.push_str(el),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    // The root element gets a class; plotters gives it a viewBox, so it
    // scales with the page.
    let mut out = out.replacen("<svg ", "<svg class=\"cdf\" ", 1);
    if !out.contains("viewBox=") {
        out = out.replacen(
            "<svg ",
            &format!("<svg viewBox=\"0 0 {width} {height}\" "),
            1,
        );
    }
    Some(out)
}

/// A standalone SVG file: the chart with a title and an inline legend.
pub fn cdf_svg_file(title: &str, series: &[CdfSeries], x_desc: &str) -> Option<String> {
    let (w, h) = (900u32, 460u32);
    let chart = cdf_svg(series, w, h, x_desc)?;
    let legend_h = 22 * series.len() as u32 + 10;
    let total_h = h + 40 + legend_h;
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{total_h}\" viewBox=\"0 0 {w} {total_h}\" font-family=\"sans-serif\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"16\" y=\"26\" font-size=\"17\" font-weight=\"600\" fill=\"#111827\">{}</text>\
         <svg x=\"0\" y=\"40\" width=\"{w}\" height=\"{h}\">",
        super::esc(title)
    );
    // The nested chart keeps its own viewBox; drop its XML prolog if any.
    s.push_str(chart.trim_start_matches(|c| c != '<'));
    s.push_str("</svg>");
    for (i, se) in series.iter().enumerate() {
        let y = h + 40 + 18 + 22 * i as u32;
        s.push_str(&format!(
            "<line x1=\"64\" x2=\"92\" y1=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"3\"/>\
             <text x=\"100\" y=\"{y}\" font-size=\"13\" fill=\"#374151\">{} ({} samples)</text>",
            y - 4,
            y - 4,
            super::esc(&se.color),
            super::esc(&se.label),
            se.count
        ));
    }
    s.push_str("</svg>\n");
    Some(s)
}
