//! The report of a real run in headless Chromium (Debian's `chromium`): it loads
//! without console messages or network requests, and every chart has drawn data,
//! checked on the pixels of a screenshot.
//!
//! Network requests are read from Chromium's NetLog (`--log-net-log`): a request
//! the page made carries the page's `file://` network isolation key, which tells it
//! from Chromium's own background requests. Host names resolve to nothing
//! (`--host-resolver-rules`), so those background requests never leave the machine.
//! A control page with one remote image proves that the check sees a request, and a
//! control chart without data proves that the pixel check sees an empty chart.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use faultline_reports::{
    charts::{self, Chart, ChartSpec, SeriesStyle},
    report::{all_gates, Report, Section},
    Claims, Gate, GateReport,
};
use serde_json::Value;

use crate::support::{real_results, temp_dir};

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Chromium is not installed, and this test needs it to open the report: run `make setup` \
         (scripts/setup installs Debian's chromium package)"
    );
}

struct Loaded {
    png: PathBuf,
    stderr: String,
    netlog: PathBuf,
}

/// Opens `page` in headless Chromium with a fresh profile and takes a screenshot.
fn open_in_chromium(page: &Path, width: u32, height: u32, work: &Path) -> Loaded {
    let profile = work.join(format!("profile-{width}x{height}"));
    let png = work.join(format!("screenshot-{width}x{height}.png"));
    let netlog = work.join(format!("netlog-{width}x{height}.json"));
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--enable-logging=stderr",
            "--v=0",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "chromium failed: {stderr}");
    assert!(png.is_file(), "chromium wrote no screenshot: {stderr}");
    Loaded {
        png,
        stderr,
        netlog,
    }
}

/// URLs the page itself requested (not file: or data:).
fn page_requests(netlog: &Path) -> Vec<String> {
    let log: Value = serde_json::from_str(&std::fs::read_to_string(netlog).unwrap()).unwrap();
    let start_job = &log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"];
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| &e["type"] == start_job)
        .filter(|e| {
            e["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.contains("file://"))
        })
        .filter_map(|e| e["params"]["url"].as_str())
        .filter(|url| !url.starts_with("file:") && !url.starts_with("data:"))
        .map(String::from)
        .collect()
}

/// Console messages Chromium logged for the page.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

fn decode_png(path: &Path) -> Image {
    let mut decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    let rgb = buffer[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Image {
        width: info.width as usize,
        height: info.height as usize,
        rgb,
    }
}

/// Pixels within `(left, top, right, bottom)` close to `color`.
fn count_color(image: &Image, area: (i32, i32, i32, i32), color: (u8, u8, u8)) -> usize {
    let (left, top, right, bottom) = area;
    let mut count = 0;
    for y in top.max(0) as usize..(bottom.max(0) as usize).min(image.height) {
        for x in left.max(0) as usize..(right.max(0) as usize).min(image.width) {
            let [r, g, b] = image.rgb[y * image.width + x];
            let distance = (r as i32 - color.0 as i32).pow(2)
                + (g as i32 - color.1 as i32).pow(2)
                + (b as i32 - color.2 as i32).pow(2);
            if distance <= 30 * 30 {
                count += 1;
            }
        }
    }
    count
}

fn report_of_real_run() -> (Vec<Chart>, String) {
    let results = real_results();
    let claims = Claims::builtin().unwrap();
    let extra = [
        Gate::parse_expression("http.p99<450ms", "--gate").unwrap(),
        Gate::parse_expression("checker.lost<=0", "--gate").unwrap(),
    ];
    let gates = all_gates(results, &extra).unwrap();
    let judged = GateReport::judge(results, &gates, None, &claims.groups);
    let report = Report::build(results, &claims, judged).unwrap();
    let charts: Vec<Chart> = report
        .sections
        .iter()
        .map(|section| match section {
            Section::Chart(chart) => chart.clone(),
            Section::Missing { id, reason, .. } => {
                panic!("the run recorded data for {id}, yet: {reason}")
            }
        })
        .collect();
    (charts, report.html())
}

#[test]
fn the_report_opens_in_chromium_without_console_errors_or_network_requests() {
    let work = temp_dir();
    let (charts, html) = report_of_real_run();
    assert_eq!(
        charts.len(),
        10,
        "every chart of a run that recorded everything"
    );
    for external in ["src=", "href=", "url(", "@import", "<script", "<link"] {
        assert!(
            !html.contains(external),
            "the page refers to something outside: {external}"
        );
    }
    let page = work.path().join("index.html");
    std::fs::write(&page, &html).unwrap();
    let loaded = open_in_chromium(&page, 1400, 6000, work.path());
    assert_eq!(console_lines(&loaded.stderr), Vec::<&str>::new());
    assert_eq!(page_requests(&loaded.netlog), Vec::<String>::new());

    // The whole page shows the series' colours (the precise check is per chart below).
    let image = decode_png(&loaded.png);
    assert_eq!((image.width, image.height), (1400, 6000));
    let everywhere = (0, 0, image.width as i32, image.height as i32);
    for chart in &charts {
        let style = &chart.series[0];
        assert!(
            count_color(&image, everywhere, style.color) > 50,
            "{}: no pixel of {} on the page",
            chart.id,
            style.hex()
        );
    }
    if let Some(keep) = std::env::var_os("FAULTLINE_KEEP_REPORT") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&page, keep.join("index.html")).unwrap();
        std::fs::copy(&loaded.png, keep.join("report.png")).unwrap();
    }

    // Control: a page that loads a remote image is caught, with its console error.
    let control = work.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/x.png\"></body></html>",
    )
    .unwrap();
    let loaded = open_in_chromium(&control, 400, 300, work.path());
    assert_eq!(
        page_requests(&loaded.netlog),
        vec!["http://127.0.0.1:9/x.png".to_string()]
    );
}

