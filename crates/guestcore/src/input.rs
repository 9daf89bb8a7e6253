//! What a guest is read from, as one typed value: a file, or a live endpoint.
//!
//! Command lines name every kind in one string (`guest.elf`, `qmp:/run/vm1.qmp`, `libvirt:vm1`). That string
//! is turned into an [`Input`] here and only here, so no other module tests prefixes, and a new
//! kind of live endpoint is one more variant that every command then takes.

use std::convert::Infallible;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a guest's memory comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Input {
    /// A file of any format guestcore reads (found from its first bytes).
    File(PathBuf),
    /// A running QEMU, through its QMP socket (`qmp:SOCKET` on a command line).
    Qmp(PathBuf),
    /// A running QEMU started by libvirt, through libvirt's own monitor (`libvirt:DOMAIN` on a
    /// command line: a domain's name, UUID or id; the connection URI is
    /// [`LiveOptions::connect`](crate::LiveOptions::connect)).
    Libvirt(String),
}

impl Input {
    /// The prefix that names a QMP socket on a command line.
    pub const QMP_PREFIX: &'static str = "qmp:";
    /// The prefix that names a libvirt domain on a command line.
    pub const LIBVIRT_PREFIX: &'static str = "libvirt:";

    /// Parses a command-line input: `qmp:SOCKET` is a live QEMU, `libvirt:DOMAIN` a live QEMU
    /// behind libvirt, anything else a file.
    pub fn parse(arg: impl AsRef<OsStr>) -> Input {
        let arg = arg.as_ref();
        let text = arg.to_str();
        if let Some(socket) = text.and_then(|s| s.strip_prefix(Self::QMP_PREFIX)) {
            return Input::Qmp(PathBuf::from(socket));
        }
        if let Some(domain) = text.and_then(|s| s.strip_prefix(Self::LIBVIRT_PREFIX)) {
            return Input::Libvirt(domain.to_string());
        }
        Input::File(PathBuf::from(arg))
    }

    /// True for a running guest (reading it may pause it).
    pub fn is_live(&self) -> bool {
        matches!(self, Input::Qmp(_) | Input::Libvirt(_))
    }

    /// The file, the live endpoint's socket, or a libvirt domain's name as a path.
    pub fn path(&self) -> &Path {
        match self {
            Input::File(p) | Input::Qmp(p) => p,
            Input::Libvirt(d) => Path::new(d),
        }
    }
}

/// As a user typed it: the path, `qmp:SOCKET` or `libvirt:DOMAIN`.
impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::File(p) => write!(f, "{}", p.display()),
            Input::Qmp(p) => write!(f, "{}{}", Self::QMP_PREFIX, p.display()),
            Input::Libvirt(d) => write!(f, "{}{d}", Self::LIBVIRT_PREFIX),
        }
    }
}

impl FromStr for Input {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Infallible> {
        Ok(Input::parse(s))
    }
}

/// Text as a user typed it (`qmp:` names a socket).
impl From<&str> for Input {
    fn from(s: &str) -> Self {
        Input::parse(s)
    }
}

/// Text as a user typed it (`qmp:` names a socket).
impl From<String> for Input {
    fn from(s: String) -> Self {
        Input::parse(s)
    }
}

/// A path is a file, whatever its name.
impl From<&Path> for Input {
    fn from(p: &Path) -> Self {
        Input::File(p.to_path_buf())
    }
}

/// A path is a file, whatever its name.
impl From<PathBuf> for Input {
    fn from(p: PathBuf) -> Self {
        Input::File(p)
    }
}

/// A path is a file, whatever its name.
impl From<&PathBuf> for Input {
    fn from(p: &PathBuf) -> Self {
        Input::File(p.clone())
    }
}

impl From<&Input> for Input {
    fn from(i: &Input) -> Self {
        i.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmp_prefix_names_a_socket_and_anything_else_a_file() {
        assert_eq!(
            Input::parse("qmp:/run/vm.qmp"),
            Input::Qmp("/run/vm.qmp".into())
        );
        assert_eq!(Input::parse("vm.elf"), Input::File("vm.elf".into()));
        assert_eq!(Input::parse("./qmp:x"), Input::File("./qmp:x".into()));
        // A path is never parsed: a file may be called `qmp:x`.
        assert_eq!(Input::from(Path::new("qmp:x")), Input::File("qmp:x".into()));
        assert_eq!(Input::parse("qmp:/s").to_string(), "qmp:/s");
        assert!(Input::parse("qmp:/s").is_live());
        assert!(!Input::parse("/s").is_live());
    }

    #[test]
    fn libvirt_prefix_names_a_domain() {
        assert_eq!(Input::parse("libvirt:vm1"), Input::Libvirt("vm1".into()));
        assert_eq!(Input::parse("libvirt:vm1").to_string(), "libvirt:vm1");
        assert!(Input::parse("libvirt:vm1").is_live());
        assert_eq!(
            Input::parse("./libvirt:x"),
            Input::File("./libvirt:x".into())
        );
    }
}
