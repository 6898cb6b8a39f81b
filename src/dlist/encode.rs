//! Print dlist values the way Cyrus `prot_printastring` and `dlist_printbuf` do.

use super::value::Value;

/// Who is printing: it decides the literal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A server: literals are `{n}` (the Debian 3.6.1 client rejects `{n+}`).
    ToClient,
    /// A client: literals are `{n+}` (LITERAL+, no wait), as `sync_client` sends.
    ToServer,
}

/// Append `v` to `out`.
pub fn encode_value(out: &mut Vec<u8>, v: &Value, dir: Direction) {
    match v {
        Value::Nil => out.extend_from_slice(b"NIL"),
        Value::Atom(s) => write_astring(out, s, dir),
        Value::Flag(f) => out.extend_from_slice(f),
        Value::List(items) => {
            out.push(b'(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                encode_value(out, item, dir);
            }
            out.push(b')');
        }
        Value::KvList(items) => {
            out.extend_from_slice(b"%(");
            for (i, (k, item)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_astring(out, k.as_bytes(), dir);
                out.push(b' ');
                encode_value(out, item, dir);
            }
            out.push(b')');
        }
        Value::File(f) => {
            out.extend_from_slice(b"%{");
            out.extend_from_slice(f.partition.as_bytes());
            out.push(b' ');
            out.extend_from_slice(f.guid.as_bytes());
            out.push(b' ');
            out.extend_from_slice(f.data.len().to_string().as_bytes());
            out.extend_from_slice(b"}\r\n");
            out.extend_from_slice(&f.data);
        }
    }
}

/// Print a string as an atom if it can be one, else quoted, else a literal
/// (`lib/prot.c` `prot_printastring` at 3.6.1; no escaping is ever done).
pub fn write_astring(out: &mut Vec<u8>, s: &[u8], dir: Direction) {
    if s.is_empty() {
        out.extend_from_slice(b"\"\"");
    } else if is_atom(s) {
        out.extend_from_slice(s);
    } else if is_quotable(s) {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        out.push(b'{');
        out.extend_from_slice(s.len().to_string().as_bytes());
        if dir == Direction::ToServer {
            out.push(b'+');
        }
        out.extend_from_slice(b"}\r\n");
        out.extend_from_slice(s);
    }
}

fn is_atom(s: &[u8]) -> bool {
    s.len() < 1024
        && !s.eq_ignore_ascii_case(b"NIL")
        && s.iter().all(|&b| {
            b > 0x1f
                && b < 0x7f
                && !matches!(b, b' ' | b'{' | b'(' | b')' | b'"' | b'%' | b'*' | b'\\')
        })
}

fn is_quotable(s: &[u8]) -> bool {
    // Cyrus quotes anything short without 8-bit, CR, LF, `"`, `%` or `\`. A NUL
    // would end the C string, so it goes as a literal here.
    s.len() < 1024
        && s.iter()
            .all(|&b| b < 0x80 && !matches!(b, 0 | b'\r' | b'\n' | b'"' | b'%' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value, dir: Direction) -> String {
        let mut out = Vec::new();
        encode_value(&mut out, v, dir);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn astring_forms_match_cyrus() {
        let d = Direction::ToClient;
        assert_eq!(enc(&Value::atom(""), d), "\"\"");
        assert_eq!(enc(&Value::atom("user.alice"), d), "user.alice");
        assert_eq!(enc(&Value::atom("NIL"), d), "\"NIL\"");
        assert_eq!(enc(&Value::atom("alice\tlrs\t"), d), "\"alice\tlrs\t\"");
        assert_eq!(enc(&Value::atom("a\r\nb"), d), "{4}\r\na\r\nb");
        assert_eq!(
            enc(&Value::atom("a\r\nb"), Direction::ToServer),
            "{4+}\r\na\r\nb"
        );
        assert_eq!(enc(&Value::atom("x".repeat(1024)), d).len(), 1024 + 8);
    }

    #[test]
    fn containers() {
        let v = Value::KvList(vec![
            ("UID".into(), Value::num(1)),
            (
                "FLAGS".into(),
                Value::List(vec![Value::Flag("\\Seen".into())]),
            ),
            ("MBOXTYPE".into(), Value::Nil),
        ]);
        assert_eq!(
            enc(&v, Direction::ToClient),
            "%(UID 1 FLAGS (\\Seen) MBOXTYPE NIL)"
        );
    }
}
