//! The Kubernetes manifests in `deploy/k8s/`: every object decodes as Kubernetes reads
//! it (`kubectl`, client side, no cluster), and the shell commands the pods run are run
//! here, as the agents and the merge step would, against a real server.

mod common;

use std::path::Path;
use std::process::Command;

fn manifest(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/k8s")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of a container's `args` (a folded `>-` block or one `- exec ...` item).
fn container_script(yaml: &str) -> String {
    let after = yaml.split("args:").nth(1).expect("a container with args");
    let mut lines = after.lines().skip(1);
    let first = lines.next().unwrap_or_default().trim();
    if let Some(inline) = first.strip_prefix("- ").filter(|s| !s.starts_with(">-")) {
        return inline.to_string();
    }
    // Folded: the following lines, indented more than the `- >-`, joined by spaces.
    lines
        .take_while(|l| l.starts_with("              "))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn manifests_decode_client_side() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install kubectl (.ci/run installs Debian's kubernetes-client)"
        );
        eprintln!("SKIPPED manifests_decode_client_side: kubectl is not installed");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
    for name in ["reports.yaml", "agents.yaml", "merge.yaml"] {
        let file = dir.join(name);
        // Every object: apiVersion, kind, metadata, as the API reads them.
        let label = Command::new("kubectl")
            .args(["label", "--local", "-o", "name", "-f"])
            .arg(&file)
            .arg("check=ok")
            .output()
            .unwrap();
        assert!(
            label.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&label.stderr)
        );
        if name == "reports.yaml" {
            continue;
        }
        // Jobs decoded into their typed Go structs: a wrong field type or name fails.
        let typed = Command::new("kubectl")
            .args(["set", "env", "--local", "-o", "name", "-f"])
            .arg(&file)
            .arg("CHECK=1")
            .output()
            .unwrap();
        assert!(
            typed.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&typed.stderr)
        );
    }
}

#[test]
fn the_pods_commands_split_a_load_and_merge_it() {
    let server = common::Server::start("threads", &[]);
    let dir = std::env::temp_dir().join(format!("fiblab-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = Path::new(common::fiblab_bin())
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let reports = dir.display().to_string();
    let agent = container_script(&manifest("agents.yaml")).replace("/reports", &reports);
    let merge = container_script(&manifest("merge.yaml")).replace("/reports", &reports);
    assert!(
        agent.contains("--segment") && merge.contains("load merge"),
        "{agent} / {merge}"
    );
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    // The ConfigMap's keys, as the README creates them.
    let pods: Vec<_> = (0..2)
        .map(|index| {
            Command::new("sh")
                .args(["-c", &agent])
                .env("PATH", &path)
                .env("TARGET", server.addr.to_string())
                .env("CONNS", "4")
                .env("RATE", "400")
                .env("DURATION", "1s")
                .env("WARMUP", "0s")
                .env("AGENTS", "2")
                .env("START_AT", start_at.to_string())
                .env("JOB_COMPLETION_INDEX", index.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for pod in pods {
        let pod = pod.wait_with_output().unwrap();
        assert!(
            pod.status.success(),
            "{}",
            String::from_utf8_lossy(&pod.stderr)
        );
    }
    let merged = Command::new("sh")
        .args(["-c", &merge])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("merged.json")).unwrap()).unwrap();
    assert_eq!(report["merged_from"], 2);
    assert_eq!(report["rate"], 400.0);
    let _ = std::fs::remove_dir_all(&dir);
}
