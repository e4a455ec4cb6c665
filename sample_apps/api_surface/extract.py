"""Extract the public API surface of the libraries the sample apps call, from their own sources.

    python sample_apps/api_surface/extract.py --root REPO=CHECKOUT [...] [--out surface.json]

Each library in sources.json names the release the apps pin and the files (repository, path) that
declare the API the apps use; CHECKOUT is a checkout of that repository at that release (e.g.
`--root pytorch/executorch=executorch` after
`git clone --depth 1 --branch v1.5.0 https://github.com/pytorch/executorch`). The result,
surface.json, is what check.py holds the Swift and Kotlin sources against. The parsing is
declaration-level (types, members, their return types, initializer labels), written for these
languages' common forms: Swift, Objective-C headers (with NS_SWIFT_NAME / NS_REFINED_FOR_SWIFT /
NS_SWIFT_UNAVAILABLE, as Swift imports them) and Java.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def _close(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def _top_level(body: str) -> str:
    """The body with every nested {...} block blanked: members of nested types and statements in
    method bodies are not this type's declarations."""
    out, depth = [], 0
    for ch in body:
        if ch == "{":
            depth += 1
            out.append(" ")
        elif ch == "}":
            depth -= 1
            out.append(";")
        else:
            out.append(ch if depth == 0 else " ")
    return "".join(out)


def _type(name: str) -> dict:
    # members/static: name -> declared type (return type for methods); kinds: name -> "func" | "var"
    return {"members": {}, "static": {}, "kinds": {}, "inits": [], "bases": []}


# -- Java ---------------------------------------------------------------------------------------------

_JAVA_TYPE = re.compile(r"\b(class|interface|enum)\s+(\w+)(?:<[^{]*?>)?([^{;]*)\{")
_JAVA_METHOD = re.compile(r"((?:(?:public|protected|private|static|final|abstract|native|synchronized|default)\s+|@\w+\s+)*)"
                          r"([\w.<>\[\]?, ]+?)\s+(\w+)\s*\(")


def _depths(text: str) -> list[int]:
    out, depth = [], 0
    for ch in text:
        out.append(depth)
        depth += ch == "{"
        depth -= ch == "}"
    return out


def java_types(text: str, outer: str = "", clean: bool = False) -> dict:
    """The first type declared at the top of ``text`` and the types nested in it."""
    text = text if clean else strip_comments(text)
    depths = _depths(text)
    match = next((m for m in _JAVA_TYPE.finditer(text) if depths[m.start()] == 0), None)
    if match is None:
        return {}
    kind, name, heritage = match.groups()
    full = f"{outer}.{name}" if outer else name
    open_at = match.end() - 1
    body = text[open_at + 1:_close(text, open_at)]
    entry = _type(full)
    entry["bases"] = [b.strip().split("<")[0] for b in re.split(r"\bextends\b|\bimplements\b|,", heritage) if b.strip()]
    flat = _top_level(body)
    if kind == "enum":
        for const in re.findall(r"\b([A-Z][A-Z0-9_]*)\b", flat.split(";", 1)[0]):
            entry["static"][const] = full
            entry["kinds"][const] = "var"
    for statement in flat.split(";"):
        statement = " ".join(statement.split())
        public = kind == "interface" or re.search(r"\bpublic\b", statement)
        if re.match(rf"(?:@\w+\s+)*public\s+{name}\s*\(", statement):
            entry["inits"].append([])
            continue
        method = _JAVA_METHOD.match(statement)
        if method and public and "=" not in statement.split("(")[0]:
            mods, ret, member = method.groups()
            entry["static" if "static" in mods else "members"].setdefault(member, ret.strip())
            entry["kinds"][member] = "func"
            continue
        field = re.match(r"(?:@\w+\s+)*public\s+((?:static\s+)?)(?:final\s+)?([\w.<>\[\]]+)\s+(\w+)\s*(?:=|$)", statement)
        if field:
            entry["static" if field.group(1) else "members"][field.group(3)] = field.group(2)
            entry["kinds"][field.group(3)] = "var"
    types = {full: entry}
    inner_depths = _depths(body)
    for inner in _JAVA_TYPE.finditer(body):
        if inner_depths[inner.start()] == 0:
            types.update(java_types(body[inner.start():], full, clean=True))
    return types


