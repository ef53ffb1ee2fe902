//! Who may change what is served or stored: bearer tokens compared in constant time, and a
//! per-client rate limit on writes. Tokens are never logged: only whether a check passed.

use crate::ApiError;
use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A secret read from a file. `Debug` prints nothing of it, so it cannot reach a log line.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl Token {
    /// The token in a file (surrounding white space removed); empty or short tokens are refused.
    pub fn from_file(path: &std::path::Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        Token::new(text.trim())
            .map_err(|e| format!("the token in {} is not usable: {e}", path.display()))
    }

    pub fn new(secret: &str) -> Result<Token, String> {
        if secret.len() < 16 {
            return Err("a token needs at least 16 characters".into());
        }
        if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a token cannot contain spaces or control characters".into());
        }
        Ok(Token(secret.as_bytes().to_vec()))
    }

    /// Whether `candidate` is this token, in time that depends on neither's contents: both are
    /// hashed first, so lengths leak nothing, and the hashes are compared without early exit.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let (a, b) = (Sha256::digest(&self.0), Sha256::digest(candidate));
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }

    /// Checks the request's `Authorization: Bearer ...` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(t) if self.matches(t.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not the one this server was given".into(),
            )),
            None => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs an 'Authorization: Bearer <token>' header".into(),
            )),
        }
    }
}

/// Requests a client may make: `burst` at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for Rate {
    fn default() -> Self {
        Rate {
            per_minute: 60,
            burst: 20,
        }
    }
}

/// Clients tracked at most; beyond it the ones with full buckets are forgotten, and while all
/// are busy a new client waits: the table's memory is bounded whatever the addresses.
const MAX_CLIENTS: usize = 10_000;

/// The bucket a client address draws from: an IPv6 client by its /64 (one subscriber's
/// network; one host has many addresses in it), an IPv4 one by its address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// A token bucket per client address.
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until it may try again.
    pub fn take(&self, client: IpAddr) -> Result<(), Duration> {
        let client = client_key(client);
        let now = Instant::now();
        let per_second = f64::from(self.rate.per_minute.max(1)) / 60.0;
        let burst = f64::from(self.rate.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
            if buckets.len() >= MAX_CLIENTS {
                return Err(Duration::from_secs_f64(1.0 / per_second));
            }
        }
        let (tokens, at) = buckets.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_itself_only() {
        let t = Token::new("correct-horse-battery").unwrap();
        assert!(t.matches(b"correct-horse-battery"));
        assert!(!t.matches(b"correct-horse-batterz"));
        assert!(!t.matches(b""));
        assert!(Token::new("short").is_err());
        assert_eq!(format!("{t:?}"), "Token(<hidden>)");
    }

    #[test]
    fn the_bearer_header_is_checked() {
        let t = Token::new("0123456789abcdef").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(t.check(&h).unwrap_err().0, StatusCode::UNAUTHORIZED);
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(t.check(&h).unwrap_err().0, StatusCode::UNAUTHORIZED);
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef".parse().unwrap(),
        );
        assert!(t.check(&h).is_ok());
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_while_others_go_on() {
        let l = Limiter::new(Rate {
            per_minute: 60,
            burst: 3,
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            l.take(a).unwrap();
        }
        let wait = l.take(a).unwrap_err();
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1));
        l.take(b).unwrap();
    }

    #[test]
    fn the_table_stays_bounded_and_ipv6_hosts_share_their_network() {
        let l = Limiter::new(Rate {
            per_minute: 1,
            burst: 1,
        });
        // One host rotating through its /64 is one client.
        l.take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(l.take("2001:db8:1:2::ffff".parse().unwrap()).is_err());
        assert!(l.take("::ffff:10.0.0.9".parse().unwrap()).is_ok());
        assert!(l.take("10.0.0.9".parse().unwrap()).is_err());
        // Every bucket busy: a new client waits instead of growing the table.
        for i in 0..MAX_CLIENTS as u32 {
            let _ = l.take(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)));
        }
        let full = l.buckets.lock().unwrap().len();
        assert!(full <= MAX_CLIENTS, "{full}");
        assert!(l.take("192.0.2.1".parse().unwrap()).is_err());
        assert!(l.buckets.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
