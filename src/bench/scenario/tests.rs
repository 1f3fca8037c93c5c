//! Tests of scenarios: the shipped files parse, overrides, regimes.

use super::*;

#[test]
fn every_shipped_scenario_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let scenario = Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            path.file_stem().unwrap().to_str(),
            Some(scenario.name.as_str())
        );
        seen += 1;
    }
    assert_eq!(
        seen,
        SHIPPED.len(),
        "every file in scenarios/ is shipped in the binary"
    );
    for (name, _) in SHIPPED {
        assert_eq!(&load(name).unwrap().name, name);
    }
    assert!(
        load("nope")
            .unwrap_err()
            .to_string()
            .contains("quick, seeds, full")
    );
    let quick = Scenario::parse(QUICK).unwrap();
    assert!(
        quick.estimate(0) < Duration::from_secs(360),
        "quick must stay under 6 minutes in its two regimes: {:?}",
        quick.estimate(0)
    );
    assert_eq!(
        quick.models.len(),
        models::MODELS.len(),
        "quick covers every model"
    );
}

#[test]
fn regimes_resolve_to_cpus_or_say_why_not() {
    let quick = Scenario::parse(QUICK).unwrap();
    let (plans, notes) = quick.plans(&[0, 1, 2, 3]);
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["shared", "pinned-spinning"]);
    assert!(notes.is_empty());
    assert_eq!(
        (
            plans[1].client_cpus.as_slice(),
            plans[1].server_cpus.as_slice(),
            plans[1].spin
        ),
        (&[0][..], &[1, 2, 3][..], true)
    );
    assert!(plans[0].shared_cpus() && !plans[1].shared_cpus());
    let sleeping = Regime::PinnedSleeping.resolve(&[0, 1, 2]).unwrap();
    assert_eq!(
        (
            sleeping.client_cpus.as_slice(),
            sleeping.server_cpus.as_slice(),
            sleeping.spin
        ),
        (&[0][..], &[1, 2][..], false)
    );
    assert!(Regime::PinnedSleeping.resolve(&[0]).is_none());
    let (plans, notes) = quick.plans(&[0]);
    assert_eq!(plans.len(), 1);
    assert!(
        notes[0].contains("`pinned-spinning` was left out"),
        "{notes:?}"
    );
    let pinned = Overrides {
        server_cpus: Some("0".parse().unwrap()),
        ..Overrides::default()
    }
    .apply(quick)
    .unwrap();
    let (plans, _) = pinned.plans(&[0, 1]);
    assert_eq!(plans[0].name, "pinned");
    assert!(plans[0].describe().contains("server on CPU 0"));
}

#[test]
fn rejects_what_cannot_run() {
    let base = "name='x'\nworkloads=[1]\nclients=[1]\nduration='1s'\nwarmup='0s'\nrepetitions=1\n";
    assert!(
        Scenario::parse(&format!("{base}models=['nope']"))
            .unwrap_err()
            .to_string()
            .contains("unknown model")
    );
    assert!(
        Scenario::parse(&format!("{base}models=['threads+offload']"))
            .unwrap_err()
            .to_string()
            .contains("cannot --offload")
    );
    assert!(Scenario::parse(&format!("{base}models=['epoll+offload']\nextra=1")).is_err());
    assert!(
        Scenario::parse(&format!("{base}models=['epoll']\nrate=-5.0"))
            .unwrap_err()
            .to_string()
            .contains("rate")
    );
    let open = Scenario::parse(&format!("{base}models=['epoll']\nrate=2000.0")).unwrap();
    assert_eq!(open.rate, Some(2000.0));
    let v = Scenario::parse(&format!("{base}models=['epoll+offload']")).unwrap();
    assert_eq!(
        v.models[0],
        Variant {
            model: "epoll".into(),
            offload: true
        }
    );
}