# -- Swift ----------------------------------------------------------------------------------------------

_SWIFT_CONTEXT = re.compile(r"((?:public|open|final|@\w+|\s)*)\b(class|struct|enum|protocol|extension)\s+(\w+)(<[^{]*?>)?([^{]*)\{")


def swift_labels(params: str) -> list[str]:
    labels = []
    depth = 0
    piece = ""
    for ch in params + ",":
        if ch in "([<":
            depth += 1
        elif ch in ")]>":
            depth -= 1
        if ch == "," and depth == 0:
            head = piece.split(":", 1)[0].split()
            if head:
                labels.append(head[0])
            piece = ""
        else:
            piece += ch
    return labels


def swift_types(text: str) -> dict:
    text = strip_comments(text)
    types: dict[str, dict] = {}
    for match in _SWIFT_CONTEXT.finditer(text):
        mods, kind, name, _, heritage = match.groups()
        if text[: match.start()].count("{") != text[: match.start()].count("}"):
            continue  # only top-level contexts declare API here
        open_at = match.end() - 1
        body = _top_level(text[open_at + 1:_close(text, open_at)])
        entry = types.setdefault(name, _type(name))
        entry["bases"] += [b.strip() for b in heritage.replace(":", ",").split(",") if b.strip() and "where" not in b]
        all_public = kind == "extension" and "public" in mods or kind == "protocol"
        for decl in re.finditer(r"\b(func|var|let|init)\b", body):
            what = decl.group(1)
            line_start = body.rfind("\n", 0, decl.start()) + 1
            dmods = body[line_start:decl.start()]
            if re.search(r"[^\w@\s()\",*:]", dmods) or not (all_public or "public" in dmods or "open" in dmods):
                continue
            rest = body[decl.end():]
            member = re.match(r"\s*(\w*)", rest).group(1)
            table = "static" if "static" in dmods else "members"
            params, after = "", rest
            if what in ("func", "init"):
                open_at = rest.find("(")
                depth = 0
                for end, ch in enumerate(rest[open_at:], open_at):
                    depth += ch == "("
                    depth -= ch == ")"
                    if depth == 0:
                        break
                params, after = rest[open_at + 1:end], rest[end + 1:]
            if what == "init":
                entry["inits"].append(swift_labels(params))
            elif what == "func":
                ret = re.match(r"[^{;]*?->\s*([^{;\n]+)", after)
                entry[table].setdefault(member, ret.group(1).strip() if ret else "Void")
                entry["kinds"][member] = "func"
            else:
                typ = re.match(r"\s*\w+\s*:\s*([^={;\n]+)", rest)
                entry[table].setdefault(member, typ.group(1).strip() if typ else None)
                entry["kinds"][member] = "var"
    return types


# -- Objective-C headers, as Swift imports them -----------------------------------------------------

def _lower_first(word: str) -> str:
    return word[:1].lower() + word[1:]


def objc_return(ret: str, throws: bool, prefix: str) -> str:
    """A return type as Swift sees it: NSArray<P_X *> * -> [X]; BOOL with an NSError** -> Void (throws)."""
    ret = ret.replace("nullable", "").strip()
    if throws and ret == "BOOL":
        return "Void"
    array = re.match(r"NSArray<(\w+)\s*\*>\s*\*", ret)
    if array:
        return f"[{array.group(1).removeprefix(prefix)}]"
    return ret.rstrip("* ").removeprefix(prefix)


