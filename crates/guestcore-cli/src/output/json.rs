//! Streaming JSON writers for listings.
//!
//! A listing can hold millions of elements (a hostile guest's page tables), so its JSON is
//! serialized element by element straight into the output writer: no `serde_json::Value` tree,
//! no string per element. Building a `Value` per mapping cost ten times the text listing's time
//! and memory; serializing through serde's `Serializer` costs about what the text does.
//!
//! Errors come back as the `io::Error` serde_json wraps, so a closed stdout
//! (`guestcore mem --json … | head`) is recognised as a broken pipe, as for text.

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use std::io::{self, Write};

/// A `u64` as JSON hex text (`"0xffffffff81000000"`, as [`super::hex`] formats it), written
/// into the output without an intermediate `String`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hex(pub u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// Writes `value` as one pretty-printed JSON document and a newline.
pub fn write_document<T: Serialize + ?Sized>(out: &mut impl Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Writes a pretty-printed JSON array and a newline, serializing each item as `items` yields
/// it, so only the current item is ever held. The first error of `items` is returned as it is
/// (the array is then left unfinished: the command fails).
pub fn write_array<T, E>(
    out: &mut impl Write,
    items: impl IntoIterator<Item = Result<T, E>>,
) -> Result<(), E>
where
    T: Serialize,
    E: From<io::Error>,
{
    {
        let mut ser = serde_json::Serializer::pretty(&mut *out);
        let mut seq = ser.serialize_seq(None).map_err(io::Error::from)?;
        for item in items {
            seq.serialize_element(&item?).map_err(io::Error::from)?;
        }
        seq.end().map_err(io::Error::from)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes `value` as one compact JSON object and a newline (`--json-lines`).
pub fn write_line<T: Serialize + ?Sized>(out: &mut impl Write, value: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn hex_is_the_text_of_hex() {
        for v in [0, 1, 0xa0000, u64::MAX] {
            let json = serde_json::to_string(&Hex(v)).unwrap();
            assert_eq!(json, format!("\"{}\"", super::super::hex(v)));
        }
    }

    #[test]
    fn streamed_array_is_what_serde_json_writes_for_a_vec() {
        let items = vec![vec![1, 2], vec![], vec![3]];
        let want = serde_json::to_string_pretty(&items).unwrap() + "\n";
        let got = text(|out| {
            write_array(out, items.iter().map(Ok::<_, io::Error>)).unwrap();
        });
        assert_eq!(got, want);
        let empty: Vec<u32> = Vec::new();
        let got = text(|out| write_array(out, empty.iter().map(Ok::<_, io::Error>)).unwrap());
        assert_eq!(got, "[]\n");
    }

    #[test]
    fn an_item_error_stops_the_array() {
        let mut out = Vec::new();
        let items = [Ok(1), Err(io::Error::other("walk failed")), Ok(3)];
        let e = write_array(&mut out, items).unwrap_err();
        assert_eq!(e.to_string(), "walk failed");
        assert!(!String::from_utf8(out).unwrap().contains('3'));
    }

    #[test]
    fn lines_are_compact_objects() {
        let got = text(|out| {
            write_line(out, &[("a", 1)]).unwrap();
            write_line(out, &Hex(16)).unwrap();
        });
        assert_eq!(got, "[[\"a\",1]]\n\"0x10\"\n");
    }

    #[test]
    fn a_closed_output_is_an_io_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = write_line(&mut Closed, &1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        let e = write_array(&mut Closed, [Ok::<_, io::Error>(1)]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
