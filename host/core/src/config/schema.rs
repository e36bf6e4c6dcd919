//! The Go plugin schema (`types.Plugin` and the `types.PluginConfig` it holds, docker/docker v28
//! `api/types/plugin.go`), written down once as data: for every field its JSON key, Go field name,
//! `omitempty` and Go type.
//!
//! Three readers need the same facts and must never disagree: the config canonicaliser (Go's
//! decoder: `null` clears a slice or pointer but leaves a string, bool, number or struct untouched;
//! a repeated struct key merges into the value decoded so far; hints for misplaced keys), the CLI's
//! `--format` printer (Go field names, struct order, `omitempty`, type names in messages) and the
//! CLI's create-time checks (the Go type named in `cannot unmarshal` errors).

/// A Go type of the plugin API, as far as decoding and printing care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `uint32`.
    U32,
    /// `types.PluginInterfaceType`: a string in JSON (`prefix.capability/version`).
    InterfaceType,
    /// A struct: `null` leaves it alone; a repeated key merges into it.
    Struct(&'static GoStruct),
    /// `[]T`: `null` clears it; `null` elements decode as `T`'s zero value.
    Slice(&'static Kind),
    /// `*T`: `null` clears it.
    Ptr(&'static Kind),
}

impl Kind {
    /// Whether Go's decoder sets this field to nil on `null` (else `null` is a no-op).
    pub fn nullable(self) -> bool {
        matches!(self, Kind::Slice(_) | Kind::Ptr(_))
    }

    /// The name of a named Go type (`string`, `types.PluginEnv`); `None` for slices and pointers.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Kind::Str => Some("string"),
            Kind::Bool => Some("bool"),
            Kind::U32 => Some("uint32"),
            Kind::InterfaceType => Some("types.PluginInterfaceType"),
            Kind::Struct(st) => Some(st.name),
            Kind::Slice(_) | Kind::Ptr(_) => None,
        }
    }

    /// The struct this kind holds directly, through a pointer or as a slice's element, with
    /// whether it is a slice: what the canonicaliser descends into.
    pub fn nested(self) -> Option<(&'static GoStruct, bool)> {
        match self {
            Kind::Struct(st) => Some((st, false)),
            Kind::Ptr(Kind::Struct(st)) => Some((*st, false)),
            Kind::Slice(Kind::Struct(st)) => Some((*st, true)),
            _ => None,
        }
    }
}

/// A Go struct type: its qualified name and its fields in declaration order.
#[derive(Debug, PartialEq, Eq)]
pub struct GoStruct {
    /// The Go type name, e.g. `types.PluginConfig`.
    pub name: &'static str,
    /// Fields in declaration order (the order `fmt` prints them in).
    pub fields: &'static [Field],
}

/// One struct field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The canonical JSON key.
    pub key: &'static str,
    /// The Go field name (what a template names).
    pub go: &'static str,
    /// `omitempty` in the JSON tag.
    pub omitempty: bool,
    /// The Go type.
    pub kind: Kind,
}

/// A field whose Go name is its JSON key.
const fn f(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        go: key,
        omitempty: false,
        kind,
    }
}

/// A field with `omitempty`.
const fn omit(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        go: key,
        omitempty: true,
        kind,
    }
}

const STR_LIST: Kind = Kind::Slice(&Kind::Str);
const OPT_STR: Kind = Kind::Ptr(&Kind::Str);

/// `types.Plugin`, the object `GET /plugins` and `/plugins/{name}/json` return.
pub static PLUGIN: GoStruct = GoStruct {
    name: "types.Plugin",
    fields: &[
        f("Config", Kind::Struct(&PLUGIN_CONFIG)),
        f("Enabled", Kind::Bool),
        Field {
            key: "Id",
            go: "ID",
            omitempty: true,
            kind: Kind::Str,
        },
        f("Name", Kind::Str),
        omit("PluginReference", Kind::Str),
        f("Settings", Kind::Struct(&PLUGIN_SETTINGS)),
    ],
};

