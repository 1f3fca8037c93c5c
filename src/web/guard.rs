//! Who may drive a surface that changes things (the lab): the checks a local
//! developer server needs so that a web page elsewhere cannot use the browser that
//! visits it as a way in.
//!
//! - **DNS rebinding** (webpack-dev-server's "Invalid Host header", CVE-2018-14732;
//!   Vite's `server.allowedHosts`, CVE-2025-24010): a page on `evil.example` whose
//!   name then resolves to 127.0.0.1 reaches the lab as the same origin. Its requests
//!   still say `Host: evil.example`, so only the names the lab was reached by are
//!   answered ([`AllowedHosts`]): `localhost`, IP literals (a page served from an IP
//!   address is that address's own origin, nothing rebinds), and `--allow-host` names.
//! - **Cross-site requests** (CSRF): a page elsewhere can send a "simple" POST
//!   (`text/plain`, a form, `fetch(.., {mode: 'no-cors'})`) without asking first. A
//!   state-changing call must carry `Content-Type: application/json` (which a page
//!   elsewhere can only send after a CORS preflight this server never grants), and
//!   where the browser says where the request comes from (`Origin`,
//!   `Sec-Fetch-Site`), it must be this origin ([`same_origin`]).
//! - **A token** on by default, as Jupyter does ([`Token`]): random per start,
//!   compared in constant time, read from `X-Fiblab-Token` or `?token=` (URL-decoded).

use std::io::{self, Read as _};
use std::net::IpAddr;

use hyper::header::{CONTENT_TYPE, HOST, ORIGIN};
use subtle::ConstantTimeEq as _;

use super::Parts;

/// The header a token may come in (the page's event stream, which cannot set headers,
/// sends it as `?token=`).
pub const TOKEN_HEADER: &str = "x-fiblab-token";

/// A secret every request must carry.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the token is empty: anyone could drive the lab with it; give a secret, or leave the token out for a random one"
    )]
    Empty,
    #[error("the token has a newline or another control character in it")]
    Control,
    #[error("no random bytes from /dev/urandom: {0}")]
    Random(#[from] io::Error),
}

impl Token {
    /// A given secret (`--token`, `--token-file`, `FIBLAB_LAB_TOKEN`).
    ///
    /// # Errors
    /// It is empty, or holds a control character (a newline would break the header).
    pub fn new(secret: &str) -> Result<Token, TokenError> {
        if secret.is_empty() {
            return Err(TokenError::Empty);
        }
        if secret.chars().any(char::is_control) {
            return Err(TokenError::Control);
        }
        Ok(Token(secret.to_string()))
    }

    /// 128 random bits from the kernel, as 32 hexadecimal digits.
    ///
    /// # Errors
    /// `/dev/urandom` cannot be read.
    pub fn generate() -> Result<Token, TokenError> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Token(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The secret, as given.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The secret as a URL's query value (`?token=...`).
    pub fn query_value(&self) -> String {
        percent_encoding::utf8_percent_encode(&self.0, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
    }

    /// Whether `head` carries this token, in the header or the query. Compared in
    /// constant time (for equal lengths: the length is not a secret worth hiding).
    pub fn admits(&self, head: &Parts) -> bool {
        let in_header = head
            .headers
            .get(TOKEN_HEADER)
            .is_some_and(|v| self.matches(v.as_bytes()));
        let in_query = head.uri.query().is_some_and(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.strip_prefix("token="))
                .any(|value| {
                    let decoded: Vec<u8> = percent_encoding::percent_decode_str(value).collect();
                    self.matches(&decoded)
                })
        });
        in_header || in_query
    }

    fn matches(&self, given: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(given).into()
    }
}

/// The host names a surface answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
    any: bool,
}

impl AllowedHosts {
    /// `localhost`, every IP literal, and `extra` (`--allow-host`; `*` allows any name).
    pub fn new(extra: &[String]) -> AllowedHosts {
        let mut names = vec!["localhost".to_string()];
        names.extend(extra.iter().map(|n| normalize(n)));
        AllowedHosts {
            any: extra.iter().any(|n| n == "*"),
            names,
        }
    }

    /// Whether a `Host` header's value (`name`, `name:port`, `[::1]:port`) names this
    /// surface.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host);
        self.any || name.parse::<IpAddr>().is_ok() || self.names.contains(&name)
    }
}

/// A `Host` value's name, lower-cased, without the port, brackets or a final dot.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal; unclosed, it names nothing.
        rest.split_once(']').map_or("", |(address, _)| address)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    normalize(name)
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Why a request is turned away, and the status and words it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("a Host header is required")]
    NoHost,
    #[error(
        "Host {0:?} is not a name this lab answers to (a page elsewhere may be using your browser); open it at localhost or an IP address, or start the lab with --allow-host NAME"
    )]
    Host(String),
    #[error("this lab needs its token: open the URL `fiblab lab` printed (/?token=...)")]
    Token,
    #[error("requests that change the lab must come from its own page, not from {0}")]
    CrossOrigin(String),
    #[error("requests that change the lab are JSON: send Content-Type: application/json")]
    NotJson,
}

