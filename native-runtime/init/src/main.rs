//! `plugd-init`: see the crate docs. (Steps pending.)
fn main() {
    std::process::exit(2);
}
