//! The run as text: one progress line per row on stderr ([`describe`], [`outcome`]), and
//! the side-by-side table on stdout ([`render`]): each row's settings, then rdkafka's
//! figures, then the Java tool's, then rdkafka's throughput over the tool's; below it,
//! the rows' paced phases, when run.

use std::fmt::Write as _;

use faultline_results::kafka_bench::{
    CpuUse, KafkaBenchResults, KafkaBenchRow, PerfToolMeasurement, ProducerSettings,
};

/// A row's settings in one line.
pub fn describe(s: &ProducerSettings) -> String {
    format!(
        "{} B, {} partitions, RF {}, acks={}, {} producer(s), compression {}, linger {} ms, \
         batch.size {}, {}",
        s.message_bytes,
        s.partitions,
        s.replication_factor,
        s.acks,
        s.producers,
        s.compression,
        s.linger_ms,
        batch(s),
        s.rate_per_sec
            .map_or_else(|| "unthrottled".into(), |r| format!("{r:.0} msg/s offered"))
    )
}

fn batch(s: &ProducerSettings) -> String {
    s.batch_bytes
        .map_or_else(|| "default".into(), |b| b.to_string())
}

fn offered(s: &ProducerSettings) -> String {
    s.rate_per_sec
        .map_or_else(|| "max".into(), |r| format!("{r:.0}"))
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// A finished row in one line.
pub fn outcome(row: &KafkaBenchRow) -> String {
    let ours = &row.rdkafka;
    let mut line = format!(
        "rdkafka {:.0} msg/s, p99 {:.1} ms, end-to-end p99 {:.1} ms",
        ours.msgs_per_sec,
        ms(ours.produce_latency.p99_us),
        ms(ours.end_to_end_latency.p99_us)
    );
    match &row.perf_tool {
        Some(tool) => {
            let _ = write!(
                line,
                "; ProducerPerformance {:.0} msg/s, p99 {:.1} ms",
                tool.msgs_per_sec, tool.p99_ms
            );
        }
        None => line.push_str("; ProducerPerformance not run"),
    }
    for note in &row.notes {
        let _ = write!(line, " ({note})");
    }
    line
}

/// A row's paced phase in one line for progress: its end-to-end p50 and p99, or what
/// went wrong.
pub fn paced_outcome(row: &KafkaBenchRow) -> String {
    match &row.paced {
        Some(paced) => format!(
            "paced at {:.0} msg/s: end-to-end p50 {:.1} ms, p99 {:.1} ms",
            paced.rate_per_sec,
            ms(paced.rdkafka.end_to_end_latency.p50_us),
            ms(paced.rdkafka.end_to_end_latency.p99_us)
        ),
        None => (row.notes.iter())
            .find(|note| note.starts_with("the paced phase"))
            .cloned()
            .unwrap_or_else(|| "no paced phase".into()),
    }
}

/// Row `index`'s name: its Table 5 line, else its number.
fn name(index: usize, row: &KafkaBenchRow) -> String {
    row.table5.map_or_else(
        || format!("#{}", index + 1),
        |t| t.document_name().to_string(),
    )
}

/// The rows' paced phases (none: nothing): rdkafka at a fixed rate, so latency is what
/// the row's settings add.
fn render_paced(results: &KafkaBenchResults, out: &mut String) {
    if results.rows.iter().all(|row| row.paced.is_none()) {
        return;
    }
    let _ = writeln!(
        out,
        "\npaced: rdkafka again at a fixed rate below saturation (a fresh topic each row)\n\
         {:<20} {:>7} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5}",
        "row", "codec", "linger", "offered", "achieved", "p50", "p99", "e2e p50", "e2e p99", "CPU"
    );
    for (index, row) in results.rows.iter().enumerate() {
        let Some(paced) = &row.paced else { continue };
        let r = &paced.rdkafka;
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>6} {:>9.0} {:>8.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>5}",
            name(index, row),
            row.settings.compression,
            row.settings.linger_ms,
            paced.rate_per_sec,
            r.msgs_per_sec,
            ms(r.produce_latency.p50_us),
            ms(r.produce_latency.p99_us),
            ms(r.end_to_end_latency.p50_us),
            ms(r.end_to_end_latency.p99_us),
            cpu(r.broker_cpu),
        );
    }
}

fn cpu(use_: Option<CpuUse>) -> String {
    use_.map_or_else(|| "-".into(), |u| format!("{:.0}%", u.percent_of_machine))
}

fn tool_cells(tool: Option<&PerfToolMeasurement>) -> String {
    match tool {
        Some(t) => format!(
            "{:>9.0} {:>6.1} {:>8.1} {:>8.1} {:>8.1} {:>5}",
            t.msgs_per_sec,
            t.mb_per_sec,
            t.p50_ms,
            t.p99_ms,
            t.max_ms,
            cpu(t.broker_cpu)
        ),
        None => format!(
            "{:>9} {:>6} {:>8} {:>8} {:>8} {:>5}",
            "-", "-", "-", "-", "-", "-"
        ),
    }
}

/// The side-by-side table: latencies in ms, MB = 10^6 bytes for rdkafka and 2^20 bytes
/// as the Java tool prints them, CPU = the brokers' share of the machine.
pub fn render(results: &KafkaBenchResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>6} {:>5} {:>2} {:>4} {:>3} {:>6} {:>6} {:>7} {:>7} | {:>9} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} | {:>9} {:>6} {:>8} {:>8} {:>8} {:>5} | {:>5}",
        "row", "bytes", "parts", "RF", "acks", "N", "codec", "linger", "batch", "offered",
        "rdk msg/s", "MB/s", "p50", "p99", "max", "e2e p50", "e2e p99", "CPU",
        "jvm msg/s", "MB/s", "p50", "p99", "max", "CPU", "ratio"
    );
    for (index, row) in results.rows.iter().enumerate() {
        let s = &row.settings;
        let r = &row.rdkafka;
        let name = name(index, row);
        let ratio = row
            .throughput_ratio()
            .map_or_else(|| "-".into(), |x| format!("{x:.2}"));
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>5} {:>2} {:>4} {:>3} {:>6} {:>6} {:>7} {:>7} | {:>9.0} {:>6.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>5} | {} | {:>5}",
            name, s.message_bytes, s.partitions, s.replication_factor, s.acks, s.producers,
            s.compression, s.linger_ms, batch(s), offered(s),
            r.msgs_per_sec, r.mb_per_sec, ms(r.produce_latency.p50_us), ms(r.produce_latency.p99_us),
            ms(r.produce_latency.max_us), ms(r.end_to_end_latency.p50_us),
            ms(r.end_to_end_latency.p99_us), cpu(r.broker_cpu),
            tool_cells(row.perf_tool.as_ref()), ratio
        );
    }
    let _ = writeln!(
        out,
        "latencies in ms; e2e = send to a consumer's read; CPU = the brokers' share of the \
         machine ({} cores); ratio = rdkafka msg/s over ProducerPerformance msg/s",
        results.machine.cores
    );
    render_paced(results, &mut out);
    render_notes(results, &mut out);
    out
}

/// Each row's notes (what makes a figure other than it looks), under its name.
fn render_notes(results: &KafkaBenchResults, out: &mut String) {
    for (index, row) in results.rows.iter().enumerate() {
        for note in &row.notes {
            let _ = writeln!(out, "note: {}: {note}", name(index, row));
        }
    }
}
