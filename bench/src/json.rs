//! results.json: the command line, the machine, the peer, and every run of both systems, raw.
//!
//! ```text
//! { date, cpus, cpu_model, memcpy_gbps, command, seconds, repeats, ours_args,
//!   peer: null | { dir, label, is_fairmq, args, lib_dir },
//!   points: [ { transport, protocol, size, memset, iterations, ratio_msg_rate,
//!               ours: { median_*, runs: [run] }, peer: { median_*, runs: [run] } } ] }
//! run: { messages, millis, msg_rate, wall_ms, sampler_rss: rss, sink_rss: rss, notes }
//!    | { error }
//! rss: { peak_kib, ru_maxrss_kib, floor_kib, vmhwm_kib }   (see crate::rusage)
//! ```
//!
//! [`read`] also takes the form written before `--peer` existed: no `peer`, `ours_args` and
//! `iterations`, and each point's runs directly under `runs` (ours, timed runs without RSS or
//! wall time, `millis` an integer).

use serde_json::{json, Value};

use crate::report::{Machine, Meta, PeerMeta, PointResult, Run, Stats};
use crate::runner::{Measurement, Point};
use crate::rusage::PeakRss;

fn rss_json(r: PeakRss) -> Value {
    json!({
        "peak_kib": r.kib(),
        "ru_maxrss_kib": r.ru_maxrss_kib,
        "floor_kib": r.floor_kib,
        "vmhwm_kib": r.polled_kib,
    })
}

fn read_rss(v: Option<&Value>) -> Option<PeakRss> {
    let v = v?;
    Some(PeakRss {
        ru_maxrss_kib: v["ru_maxrss_kib"].as_u64()?,
        floor_kib: v["floor_kib"].as_u64(),
        polled_kib: v["vmhwm_kib"].as_u64(),
    })
}

fn run_json(run: &Run) -> Value {
    match run {
        Ok(m) => json!({
            "messages": m.messages,
            "millis": m.millis,
            "msg_rate": m.msg_rate,
            "wall_ms": m.wall_ms,
            "sampler_rss": m.sampler_rss.map(rss_json),
            "sink_rss": m.sink_rss.map(rss_json),
            "notes": m.notes,
        }),
        Err(e) => json!({ "error": e }),
    }
}

