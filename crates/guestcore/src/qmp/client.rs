//! A small synchronous QMP client (QEMU Machine Protocol: JSON lines over a Unix socket).
//!
//! Why hand-written: the `qapi` crate's schema is frozen at QEMU 9.1 (DESIGN.md §6), and a live
//! dump needs only a handful of commands. The protocol facts this client relies on:
//!
//! * the server speaks first: `{"QMP": {"version": …, "capabilities": […]}}`; nothing but
//!   `qmp_capabilities` is accepted until capabilities are negotiated;
//! * every command may carry an `id`, echoed in its reply: `{"return": …, "id": N}` or
//!   `{"error": {"class": …, "desc": …}, "id": N}`. A reply whose id is not the current one
//!   belongs to a command that timed out earlier and is dropped;
//! * asynchronous events (`{"event": "STOP", …}`) may arrive between a command and its reply;
//!   they are queued, never mistaken for replies;
//! * an error without an id is QEMU's answer to a line it could not parse: it belongs to the
//!   command just sent.
//!
//! Every read and write has a timeout ([`DEFAULT_TIMEOUT`] unless the caller sets another), so a
//! wedged or stopped QEMU cannot hang the caller (a paused guest must be resumed by someone).
//! A connection that timed out or closed is [`lost`](QmpClient::lost): its callers stop
//! waiting on it (one bound, not one per command) and leave the rest to the watchdog.

use crate::sys::peer_pid;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Default time allowed for one command's reply: QEMU answers the commands guestcore sends
/// in milliseconds (measured: `stop` 1–3 ms, `info mtree -f` under 10 ms on TCG guests), so a
/// QEMU silent for this long is stopped or wedged.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One QMP connection, capabilities negotiated.
#[derive(Debug)]
pub struct QmpClient {
    name: String,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Bytes of a line read so far (kept across a timeout so no reply is cut in half).
    partial: Vec<u8>,
    next_id: u64,
    events: VecDeque<Value>,
    greeting: Value,
    /// The read and write timeout.
    timeout: Duration,
    /// Set once a reply timed out or QEMU closed the connection.
    lost: bool,
    /// QEMU's process id when the peer is not QEMU itself (libvirt's monitor, relayed).
    qemu_pid: Option<u32>,
}

