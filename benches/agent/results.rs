//! The figures of a run: printed, compared with the committed ones (regressions named),
//! checked against the targets, and written to `benches/RESULTS.md`.

use std::collections::HashMap;
use std::fmt::Write as _;

pub const SCENARIOS: [&str; 3] = ["burst", "steady", "stored"];

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Lower,
    Higher,
    /// Informational: what the run did, not how well.
    Neither,
}

struct Figure {
    name: &'static str,
    better: Better,
    decimals: usize,
    /// Differences at or below this are noise, whatever the percentage.
    floor: f64,
    /// (scenario, the most — or for `Higher`, the least — it may be).
    targets: &'static [(&'static str, f64)],
}

const FIGURES: &[Figure] = &[
    figure("events", Better::Neither, 0, 0.0, &[]),
    figure("delivered", Better::Neither, 0, 0.0, &[]),
    figure(
        "resent",
        Better::Lower,
        0,
        0.0,
        &[("burst", 0.0), ("steady", 0.0), ("stored", 0.0)],
    ),
    figure(
        "CPU ms per event",
        Better::Lower,
        3,
        0.005,
        &[("burst", 0.05), ("steady", 0.10)],
    ),
    // What the same I/O costs without the agent's work (benches/agent/floor.rs): a property
    // of the machine and the libraries, shown beside the agent's figure.
    figure("I/O floor CPU ms per event", Better::Neither, 3, 0.0, &[]),
    figure("events/s", Better::Higher, 0, 100.0, &[]),
    figure("CPU s", Better::Lower, 2, 0.05, &[]),
    figure("start CPU s", Better::Lower, 2, 0.03, &[("stored", 0.3)]),
    figure("idle CPU ms/s", Better::Lower, 2, 0.5, &[]),
    figure(
        "idle RSS MiB",
        Better::Lower,
        1,
        0.5,
        &[("burst", 8.0), ("stored", 16.0)],
    ),
    figure("idle anon MiB", Better::Lower, 1, 0.5, &[]),
    figure("I/O floor idle RSS MiB", Better::Neither, 1, 0.0, &[]),
    figure("peak RSS MiB", Better::Lower, 1, 0.5, &[]),
    figure("RSS after MiB", Better::Lower, 1, 0.5, &[("burst", 20.0)]),
    figure("anon after MiB", Better::Lower, 1, 0.5, &[]),
    figure("apiserver requests", Better::Lower, 0, 5.0, &[]),
    figure("envelopes", Better::Neither, 0, 0.0, &[]),
    figure("KiB sent", Better::Lower, 0, 20.0, &[]),
    figure("p50 ms", Better::Lower, 1, 2.0, &[]),
    figure("p99 ms", Better::Lower, 1, 5.0, &[("steady", 100.0)]),
];

const fn figure(
    name: &'static str,
    better: Better,
    decimals: usize,
    floor: f64,
    targets: &'static [(&'static str, f64)],
) -> Figure {
    Figure {
        name,
        better,
        decimals,
        floor,
        targets,
    }
}

/// How much worse than the committed figure counts as a regression.
const TOLERANCE: f64 = 0.15;

const BEGIN: &str = "<!-- figures -->";
const HISTORY: &str = "## Earlier runs";
/// Kept in the history table.
const HISTORY_ROWS: usize = 30;

#[derive(Default)]
pub struct Results {
    values: HashMap<(String, String), f64>,
    /// `key=value` pairs describing the run (date, commit, machine).
    pub run: Vec<(String, String)>,
}

impl Results {
    pub fn set(&mut self, scenario: &str, figure: &str, value: f64) {
        assert!(
            FIGURES.iter().any(|f| f.name == figure),
            "unknown figure {figure}"
        );
        self.values
            .insert((figure.to_string(), scenario.to_string()), value);
    }

    pub fn get(&self, scenario: &str, figure: &str) -> Option<f64> {
        self.values
            .get(&(figure.to_string(), scenario.to_string()))
            .copied()
    }

    fn run_value(&self, key: &str) -> &str {
        self.run
            .iter()
            .find(|(k, _)| k == key)
            .map_or("?", |(_, v)| v.as_str())
    }

