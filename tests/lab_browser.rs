//! `fiblab lab` in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, the `fantoccini` crate) clicks the page as a teacher would: start
//! `threads`, two clients, the chart's figures moving, the heavy request marked, a
//! switch to `epoll`, one lesson to its computed conclusion, stop, then the advice form
//! (`fiblab advise`) predicted and measured live; no child left.
//! Before that, a page of another site tries to drive the lab through the same
//! browser (issue 41's cross-site requests): nothing starts.
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without
//! them it is skipped loudly, and under CI it fails.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A child killed (SIGTERM, then waited for) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn a_teacher_clicks_through_the_page() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|p| found(p));
    let (Some(chromium), true) = (chromium, found("chromedriver")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are missing under CI; .ci/run installs Debian's chromium and chromium-driver"
        );
        eprintln!(
            "SKIPPED the lab's browser test: chromium or chromedriver not found (Debian: chromium, chromium-driver)"
        );
        return;
    };
    let lab_port = common::free_addr().port();
    let mut lab = Command::new(env!("CARGO_BIN_EXE_fiblab"))
        .args(["lab", "--addr", &format!("127.0.0.1:{lab_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(lab.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let lab = Killed(lab);
    // The URL it printed, with its token, as a teacher would copy it.
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    let token = url.split_once("?token=").unwrap().1.to_string();
    // A page of another site that tries every way a page can send a request without
    // asking first, knowing the token even: none may start anything.
    let attacker = Attacker::start(lab_port, &token);
    let driver_port = common::free_addr().port();
    let _driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": which(chromium),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let driver = format!("http://127.0.0.1:{driver_port}");
        // chromedriver takes a moment to listen.
        let deadline = Instant::now() + Duration::from_secs(20);
        let browser = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(capabilities.clone())
                .connect(&driver)
                .await
            {
                Ok(browser) => break browser,
                Err(e) if Instant::now() > deadline => panic!("chromedriver: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let text = |css: &'static str| {
            let browser = &browser;
            async move {
                browser
                    .find(Locator::Css(css))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            }
        };
        // Waits until the text of `css` satisfies `ok`.
        let until = |css: &'static str, limit: u64, ok: fn(&str) -> bool| {
            let text = &text;
            async move {
                let deadline = Instant::now() + Duration::from_secs(limit);
                loop {
                    let now = text(css).await;
                    if ok(&now) {
                        return now;
                    }
                    assert!(Instant::now() < deadline, "{css} never got there: {now:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let click = |css: &'static str| {
            let browser = &browser;
            async move {
                browser
                    .find(Locator::Css(css))
                    .await
                    .unwrap()
                    .click()
                    .await
                    .unwrap()
            }
        };
        browser.goto(&attacker.url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.title().await.unwrap() != "sent" {
            assert!(Instant::now() < deadline, "the other site's page never ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Long enough for any of its requests to have started a server.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let state = lab_state(lab_port, &token);
        assert!(state["server"].is_null(), "a page elsewhere drove the lab: {state}");
        assert!(state["load"].is_null(), "{state}");
        assert!(
            attacker.asked() >= 1,
            "the other site's page was not served"
        );
        // Its requests reached the lab and were refused as another origin's (the
        // JSON fetch stops at its preflight, which the lab never grants).
        let refused = &state["refused"];
        let cross = refused["cross_origin"].as_u64().unwrap() + refused["not_json"].as_u64().unwrap();
        assert!(cross >= 3, "{refused}");
        browser.goto(&url).await.unwrap();
        let model = browser
            .wait()
            .for_element(Locator::Css("#model"))
            .await
            .unwrap();
        model.select_by_value("threads").await.unwrap();
        click("#start").await;
        until("#running", 20, |t| t.contains("running: threads")).await;
        let clients = browser.find(Locator::Css("#clients")).await.unwrap();
        clients.clear().await.unwrap();
        clients.send_keys("2").await.unwrap();
        click("#load").await;
        // The live figures move: the throughput shown is a positive number.
        until("#rps", 20, |t| t.replace(',', "").parse::<f64>().is_ok_and(|r| r > 0.0)).await;
        click("#heavy").await;
        until("#marks", 60, |t| t.contains("answered in")).await;
        let model = browser.find(Locator::Css("#model")).await.unwrap();
        model.select_by_value("epoll").await.unwrap();
        click("#start").await;
        until("#running", 20, |t| t.contains("running: epoll")).await;
        click("[data-lesson='two-clients']").await;
        let observed = until("#lesson-observed", 120, |t| t.contains("threads: two clients")).await;
        assert!(
            observed.contains("single: two clients") && observed.contains("1 client got none"),
            "{observed}"
        );
        assert!(text("#lesson-quote").await.contains("线程"));
        click("#stop").await;
        until("#running", 20, |t| t.contains("no server")).await;
        // The advice form (issue 44): a service described in its own terms, the
        // prediction as a table, then the measurement run live from the page.
        let field = |css: &'static str, value: &'static str| {
            let browser = &browser;
            async move {
                let input = browser.find(Locator::Css(css)).await.unwrap();
                input.clear().await.unwrap();
                input.send_keys(value).await.unwrap();
            }
        };
        field("#a-cpu", "50us").await;
        field("#a-clients", "2").await;
        field("#a-budget", "10s").await;
        click("#advise").await;
        let advised = until("#advice-text", 60, |t| t.contains("predicted")).await;
        assert!(advised.contains("calibrated here by the lab"), "{advised}");
        let table = text("#advice-table").await;
        assert!(table.contains("threads") && table.contains("epoll"), "{table}");
        click("#advise-measure").await;
        let verdict = until("#advice-verdict", 120, |t| t.contains("onfirmed")).await;
        assert!(verdict.contains("measured within 30%"), "{verdict}");
        assert!(text("#advice-measured").await.contains("measured req/s"));
        browser.close().await.unwrap();
    });
    let pid = lab.0.id();
    let children: Vec<u32> = common::children_of(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .is_ok_and(|c| c.starts_with("fiblab"))
        })
        .collect();
    drop(lab);
    let deadline = Instant::now() + Duration::from_secs(10);
    while children
        .iter()
        .any(|c| std::path::Path::new(&format!("/proc/{c}")).exists())
    {
        assert!(Instant::now() < deadline, "lab {pid} left {children:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A page on another site (`localhost` on a port of its own: another origin and,
/// against `127.0.0.1`, another site) that sends the lab every request a page can send
/// without a CORS preflight, and one that needs one: a `text/plain` fetch in `no-cors`
/// mode, a form posted as `text/plain` with a body that parses as JSON, a JSON fetch.
struct Attacker {
    url: String,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Attacker {
    fn start(lab_port: u16, token: &str) -> Attacker {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lab = format!("http://127.0.0.1:{lab_port}");
        let page = format!(
            r#"<!doctype html><html><head><title>loading</title></head><body>
<form id="f" method="POST" enctype="text/plain" action="{lab}/api/server?token={token}" target="sink">
<input name='{{"model":"epoll","x":"' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
const lab = "{lab}", q = "?token={token}";
const tries = [
  fetch(lab + "/api/server" + q, {{ method: "POST", mode: "no-cors", headers: {{ "Content-Type": "text/plain" }}, body: '{{"model":"epoll"}}' }}),
  fetch(lab + "/api/load" + q, {{ method: "POST", mode: "no-cors", body: '{{"clients":8,"n":1,"rate":200000}}' }}),
  fetch(lab + "/api/server" + q, {{ method: "POST", headers: {{ "Content-Type": "application/json", "X-Fiblab-Token": "{token}" }}, body: '{{"model":"epoll"}}' }}),
].map((p) => p.catch(() => null));
document.getElementById("f").submit();
Promise.all(tries).then(() => {{ document.title = "sent"; }});
</script></body></html>"#
        );
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(16) {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
            }
        });
        Attacker {
            url: format!("http://localhost:{port}/"),
            served,
        }
    }

    fn asked(&self) -> usize {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The lab's state, read as its own page would.
fn lab_state(port: u16, token: &str) -> serde_json::Value {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/state?token={token} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (status, body) = common::http_response(&text);
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&body).unwrap()
}

/// The browser binary's path (chromedriver wants a path, not a name).
fn which(program: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|p| p.exists())
        })
        .map_or_else(|| program.to_string(), |p| p.display().to_string())
}
