//! The PNG plot: msg/s and GB/s by message size (log-log: x is log2 of the size, labelled in
//! bytes; y logarithmic), one line per transport and
//! protocol, solid without and dashed with `--memset true`, and the machine's memcpy
//! bandwidth as the limit (a horizontal line in GB/s, `bandwidth / size` in msg/s).
//!
//! Drawn with plotters' bitmap backend; text uses DejaVu Sans embedded from the `dejavu` crate
//! (no system font libraries are needed).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report::{size_label, Machine, PointResult, SERIES};

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
];

fn series_points(
    results: &[PointResult],
    transport: &str,
    protocol: &str,
    memset: bool,
    gbps: bool,
) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = results
        .iter()
        .filter(|r| {
            r.point.transport == transport
                && r.point.protocol == protocol
                && r.point.memset == memset
        })
        .filter_map(|r| {
            let v = if gbps {
                r.median_gbps()?
            } else {
                r.median_rate()?
            };
            (v > 0.0).then_some(((r.point.size as f64).log2(), v))
        })
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn dashed(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    // Short segments along each line (x linear: log2 of the size; y logarithmic), to draw a
    // dashed line.
    let mut out = Vec::new();
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (lx0, lx1) = (a.0, b.0);
        let (ly0, ly1) = (a.1.ln(), b.1.ln());
        let steps = 16;
        for i in 0..steps {
            if i % 2 == 1 {
                continue;
            }
            let t0 = i as f64 / steps as f64;
            let t1 = (i + 1) as f64 / steps as f64;
            let p = |t: f64| {
                let x = lx0 + (lx1 - lx0) * t;
                let y = (ly0 + (ly1 - ly0) * t).exp();
                (x, y)
            };
            out.push(vec![p(t0), p(t1)]);
        }
    }
    out
}

fn range(values: impl Iterator<Item = f64>, fallback: (f64, f64)) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() && hi > 0.0 {
        (lo / 2.0, hi * 2.0)
    } else {
        fallback
    }
}

/// Draws the plot to `path`.
pub fn draw(path: &Path, results: &[PointResult], sizes: &[u64], machine: &Machine) -> Result<()> {
    // Registering twice (several reports in one process) is harmless.
    let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting failed: {e}");
    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (title, body) = root.split_vertically(50);
    title
        .draw_text(
            &format!(
                "fairmq-bsampler → fairmq-sink · {} · {} × {} · memcpy {:.1} GB/s",
                machine.date, machine.cpus, machine.cpu_model, machine.memcpy_gbps
            ),
            &("sans-serif", 20).into_font().color(&BLACK),
            (20, 15),
        )
        .map_err(|e| err(&e))?;
    let panels = body.split_evenly((1, 2));
    // x is log2 of the size, labelled with sizes.
    let x_lo = (sizes.iter().copied().min().unwrap_or(64) as f64).log2() - 0.5;
    let x_hi = (sizes.iter().copied().max().unwrap_or(8 << 20) as f64).log2() + 0.5;
    for (panel, gbps) in panels.iter().zip([false, true]) {
        let all = results.iter().filter_map(|r| {
            if gbps {
                r.median_gbps()
            } else {
                r.median_rate()
            }
        });
        let limit_values: Vec<f64> = if gbps {
            vec![machine.memcpy_gbps]
        } else {
            [x_lo, x_hi]
                .iter()
                .map(|x| machine.memcpy_gbps * 1e9 / x.exp2())
                .collect()
        };
        let (y_lo, y_hi) = range(
            all.chain(limit_values.iter().copied()),
            if gbps { (1e-3, 100.0) } else { (1.0, 1e7) },
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(
                if gbps {
                    "GB/s by message size"
                } else {
                    "messages/s by message size"
                },
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("message size")
            .y_desc(if gbps { "GB/s (10^9 bytes)" } else { "msg/s" })
            .x_labels(((x_hi - x_lo) as usize + 1).min(40))
            .x_label_formatter(&|x| {
                let r = x.round();
                // Only the measured sizes are labelled.
                if (x - r).abs() < 1e-6
                    && (0.0..63.0).contains(&r)
                    && sizes.contains(&(1u64 << (r as u32)))
                {
                    size_label(1u64 << (r as u32))
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| {
                if *y >= 1000.0 || *y < 0.01 {
                    format!("{y:.0e}")
                } else {
                    format!("{y}")
                }
            })
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        // The memcpy limit.
        let limit: Vec<(f64, f64)> = if gbps {
            vec![(x_lo, machine.memcpy_gbps), (x_hi, machine.memcpy_gbps)]
        } else {
            // msg/s = bandwidth / size: a straight line in log-log.
            vec![
                (x_lo, machine.memcpy_gbps * 1e9 / x_lo.exp2()),
                (x_hi, machine.memcpy_gbps * 1e9 / x_hi.exp2()),
            ]
        };
        chart
            .draw_series(LineSeries::new(limit, BLACK.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("memcpy {:.1} GB/s", machine.memcpy_gbps))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(2)));
        for (i, (transport, protocol)) in SERIES.iter().enumerate() {
            let color = COLORS[i];
            let solid = series_points(results, transport, protocol, false, gbps);
            if !solid.is_empty() {
                chart
                    .draw_series(LineSeries::new(solid.clone(), color.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(format!("{transport} {protocol}"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(solid.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(|e| err(&e))?;
            }
            let with_memset = series_points(results, transport, protocol, true, gbps);
            if !with_memset.is_empty() {
                chart
                    .draw_series(
                        dashed(&with_memset)
                            .into_iter()
                            .map(|seg| PathElement::new(seg, color.stroke_width(2))),
                    )
                    .map_err(|e| err(&e))?
                    .label(format!("{transport} {protocol} memset"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        with_memset
                            .iter()
                            .map(|p| TriangleMarker::new(*p, 4, color.filled())),
                    )
                    .map_err(|e| err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .position(if gbps {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::LowerLeft
            })
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
