//! The known keys of `config.json`, with the Go type behind each, written down as data.
//!
//! The canonicaliser needs the Go type to copy Go's decoder: `null` clears a slice or pointer but
//! leaves a string, bool, number or struct untouched; a repeated struct key merges into the value
//! decoded so far. The same table answers "does this unknown key exist somewhere else?" for hints.

/// The Go type of a field, as far as decoding cares.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `uint32`.
    U32,
    /// `*string`: `null` clears it.
    OptStr,
    /// `[]string`: `null` clears it; `null` elements decode as `""`.
    StrList,
    /// A struct: `null` leaves it alone; a repeated key merges into it.
    Obj(&'static [Field]),
    /// A pointer to a struct: `null` clears it; a repeated key merges into it.
    OptObj(&'static [Field]),
    /// A slice of structs: `null` clears it; `null` elements decode as empty structs.
    ObjList(&'static [Field]),
}

impl Kind {
    /// Whether Go's decoder sets this field to nil on `null` (else `null` is a no-op).
    pub(super) fn nullable(self) -> bool {
        matches!(
            self,
            Kind::OptStr | Kind::StrList | Kind::OptObj(_) | Kind::ObjList(_)
        )
    }
}

/// One struct field: its canonical JSON key and Go type.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) key: &'static str,
    pub(super) kind: Kind,
}

const fn f(key: &'static str, kind: Kind) -> Field {
    Field { key, kind }
}

const ARGS: &[Field] = &[
    f("Description", Kind::Str),
    f("Name", Kind::Str),
    f("Settable", Kind::StrList),
    f("Value", Kind::StrList),
];
const ENV: &[Field] = &[
    f("Description", Kind::Str),
    f("Name", Kind::Str),
    f("Settable", Kind::StrList),
    f("Value", Kind::OptStr),
];
const INTERFACE: &[Field] = &[
    f("ProtocolScheme", Kind::Str),
    f("Socket", Kind::Str),
    f("Types", Kind::StrList),
];
const DEVICE: &[Field] = &[
    f("Description", Kind::Str),
    f("Name", Kind::Str),
    f("Path", Kind::OptStr),
    f("Settable", Kind::StrList),
];
const LINUX: &[Field] = &[
    f("AllowAllDevices", Kind::Bool),
    f("Capabilities", Kind::StrList),
    f("Devices", Kind::ObjList(DEVICE)),
];
const MOUNT: &[Field] = &[
    f("Description", Kind::Str),
    f("Destination", Kind::Str),
    f("Name", Kind::Str),
    f("Options", Kind::StrList),
    f("Settable", Kind::StrList),
    f("Source", Kind::OptStr),
    f("Type", Kind::Str),
];
const NETWORK: &[Field] = &[f("Type", Kind::Str)];
const USER: &[Field] = &[f("GID", Kind::U32), f("UID", Kind::U32)];
const ROOTFS: &[Field] = &[f("diff_ids", Kind::StrList), f("type", Kind::Str)];

/// The top level of `config.json`.
pub(super) const ROOT: &[Field] = &[
    f("Args", Kind::Obj(ARGS)),
    f("Description", Kind::Str),
    f("DockerVersion", Kind::Str),
    f("Documentation", Kind::Str),
    f("Entrypoint", Kind::StrList),
    f("Env", Kind::ObjList(ENV)),
    f("Interface", Kind::Obj(INTERFACE)),
    f("IpcHost", Kind::Bool),
    f("Linux", Kind::Obj(LINUX)),
    f("Mounts", Kind::ObjList(MOUNT)),
    f("Network", Kind::Obj(NETWORK)),
    f("PidHost", Kind::Bool),
    f("PropagatedMount", Kind::Str),
    f("User", Kind::Obj(USER)),
    f("WorkDir", Kind::Str),
    f("rootfs", Kind::OptObj(ROOTFS)),
];

/// Go's key folding: ASCII case-insensitive, plus the two non-ASCII letters that fold onto ASCII
/// ones (KELVIN SIGN → k, LATIN SMALL LETTER LONG S → s). Every known key is ASCII, so no other
/// non-ASCII character can ever match.
pub(super) fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{212A}' => 'k',
            '\u{017F}' => 's',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The field a JSON key decodes into: exact spelling first, else the case-insensitive match.
pub(super) fn lookup(schema: &'static [Field], key: &str) -> Option<&'static Field> {
    schema.iter().find(|f| f.key == key).or_else(|| {
        let folded = fold(key);
        schema.iter().find(|f| fold(f.key) == folded)
    })
}

/// Where in the schema an unknown key is known after all, as a path pattern like
/// `Linux.Capabilities` or `Mounts[].Source`; `None` unless exactly one place has it (an ambiguous
/// hint misleads). The key's own level never matches: it would not be unknown there.
pub(super) fn elsewhere(key: &str, lower_camel: bool) -> Option<String> {
    let folded = fold(key);
    let mut found = Vec::new();
    collect(ROOT, &mut Vec::new(), &folded, &mut found);
    match found.as_slice() {
        [only] => Some(render(only, lower_camel)),
        _ => None,
    }
}

/// A path pattern as segments: each is a key and whether it is a list (rendered `Key[]`).
type Pattern = Vec<(&'static str, bool)>;

fn collect(schema: &'static [Field], prefix: &mut Pattern, folded: &str, found: &mut Vec<Pattern>) {
    for field in schema {
        if fold(field.key) == folded {
            let mut path = prefix.clone();
            path.push((field.key, false));
            found.push(path);
        }
        let (child, list) = match field.kind {
            Kind::Obj(s) | Kind::OptObj(s) => (s, false),
            Kind::ObjList(s) => (s, true),
            _ => continue,
        };
        prefix.push((field.key, list));
        collect(child, prefix, folded, found);
        prefix.pop();
    }
}

/// Renders a pattern canonically (`Mounts[].Source`) or in the docs' lower camel case
/// (`mounts[].source`), so the hint matches the style the author wrote in.
fn render(pattern: &[(&'static str, bool)], lower_camel: bool) -> String {
    let segments: Vec<String> = pattern
        .iter()
        .map(|(key, list)| {
            let key = if lower_camel {
                camel(key)
            } else {
                (*key).to_owned()
            };
            if *list { format!("{key}[]") } else { key }
        })
        .collect();
    segments.join(".")
}

fn camel(key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_uppercase()) {
        return key.to_ascii_lowercase();
    }
    let mut chars = key.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}
