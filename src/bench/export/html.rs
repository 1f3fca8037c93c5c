//! The report as one self-contained HTML page: tables, notes and every plot inline.

use std::fmt::Write as _;

use super::Document;
use crate::bench::results::{BenchReport, Plot};

/// `&`, `<`, `>` and `"` escaped, for an attribute's value.
fn attribute(text: &str) -> String {
    crate::output::escape_html(text).replace('`', "")
}

/// `&`, `<`, `>` and `"` escaped, then `` `code` `` and `**bold**` as HTML.
fn inline_html(text: &str) -> String {
    let escaped = crate::output::escape_html(text);
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            for (j, piece) in part.split("**").enumerate() {
                match j % 2 {
                    1 => {
                        let _ = write!(out, "<strong>{piece}</strong>");
                    }
                    _ => out.push_str(&intervals(piece)),
                }
            }
        }
    }
    out
}

/// Each confidence interval (`[81,900–86,300]`: brackets around an en dash, no space)
/// kept on one line and set lighter than its estimate, so a narrow column breaks
/// between the two, never inside the interval.
fn intervals(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('[') {
        let Some(len) = rest[start..].find(']') else {
            break;
        };
        let inside = &rest[start + 1..start + len];
        out.push_str(&rest[..start]);
        match inside.contains('–') && !inside.contains(' ') {
            true => {
                let _ = write!(out, "<span class=\"ci\">[{inside}]</span>");
            }
            false => out.push_str(&rest[start..=start + len]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// One self-contained HTML page: the tables, the findings, and every plot inline.
pub fn render(r: &BenchReport, plots: &[Plot]) -> String {
    let mut out = String::new();
    let title = inline_html(&format!("fiblab bench: {}", r.scenario));
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let Document {
        header: [machine, method],
        calibration,
        summary,
        tables,
        notes,
    } = Document::of(r);
    let _ = writeln!(
        out,
        "<p>{}</p>\n<ul class=\"summary\">",
        inline_html(&r.about)
    );
    for line in &summary {
        let _ = writeln!(out, "<li>{}</li>", inline_html(line));
    }
    out.push_str("</ul>\n");
    for p in [&machine, &method].into_iter().chain(calibration.as_ref()) {
        let _ = writeln!(out, "<p>{}</p>", inline_html(p));
    }
    for t in &tables {
        let _ = writeln!(out, "<h2>{}</h2>", inline_html(&t.title));
        if !t.intro.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline_html(&t.intro));
        }
        // A wide table scrolls sideways inside its own box (the page keeps its width),
        // its first column (the model) staying in view while it does.
        let _ = write!(
            out,
            "<div class=\"wide\" role=\"region\" tabindex=\"0\" aria-label=\"{}\">\n<table>\n<tr>",
            attribute(&t.title)
        );
        for (i, h) in t.header.iter().enumerate() {
            let class = if t.is_left(i) { "" } else { " class=\"num\"" };
            let _ = write!(out, "<th{class}>{}</th>", inline_html(h));
        }
        out.push_str("</tr>\n");
        for row in &t.rows {
            out.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let class = if t.is_left(i) { "" } else { " class=\"num\"" };
                let _ = write!(out, "<td{class}>{}</td>", inline_html(cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n</div>\n");
    }
    for note in &notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", inline_html(note));
    }
    if !plots.is_empty() {
        out.push_str("<h2>Plots</h2>\n");
        for p in plots {
            let _ = writeln!(
                out,
                "<figure id=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>",
                p.file.trim_end_matches(".svg"),
                p.svg.trim_start_matches(|c| c != '<').trim(),
                inline_html(&p.title)
            );
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

// CJK fallbacks: the seeds' summaries (总结) are Chinese; without a CJK font they draw
// as boxes (Debian: fonts-noto-cjk).
const STYLE: &str = "body { font-family: \"Noto Sans\", \"DejaVu Sans\", \"Noto Sans CJK SC\", \"Source Han Sans SC\", \"WenQuanYi Micro Hei\", \"PingFang SC\", \"Microsoft YaHei\", sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0; }
.wide { overflow-x: auto; margin: 1rem 0; max-width: 100%; }
.wide th:first-child, .wide td:first-child { position: sticky; left: 0; background: #fff; z-index: 1; box-shadow: 1px 0 0 #ddd; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.75rem; text-align: left; vertical-align: top; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0 0.2rem; }
figure { margin: 2rem 0; }
figure svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.9rem; }
.ci { white-space: nowrap; color: #666; font-size: 0.85em; }
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_stays_on_one_line() {
        assert_eq!(
            inline_html("84,120 [81,900–86,300] ¹"),
            "84,120 <span class=\"ci\">[81,900–86,300]</span> ¹"
        );
        assert_eq!(inline_html("[not one] [a–b c]"), "[not one] [a–b c]");
    }

    /// Issue 32: a five-client-count table cut its right-hand columns at 1400 px. Every
    /// table sits in a box that scrolls sideways, its first column kept in view.
    #[test]
    fn every_table_scrolls_inside_its_own_box() {
        let tables = STYLE.contains(".wide { overflow-x: auto;")
            && STYLE.contains(
                ".wide th:first-child, .wide td:first-child { position: sticky; left: 0;",
            );
        assert!(tables, "{STYLE}");
        assert_eq!(attribute("`a` \"b\" <c>"), "a &quot;b&quot; &lt;c&gt;");
    }

    #[test]
    fn inline_markdown_to_html() {
        assert_eq!(
            inline_html("`a<b>` is **x** & y"),
            "<code>a&lt;b&gt;</code> is <strong>x</strong> &amp; y"
        );
    }
}
