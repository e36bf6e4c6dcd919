//! Privileges a config implies, computed exactly as dockerd does, compared as multisets.
//! (Implementation pending.)
