fn main() {
    let bytes = std::fs::read("tests/fixtures/out/checkpoints/adam.pt").unwrap();
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        let _ = layerlens_checkpoint::read_checkpoint(&bytes);
    }
    println!("read_checkpoint {:?}", t.elapsed() / 1000);
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        let _ = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..])).unwrap();
    }
    println!("zip open {:?}", t.elapsed() / 1000);
}