impl Denied {
    /// The status it is answered with.
    pub fn status(&self) -> hyper::StatusCode {
        use hyper::StatusCode as S;
        match self {
            Denied::NoHost => S::BAD_REQUEST,
            Denied::Host(_) | Denied::CrossOrigin(_) => S::FORBIDDEN,
            Denied::Token => S::UNAUTHORIZED,
            Denied::NotJson => S::UNSUPPORTED_MEDIA_TYPE,
        }
    }
}

/// The Host check, first of all (a rebinding page learns nothing, not even whether a
/// token is needed).
///
/// # Errors
/// No `Host`, or one not in `hosts`.
pub fn host(head: &Parts, hosts: &AllowedHosts) -> Result<(), Denied> {
    let host = head
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or(Denied::NoHost)?;
    match hosts.allows(host) {
        true => Ok(()),
        false => Err(Denied::Host(host.to_string())),
    }
}

/// For a call that changes state: it comes from this origin where the browser says
/// where it comes from, and it is JSON.
///
/// # Errors
/// `Sec-Fetch-Site` other than `same-origin` or `none`, an `Origin` other than this
/// surface's own, or a body that is not `application/json`.
pub fn same_origin(head: &Parts) -> Result<(), Denied> {
    if let Some(site) = head.headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Err(Denied::CrossOrigin(format!("Sec-Fetch-Site: {site}")));
        }
    }
    if let Some(origin) = head.headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        let host = head
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")));
        if !own {
            return Err(Denied::CrossOrigin(format!("Origin: {origin}")));
        }
    }
    let json = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"));
    match json {
        true => Ok(()),
        false => Err(Denied::NotJson),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)], uri: &str) -> Parts {
        let mut request = hyper::Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_names_are_checked_without_port_and_case() {
        let hosts = AllowedHosts::new(&["Lab.Example".into()]);
        for ok in [
            "localhost",
            "LOCALHOST:8025",
            "127.0.0.1:8025",
            "[::1]:8025",
            "10.1.2.3",
            "lab.example.:80",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for no in ["evil.example:8025", "localhost.evil.example", "", "[::1"] {
            assert!(!hosts.allows(no), "{no}");
        }
        assert!(AllowedHosts::new(&["*".into()]).allows("anything.example"));
        assert_eq!(
            host(&head(&[], "/"), &hosts),
            Err(Denied::NoHost),
            "no Host header"
        );
    }

    #[test]
    fn only_this_origins_json_changes_state() {
        let h = "127.0.0.1:8025";
        let ok = head(
            &[
                ("host", h),
                ("origin", "http://127.0.0.1:8025"),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/json; charset=utf-8"),
            ],
            "/api/load",
        );
        assert_eq!(same_origin(&ok), Ok(()));
        // curl: neither Origin nor Sec-Fetch-Site.
        let curl = head(
            &[("host", h), ("content-type", "application/json")],
            "/api/load",
        );
        assert_eq!(same_origin(&curl), Ok(()));
        for (name, value) in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("origin", "http://127.0.0.1:9999"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            let bad = head(
                &[
                    ("host", h),
                    (name, value),
                    ("content-type", "application/json"),
                ],
                "/",
            );
            assert!(
                matches!(same_origin(&bad), Err(Denied::CrossOrigin(_))),
                "{name}: {value}"
            );
        }
        for kind in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut headers = vec![("host", h)];
            headers.extend(kind.map(|k| ("content-type", k)));
            assert_eq!(same_origin(&head(&headers, "/")), Err(Denied::NotJson));
        }
    }

    #[test]
    fn tokens_compare_decoded_from_the_query_or_raw_from_the_header() {
        let token = Token::new("s3cr+t/Tok").unwrap();
        let query = format!("/api/state?a=1&token={}", token.query_value());
        assert!(token.admits(&head(&[], &query)));
        assert!(token.admits(&head(&[], "/?token=s3cr+t/Tok")));
        assert!(token.admits(&head(&[(TOKEN_HEADER, "s3cr+t/Tok")], "/")));
        assert!(!token.admits(&head(&[(TOKEN_HEADER, "s3cr t/Tok")], "/?token=")));
        assert!(!token.admits(&head(&[], "/?token=s3cr")));
        assert!(matches!(Token::new(""), Err(TokenError::Empty)));
        assert!(matches!(Token::new("a\nb"), Err(TokenError::Control)));
        let random = Token::generate().unwrap();
        assert_eq!(random.secret().len(), 32);
        assert_ne!(random, Token::generate().unwrap());
        assert_eq!(format!("{random:?}"), "Token(..)");
    }
}