    /// The table of figures, one column per scenario, with the targets.
    pub fn table(&self) -> String {
        let mut out = String::from("| figure | burst | steady | stored | target |\n");
        out.push_str("|---|---:|---:|---:|---|\n");
        for f in FIGURES {
            let cells: Vec<String> = SCENARIOS
                .iter()
                .map(|s| match self.get(s, f.name) {
                    Some(v) => format!("{v:.*}", f.decimals),
                    None => "–".into(),
                })
                .collect();
            let targets: Vec<String> = f
                .targets
                .iter()
                .map(|(s, limit)| {
                    let op = if f.better == Better::Higher {
                        "≥"
                    } else {
                        "≤"
                    };
                    format!("{op} {limit} ({s})")
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                f.name,
                cells.join(" | "),
                targets.join(", ")
            );
        }
        out
    }

    /// Targets missed, one line each.
    pub fn missed_targets(&self) -> Vec<String> {
        let mut missed = Vec::new();
        for f in FIGURES {
            for (scenario, limit) in f.targets {
                let Some(v) = self.get(scenario, f.name) else {
                    continue;
                };
                let ok = match f.better {
                    Better::Higher => v >= *limit,
                    _ => v <= *limit,
                };
                if !ok {
                    missed.push(format!(
                        "{scenario}: {} is {v:.*}, target {limit}",
                        f.name, f.decimals
                    ));
                }
            }
        }
        missed
    }

    /// Figures worse than `before` by more than the tolerance (and the noise floor).
    pub fn regressions(&self, before: &Results) -> Vec<String> {
        let mut worse = Vec::new();
        for f in FIGURES {
            for s in SCENARIOS {
                let (Some(new), Some(old)) = (self.get(s, f.name), before.get(s, f.name)) else {
                    continue;
                };
                let regressed = match f.better {
                    Better::Lower => new > old * (1.0 + TOLERANCE) && new - old > f.floor,
                    Better::Higher => new < old * (1.0 - TOLERANCE) && old - new > f.floor,
                    Better::Neither => false,
                };
                if regressed {
                    let change = if old == 0.0 {
                        String::from("from 0")
                    } else {
                        format!("{:+.0}%", (new - old) / old * 100.0)
                    };
                    worse.push(format!(
                        "{s}: {} {old:.*} → {new:.*} ({change})",
                        f.name, f.decimals, f.decimals
                    ));
                }
            }
        }
        worse
    }

    /// The results committed in `text` (a RESULTS.md), if it has any.
    pub fn parse(text: &str) -> Option<Results> {
        let start = text.find(BEGIN)? + BEGIN.len();
        let mut results = Results::default();
        let run_line = text.lines().find(|l| l.starts_with("<!-- run "))?;
        results.run = run_line
            .trim_start_matches("<!-- run ")
            .trim_end_matches("-->")
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for line in text[start..]
            .lines()
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| l.starts_with('|'))
            .skip(2)
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // "", figure, burst, steady, stored, target, ""
            if cells.len() < 5 {
                continue;
            }
            for (i, scenario) in SCENARIOS.iter().enumerate() {
                if let Ok(v) = cells[2 + i].replace(',', "").parse::<f64>() {
                    results
                        .values
                        .insert((cells[1].to_string(), scenario.to_string()), v);
                }
            }
        }
        Some(results)
    }

    /// One line of the history table.
    fn history_row(&self) -> String {
        let v = |s: &str, f: &str, d: usize| {
            self.get(s, f)
                .map_or_else(|| "–".to_string(), |v| format!("{v:.d$}"))
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.run_value("date"),
            self.run_value("commit"),
            v("burst", "CPU ms per event", 3),
            v("steady", "CPU ms per event", 3),
            v("burst", "idle RSS MiB", 1),
            v("burst", "RSS after MiB", 1),
            v("stored", "start CPU s", 2),
            v("stored", "idle RSS MiB", 1),
            v("steady", "p99 ms", 1),
        )
    }

    /// RESULTS.md with these figures, the run before them moved into the history.
    pub fn render(&self, workload: &str, previous_text: Option<&str>) -> String {
        let mut history: Vec<String> = Vec::new();
        if let Some(text) = previous_text {
            if let Some(previous) = Results::parse(text) {
                history.push(previous.history_row());
            }
            if let Some(at) = text.find(HISTORY) {
                history.extend(
                    text[at..]
                        .lines()
                        .filter(|l| l.starts_with("| ") && !l.starts_with("| date"))
                        .map(str::to_string),
                );
            }
        }
        history.truncate(HISTORY_ROWS);
        let run: Vec<String> = self.run.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut out = String::new();
        let _ = write!(
            out,
            "# Benchmark results\n\n\
             Written by `cargo bench --bench agent` (see README, *Performance*); each run compares \
             itself with this file and prints regressions before replacing it.\n\n\
             - Date: {}\n- Commit: {}\n- Machine: {}\n- Workload: {workload}\n\n\
             <!-- run {} -->\n{BEGIN}\n\n{}\n\
             `burst`: 10,000 events created at once; `steady`: 100 events a second for 30 s; \
             `stored`: 10,000 events already stored when the agent starts (historical off), a \
             relist, then 1,000 new ones. CPU is the agent process's user + system time; RSS its \
             resident memory (`idle`: before the scenario's events; for `stored`, after the start \
             and the relist); latency from the write to the apiserver to the envelope's arrival. \
             `I/O floor`: the same events through a client that only reads the watch and posts \
             an envelope of the same size per event, on the agent's runtime and libraries \
             (benches/agent/floor.rs): what this machine charges before any of the agent's work.\n\n\
             {HISTORY}\n\n\
             | date | commit | burst CPU ms/event | steady CPU ms/event | idle MiB | after burst MiB | stored start CPU s | stored idle MiB | steady p99 ms |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
            self.run_value("date"),
            self.run_value("commit"),
            self.run_value("machine"),
            run.join("; "),
            self.table(),
        );
        for row in history {
            out.push_str(&row);
            out.push('\n');
        }
        out
    }
}
