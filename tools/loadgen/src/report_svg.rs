//! `--report FILE.svg`: throughput over time and the latency percentile curve, as one SVG file.

use std::fmt::Write;

use hdrhistogram::Histogram;

const W: f64 = 900.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

fn polyline(points: &[(f64, f64)], max_x: f64, max_y: f64, top: f64, color: &str) -> String {
    let mut out = String::new();
    let coords: Vec<String> = points
        .iter()
        .map(|(x, y)| {
            let px = PAD + x / max_x.max(1e-9) * (W - 2.0 * PAD);
            let py = top + H - PAD - y / max_y.max(1e-9) * (H - 2.0 * PAD);
            format!("{px:.1},{py:.1}")
        })
        .collect();
    let _ = write!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        coords.join(" ")
    );
    out
}

fn axes(top: f64, title: &str, x_label: &str, y_label: &str, max_y: f64) -> String {
    format!(
        r##"<text x="{PAD}" y="{ty}" font-size="16" font-family="sans-serif">{title}</text>
<line x1="{PAD}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>
<line x1="{PAD}" y1="{yt}" x2="{PAD}" y2="{y0}" stroke="#333"/>
<text x="{xl}" y="{xly}" font-size="12" font-family="sans-serif" text-anchor="end">{x_label}</text>
<text x="4" y="{yt2}" font-size="12" font-family="sans-serif">{y_label} (max {max_y:.0})</text>
"##,
        ty = top + 20.0,
        y0 = top + H - PAD,
        x1 = W - PAD,
        yt = top + PAD,
        xl = W - PAD,
        xly = top + H - PAD + 20.0,
        yt2 = top + PAD - 8.0,
    )
}

/// Renders the report. `throughput` holds (seconds since start, messages per second).
pub fn render(throughput: &[(f64, f64)], latency: &Histogram<u64>, title: &str) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" viewBox="0 0 {W} {}">
<rect width="100%" height="100%" fill="white"/>
"#,
        2.0 * H,
        2.0 * H
    );
    let max_t = throughput.iter().map(|p| p.0).fold(0.0, f64::max);
    let max_rate = throughput.iter().map(|p| p.1).fold(0.0, f64::max);
    svg += &axes(
        0.0,
        &format!("{title}: throughput"),
        "seconds",
        "msg/s",
        max_rate,
    );
    svg += &polyline(throughput, max_t, max_rate, 0.0, "#1f77b4");
    // Latency by percentile on a "nines" axis: x = -log10(1 - p).
    let mut curve = Vec::new();
    let mut p = 0.0f64;
    while p < 0.99999 {
        let x = -(1.0 - p).log10();
        curve.push((x, latency.value_at_quantile(p) as f64));
        p += (1.0 - p) / 20.0;
    }
    curve.push((5.0, latency.max() as f64));
    let max_lat = curve.iter().map(|c| c.1).fold(0.0, f64::max);
    svg += &axes(
        H,
        "latency by percentile",
        "percentile: 0 / 90 / 99 / 99.9 / 99.99 / 99.999",
        "µs",
        max_lat,
    );
    svg += &polyline(&curve, 5.0, max_lat, H, "#d62728");
    svg += "</svg>\n";
    svg
}

/// The HdrHistogram percentile distribution text (the `.hgrm` format wrk2 and HdrHistogram's
/// plotter read), values in microseconds.
pub fn percentile_distribution(latency: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in latency.iter_quantiles(5) {
        let p = v.quantile_iterated_to();
        let inv = if p < 1.0 {
            1.0 / (1.0 - p)
        } else {
            f64::INFINITY
        };
        let _ = writeln!(
            out,
            "{:12.3} {:14.12} {:10} {:14.2}",
            v.value_iterated_to() as f64,
            p,
            v.count_since_last_iteration(),
            inv
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]",
        latency.mean(),
        latency.stdev(),
        latency.max() as f64,
        latency.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        for v in 1..1000 {
            h.record(v).unwrap();
        }
        let svg = render(&[(0.0, 0.0), (1.0, 100.0), (2.0, 120.0)], &h, "t");
        assert!(
            svg.starts_with("<svg")
                && svg.contains("polyline")
                && svg.trim_end().ends_with("</svg>")
        );
        let text = percentile_distribution(&h);
        assert!(text.contains("Total count    =          999"), "{text}");
    }
}
