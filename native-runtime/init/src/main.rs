//! `plugd-init`: builds one plugin sandbox from the spec on fd 3 and reports on fd 4 (see the
//! library's `launch` module). Started by the daemon only.

fn main() {
    std::process::exit(plugd_init::launcher::main());
}
