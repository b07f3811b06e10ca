//! Reports and gates for faultline: `results.json` in, HTML (plotters SVG), JUnit, Markdown
//! and a CI exit code out.
//!
//! Nothing is here yet: reports are the subject of their own issue, and read only the
//! results that the load generator writes.
