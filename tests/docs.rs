//! Documents generated from the code stay in step with it.
//!
//! `docs/MODELS.md` is the doc comment that opens each model's module, in registry
//! order. After editing a model's doc comment, regenerate it with
//! `FIBLAB_BLESS=1 cargo test --test docs`.

use fiblab::models::{MODELS, markdown_table};

fn module_doc(source: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut doc = String::new();
    for line in text.lines().take_while(|l| l.starts_with("//!")) {
        let line = line.strip_prefix("//!").unwrap_or(line);
        doc.push_str(line.strip_prefix(' ').unwrap_or(line));
        doc.push('\n');
    }
    doc
}

fn models_md() -> String {
    let mut md = String::from(
        "# The models\n\n\
         <!-- Generated from the doc comment that opens each model's module: edit those, then run\n     \
         FIBLAB_BLESS=1 cargo test --test docs -->\n\n\
         Every model serves the same wire contract through the same framing, service and\n\
         connection loops; only the scheduling differs. Each section below is the doc comment\n\
         that opens the model's module: which seed program it is, how it runs, what it is good\n\
         and bad at, and what it predicts for the benchmark.\n\n",
    );
    // Links in the table are relative to the repository root; this file is in docs/.
    md.push_str(&markdown_table().replace("](src/", "](../src/"));
    for model in MODELS {
        md.push_str(&format!("\n## `{}`\n\n", model.name));
        md.push_str(&format!(
            "Source: [{}](../{}). Seed: {}.\n\n",
            model.source, model.source, model.seed
        ));
        let doc = module_doc(model.source);
        // The module doc's first line repeats the name and seed; the heading has them.
        let body = doc
            .split_once("\n\n")
            .map_or(doc.as_str(), |(_, rest)| rest);
        md.push_str(body);
    }
    md
}

#[test]
fn models_md_is_generated_from_the_module_docs() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/MODELS.md");
    let expected = models_md();
    if std::env::var_os("FIBLAB_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/MODELS.md is out of date: run `FIBLAB_BLESS=1 cargo test --test docs`"
    );
}

#[test]
fn every_model_doc_names_its_seed_and_its_trade_offs() {
    for model in MODELS {
        let doc = module_doc(model.source);
        assert!(
            doc.starts_with(&format!("`{}`", model.name)),
            "{}: doc must open with the model's name",
            model.name
        );
        for needle in ["Good at", "Bad at", "Prediction", "Primitives"] {
            assert!(
                doc.contains(needle),
                "{}: doc comment lacks '{needle}'",
                model.name
            );
        }
    }
}

#[test]
fn primitives_md_is_generated_and_names_real_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in fiblab::demo::PRIMITIVES {
        for file in p.used_in {
            assert!(
                root.join(file).is_file(),
                "docs/PRIMITIVES.md: {} names {file}, which does not exist: update fiblab::demo::PRIMITIVES",
                p.name
            );
        }
        assert!(
            fiblab::demo::find(p.demo).is_some() || p.demo.starts_with('`'),
            "{}: `{}` is neither a demo nor a command",
            p.name,
            p.demo
        );
    }
    for d in fiblab::demo::DEMOS {
        assert!(
            fiblab::demo::PRIMITIVES.iter().any(|p| p.demo == d.name),
            "demo {} shows no primitive of the table",
            d.name
        );
    }
    let path = root.join("docs/PRIMITIVES.md");
    let expected = fiblab::demo::primitives_markdown();
    if std::env::var_os("FIBLAB_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/PRIMITIVES.md is out of date: run `FIBLAB_BLESS=1 cargo test --test docs`"
    );
}
