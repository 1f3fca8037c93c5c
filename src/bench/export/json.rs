//! The report as JSON: every sample, cell and experiment record, and the machine; and
//! read back, for `--replot`.

use crate::bench::results::BenchReport;

/// A report written by [`render`], read back (to draw it again); its cells are
/// aggregated again from its samples and its findings computed anew.
pub fn parse(text: &str) -> Result<BenchReport, serde_json::Error> {
    let mut report: BenchReport = serde_json::from_str(text)?;
    // The cells again from the samples, so that a report written by an earlier
    // version is drawn under the aggregation rule the report states today.
    if !report.samples.is_empty() {
        report.cells = crate::bench::results::aggregate(&report.samples);
    }
    report.findings = crate::bench::experiments::findings(&report);
    Ok(report)
}

/// The whole report as pretty JSON.
pub fn render(r: &BenchReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
