#!/usr/bin/env python3
"""Generate crates/api/src/protobuf_table.rs: the schema the protobuf body decoder walks.

kubectl sends typed-clientset request bodies (create namespace, run, auth whoami,
drain's evictions, create token, ...) as Kubernetes protobuf, and the decoder in
crates/api/src/protobuf.rs turns them into the JSON kubectl would otherwise have
sent. It needs, for every message reachable from the kinds we decode:

  * the wire schema: field numbers, scalar kinds, repeated/map, nested message
    types. Taken from the `k8s-pb` crate's prost-generated sources (upstream's
    generated.proto files compiled by prost), found in the cargo registry.
  * the JSON side, i.e. what Go's encoding/json prints for the decoded Go struct:
    each field's JSON name, the Go struct's field order, whether the field is
    `omitempty`, a Go pointer, or an inlined embedded struct (`json:",inline"`,
    e.g. Volume's VolumeSource). Go always writes non-pointer scalars on the wire,
    so `omitempty` zero values (ObjectMeta's empty uid, generation 0, ...) must be
    dropped, while pointer fields set to zero (replicas: 0) must be kept. This is
    read from the Go type metadata (reflect data: struct names, field types and
    struct tags) inside a kubectl binary, which is exactly the code that encoded
    the request. Fields of messages a binary lacks fall back to the `k8s-openapi`
    crate's serde names (and keep every present value); fields neither knows
    (k8s-pb may be newer than the served release) are left out, so the decoder
    skips them as unknown, like the served release's API server would.

Run from anywhere:

    python3 scripts/gen_protobuf_table.py [--kubectl PATH] [--k8s-pb DIR] [--k8s-openapi DIR]

Defaults: --kubectl /usr/lib/google-cloud-sdk/bin/kubectl.1.33 (a Go 1.20+ ELF
x86-64 binary; any kubectl of the served Kubernetes minor works), k8s-pb
K8S_PB_VERSION and the Cargo.lock's k8s-openapi (its v1_33 module) from the cargo
registry, fetched there with `cargo fetch` when missing. The output is
rustfmt-formatted when rustfmt is on PATH. The script writes only the one output
file; to cover another API group, add it to PACKAGES. Warnings list what the
served release lacks and is therefore left out. The tests in protobuf.rs check
the table against real kubectl bodies and the OpenAPI definitions.
"""

import argparse
import glob
import os
import re
import struct
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(REPO, "crates", "api", "src", "protobuf_table.rs")

# k8s-pb module paths whose every message is decoded, and their API group
# (for the `apiVersion` of the kinds they define). Messages they reference in
# other packages (resource.Quantity, intstr.IntOrString, ...) come along.
PACKAGES = {
    "api::core::v1": "",
    "api::apps::v1": "apps",
    "api::batch::v1": "batch",
    "api::certificates::v1": "certificates.k8s.io",
    "api::coordination::v1": "coordination.k8s.io",
    "api::discovery::v1": "discovery.k8s.io",
    "api::autoscaling::v1": "autoscaling",
    "api::autoscaling::v2": "autoscaling",
    "api::events::v1": "events.k8s.io",
    "api::policy::v1": "policy",
    "api::authentication::v1": "authentication.k8s.io",
    "api::authorization::v1": "authorization.k8s.io",
    "apimachinery::pkg::apis::meta::v1": "meta.k8s.io",
}

# Messages whose JSON form is not an object of their fields (custom Go
# MarshalJSON), keyed by definition name; the decoder implements each.
SPECIAL = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "FieldsV1",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "RawExtension",
}

PB_KINDS = {
    "string": "Str",
    "bytes": "Bytes",
    "int32": "I32",
    "int64": "I64",
    "bool": "Bool",
    "double": "F64",
}

# Go reflect kinds (internal/abi.Kind) used below.
GO_MAP, GO_PTR, GO_SLICE, GO_STRUCT = 21, 22, 23, 25

# The wire schema's source, pinned so that re-running reproduces the table.
K8S_PB_VERSION = "0.9.0"


