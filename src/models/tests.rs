//! Tests of the registry: every entry complete, sources that exist, variants.

use super::*;

#[test]
fn names_are_unique_and_findable() {
    for m in MODELS {
        assert_eq!(find(m.name).map(|f| f.name), Some(m.name));
        assert_eq!(MODELS.iter().filter(|o| o.name == m.name).count(), 1);
    }
    assert!(find("nope").is_none());
}

#[test]
fn pools_default_as_the_seeds_library_does() {
    assert_eq!(Workers::ThreadPoolExecutor.default_for(1), 5);
    assert_eq!(Workers::ThreadPoolExecutor.default_for(2), 6);
    assert_eq!(Workers::ThreadPoolExecutor.default_for(64), 32);
    assert_eq!(Workers::Cpus.default_for(16), 16);
    assert_eq!(
        find("threadpool").map(|m| m.workers),
        Some(Workers::ThreadPoolExecutor)
    );
}

#[test]
fn variants_are_checked_against_the_registry() {
    assert_eq!(
        parse_variant("epoll+offload"),
        Ok(Variant::split("epoll+offload"))
    );
    assert!(matches!(
        parse_variant("threads+offload"),
        Err(VariantError::NoOffload(..))
    ));
    assert!(matches!(
        parse_variant("nope"),
        Err(VariantError::Unknown(_))
    ));
    let every = variants();
    assert!(every.iter().all(|v| check(v).is_ok()));
    assert_eq!(
        every.len(),
        MODELS.len() + offload_models().len(),
        "one plain variant per model and one +offload per model that has it"
    );
}

#[test]
fn sources_exist() {
    for m in MODELS {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(m.source);
        assert!(path.is_file(), "{}: no file {}", m.name, m.source);
    }
}

#[test]
fn tables_list_every_model() {
    let (md, text) = (markdown_table(), text_table());
    for m in MODELS {
        assert!(md.contains(&format!("| `{}` |", m.name)));
        assert!(text.lines().any(|l| l.starts_with(m.name)));
        // What each is good and bad at, in both (issue 47).
        assert!(!m.good.is_empty() && !m.bad.is_empty(), "{}", m.name);
        assert!(md.contains(m.good) && md.contains(m.bad), "{}", m.name);
        assert!(text.contains(&format!("good at: {}", m.good)), "{}", m.name);
        assert!(text.contains(&format!("bad at: {}", m.bad)), "{}", m.name);
    }
}