fn system_json(runs: &[Run], stats: Stats) -> Value {
    json!({
        "median_msg_rate": stats.rate,
        "median_gbps": stats.gbps,
        "median_wall_s": stats.wall_s,
        "median_sampler_max_rss_mib": stats.sampler_rss_mib,
        "median_sink_max_rss_mib": stats.sink_rss_mib,
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}

/// The results.json text.
pub fn write(meta: &Meta, results: &[PointResult]) -> serde_json::Result<String> {
    let m = &meta.machine;
    let v = json!({
        "date": m.date,
        "cpus": m.cpus,
        "cpu_model": m.cpu_model,
        "memcpy_gbps": m.memcpy_gbps,
        "command": meta.command,
        "seconds": meta.seconds,
        "repeats": meta.repeats,
        "ours_args": meta.ours_args,
        "peer": meta.peer.as_ref().map(|p| json!({
            "dir": p.dir,
            "label": p.label,
            "is_fairmq": p.is_fairmq,
            "args": p.args,
            "lib_dir": p.lib_dir,
        })),
        "points": results.iter().map(|r| {
            let mut p = json!({
                "transport": r.point.transport,
                "protocol": r.point.protocol,
                "size": r.point.size,
                "memset": r.point.memset,
                "iterations": r.iterations,
                "ours": system_json(&r.ours, r.ours_stats()),
            });
            if meta.peer.is_some() {
                p["peer"] = system_json(&r.peer, r.peer_stats());
                p["ratio_msg_rate"] = json!(r.rate_ratio());
            }
            p
        }).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v)
}

fn read_run(r: &Value) -> Option<Run> {
    if let Some(e) = r.get("error") {
        return Some(Err(e.as_str()?.to_owned()));
    }
    Some(Ok(Measurement {
        messages: r["messages"].as_u64()?,
        millis: r["millis"].as_f64()?,
        msg_rate: r["msg_rate"].as_f64()?,
        wall_ms: r.get("wall_ms").and_then(Value::as_f64),
        sampler_rss: read_rss(r.get("sampler_rss")),
        sink_rss: read_rss(r.get("sink_rss")),
        notes: r
            .get("notes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

fn read_runs(v: &Value) -> Option<Vec<Run>> {
    v.as_array()?.iter().map(read_run).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a results.json back (either form).
pub fn read(text: &str) -> Option<(Meta, Vec<PointResult>)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let machine = Machine {
        cpus: v["cpus"].as_u64()? as usize,
        cpu_model: v["cpu_model"].as_str()?.to_owned(),
        memcpy_gbps: v["memcpy_gbps"].as_f64()?,
        date: v["date"].as_str()?.to_owned(),
    };
    let peer = match &v["peer"] {
        Value::Null => None,
        p => Some(PeerMeta {
            dir: p["dir"].as_str()?.to_owned(),
            label: p["label"].as_str()?.to_owned(),
            is_fairmq: p["is_fairmq"].as_bool()?,
            args: strings(&p["args"]),
            lib_dir: p["lib_dir"].as_str().map(str::to_owned),
        }),
    };
    let mut results = Vec::new();
    for p in v["points"].as_array()? {
        let (ours, theirs) = if p.get("runs").is_some() {
            (read_runs(&p["runs"])?, Vec::new()) // the old form
        } else {
            let theirs = match p.get("peer") {
                Some(peer) => read_runs(&peer["runs"])?,
                None => Vec::new(),
            };
            (read_runs(&p["ours"]["runs"])?, theirs)
        };
        results.push(PointResult {
            point: Point {
                transport: p["transport"].as_str()?.to_owned(),
                protocol: p["protocol"].as_str()?.to_owned(),
                size: p["size"].as_u64()?,
                memset: p["memset"].as_bool()?,
            },
            iterations: p.get("iterations").and_then(Value::as_u64),
            ours,
            peer: theirs,
        });
    }
    let meta = Meta {
        machine,
        seconds: v["seconds"].as_f64()?,
        repeats: v["repeats"].as_u64()? as usize,
        command: v["command"].as_str().unwrap_or("(unknown)").to_owned(),
        ours_args: strings(&v["ours_args"]),
        peer,
    };
    Some((meta, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(peer: bool) -> (Meta, Vec<PointResult>) {
        let m = |rate: f64, rss| {
            Ok(Measurement {
                messages: 3000,
                millis: 1500.25,
                msg_rate: rate,
                wall_ms: Some(2100.0),
                sampler_rss: Some(PeakRss {
                    ru_maxrss_kib: rss,
                    floor_kib: Some(6000),
                    polled_kib: Some(rss - 100),
                }),
                sink_rss: Some(PeakRss {
                    ru_maxrss_kib: 6100,
                    floor_kib: Some(6000),
                    polled_kib: Some(rss / 2),
                }),
                notes: if peer {
                    vec!["left in /dev/shm: fmq_1_mng".into()]
                } else {
                    Vec::new()
                },
            })
        };
        let meta = Meta {
            machine: Machine {
                cpus: 2,
                cpu_model: "CPU".into(),
                memcpy_gbps: 11.5,
                date: "2026-01-01 00:00 UTC".into(),
            },
            seconds: 1.0,
            repeats: 2,
            command: "fairmq-bench-report --peer /p".into(),
            ours_args: vec!["--shm-segment-size".into(), "1000".into()],
            peer: peer.then(|| PeerMeta {
                dir: "/p".into(),
                label: "FairMQ 1.10.0".into(),
                is_fairmq: true,
                args: vec!["--bad-alloc-max-attempts".into(), "1000000".into()],
                lib_dir: Some("/p/../lib".into()),
            }),
        };
        let results = vec![PointResult {
            point: Point {
                transport: "zeromq".into(),
                protocol: "ipc".into(),
                size: 64,
                memset: false,
            },
            iterations: Some(3000),
            ours: vec![m(2000.0, 40960), Err("boom".into())],
            peer: if peer {
                vec![m(1000.0, 81920), m(1100.0, 81920)]
            } else {
                Vec::new()
            },
        }];
        (meta, results)
    }

    #[test]
    fn round_trips_both_forms() {
        for peer in [false, true] {
            let (meta, results) = sample(peer);
            let text = write(&meta, &results).expect("json");
            let (m2, r2) = read(&text).expect("read back");
            assert_eq!(m2.command, meta.command);
            assert_eq!(m2.peer, meta.peer);
            assert_eq!(m2.ours_args, meta.ours_args);
            assert_eq!(r2.len(), 1);
            assert_eq!(r2[0].iterations, Some(3000));
            assert_eq!(r2[0].ours, results[0].ours);
            assert_eq!(r2[0].peer, results[0].peer);
            let v: Value = serde_json::from_str(&text).expect("json");
            let run = &v["points"][0]["ours"]["runs"][0];
            assert_eq!(run["sampler_rss"]["peak_kib"].as_u64(), Some(40960));
            assert_eq!(
                run["sink_rss"]["peak_kib"].as_u64(),
                Some(20480),
                "polled: ru_maxrss at the floor"
            );
            if peer {
                let r = v["points"][0]["ratio_msg_rate"].as_f64().expect("ratio");
                assert!((r - 2000.0 / 1050.0).abs() < 1e-12, "{r}");
            } else {
                assert!(v["peer"].is_null());
                assert!(v["points"][0].get("peer").is_none());
            }
        }
    }

    #[test]
    fn reads_the_old_form() {
        let text = r#"{"command": "target/release/fairmq-bench-report --readme README.md",
            "cpu_model": "AMD EPYC", "cpus": 2, "date": "2026-11-27 06:04 UTC",
            "memcpy_gbps": 11.07, "repeats": 3, "seconds": 2.0,
            "points": [{"median_gbps": 0.1, "median_msg_rate": 1592400.7, "memset": false,
                "protocol": "ipc", "size": 64, "transport": "shmem",
                "runs": [{"messages": 3351681, "millis": 2011, "msg_rate": 1666673.79},
                         {"error": "boom"}]}]}"#;
        let (meta, results) = read(text).expect("old form");
        assert!(meta.peer.is_none());
        assert_eq!(results[0].iterations, None);
        assert!(results[0].peer.is_empty());
        let m = results[0].ours[0].as_ref().expect("ok");
        assert_eq!((m.messages, m.millis, m.wall_ms), (3_351_681, 2011.0, None));
        assert_eq!(results[0].ours[1], Err("boom".to_owned()));
        assert!(read("{}").is_none());
    }
}