def crate_source(name, version):
    """The unpacked sources of a crates.io crate, fetched by cargo if needed."""
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    registry = os.path.join(cargo_home, "registry")
    pattern = os.path.join(registry, "src", "*", f"{name}-{version}")
    if not glob.glob(pattern):
        # Not (necessarily) a dependency of the workspace: a throwaway crate
        # that depends on it makes `cargo fetch` download and unpack it.
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "src"))
            open(os.path.join(tmp, "src", "lib.rs"), "w").close()
            with open(os.path.join(tmp, "Cargo.toml"), "w") as f:
                f.write(
                    '[package]\nname = "fetch-only"\nversion = "0.0.0"\nedition = "2021"\n'
                    f'[dependencies]\n{name} = "={version}"\n[workspace]\n'
                )
            manifest = os.path.join(tmp, "Cargo.toml")
            subprocess.run(["cargo", "fetch", "--manifest-path", manifest], check=True)
    found = glob.glob(pattern)
    if not found:
        sys.exit(f"not found after cargo fetch: {pattern}")
    return found[0]


def locked_version(name):
    """The version of a crate in the workspace's Cargo.lock."""
    lock = open(os.path.join(REPO, "Cargo.lock"), encoding="utf-8").read()
    m = re.search(rf'name = "{re.escape(name)}"\nversion = "([^"]+)"', lock)
    if not m:
        sys.exit(f"{name} is not in Cargo.lock")
    return m.group(1)


def definition_prefix(module):
    """`api::core::v1` -> `io.k8s.api.core.v1`."""
    return "io.k8s." + module.replace("::", ".")


def go_package(module):
    """`api::core::v1` -> `k8s.io/api/core/v1`."""
    return "k8s.io/" + module.replace("::", "/")


# --- k8s-pb: the wire schema -------------------------------------------------

FIELD_ATTR = re.compile(r"#\[prost\((.*)\)\]")


def parse_k8s_pb(root):
    """All prost messages: {(module, Name): [field dict]}."""
    messages = {}
    for path in glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "::")
        lines = open(path, encoding="utf-8").read().split("\n")
        current = None
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            m = re.match(r"pub struct (\w+) \{(\})?$", line)
            if m:
                current = []
                messages[(module, m.group(1))] = current
                i += 1
                continue
            m = FIELD_ATTR.match(line)
            if m and current is not None and "oneof" not in m.group(1):
                decl = ""
                i += 1
                while True:
                    decl += " " + lines[i].strip()
                    if decl.rstrip().endswith(",") and decl.count("<") == decl.count(">"):
                        break
                    i += 1
                current.append(parse_field(module, m.group(1), decl))
            elif line == "}":
                current = None
            i += 1
    return messages


def parse_field(module, attr, decl):
    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
    decl = re.sub(r",\s*>", ">", decl)
    name, ty = re.match(r"\s*pub (?:r#)?(\w+):\s*(.*),$", decl).groups()
    field = {"tag": tag, "rust": name, "map": False, "repeated": "repeated" in attr}
    m = re.match(r'btree_map = "string, (\w+)"', attr)
    if m:
        field["map"] = True
        value = m.group(1)
        if value == "message":
            inner = re.search(r"BTreeMap<[^,]+,\s*(.*)>$", ty).group(1)
            field["kind"] = ("msg", resolve(module, inner))
        else:
            field["kind"] = PB_KINDS[value]
        return field
    first = attr.split(",")[0].split("=")[0].strip()
    if first == "message":
        inner = re.sub(r"^::core::option::Option<(.*)>$", r"\1", ty)
        inner = re.sub(r"^::prost::alloc::vec::Vec<(.*)>$", r"\1", inner)
        inner = re.sub(r"^::prost::alloc::boxed::Box<(.*)>$", r"\1", inner)
        field["kind"] = ("msg", resolve(module, inner))
    else:
        field["kind"] = PB_KINDS[first]
    return field


def resolve(module, path):
    """A Rust type path relative to `module` -> (module, Name)."""
    parts = path.strip().split("::")
    here = module.split("::")
    while parts[0] == "super":
        here.pop()
        parts.pop(0)
    return ("::".join(here + parts[:-1]), parts[-1])


# --- kubectl: the Go types ---------------------------------------------------