def objc_types(text: str) -> dict:
    text = strip_comments(text)
    types: dict[str, dict] = {}
    for enum in re.finditer(r"typedef\s+NS_ENUM\([^,]+,\s*(\w+)\)\s*\{([^}]*)\}\s*NS_SWIFT_NAME\((\w+)\)", text):
        objc, body, swift = enum.groups()
        entry = types.setdefault(swift, _type(swift))
        for case in re.findall(r"\b(\w+)\s*(?:=|,|$)", body):
            if case.startswith(objc):
                entry["static"][_lower_first(case[len(objc):])] = swift
                entry["kinds"][_lower_first(case[len(objc):])] = "var"
    for iface in re.finditer(r"(?:NS_SWIFT_NAME\((\w+)\)\s*(?:__attribute__\(\([^)]*\)\)\s*)?)?@interface\s+(\w+)[^\n]*\n(.*?)@end", text, re.S):
        swift, objc, body = iface.groups()
        name = swift or objc
        entry = types.setdefault(name, _type(name))
        for prop in re.finditer(r"@property\s*\(([^)]*)\)\s*([^;]*?)\b(\w+)\s*((?:NS_\w+(?:\([^)]*\))?\s*)*);", body):
            _, _, member, marks = prop.groups()
            if "NS_SWIFT_UNAVAILABLE" in marks:
                continue
            swift_name = "__" + member if "NS_REFINED_FOR_SWIFT" in marks else member
            entry["members"][swift_name] = prop.group(2).strip() or None
            entry["kinds"][swift_name] = "var"
        for method in re.finditer(r"^\s*([-+])\s*\(([^)]*)\)\s*([^;]*);", body, re.M):
            sign, ret, rest = method.groups()
            if "NS_SWIFT_UNAVAILABLE" in rest or "NS_UNAVAILABLE" in rest:
                continue
            pieces = re.findall(r"(\w+)\s*:", rest.split("NS_")[0]) or [rest.split()[0]]
            table = "static" if sign == "+" else "members"
            prefix = re.match(r"[A-Z][a-z]+[A-Z][a-z]+", objc).group(0) if re.match(r"[A-Z][a-z]+[A-Z][a-z]+", objc) else ""
            ret = objc_return(ret, "NSError" in rest, prefix)
            named = re.search(r"NS_SWIFT_NAME\((\w+)\(([^)]*)\)\)", rest)
            if named:
                entry[table].setdefault(named.group(1), ret)
                entry["kinds"][named.group(1)] = "func"
                continue
            first = pieces[0]
            if first.startswith("init"):
                labels = [_lower_first(first[len("initWith"):])] if first.startswith("initWith") else []
                entry["inits"].append(labels + [p for p in pieces[1:] if p != "error"])
                continue
            base = re.sub(r"With[A-Z]\w*$", "", first)
            swift_name = ("__" if "NS_REFINED_FOR_SWIFT" in rest else "") + base
            entry[table].setdefault(swift_name, ret)
            entry["kinds"][swift_name] = "func"
    return types


PARSERS = {".java": java_types, ".swift": swift_types, ".h": objc_types}


def merge(into: dict, types: dict, origin: str) -> None:
    for name, entry in types.items():
        target = into.setdefault(name, {**_type(name), "origin": []})
        for key in ("members", "static", "kinds"):
            for member, ret in entry[key].items():
                target[key].setdefault(member, ret)
        target["inits"] += [labels for labels in entry["inits"] if labels not in target["inits"]]
        target["bases"] += [b for b in entry["bases"] if b not in target["bases"]]
        if origin not in target["origin"]:
            target["origin"].append(origin)


def extract(sources: dict, roots: dict[str, Path]) -> dict:
    out = {"kind": "edgekit.app-api-surface", "version": 1, "libraries": {}}
    for library, spec in sources["libraries"].items():
        types: dict = {}
        for item in spec["files"]:
            root = roots.get(item["repo"])
            if root is None:
                raise SystemExit(f"--root {item['repo']}=CHECKOUT is needed (a checkout at {spec['release']})")
            text = (root / item["path"]).read_text(encoding="utf-8")
            parsed = PARSERS[Path(item["path"]).suffix](text)
            if item.get("package"):
                parsed = {f"{item['package']}.{k}": v for k, v in parsed.items()}
            merge(types, parsed, item["path"])
        out["libraries"][library] = {k: spec[k] for k in ("repo", "release", "language", "imports")} | {
            "files": spec["files"], "types": dict(sorted(types.items()))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", action="append", default=[], metavar="LIBRARY=CHECKOUT")
    p.add_argument("--sources", default=str(HERE / "sources.json"))
    p.add_argument("--out", default=str(HERE / "surface.json"))
    args = p.parse_args(argv)
    roots = dict(item.split("=", 1) for item in args.root)
    surface = extract(json.loads(Path(args.sources).read_text()), {k: Path(v) for k, v in roots.items()})
    Path(args.out).write_text(json.dumps(surface, indent=1, sort_keys=False) + "\n")
    print(f"wrote {args.out}: " + ", ".join(f"{k} ({len(v['types'])} types)" for k, v in surface["libraries"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
