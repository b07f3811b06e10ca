//! The resources of a run in its report: CPU and resident memory per process of the
//! system over the run, from results' `resources` (sampled from `/proc` each second,
//! `faultline_results::resources`).
//!
//! Two of the report's time charts (time since the start, fault windows shaded), built
//! by `Report::build` after the scraped server panels: each process of the system (service replicas, Kafka brokers, PostgreSQL,
//! Redis) is a line, and a dashed line is the system's whole (CPU in cores, memory
//! summed), which is what the resource claims are held against (`resources:cpu`,
//! `resources:memory` in [`crate::metric`]). Nothing is drawn for a run that sampled
//! nothing.

use faultline_results::{ResourceResults, Results};

use crate::{
    charts::{self, Line, SeriesStyle},
    error::ReportError,
    report::{time_spec, Section},
    timeline::Timeline,
};

/// The charts' ids; they start with `resources-`.
pub const CPU_CHART_ID: &str = "resources-cpu";
pub const MEMORY_CHART_ID: &str = "resources-memory";

const MIB: f64 = 1024.0 * 1024.0;

/// The CPU and memory charts; none when the run sampled no resources.
pub fn charts(results: &Results, timeline: &Timeline<'_>) -> Result<Vec<Section>, ReportError> {
    let Some(resources) = &results.resources else {
        return Ok(Vec::new());
    };
    let cores = resources.cores.max(1) as f64;
    let cpu = per_process(resources, ResourceResults::process_cores);
    let cpu_total: Vec<(f64, f64)> = resources
        .cpu_share()
        .into_iter()
        .map(|(t, share)| (t, share * cores))
        .collect();
    let memory = per_process(resources, |process| {
        process
            .samples
            .iter()
            .map(|s| (s.t, s.rss_bytes as f64 / MIB))
            .collect()
    });
    let memory_total: Vec<(f64, f64)> = resources
        .memory()
        .into_iter()
        .map(|(t, bytes)| (t, bytes / MIB))
        .collect();
    Ok(vec![
        chart(
            timeline,
            CPU_CHART_ID,
            format!(
                "CPU per process (from /proc; this machine has {} cores)",
                resources.cores
            ),
            "cores busy",
            cpu,
            ("the whole system", cpu_total),
        )?,
        chart(
            timeline,
            MEMORY_CHART_ID,
            "Resident memory per process (from /proc)".into(),
            "MiB",
            memory,
            ("the whole system", memory_total),
        )?,
    ])
}

/// Each process's points, labelled with its name.
fn per_process(
    resources: &ResourceResults,
    points: impl Fn(&faultline_results::ProcessResources) -> Vec<(f64, f64)>,
) -> Vec<(String, Vec<(f64, f64)>)> {
    resources
        .processes
        .iter()
        .map(|process| (process.name.clone(), points(process)))
        .collect()
}

/// One time chart, with the run's fault windows shaded: a line per process and the
/// system's whole as the reference line.
fn chart(
    timeline: &Timeline<'_>,
    id: &str,
    title: String,
    y_desc: &str,
    processes: Vec<(String, Vec<(f64, f64)>)>,
    (total_label, total): (&str, Vec<(f64, f64)>),
) -> Result<Section, ReportError> {
    let top = processes
        .iter()
        .flat_map(|(_, p)| p)
        .chain(&total)
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.1;
    let mut lines: Vec<Line> = processes
        .into_iter()
        .enumerate()
        .map(|(index, (name, points))| Line {
            style: SeriesStyle::nth(index, name),
            points,
        })
        .collect();
    lines.push(Line {
        style: SeriesStyle::reference(total_label),
        points: total,
    });
    let mut spec = time_spec(timeline, id, &title, y_desc);
    spec.y_range = (0.0, top);
    spec.lines = lines;
    Ok(Section::Chart(charts::draw(spec)?))
}