class GoBinary:
    """Reads struct types from the reflect metadata of a Go ELF binary.

    Walks every type listed in `.typelink` (offsets from the start of
    `.rodata`, where the linker puts type descriptors) and, through pointer,
    slice, map and struct element types, every named struct of a k8s.io
    package. Layout: internal/abi.Type (48 bytes: kind at 23, name offset at
    40), then per kind the element pointer (at 48) or, for structs, the
    package-path name (48) and the field slice (56, 64); an UncommonType (its
    package path first) follows named types.
    """

    def __init__(self, path):
        self.data = open(path, "rb").read()
        d = self.data
        if d[:4] != b"\x7fELF":
            sys.exit(f"{path}: not an ELF binary")
        shoff = struct.unpack_from("<Q", d, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
        sections = [struct.unpack_from("<IIQQQQ", d, shoff + i * shentsize) for i in range(shnum)]
        names = sections[shstrndx][4]
        self.sections = {}
        for name, typ, _flags, addr, off, size in sections:
            end = d.index(b"\0", names + name)
            self.sections[d[names + name : end].decode()] = (typ, addr, off, size)
        self.ranges = [
            (addr, off, size)
            for typ, addr, off, size in self.sections.values()
            if addr and typ != 8  # SHT_NOBITS has no file bytes
        ]
        self.base = self.sections[".rodata"][1]
        self.structs = {}
        self.seen = set()
        _, _, off, size = self.sections[".typelink"]
        for rel in struct.unpack_from(f"<{size // 4}i", d, off):
            try:
                self.visit(self.base + rel)
            except (ValueError, IndexError, struct.error, UnicodeDecodeError):
                continue

    def offset(self, addr):
        for start, off, size in self.ranges:
            if start <= addr < start + size:
                return off + addr - start
        raise ValueError(hex(addr))

    def u64(self, addr):
        return struct.unpack_from("<Q", self.data, self.offset(addr))[0]

    def i32(self, addr):
        return struct.unpack_from("<i", self.data, self.offset(addr))[0]

    def varint(self, off):
        value = shift = 0
        while True:
            b = self.data[off]
            off += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value, off

    def name(self, addr):
        """An abi.Name: flags byte, varint length, bytes, then the tag."""
        off = self.offset(addr)
        flags = self.data[off]
        n, off = self.varint(off + 1)
        name = self.data[off : off + n].decode()
        tag = ""
        if flags & 2:
            tn, toff = self.varint(off + n)
            tag = self.data[toff : toff + tn].decode()
        return name, tag

    def kind(self, t):
        return self.data[self.offset(t) + 23] & 0x1F

    def type_name(self, t):
        off = self.offset(t)
        name = self.name(self.base + self.i32(t + 40))[0]
        return name[1:] if self.data[off + 20] & 2 else name  # TFlagExtraStar

    def visit(self, t):
        if t in self.seen:
            return
        self.seen.add(t)
        kind = self.kind(t)
        if kind in (GO_PTR, GO_SLICE):
            self.visit(self.u64(t + 48))
        elif kind == GO_MAP:
            self.visit(self.u64(t + 48))
            self.visit(self.u64(t + 56))
        elif kind == GO_STRUCT:
            pkg = ""
            if self.data[self.offset(t) + 20] & 1:  # TFlagUncommon
                pkg = self.name(self.base + self.i32(t + 80))[0]
            fields = []
            ptr, count = self.u64(t + 56), self.u64(t + 64)
            for i in range(count):
                name, tag = self.name(self.u64(ptr + 24 * i))
                ftype = self.u64(ptr + 24 * i + 8)
                fields.append((name, tag, self.kind(ftype), self.type_name(ftype)))
                self.visit(ftype)
            if pkg.startswith("k8s.io/"):
                self.structs[(pkg, self.type_name(t).split(".")[-1])] = fields


def go_fields(go, pkg, name):
    """The Go struct for a message, by case-insensitive name, as a list of
    {tag, json, omitempty, pointer, inline, go_kind}; None when absent."""
    for (p, n), fields in go.structs.items():
        if p == pkg and n.lower() == name.lower():
            out = []
            for _go_name, tag, kind, _type_name in fields:
                pb = re.search(r'protobuf:"[a-z0-9]+,(\d+),', tag)
                js = re.search(r'json:"([^"]*)"', tag)
                if not pb or not js:
                    continue
                opts = js.group(1).split(",")
                out.append(
                    {
                        "tag": int(pb.group(1)),
                        "json": opts[0],
                        "omitempty": "omitempty" in opts[1:],
                        "inline": "inline" in opts[1:] and not opts[0],
                        "pointer": kind == GO_PTR,
                        "go_kind": kind,
                    }
                )
            return n, out
    return None


# --- k8s-openapi: fallback JSON names ----------------------------------------


def openapi_names(root, module, name):
    """{normalized rust name: json name} from k8s-openapi's serde code."""
    folder = os.path.join(root, module.replace("::", "/"))
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    out = {}
    for path in glob.glob(os.path.join(folder, "*.rs")):
        base = os.path.basename(path)[:-3].replace("_", "")
        if base != snake.replace("_", ""):
            continue
        for json_name, rust in re.findall(r'"([^"]+)" => Field::Key_(\w+),', open(path).read()):
            out[rust.replace("_", "").lower()] = json_name
    return out


def camel(rust):
    head, *rest = rust.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


# --- assembling the table ----------------------------------------------------


def build(pb, go, openapi_root):
    """Resolve every message, keep those the served release knows that are
    reachable from PACKAGES, and index them by definition name."""
    warnings = []
    resolved = {}

    def resolve_once(key):
        if key not in resolved:
            if key not in pb:
                sys.exit(f"unknown message {key}")
            resolved[key] = resolve_message(key, pb[key], go, openapi_root, warnings)
        return resolved[key]

    roots = sorted(key for key in pb if key[0] in PACKAGES)
    keep, queue = set(), [key for key in roots if resolve_once(key)["known"]]
    while queue:
        key = queue.pop(0)
        if key in keep:
            continue
        keep.add(key)
        for _tag, _json, kind, _flags in resolve_once(key)["rows"]:
            if isinstance(kind, tuple):
                queue.append(kind[1])
    order = sorted(keep, key=lambda k: resolved[k]["definition"])
    index = {key: i for i, key in enumerate(order)}

    def kind_text(kind):
        return f"Msg({index[kind[1]]})" if isinstance(kind, tuple) else kind

    messages, kinds = [], []
    for key in order:
        r = resolved[key]
        rows = [(tag, js, kind_text(kind), flags) for tag, js, kind, flags in r["rows"]]
        messages.append((r["definition"], r["special"], rows))
        if r["is_kind"] and key[0] in PACKAGES:
            group, version = PACKAGES[key[0]], key[0].split("::")[-1]
            api_version = f"{group}/{version}" if group else version
            kinds.append((api_version, r["definition"].split(".")[-1], index[key]))
    return messages, sorted(kinds), warnings


def resolve_message(key, pb_fields, go, openapi_root, warnings):
    module, name = key
    found = go_fields(go, go_package(module), name)
    go_name, gfields = found if found else (name, None)
    openapi_name = None
    if gfields is None:
        openapi_name = openapi_type_name(openapi_root, module, name)
        go_name = openapi_name or name
    definition = definition_prefix(module) + "." + go_name
    special = SPECIAL.get(definition, "None")
    if (
        special == "None"
        and gfields is None
        and len(pb_fields) == 1
        and pb_fields[0]["rust"] == "items"
        and pb_fields[0]["repeated"]
    ):
        special = "Items"  # a named Go slice (Verbs, ExtraValue): a JSON array
    known = gfields is not None or openapi_name is not None or special != "None"
    fallback = None
    rows = []
    by_tag = {f["tag"]: f for f in pb_fields}
    used = set()
    for g in gfields or []:
        f = by_tag.get(g["tag"])
        if f is None:
            warnings.append(f"{definition}.{g['json']}: Go field {g['tag']} not in k8s-pb")
            continue
        used.add(f["tag"])
        scalar = not isinstance(f["kind"], tuple) and not f["repeated"] and not f["map"]
        absent = None
        if not g["omitempty"]:
            nil = g["pointer"] or g["go_kind"] in (GO_SLICE, GO_MAP) and f["kind"] != "Bytes"
            absent = "NULL_IF_ABSENT" if nil else "ZERO_IF_ABSENT"
        omit_zero = scalar and g["omitempty"] and not g["pointer"]
        rows.append(row(f, g["json"], omit_zero, g["inline"], absent))
    for f in pb_fields:
        if f["tag"] in used:
            continue
        if fallback is None:
            fallback = openapi_names(openapi_root, module, name)
        json_name = fallback.get(f["rust"].replace("_", "").lower())
        if special == "None" and json_name is None:
            # Neither the Go binary nor k8s-openapi knows it: newer than the
            # served release, so skipped like any unknown field.
            if known:
                warnings.append(f"{definition}.{f['rust']}: unknown to the served release")
            continue
        rows.append(row(f, json_name or camel(f["rust"]), False, False, None))
    if not known:
        warnings.append(f"{definition}: unknown to the served release")
    # Kinds embed TypeMeta (which has no protobuf tag, so is not in gfields).
    go_struct = go.structs.get((go_package(module), go_name), [])
    is_kind = any(field[0] == "TypeMeta" for field in go_struct)
    return {
        "definition": definition,
        "special": special,
        "rows": rows,
        "known": known,
        "is_kind": is_kind,
    }


def openapi_type_name(root, module, name):
    """Upstream's capitalization of a type name, from k8s-openapi's sources."""
    folder = os.path.join(root, module.replace("::", "/"))
    for path in glob.glob(os.path.join(folder, "*.rs")):
        m = re.search(r"pub struct (\w+)", open(path).read())
        if m and m.group(1).lower() == name.lower():
            return m.group(1)
    return None


def row(f, json_name, omit_zero, inline, absent):
    flags = []
    if f["map"]:
        flags.append("MAP")
    elif f["repeated"]:
        flags.append("REPEATED")
    if omit_zero:
        flags.append("OMIT_ZERO")
    if inline:
        flags.append("INLINE")
    if absent:
        flags.append(absent)
    return (f["tag"], json_name, f["kind"], " | ".join(flags) or "0")


def render(messages, kinds, sources):
    out = [
        "//! Generated by `scripts/gen_protobuf_table.py`; do not edit by hand.",
        "//!",
        "//! The schema `protobuf.rs` decodes with, as its submodule `table`: one",
        "//! `Message` per protobuf message reachable from the decoded kinds, fields in",
        "//! Go struct order (the order Go's JSON encoder writes them), and the kinds an",
        "//! envelope may name.",
        f"//! Sources: {sources}.",
        "",
        "use super::Kind::{self, *};",
        "use super::{Field, Message, Special};",
        "use super::{INLINE, MAP, NULL_IF_ABSENT, OMIT_ZERO, REPEATED, ZERO_IF_ABSENT};",
        "",
        "/// Every message, sorted by definition name; `Kind::Msg` indexes this.",
        "pub(super) static MESSAGES: &[Message] = &[",
    ]
    for i, (definition, special, rows) in enumerate(messages):
        out.append(f"    // {i}")
        out.append(f'    m("{definition}", Special::{special}, &[')
        for tag, json_name, kind, flags in rows:
            out.append(f'        f({tag}, "{json_name}", {kind}, {flags}),')
        out.append("    ]),")
    out.append("];")
    out.append("")
    out.append(
        "const fn m(name: &'static str, special: Special, fields: &'static [Field]) -> Message {"
    )
    out.append("    Message { name, special, fields }")
    out.append("}")
    out.append("")
    out.append("const fn f(tag: u32, json: &'static str, kind: Kind, flags: u8) -> Field {")
    out.append("    Field { tag, json, kind, flags }")
    out.append("}")
    out.append("")
    out.append("/// The kinds (`apiVersion`, `kind`) an envelope may name, and their message.")
    out.append("pub(super) static KINDS: &[(&str, &str, u16)] = &[")
    for api_version, kind, i in kinds:
        out.append(f'    ("{api_version}", "{kind}", {i}),')
    out.append("];")
    text = "\n".join(out) + "\n"
    # The uses are in the generated text only when some field needs them.
    for flag in ("INLINE", "MAP", "NULL_IF_ABSENT", "OMIT_ZERO", "REPEATED", "ZERO_IF_ABSENT"):
        if text.count(flag) == 1:
            text = text.replace(f", {flag}", "")
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubectl", default="/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
    parser.add_argument("--k8s-pb", default=None)
    parser.add_argument("--k8s-openapi", default=None)
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args()
    pb_root = args.k8s_pb or os.path.join(crate_source("k8s-pb", K8S_PB_VERSION), "src")
    openapi_root = args.k8s_openapi or os.path.join(
        crate_source("k8s-openapi", locked_version("k8s-openapi")), "src", "v1_33"
    )
    pb = parse_k8s_pb(pb_root)
    go = GoBinary(args.kubectl)
    messages, kinds, warnings = build(pb, go, openapi_root)
    for w in warnings:
        print("warning:", w, file=sys.stderr)
    sources = (
        f"{os.path.basename(os.path.dirname(pb_root))}, "
        f"{os.path.basename(args.kubectl)}, "
        f"{os.path.basename(os.path.dirname(os.path.dirname(openapi_root)))}"
    )
    with open(args.output, "w", encoding="utf-8") as out:
        out.write(render(messages, kinds, sources))
    try:
        subprocess.run(
            ["rustfmt", "--edition", "2021", "--config", "max_width=100", args.output],
            check=True,
        )
    except FileNotFoundError:
        print("rustfmt not found: output left unformatted", file=sys.stderr)
    fields = sum(len(m[2]) for m in messages)
    print(f"{args.output}: {len(messages)} messages, {fields} fields, {len(kinds)} kinds")


if __name__ == "__main__":
    main()
