//! The tokio driver over real sockets: DEFLATE in both directions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use backupd_sim::server::{FakeBackupd, ServerConfig};
use backupd_sim::store::{sha1_hex, Store};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert_eq!(s.read(&mut b).expect("read"), 1, "closed after {line:?}");
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

/// A compressed command of incompressible bodies that inflates to far more
/// than one 64 KiB chunk, sent in one write, is read whole and answered, and
/// the reply comes back compressed.
#[test]
fn a_compressed_command_larger_than_a_chunk_is_answered() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fake = rt
        .block_on(FakeBackupd::start(
            "127.0.0.1:0".parse().expect("addr"),
            Store::temporary().expect("store"),
            ServerConfig::default(),
        ))
        .expect("start");
    let mut s = TcpStream::connect(fake.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    while !read_line(&mut s).starts_with("* OK") {}
    s.write_all(b"AUTHENTICATE PLAIN AHJlcGx1c2VyAHNlY3JldA==\r\n")
        .expect("write");
    assert_eq!(read_line(&mut s), "OK Success (no protection)");
    s.write_all(b"COMPRESS DEFLATE\r\n").expect("write");
    assert_eq!(read_line(&mut s), "OK DEFLATE active");

    // GET USER (to hold a backup), then 64 bodies of 4 KiB in one APPLY MESSAGE.
    let mut plain = b"GET USER alice\r\nAPPLY MESSAGE (".to_vec();
    for i in 0..64u32 {
        // Incompressible bytes, so the wire carries stored blocks.
        let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut body = format!("message {i}\r\n").into_bytes();
        body.extend((0..4096).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        }));
        if i > 0 {
            plain.push(b' ');
        }
        plain.extend_from_slice(
            format!("%{{default {} {}}}\r\n", sha1_hex(&body), body.len()).as_bytes(),
        );
        plain.extend_from_slice(&body);
    }
    plain.extend_from_slice(b")\r\n");
    assert!(plain.len() > 4 * 64 * 1024);
    let mut z = Compress::new(Compression::best(), false);
    let mut wire = Vec::with_capacity(plain.len());
    z.compress_vec(&plain, &mut wire, FlushCompress::Sync)
        .expect("deflate");
    assert_eq!(z.total_in() as usize, plain.len(), "compress in one go");
    s.write_all(&wire).expect("write");

    let mut inflater = Decompress::new(false);
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while text.matches_ok() < 2 {
        let n = s.read(&mut buf).expect("the server must answer within 5 s");
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&text));
        let mut out = vec![0u8; 65536];
        let before = inflater.total_out();
        inflater
            .decompress(&buf[..n], &mut out, FlushDecompress::None)
            .expect("inflate");
        text.extend_from_slice(&out[..(inflater.total_out() - before) as usize]);
    }
    assert_eq!(
        String::from_utf8_lossy(&text),
        "OK Success\r\nOK Success\r\n"
    );
    assert_eq!(fake.shared().store().bodies().len(), 64);
    rt.block_on(fake.stop());
}

trait CountOk {
    fn matches_ok(&self) -> usize;
}

impl CountOk for Vec<u8> {
    fn matches_ok(&self) -> usize {
        String::from_utf8_lossy(self)
            .matches("OK Success\r\n")
            .count()
    }
}
