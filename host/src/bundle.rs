//! Plugin bundles uploaded as tar streams (`POST /plugins/create`). (Pending.)
