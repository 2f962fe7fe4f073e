//! The PNG plot: one column per transport and protocol; the top row is msg/s by message size
//! (log-log: x is log2 of the size, labelled in bytes; y logarithmic), one colour per system
//! (ours, and FairMQ with `--peer`), solid without and dashed with `--memset true`, with the
//! machine's memcpy bandwidth as the limit (`bandwidth / size` in msg/s); with a peer, the bottom
//! row is the ratio ours / FairMQ of the median msg/s, with the line of equal speed.
//!
//! Drawn with plotters' bitmap backend; text uses DejaVu Sans embedded from the `dejavu` crate
//! (no system font libraries are needed).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report::{size_label, Meta, PointResult, SERIES};

const OURS: RGBColor = RGBColor(31, 119, 180);
const PEER: RGBColor = RGBColor(255, 127, 14);
const RATIO: RGBColor = RGBColor(44, 160, 44);

/// What a line shows.
#[derive(Clone, Copy)]
enum Value {
    Ours,
    Peer,
    Ratio,
}

fn series_points(
    results: &[PointResult],
    transport: &str,
    protocol: &str,
    memset: bool,
    value: Value,
) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = results
        .iter()
        .filter(|r| {
            r.point.transport == transport
                && r.point.protocol == protocol
                && r.point.memset == memset
        })
        .filter_map(|r| {
            let v = match value {
                Value::Ours => r.ours_stats().rate?,
                Value::Peer => r.peer_stats().rate?,
                Value::Ratio => r.rate_ratio()?,
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
        for i in (0..steps).step_by(2) {
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

type Err = Box<dyn Fn(&dyn std::fmt::Display) -> anyhow::Error>;

/// One panel: the lines of `values` for one series.
#[allow(clippy::too_many_arguments)]
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    results: &[PointResult],
    sizes: &[u64],
    meta: &Meta,
    (transport, protocol): (&str, &str),
    values: &[(Value, RGBColor, String)],
    ratio_row: bool,
    err: &Err,
) -> Result<()> {
    let x_lo = (sizes.iter().copied().min().unwrap_or(64) as f64).log2() - 0.5;
    let x_hi = (sizes.iter().copied().max().unwrap_or(8 << 20) as f64).log2() + 0.5;
    let memcpy = meta.machine.memcpy_gbps;
    let limit = [x_lo, x_hi].map(|x| (x, memcpy * 1e9 / x.exp2()));
    let all: Vec<f64> = values
        .iter()
        .flat_map(|(v, _, _)| {
            [false, true]
                .into_iter()
                .flat_map(move |m| series_points(results, transport, protocol, m, *v))
        })
        .map(|(_, y)| y)
        .collect();
    let (y_lo, y_hi) = if ratio_row {
        let (lo, hi) = range(all.iter().copied().chain([1.0]), (0.5, 2.0));
        (lo.min(0.5), hi.max(2.0))
    } else {
        range(
            all.iter().copied().chain(limit.iter().map(|p| p.1)),
            (1.0, 1e7),
        )
    };
    let caption = if ratio_row {
        format!(
            "{transport} {protocol}: ours / {}",
            meta.peer.as_ref().map_or("peer", |p| p.short())
        )
    } else {
        format!("{transport} {protocol}: msg/s")
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("message size")
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
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| err(&e))?;
    if ratio_row {
        chart
            .draw_series(LineSeries::new(
                [(x_lo, 1.0), (x_hi, 1.0)],
                BLACK.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label("equal")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(1)));
    } else {
        chart
            .draw_series(LineSeries::new(limit, BLACK.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("memcpy {memcpy:.1} GB/s"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(2)));
    }
    for (value, color, name) in values {
        let color = *color;
        let solid = series_points(results, transport, protocol, false, *value);
        if !solid.is_empty() {
            chart
                .draw_series(LineSeries::new(solid.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
            chart
                .draw_series(solid.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        let with_memset = series_points(results, transport, protocol, true, *value);
        if !with_memset.is_empty() {
            chart
                .draw_series(
                    dashed(&with_memset)
                        .into_iter()
                        .map(|seg| PathElement::new(seg, color.stroke_width(2))),
                )
                .map_err(|e| err(&e))?
                .label(format!("{name} memset"))
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
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 11))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// Draws the plot to `path`.
pub fn draw(path: &Path, results: &[PointResult], sizes: &[u64], meta: &Meta) -> Result<()> {
    // Registering twice (several reports in one process) is harmless.
    let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    let err: Err = Box::new(|e: &dyn std::fmt::Display| anyhow!("plotting failed: {e}"));
    let series: Vec<(&str, &str)> = SERIES
        .iter()
        .copied()
        .filter(|(t, p)| {
            results
                .iter()
                .any(|r| r.point.transport == *t && r.point.protocol == *p)
        })
        .collect();
    let columns = series.len().max(1);
    let rows = if meta.peer.is_some() { 2 } else { 1 };
    let root = BitMapBackend::new(path, (450 * columns as u32, 60 + 480 * rows as u32))
        .into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (title, body) = root.split_vertically(60);
    let m = &meta.machine;
    let versus = match &meta.peer {
        Some(p) => format!("fairmq-rs vs {} (same run)", p.label),
        None => "fairmq-rs alone (no FairMQ peer given: no ratio)".to_owned(),
    };
    title
        .draw_text(
            &format!(
                "fairmq-bsampler → fairmq-sink · {versus} · {} · {} × {} · memcpy {:.1} GB/s",
                m.date, m.cpus, m.cpu_model, m.memcpy_gbps
            ),
            &("sans-serif", 20).into_font().color(&BLACK),
            (20, 20),
        )
        .map_err(|e| err(&e))?;
    let panels = body.split_evenly((rows, columns));
    let mut lines = vec![(Value::Ours, OURS, "fairmq-rs".to_owned())];
    if let Some(p) = &meta.peer {
        lines.insert(0, (Value::Peer, PEER, p.label.clone()));
    }
    let ratio = [(
        Value::Ratio,
        RATIO,
        format!(
            "ours / {}",
            meta.peer.as_ref().map_or("peer", |p| p.short())
        ),
    )];
    for (i, s) in series.iter().enumerate() {
        panel(&panels[i], results, sizes, meta, *s, &lines, false, &err)?;
        if rows == 2 {
            panel(
                &panels[columns + i],
                results,
                sizes,
                meta,
                *s,
                &ratio,
                true,
                &err,
            )?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Machine, PeerMeta};
    use crate::runner::{Measurement, Point};
    use crate::rusage::PeakRss;

    #[test]
    fn draws_both_forms() {
        let run = |rate: f64| {
            Ok(Measurement {
                messages: 100,
                millis: 1.0,
                msg_rate: rate,
                wall_ms: Some(1.0),
                sampler_rss: Some(PeakRss::exact(1)),
                sink_rss: Some(PeakRss::exact(1)),
                notes: Vec::new(),
            })
        };
        let results: Vec<PointResult> = [64u64, 4096]
            .iter()
            .flat_map(|&size| {
                [false, true].map(|memset| PointResult {
                    point: Point {
                        transport: "zeromq".into(),
                        protocol: "tcp".into(),
                        size,
                        memset,
                    },
                    iterations: Some(100),
                    ours: vec![run(2e5)],
                    peer: vec![run(1e5)],
                })
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        for peer in [false, true] {
            let meta = Meta {
                machine: Machine {
                    cpus: 2,
                    cpu_model: "CPU".into(),
                    memcpy_gbps: 10.0,
                    date: "d".into(),
                },
                seconds: 1.0,
                repeats: 1,
                command: "c".into(),
                ours_args: Vec::new(),
                peer: peer.then(|| PeerMeta {
                    dir: "/p".into(),
                    label: "FairMQ 1.10.0".into(),
                    is_fairmq: true,
                    args: Vec::new(),
                    lib_dir: None,
                }),
            };
            let path = dir.path().join(format!("p{peer}.png"));
            draw(&path, &results, &[64, 4096], &meta).expect("drawn");
            let len = std::fs::metadata(&path).expect("png").len();
            assert!(len > 1000, "{len}");
        }
        // The ratio row draws ours / peer.
        assert_eq!(results[0].rate_ratio(), Some(2.0));
    }
}
