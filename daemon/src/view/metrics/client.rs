//! The client side of the daemon's HTTP endpoint, for `mapwatch report`:
//! one blocking `GET`, its body or its error.

use std::{
    io::{Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    time::Duration,
};

use thiserror::Error;

/// How long a request may take, connecting and reading.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Errors asking the daemon.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The address does not resolve, or nothing answers there.
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed midway.
    #[error("reading the answer: {0}")]
    Io(#[from] std::io::Error),
    /// Not an HTTP answer.
    #[error("the answer is not HTTP (is {0} a mapwatch daemon?)")]
    NotHttp(String),
    /// The daemon said no, and why.
    #[error("{status}: {reason}")]
    Refused {
        /// The status line's code and text.
        status: String,
        /// The daemon's explanation (the body's first line).
        reason: String,
    },
}

/// `GET target` (a path and query) from `addr` (`HOST:PORT`): the body of
/// a 200 answer.
pub fn get(addr: &str, target: &str) -> Result<Vec<u8>, ClientError> {
    let connect = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let socket = addr
        .to_socket_addrs()
        .map_err(connect)?
        .next()
        .ok_or_else(|| connect(std::io::Error::other("no address")))?;
    let mut stream = TcpStream::connect_timeout(&socket, TIMEOUT).map_err(connect)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::NotHttp(addr.to_string()))?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = answer[split + 4..].to_vec();
    let status = head
        .lines()
        .next()
        .and_then(|line| {
            line.strip_prefix("HTTP/1.1 ")
                .or(line.strip_prefix("HTTP/1.0 "))
        })
        .ok_or_else(|| ClientError::NotHttp(addr.to_string()))?;
    if status.starts_with("200") {
        return Ok(body);
    }
    Err(ClientError::Refused {
        status: status.to_string(),
        reason: String::from_utf8_lossy(&body)
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
    })
}
