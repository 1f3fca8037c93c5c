//! Tests of scenarios: the shipped files parse, overrides, regimes.

use super::*;
use crate::models;

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
    let probe = |regime: &str| {
        Scenario::parse(&format!(
            "{base}models=['epoll']\n[waiting]\nmodels=['threads']\ndelays=['1ms']\nclients=[1]\nn=1\nduration='1s'\nwarmup='0s'\nregimes=['{regime}']"
        ))
    };
    assert!(probe("shared").is_ok());
    let error = probe("nope").unwrap_err().to_string();
    assert!(
        error.contains("[waiting] regimes") && error.contains("nope"),
        "{error}"
    );
    let v = Scenario::parse(&format!("{base}models=['epoll+offload']")).unwrap();
    assert_eq!(
        v.models[0],
        Variant {
            model: "epoll".into(),
            offload: true
        }
    );
}

/// Issue 32: `--models` (and the other overrides) reach every experiment that can follow
/// them, and say in one line where one cannot.
#[test]
fn overrides_reach_every_experiment_or_say_why_not() {
    let names =
        |v: &[crate::server::Variant]| v.iter().map(|v| v.model.clone()).collect::<Vec<_>>();
    let models = Overrides {
        models: Some(vec!["epoll".into(), "threads".into()]),
        ..Overrides::default()
    };
    for (name, text) in super::SHIPPED {
        let scenario = Scenario::parse(text).unwrap();
        let had_tables = !scenario.models.is_empty();
        let (s, _) = models.apply_noting(scenario).unwrap();
        let want = vec!["epoll".to_string(), "threads".into()];
        if had_tables {
            assert_eq!(names(&s.models), want, "{name}");
        } else {
            assert!(s.models.is_empty(), "{name}: seed tables appeared");
        }
        for list in [
            s.knee.as_ref().map(|k| &k.models),
            s.python.as_ref().map(|p| &p.models),
            s.connections.as_ref().map(|c| &c.models),
            s.waiting.as_ref().map(|w| &w.models),
        ]
        .into_iter()
        .flatten()
        {
            assert_eq!(names(list), want, "{name}");
        }
        if let Some(w) = &s.waiting {
            assert_eq!(w.gil, ["threads"], "{name}");
        }
    }
    let waiting = Scenario::parse(
        super::SHIPPED
            .iter()
            .find(|(n, _)| *n == "waiting")
            .unwrap()
            .1,
    )
    .unwrap();
    let (s, notes) = Overrides {
        clients: Some(vec![1, 50]),
        duration: Some(Duration::from_secs(1)),
        workloads: Some(vec![20]),
        ..Overrides::default()
    }
    .apply_noting(waiting)
    .unwrap();
    let w = s.waiting.unwrap();
    assert_eq!(
        (w.clients.as_slice(), w.duration),
        (&[1, 50][..], Duration::from_secs(1))
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("does not reach the waiting experiment")),
        "{notes:?}"
    );
    let knee =
        Scenario::parse(super::SHIPPED.iter().find(|(n, _)| *n == "knee").unwrap().1).unwrap();
    let (s, notes) = Overrides {
        workloads: Some(vec![1]),
        clients: Some(vec![4]),
        ..Overrides::default()
    }
    .apply_noting(knee)
    .unwrap();
    assert_eq!(
        s.knee
            .unwrap()
            .workloads
            .iter()
            .map(|k| k.mix.as_str())
            .collect::<Vec<_>>(),
        ["1"]
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("--clients does not reach the knee")),
        "{notes:?}"
    );
}
