fn main() {
    eprintln!("aceuq: command line not built yet");
    std::process::exit(2);
}
