//! Outgoing HTTP for guests (`wasi:http/outgoing-handler`). Denied unless the operator
//! allow-lists the destination for the tenant (`allow_hosts`); allowed requests go out
//! through one shared client that never follows redirects (a redirect could leave the
//! allow-list) and gives up when the call's wall time would.

use http_body_util::BodyExt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed destination: `[http://|https://]host[:port]`, where `host` may start with
/// `*.` to allow its subdomains (not the domain itself). Without a port only the scheme's
/// default port (80, 443) is allowed; without a scheme both are.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    https: Option<bool>,
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("`{s}`: {why}"));
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Some(true), r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (Some(false), r)
        } else if s.contains("://") {
            return bad("only http:// and https:// destinations exist");
        } else {
            (None, s)
        };
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', '*']) {
            return bad("expected host[:port], e.g. api.example.com or *.example.com:8443");
        }
        let auth = match http::uri::Authority::from_str(rest) {
            Ok(a) => a,
            Err(e) => return bad(&e.to_string()),
        };
        // What follows the host (after `]` for IPv6) must be empty or `:<1-65535>`.
        let tail = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').map_or("", |(_, t)| t),
            None => rest.split_once(':').map_or("", |(_, t)| t),
        };
        let tail = tail.strip_prefix(':').unwrap_or(tail);
        if (!tail.is_empty() || rest.ends_with(':')) && !tail.parse::<u16>().is_ok_and(|p| p > 0) {
            return bad("the port must be 1-65535");
        }
        Ok(Self {
            https,
            host: bare_host(auth.host()),
            wildcard,
            port: auth.port_u16(),
        })
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<HostPattern> for String {
    fn from(p: HostPattern) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.https {
            Some(true) => write!(f, "https://")?,
            Some(false) => write!(f, "http://")?,
            None => {}
        }
        if self.wildcard {
            write!(f, "*.")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// A URI host as compared: lower case, IPv6 without brackets.
fn bare_host(h: &str) -> String {
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl HostPattern {
    /// Whether a request to `host:port` over http(s) is allowed.
    pub fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https.is_some_and(|h| h != https) {
            return false;
        }
        let default_port = if https { 443 } else { 80 };
        if self.port.unwrap_or(default_port) != port {
            return false;
        }
        let host = bare_host(host);
        if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        }
    }
}

/// The `wasi:http` hooks of one call: the tenant's allow-list (`policy.allow_hosts`, shared
/// rather than copied per call) and the longest an outgoing request may take (the call's
/// wall-time limit; its watchdog ends the call then anyway).
pub(crate) struct OutgoingHttp {
    pub policy: Arc<super::manifest::TenantPolicy>,
    pub timeout: Duration,
    /// Largest request body a guest may send.
    pub max_body: usize,
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl OutgoingHttp {
    fn allowed(&self, uri: &http::Uri) -> Result<(), HttpError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(HttpError::HttpProtocolError),
        };
        let auth = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        if self
            .policy
            .allow_hosts
            .iter()
            .any(|p| p.matches(https, auth.host(), port))
        {
            Ok(())
        } else {
            Err(HttpError::HttpRequestDenied)
        }
    }
}

/// What the client's failure means to the guest (`wasi:http` error codes).
fn error_code(e: &reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::ConnectionTimeout
    } else if e.is_connect() {
        HttpError::ConnectionRefused
    } else {
        HttpError::InternalError(Some(e.to_string()))
    }
}

async fn send(
    client: reqwest::Client,
    request: http::Request<WasiBody>,
    timeout: Duration,
    max_body: usize,
) -> SendResult {
    let (parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|_| HttpError::HttpRequestBodySize(None))?
        .to_bytes();
    let url = reqwest::Url::parse(&parts.uri.to_string())
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let resp = client
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| error_code(&e))?;
    // reqwest's body is an `http_body::Body`: the guest streams it as it arrives.
    let response = http::Response::from(resp).map(|b| b.map_err(|e| error_code(&e)).boxed_unsync());
    let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
    Ok((response, done))
}

impl WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        if let Err(e) = self.allowed(request.uri()) {
            return Box::new(async move { Err(e) });
        }
        // The guest may ask for a shorter wait, never a longer one.
        let timeout = options
            .and_then(|o| o.first_byte_timeout.or(o.connect_timeout))
            .map_or(self.timeout, |t| t.min(self.timeout));
        Box::new(send(shared_client(), request, timeout, self.max_body))
    }
}

/// The client every guest request goes through (its connection pool is shared): no
/// redirects, no proxy from the environment (the allow-list names the destination).
fn shared_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_match_host_port_and_scheme() {
        let exact = p("api.example.com");
        assert!(exact.matches(true, "api.example.com", 443));
        assert!(exact.matches(false, "API.example.com", 80));
        assert!(!exact.matches(true, "api.example.com", 8443), "other port");
        assert!(!exact.matches(true, "evil.api.example.com", 443));
        assert!(!exact.matches(true, "api.example.com.evil.net", 443));

        let sub = p("*.example.com");
        assert!(sub.matches(true, "a.example.com", 443));
        assert!(sub.matches(true, "a.b.example.com", 443));
        assert!(
            !sub.matches(true, "example.com", 443),
            "not the domain itself"
        );
        assert!(!sub.matches(true, "badexample.com", 443));

        let tls = p("https://files.example.com:8443");
        assert!(tls.matches(true, "files.example.com", 8443));
        assert!(
            !tls.matches(false, "files.example.com", 8443),
            "http refused"
        );

        let local = p("127.0.0.1:9000");
        assert!(local.matches(false, "127.0.0.1", 9000));
        assert!(!local.matches(false, "127.0.0.2", 9000));

        let v6 = p("[::1]:8080");
        assert!(v6.matches(false, "[::1]", 8080));
        assert_eq!(v6.to_string(), "[::1]:8080");
    }

    #[test]
    fn bad_patterns_are_refused_with_the_pattern_named() {
        for bad in [
            "",
            "*",
            "*.",
            "ftp://example.com",
            "example.com/path",
            "user@example.com",
            "a.*.example.com",
            "example.com:",
            "example.com:99999",
        ] {
            let e = bad.parse::<HostPattern>().expect_err(bad);
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
        assert_eq!(
            p("https://*.Example.COM:8443").to_string(),
            "https://*.example.com:8443"
        );
    }

    #[test]
    fn the_hooks_deny_what_is_not_listed() {
        let hooks = OutgoingHttp {
            policy: Arc::new(crate::plugins::manifest::TenantPolicy {
                allow_hosts: vec![p("api.example.com")],
                ..Default::default()
            }),
            timeout: Duration::from_secs(1),
            max_body: 1024,
        };
        let ok = hooks.allowed(&"https://api.example.com/v1".parse().unwrap());
        assert!(ok.is_ok());
        for uri in [
            "https://api.example.com:444/v1",
            "https://other.example.com/",
            "http://10.0.0.1/",
        ] {
            let e = hooks.allowed(&uri.parse().unwrap()).unwrap_err();
            assert!(matches!(e, HttpError::HttpRequestDenied), "{uri}: {e}");
        }
    }
}