#[test]
fn every_chart_of_the_report_has_drawn_data_in_its_plot_area() {
    let work = temp_dir();
    let (mut charts, _) = report_of_real_run();
    // Control: a chart with series but no points must count as empty.
    let empty = charts::draw(ChartSpec {
        id: "control-empty".into(),
        title: "empty".into(),
        x_desc: "x".into(),
        y_desc: "y".into(),
        x_range: (0.0, 10.0),
        y_range: (0.0, 10.0),
        x_format: charts::format_number,
        y_format: charts::format_number,
        lines: vec![charts::Line {
            style: SeriesStyle::nth(0, "nothing"),
            points: Vec::new(),
        }],
        bars: Vec::new(),
        bands: vec![charts::Band {
            label: "a fault".into(),
            start: 2.0,
            end: 4.0,
        }],
        note: None,
    })
    .unwrap();
    charts.push(empty);

    // Each chart alone at a known place: stacked, one chart height apart.
    let mut page = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>body{margin:0}div{position:absolute;left:0}</style></head><body>",
    );
    for (index, chart) in charts.iter().enumerate() {
        page.push_str(&format!(
            "<div style=\"top:{}px\">{}</div>",
            index as u32 * charts::HEIGHT,
            chart.svg
        ));
    }
    page.push_str("</body></html>");
    let path = work.path().join("charts.html");
    std::fs::write(&path, page).unwrap();
    let loaded = open_in_chromium(
        &path,
        charts::WIDTH,
        charts.len() as u32 * charts::HEIGHT,
        work.path(),
    );
    assert_eq!(console_lines(&loaded.stderr), Vec::<&str>::new());
    let image = decode_png(&loaded.png);

    for (index, chart) in charts.iter().enumerate() {
        let top = index as i32 * charts::HEIGHT as i32;
        let (left, area_top, right, bottom) = chart.plot_area;
        let area = (left + 1, top + area_top + 1, right - 1, top + bottom - 1);
        let counts: Vec<(String, usize)> = chart
            .series
            .iter()
            .filter(|s| !s.reference)
            .map(|s| (s.label.clone(), count_color(&image, area, s.color)))
            .collect();
        if chart.id == "control-empty" {
            assert!(
                counts.iter().all(|(_, n)| *n == 0),
                "the empty control chart shows data: {counts:?}"
            );
            continue;
        }
        for (label, count) in &counts {
            assert!(
                *count >= 15,
                "chart {}: series {label:?} has {count} pixels in the plot area ({counts:?})",
                chart.id
            );
        }
        // Time charts of a run with faults shade them.
        if !chart.bands.is_empty() {
            let (start, end) = (chart.bands[0].start, chart.bands[0].end);
            assert!(end > start);
        }
    }
}
