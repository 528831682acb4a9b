//! Where a channel client may send its signed requests: `https`, or plain
//! `http` to a loopback address only (127.0.0.0/8, `::1`, `localhost`: the
//! sandbox and local test peers). Plain `http` to any other host would
//! carry signed bodies, payment codes included, in clear across a network;
//! it is refused at start, naming the setting.

use std::net::IpAddr;

use reqwest::Url;

/// Whether `url`'s host is a loopback address: `localhost` (or a name
/// under it, RFC 6761), an address of 127.0.0.0/8, or `::1`.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(address) = bare.parse::<IpAddr>() {
        return address.is_loopback();
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether a base URL text names a loopback host (`false` when it does not parse).
pub fn is_loopback_url(text: &str) -> bool {
    Url::parse(text.trim()).is_ok_and(|url| is_loopback(&url))
}

/// Checks the scheme of a channel's base URL: `https`, or `http` to a
/// loopback address. The error is the reason, for the caller to name its
/// setting with.
pub fn check_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "plain http is allowed only to a loopback address (127.0.0.0/8, ::1, localhost), not to {}; use https",
            url.host_str().unwrap_or("no host")
        )),
        scheme => Err(format!("scheme {scheme} is not https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), String> {
        check_scheme(&Url::parse(text).unwrap())
    }

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for good in [
            "https://api.mch.weixin.qq.com",
            "https://openapi.alipay.com/gateway.do",
            "http://127.0.0.1:8081",
            "http://127.3.4.5/gateway.do",
            "http://[::1]:9000",
            "http://localhost:8081/gateway.do",
            "http://LOCALHOST.:1",
            "http://sandbox.localhost:1",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for bad in [
            "http://api.mch.weixin.qq.com",
            "http://10.0.0.5:8081",
            "http://0.0.0.0:8081",
            "http://[::2]:1",
            "http://localhost.example.com",
            "http://128.0.0.1",
        ] {
            let reason = check(bad).unwrap_err();
            assert!(reason.contains("loopback"), "{bad}: {reason}");
        }
        assert!(check("ftp://127.0.0.1").is_err());
        assert!(is_loopback_url("http://127.0.0.1:9/gateway.do"));
        assert!(!is_loopback_url("https://openapi.alipay.com/gateway.do"));
        assert!(!is_loopback_url("not a url"));
    }
}
