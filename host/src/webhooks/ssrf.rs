//! Webhook targets must be public addresses unless the operator allows
//! private ones: a tenant must not make the server call its own admin
//! endpoints, cloud metadata or the LAN. Checked at submit and again at each
//! delivery, against the addresses the delivery then connects to (so DNS
//! rebinding cannot swap in a private address in between).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` is not a valid URL")]
    Invalid(String),
    #[error("webhook URLs must be http or https, not {0}")]
    Scheme(String),
    #[error("webhook URLs must not carry credentials")]
    Credentials,
    #[error(
        "webhook host {host} resolves to {ip}, a loopback, private or reserved address (the operator can allow these with webhooks.allow_private)"
    )]
    Forbidden { host: String, ip: IpAddr },
    #[error("webhook host {0} does not resolve")]
    Unresolvable(String),
}

/// Syntax checks only.
pub fn parse(url: &str) -> Result<Url, UrlError> {
    let u = Url::parse(url).map_err(|_| UrlError::Invalid(url.to_owned()))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(UrlError::Scheme(u.scheme().to_owned()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::Invalid(url.to_owned()));
    }
    Ok(u)
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved
}

/// Whether connecting to `ip` is refused when private targets are not allowed.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_forbidden(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 (may reach private v4)
                || v6 == Ipv6Addr::UNSPECIFIED
        }
    }
}

/// Resolves `url`'s host and checks every address. Returns the host and the
/// addresses to connect to.
pub async fn resolve(
    url: &Url,
    allow_private: bool,
) -> Result<(String, Vec<SocketAddr>), UrlError> {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| UrlError::Unresolvable(host.clone()))?
        .map_err(|_| UrlError::Unresolvable(host.clone()))?
        .collect(),
    };
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable(host));
    }
    if !allow_private && let Some(a) = addrs.iter().find(|a| forbidden(a.ip())) {
        return Err(UrlError::Forbidden { host, ip: a.ip() });
    }
    Ok((host, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked() {
        assert!(matches!(parse("ftp://x/"), Err(UrlError::Scheme(_))));
        assert!(matches!(parse("http://u:p@x/"), Err(UrlError::Credentials)));
        assert!(matches!(parse("not a url"), Err(UrlError::Invalid(_))));
        let u = parse("http://127.0.0.1:9/hook").unwrap();
        assert!(matches!(
            resolve(&u, false).await,
            Err(UrlError::Forbidden { .. })
        ));
        assert_eq!(
            resolve(&u, true).await.unwrap().1,
            vec!["127.0.0.1:9".parse().unwrap()]
        );
        let u = parse("http://localhost:9/hook").unwrap();
        assert!(matches!(
            resolve(&u, false).await,
            Err(UrlError::Forbidden { .. })
        ));
        let u = parse("http://[::1]:9/hook").unwrap();
        assert!(matches!(
            resolve(&u, false).await,
            Err(UrlError::Forbidden { .. })
        ));
    }
}