/// `types.PluginConfig`: the top level of `config.json`.
pub static PLUGIN_CONFIG: GoStruct = GoStruct {
    name: "types.PluginConfig",
    fields: &[
        f("Args", Kind::Struct(&PLUGIN_CONFIG_ARGS)),
        f("Description", Kind::Str),
        omit("DockerVersion", Kind::Str),
        f("Documentation", Kind::Str),
        f("Entrypoint", STR_LIST),
        f("Env", Kind::Slice(&Kind::Struct(&PLUGIN_ENV))),
        f("Interface", Kind::Struct(&PLUGIN_CONFIG_INTERFACE)),
        f("IpcHost", Kind::Bool),
        f("Linux", Kind::Struct(&PLUGIN_CONFIG_LINUX)),
        f("Mounts", Kind::Slice(&Kind::Struct(&PLUGIN_MOUNT))),
        f("Network", Kind::Struct(&PLUGIN_CONFIG_NETWORK)),
        f("PidHost", Kind::Bool),
        f("PropagatedMount", Kind::Str),
        omit("User", Kind::Struct(&PLUGIN_CONFIG_USER)),
        f("WorkDir", Kind::Str),
        Field {
            key: "rootfs",
            go: "Rootfs",
            omitempty: true,
            kind: Kind::Ptr(&Kind::Struct(&PLUGIN_CONFIG_ROOTFS)),
        },
    ],
};

static PLUGIN_CONFIG_ARGS: GoStruct = GoStruct {
    name: "types.PluginConfigArgs",
    fields: &[
        f("Description", Kind::Str),
        f("Name", Kind::Str),
        f("Settable", STR_LIST),
        f("Value", STR_LIST),
    ],
};

static PLUGIN_CONFIG_INTERFACE: GoStruct = GoStruct {
    name: "types.PluginConfigInterface",
    fields: &[
        omit("ProtocolScheme", Kind::Str),
        f("Socket", Kind::Str),
        f("Types", Kind::Slice(&Kind::InterfaceType)),
    ],
};

static PLUGIN_CONFIG_LINUX: GoStruct = GoStruct {
    name: "types.PluginConfigLinux",
    fields: &[
        f("AllowAllDevices", Kind::Bool),
        f("Capabilities", STR_LIST),
        f("Devices", Kind::Slice(&Kind::Struct(&PLUGIN_DEVICE))),
    ],
};

static PLUGIN_CONFIG_NETWORK: GoStruct = GoStruct {
    name: "types.PluginConfigNetwork",
    fields: &[f("Type", Kind::Str)],
};

/// `types.PluginConfigRootfs`, named here because `fmt` prints a nil pointer to it by type.
pub static PLUGIN_CONFIG_ROOTFS: GoStruct = GoStruct {
    name: "types.PluginConfigRootfs",
    fields: &[
        Field {
            key: "diff_ids",
            go: "DiffIds",
            omitempty: false,
            kind: STR_LIST,
        },
        Field {
            key: "type",
            go: "Type",
            omitempty: true,
            kind: Kind::Str,
        },
    ],
};

static PLUGIN_CONFIG_USER: GoStruct = GoStruct {
    name: "types.PluginConfigUser",
    fields: &[omit("GID", Kind::U32), omit("UID", Kind::U32)],
};

static PLUGIN_SETTINGS: GoStruct = GoStruct {
    name: "types.PluginSettings",
    fields: &[
        f("Args", STR_LIST),
        f("Devices", Kind::Slice(&Kind::Struct(&PLUGIN_DEVICE))),
        f("Env", STR_LIST),
        f("Mounts", Kind::Slice(&Kind::Struct(&PLUGIN_MOUNT))),
    ],
};

static PLUGIN_ENV: GoStruct = GoStruct {
    name: "types.PluginEnv",
    fields: &[
        f("Description", Kind::Str),
        f("Name", Kind::Str),
        f("Settable", STR_LIST),
        f("Value", OPT_STR),
    ],
};

static PLUGIN_MOUNT: GoStruct = GoStruct {
    name: "types.PluginMount",
    fields: &[
        f("Description", Kind::Str),
        f("Destination", Kind::Str),
        f("Name", Kind::Str),
        f("Options", STR_LIST),
        f("Settable", STR_LIST),
        f("Source", OPT_STR),
        f("Type", Kind::Str),
    ],
};

static PLUGIN_DEVICE: GoStruct = GoStruct {
    name: "types.PluginDevice",
    fields: &[
        f("Description", Kind::Str),
        f("Name", Kind::Str),
        f("Path", OPT_STR),
        f("Settable", STR_LIST),
    ],
};

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

/// The field a JSON key decodes into: exact spelling first, else Go's case-insensitive match.
pub fn lookup(schema: &'static [Field], key: &str) -> Option<&'static Field> {
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
    collect(PLUGIN_CONFIG.fields, &mut Vec::new(), &folded, &mut found);
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
        let Some((child, list)) = field.kind.nested() else {
            continue;
        };
        prefix.push((field.key, list));
        collect(child.fields, prefix, folded, found);
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
