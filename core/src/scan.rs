//! Malware scanning with clamd's INSTREAM command: the validate job streams the plaintext to
//! clamd as it reads the quarantine, and the file can become ready only on a clean verdict.

use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Connecting and each write may take this long before the scanner counts as unreachable.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// clamd scans the whole stream after the last chunk; large archives take a while.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest reply clamd sends (a signature name and a word or two).
const MAX_REPLY: usize = 4096;

/// What clamd said of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature that matched.
    Infected(String),
    /// clamd refused the stream for good (it exceeds its `StreamMaxLength`).
    TooLarge,
}

/// The clamd to ask (`COFFER_CLAMAV_ADDR`).
#[derive(Debug, Clone)]
pub struct Scanner {
    addr: String,
}

impl Scanner {
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }

    async fn connect(&self) -> anyhow::Result<TcpStream> {
        tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .with_context(|| format!("connecting to clamd at {} timed out", self.addr))?
            .with_context(|| format!("connecting to clamd at {}", self.addr))
    }

    /// Starts a scan; feed it the plaintext in order, then ask for the verdict.
    pub async fn start(&self) -> anyhow::Result<Scan> {
        let mut stream = self.connect().await?;
        write(&mut stream, b"zINSTREAM\0").await?;
        Ok(Scan { stream })
    }

    /// A round trip (`PING` → `PONG`), for readiness checks.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut stream = self.connect().await?;
        write(&mut stream, b"zPING\0").await?;
        let reply = read_reply(&mut stream, IO_TIMEOUT).await?;
        if reply != "PONG" {
            bail!("clamd answered PING with {reply:?}");
        }
        Ok(())
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> anyhow::Result<()> {
    tokio::time::timeout(IO_TIMEOUT, stream.write_all(bytes))
        .await
        .context("writing to clamd timed out")?
        .context("writing to clamd")
}

/// Reads one NUL-terminated reply.
async fn read_reply(stream: &mut TcpStream, timeout: Duration) -> anyhow::Result<String> {
    let mut reply = Vec::new();
    let read = async {
        let mut buf = [0u8; 512];
        loop {
            let n = stream.read(&mut buf).await.context("reading from clamd")?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.contains(&0) || reply.len() > MAX_REPLY {
                break;
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .context("waiting for clamd's verdict timed out")??;
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    Ok(String::from_utf8_lossy(&reply[..end]).trim().to_owned())
}

/// A scan under way.
pub struct Scan {
    stream: TcpStream,
}

impl Scan {
    /// Sends the next piece of the file (clamd takes chunks of a length prefix and the bytes).
    pub async fn feed(&mut self, piece: &[u8]) -> anyhow::Result<()> {
        for chunk in piece.chunks(1 << 20) {
            let len = u32::try_from(chunk.len()).context("chunk length")?;
            write(&mut self.stream, &len.to_be_bytes()).await?;
            write(&mut self.stream, chunk).await?;
        }
        Ok(())
    }

    /// Ends the stream and reads clamd's verdict. An answer it does not recognise is an error,
    /// never a clean verdict.
    pub async fn verdict(mut self) -> anyhow::Result<Verdict> {
        write(&mut self.stream, &0u32.to_be_bytes()).await?;
        let reply = read_reply(&mut self.stream, VERDICT_TIMEOUT).await?;
        parse_reply(&reply)
    }
}

fn parse_reply(reply: &str) -> anyhow::Result<Verdict> {
    let body = reply
        .strip_prefix("stream:")
        .map(str::trim)
        .unwrap_or(reply);
    if body == "OK" {
        Ok(Verdict::Clean)
    } else if let Some(signature) = body.strip_suffix(" FOUND") {
        Ok(Verdict::Infected(signature.trim().to_owned()))
    } else if body.contains("size limit exceeded") {
        Ok(Verdict::TooLarge)
    } else {
        bail!("clamd could not scan the file: {reply:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_unknown_ones_fail_closed() {
        assert_eq!(parse_reply("stream: OK").ok(), Some(Verdict::Clean));
        assert_eq!(
            parse_reply("stream: Coffer.Test.EICAR.UNOFFICIAL FOUND").ok(),
            Some(Verdict::Infected("Coffer.Test.EICAR.UNOFFICIAL".into()))
        );
        assert_eq!(
            parse_reply("INSTREAM size limit exceeded. ERROR").ok(),
            Some(Verdict::TooLarge)
        );
        assert!(parse_reply("stream: Can't allocate memory ERROR").is_err());
        assert!(parse_reply("").is_err());
        assert!(parse_reply("OKAY").is_err());
    }
}
