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
    for name in ["reports.yaml", "agents.yaml", "merge.yaml", "server.yaml"] {
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
        if name == "server.yaml" {
            // The Deployment and the Service decoded into their typed Go structs.
            let text = manifest(name);
            let docs: Vec<&str> = text.split("\n---\n").collect();
            assert_eq!(docs.len(), 2, "a Deployment and a Service");
            let dir = std::env::temp_dir().join(format!("fiblab-k8s-typed-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (doc, args) in [
                (
                    docs[0],
                    vec!["set", "env", "--local", "-o", "name", "CHECK=1", "-f"],
                ),
                (
                    docs[1],
                    vec!["set", "selector", "--local", "-o", "name", "check=ok", "-f"],
                ),
            ] {
                let part = dir.join("part.yaml");
                std::fs::write(&part, doc).unwrap();
                let typed = Command::new("kubectl")
                    .args(&args)
                    .arg(&part)
                    .output()
                    .unwrap();
                assert!(
                    typed.status.success(),
                    "{name}: {}",
                    String::from_utf8_lossy(&typed.stderr)
                );
            }
            let _ = std::fs::remove_dir_all(&dir);
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

/// The server Deployment's command, run here as its pod would (loopback instead of
/// 0.0.0.0, free ports instead of 25000 and 9100): its readiness probe's path and port
/// answer once it serves, and it answers the protocol.
#[test]
fn the_server_pods_command_serves_and_its_readiness_probe_answers() {
    use std::io::{Read as _, Write as _};
    let yaml = manifest("server.yaml");
    let script = container_script(&yaml);
    let probe = yaml
        .split("readinessProbe:")
        .nth(1)
        .expect("a readiness probe");
    assert!(
        probe.contains("path: /metrics") && probe.contains("port: 9100"),
        "{probe}"
    );
    assert!(
        script.contains("--port 25000") && script.contains("--metrics 0.0.0.0:9100"),
        "{script}"
    );
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, metrics) = (free(), free());
    let script = script
        .replace("0.0.0.0", "127.0.0.1")
        .replace("25000", &port.to_string())
        .replace("9100", &metrics.to_string());
    let bin = Path::new(common::fiblab_bin())
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut pod = Command::new("sh")
        .args(["-c", &script])
        .env("PATH", &path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The kubelet's probe: GET /metrics with the pod's IP as Host.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let ready = loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", metrics))
            .ok()
            .and_then(|mut s| {
                s.write_all(
                    b"GET /metrics HTTP/1.1\r\nHost: 10.0.0.7:9100\r\nConnection: close\r\n\r\n",
                )
                .ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(common::http_response(&text))
            });
        match answer {
            Some((200, body)) => break body,
            _ if std::time::Instant::now() > deadline => {
                panic!("the readiness probe never answered")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    assert!(ready.contains("fiblab_requests_total"), "{ready}");
    let mut client = common::Client::connect(([127, 0, 0, 1], port).into());
    assert_eq!(client.ask("10"), "55");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pod.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = pod.wait().unwrap();
    assert!(
        status.success(),
        "the server exits cleanly on SIGTERM: {status}"
    );
}
