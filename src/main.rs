//! The `webvlm` command line: convert, generate, bench.
fn main() {
    println!("webvlm");
}
