//! plugd's native runtime (pending).
#![deny(missing_docs)]