impl QmpClient {
    /// Connects to the QMP socket at `path`, reads the greeting and negotiates capabilities.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let stream = UnixStream::connect(path).map_err(|e| Error::Qmp {
            socket: name.clone(),
            what: format!(
                "cannot connect: {e} (is QEMU running with `-qmp unix:{name},server=on,wait=off`?)"
            ),
        })?;
        Self::from_stream(stream, name, timeout)
    }

    /// Speaks QMP over an already connected stream (`name` appears in errors).
    pub fn from_stream(
        stream: UnixStream,
        name: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self> {
        let name = name.into();
        let writer = stream
            .try_clone()
            .map_err(|e| Error::io(format!("{name}: clone socket"), e))?;
        let mut c = QmpClient {
            name,
            reader: BufReader::new(stream),
            writer,
            partial: Vec::new(),
            next_id: 1,
            events: VecDeque::new(),
            greeting: Value::Null,
            timeout,
            lost: false,
            qemu_pid: None,
        };
        c.set_timeout(timeout)?;
        let greeting = c.read_message("the QMP greeting").map_err(|e| match e {
            Error::Qmp { socket, what } if what.contains("did not answer") => Error::Qmp {
                socket,
                what: format!(
                    "{what} (QEMU serves one QMP client per socket: is another one connected?)"
                ),
            },
            e => e,
        })?;
        if greeting.get("QMP").is_none() {
            return Err(c.protocol(format!("expected the QMP greeting, got {greeting}")));
        }
        c.greeting = greeting;
        c.execute("qmp_capabilities", None)?;
        Ok(c)
    }

    /// Sets the read and write timeout of every later exchange.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        let t = Some(timeout.max(Duration::from_millis(1)));
        self.timeout = timeout;
        self.writer
            .set_read_timeout(t)
            .and_then(|_| self.writer.set_write_timeout(t))
            .map_err(|e| Error::io(format!("{}: set timeout", self.name), e))
    }

    /// The greeting QEMU sent (`{"QMP": {"version": …}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// True once a reply did not come within the timeout or QEMU closed the connection: QEMU
    /// is stopped, wedged or gone, and waiting on this connection again would only wait again.
    pub fn lost(&self) -> bool {
        self.lost
    }

    /// The time allowed for each reply.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The socket's name as given to [`connect`](Self::connect).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `command` with optional `arguments` and returns its `return` value.
    /// A QMP error reply is [`Error::QmpCommand`]; a closed socket, a timeout or a malformed
    /// message is [`Error::Qmp`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.execute_passing(command, arguments, None)
    }

    /// Like [`execute`](Self::execute), with `fd` passed to QEMU along with the command
    /// (`SCM_RIGHTS`), the way `getfd` and `add-fd` receive descriptors. QEMU keeps its own
    /// duplicate; the caller may close `fd` once this returns.
    pub fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        fd: BorrowedFd<'_>,
    ) -> Result<Value> {
        self.execute_passing(command, arguments, Some(fd))
    }

    fn execute_passing(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = serde_json::to_vec(&msg).expect("a JSON value serializes");
        line.push(b'\n');
        self.send(&line, fd)
            .map_err(|e| self.io_error(command, "sending", e))?;
        loop {
            let m = self.read_message(command)?;
            if m.get("event").is_some() {
                self.events.push_back(m);
                continue;
            }
            match m.get("id") {
                Some(v) if v.as_u64() == Some(id) => {}
                // QEMU could not parse the line (so it has no id): the error is this command's.
                None if m.get("error").is_some() => {}
                // A late reply to a command that timed out before: drop it.
                _ => continue,
            }
            if let Some(e) = m.get("error") {
                return Err(Error::QmpCommand {
                    command: command.to_string(),
                    class: e
                        .get("class")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string(),
                    desc: e
                        .get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
            return match m.get("return") {
                Some(r) => Ok(r.clone()),
                None => {
                    Err(self.protocol(format!("{command}: reply without return or error: {m}")))
                }
            };
        }
    }

    /// Writes `line`; with `fd`, its first bytes carry the descriptor as ancillary data.
    fn send(&mut self, line: &[u8], fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        use std::io::IoSlice;
        use std::mem::MaybeUninit;
        let Some(fd) = fd else {
            return self.writer.write_all(line);
        };
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [fd];
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(std::io::Error::other("no room for the descriptor"));
        }
        let sent = loop {
            match sendmsg(
                &self.writer,
                &[IoSlice::new(line)],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        // The descriptor went with the first bytes; the rest of the line follows plainly.
        self.writer.write_all(&line[sent..])
    }

    /// Runs an HMP command through `human-monitor-command` and returns its text (with `\n`
    /// line ends; QEMU sends `\r\n`).
    pub fn hmp(&mut self, command_line: &str) -> Result<String> {
        let r = self
            .execute(
                "human-monitor-command",
                Some(json!({ "command-line": command_line })),
            )
            .map_err(|e| match e {
                // Name the HMP command, not its QMP wrapper.
                Error::Qmp { socket, what } => Error::Qmp {
                    socket,
                    what: what.replace("human-monitor-command", &format!("HMP `{command_line}`")),
                },
                e => e,
            })?;
        match r.as_str() {
            Some(s) => Ok(s.replace("\r\n", "\n")),
            None => Err(self.protocol(format!("HMP {command_line:?}: the reply is not text: {r}"))),
        }
    }

    /// Closes the connection (both directions) for every handle on it, so QEMU can serve its
    /// next client; later commands fail. For a connection whose state is lost.
    pub fn shutdown(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }

    /// Events received so far (oldest first), removed from the queue.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Names QEMU's process when the peer of this connection is not QEMU (a relay).
    pub(super) fn set_qemu_pid(&mut self, pid: u32) {
        self.qemu_pid = Some(pid);
    }

    /// The process id of QEMU: the peer's, from the socket's `SO_PEERCRED`, unless the
    /// connection is relayed (then the one the relay named).
    pub fn peer_pid(&self) -> Result<u32> {
        if let Some(pid) = self.qemu_pid {
            return Ok(pid);
        }
        peer_pid(&self.writer).map_err(|e| Error::io(format!("{}: SO_PEERCRED", self.name), e))
    }

    fn read_message(&mut self, waiting_for: &str) -> Result<Value> {
        loop {
            match self.reader.read_until(b'\n', &mut self.partial) {
                Ok(0) => {
                    self.lost = true;
                    return Err(self.protocol(format!(
                        "QEMU closed the connection while waiting for {waiting_for} (did QEMU exit?)"
                    )));
                }
                Ok(_) if self.partial.ends_with(b"\n") => {
                    let line = std::mem::take(&mut self.partial);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return serde_json::from_slice(&line).map_err(|e| {
                        self.protocol(format!(
                            "malformed message while waiting for {waiting_for}: {e}: {}",
                            String::from_utf8_lossy(&line).trim_end()
                        ))
                    });
                }
                // EOF in the middle of a line.
                Ok(_) => {
                    self.lost = true;
                    return Err(self.protocol(format!(
                        "QEMU closed the connection in the middle of a message while waiting for {waiting_for} (did QEMU exit?)"
                    )));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(waiting_for, "waiting for the reply to", e)),
            }
        }
    }

    fn io_error(&mut self, command: &str, doing: &str, e: std::io::Error) -> Error {
        let what = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                self.lost = true;
                format!(
                    "QEMU did not answer within {} s ({doing} {command}): is it stopped or wedged?",
                    self.timeout.as_secs_f64()
                )
            }
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => {
                self.lost = true;
                format!("QEMU closed the connection ({doing} {command}): did QEMU exit?")
            }
            _ => format!("{doing} {command}: {e}"),
        };
        self.protocol(what)
    }

    fn protocol(&self, what: String) -> Error {
        Error::Qmp {
            socket: self.name.clone(),
            what,
        }
    }
}

#[cfg(test)]
mod tests;
