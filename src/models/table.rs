//! The registry as tables: `fiblab models` (plain text) and the README's and
//! docs/MODELS.md's markdown, so the three never disagree with [`super::MODELS`].

use super::{MODELS, Model};

/// The registry as a markdown table: `fiblab models --markdown`, and the README's.
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| model | seed program | how it schedules | good at | bad at | `--offload` | source |\n|---|---|---|---|---|---|---|\n",
    );
    for m in MODELS {
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | [{}]({}) |\n",
            m.name,
            m.seed,
            m.summary,
            m.good,
            m.bad,
            if m.offload { "yes" } else { "" },
            m.source,
            m.source
        ));
    }
    table
}

/// The registry as aligned plain text: `fiblab models`.
pub fn text_table() -> String {
    let width = |field: fn(&Model) -> &str, title: &str| {
        MODELS
            .iter()
            .map(|m| field(m).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (name_w, source_w, seed_w) = (
        width(|m| m.name, "MODEL"),
        width(|m| m.source, "SOURCE"),
        width(|m| m.seed, "SEED"),
    );
    let mut table = format!(
        "{:name_w$}  {:source_w$}  {:seed_w$}  SUMMARY\n",
        "MODEL", "SOURCE", "SEED"
    );
    let indent = name_w + source_w + seed_w + 6;
    for m in MODELS {
        table.push_str(&format!(
            "{:name_w$}  {:source_w$}  {:seed_w$}  {}\n{:indent$}good at: {}\n{:indent$}bad at: {}\n",
            m.name, m.source, m.seed, m.summary, "", m.good, "", m.bad
        ));
    }
    table
}
