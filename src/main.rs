fn main() {
    std::process::exit(aceuq::cli::main());
}
