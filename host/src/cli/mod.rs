//! The `plugd` command line: the `docker plugin` verbs against a plugd daemon. (Pending.)
