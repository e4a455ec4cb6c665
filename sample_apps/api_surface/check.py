"""Check that the sample apps' Swift and Kotlin sources call only API that exists in the pinned
library versions (surface.json, extracted from the libraries' own sources by extract.py).

    python sample_apps/api_surface/check.py          # prints each call that does not exist; exit 1 if any

What is checked: in every source file that imports a library, each chain of member accesses that
starts at a library type (a static member, a constructor with its argument labels) or at a
variable whose type is known (declared, or inferred from a constructor or a checked call) is
walked member by member; a member the type (or its bases) does not declare, a Swift method used
as a property or a property called as a method, and constructor labels no initializer takes are
reported. Kotlin reads Java getters as properties (getX() / isX() as x). Chains through values
whose type the checker cannot infer (lambda parameters, app types) are not followed.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE.parent
SOURCES = {"swift": APPS / "ios" / "EdgekitDemo", "kotlin": APPS / "android" / "app" / "src" / "main" / "java"}
SUFFIX = {"swift": ".swift", "kotlin": ".kt"}


@dataclass
class Link:
    name: str
    call: str | None  # argument text when called
    index: bool


def strip(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)


def _balanced(text: str, at: int, open_ch: str, close_ch: str) -> int:
    depth = 0
    for i in range(at, len(text)):
        depth += text[i] == open_ch
        depth -= text[i] == close_ch
        if depth == 0:
            return i
    return len(text) - 1


def chains(text: str):
    """(line, [Link, ...]) for every member-access chain whose root is a bare identifier."""
    i, n = 0, len(text)
    while i < n:
        m = re.compile(r"[A-Za-z_]\w*").match(text, i)
        if not m or (i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_.")):
            i += 1
            continue
        links, j = [], m.end()
        name = m.group(0)
        while True:
            generic = re.match(r"<[\w\s,.?]*>", text[j:]) if name[:1].isupper() else None
            if generic:
                j += generic.end()
            call = index = None
            if j < n and text[j] == "(":
                end = _balanced(text, j, "(", ")")
                call, j = text[j + 1:end], end + 1
            while j < n and text[j] == "[":
                j, index = _balanced(text, j, "[", "]") + 1, True
            while j < n and text[j] in "!?":
                j += 1
            links.append(Link(name, call, bool(index)))
            nxt = re.match(r"\s*\??\.\s*([A-Za-z_]\w*)", text[j:])
            if not nxt:
                break
            name, j = nxt.group(1), j + nxt.end()
        yield text.count("\n", 0, m.start()) + 1, links
        i = m.end()


class Surface:
    def __init__(self, libraries: dict):
        self.types = {name: t for lib in libraries.values() for name, t in lib["types"].items()}

    def resolve(self, name: str | None, context: str = "") -> str | None:
        if not name:
            return None
        name = re.sub(r"<.*>", "", name).replace("?", "").replace("final ", "").strip()
        scope = context
        while scope:  # the innermost enclosing scope first: Java's own name resolution
            if f"{scope}.{name}" in self.types:
                return f"{scope}.{name}"
            scope = scope.rpartition(".")[0]
        return name if name in self.types else None

    def lookup(self, type_name: str, member: str, static: bool, seen=None):
        """(declared type, kind, owner) of a member, searching the type's bases; None if absent."""
        seen = seen or set()
        entry = self.types.get(type_name)
        if entry is None or type_name in seen:
            return None
        seen.add(type_name)
        table = entry["static" if static else "members"]
        if member in table:
            return table[member], entry["kinds"].get(member, "func"), type_name
        for base in entry["bases"]:
            found = self.lookup(self.resolve(base, type_name.rpartition(".")[0]) or "", member, static, seen)
            if found:
                return found
        return None


def _labels(args: str) -> list[str]:
    labels, depth, piece = [], 0, ""
    for ch in args + ",":
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            if piece.strip():
                head = re.match(r"\s*(\w+)\s*:(?!:)", piece)
                labels.append(head.group(1) if head else "_")
            piece = ""
        else:
            piece += ch
    return labels


def _subsequence(used: list[str], allowed: list[str]) -> bool:
    it = iter(allowed)
    return all(any(u == a for a in it) for u in used)


class FileCheck:
    def __init__(self, path: Path, language: str, surface: Surface, names: dict[str, str]):
        self.path, self.language, self.surface, self.names = path, language, surface, names
        self.vars: dict[str, str] = {}  # variable -> type (a surface type, or "[T]" for arrays of it)
        self.problems: list[str] = []

    def report(self, line: int, text: str) -> None:
        self.problems.append(f"{self.path.relative_to(APPS)}:{line}: {text}")

    def declared(self, text: str) -> None:
        """Variables with a written type: `name: Type` (Swift and Kotlin alike), `[Type]`, Array<Type>."""
        for name, typ in re.findall(r"\b(\w+)\s*:\s*(\[?\s*[A-Z][\w.]*(?:<[\w\s,.]*>)?\s*\]?|Array<\w+>)", text):
            array = typ.startswith("[") or typ.startswith("Array<")
            base = self.names.get(re.sub(r"^\[|\]$|^Array<|>$|<.*>", "", typ).strip())
            if base:
                self.vars[name] = f"[{base}]" if array else base

    def walk(self, line: int, links: list[Link], report: bool = True) -> str | None:
        """The type at the end of the chain (None when it leaves the known surface)."""
        root = links[0]
        current = self.vars.get(root.name)
        static = False
        if current is None:
            current = self.names.get(root.name)
            if current is None:
                return None
            static = root.call is None
            if root.call is not None and not self.constructor(line, current, root.call, report):
                return None
        if root.index and current and current.startswith("["):
            current = current[1:-1]
        for link in links[1:]:
            if current is None or current.startswith("["):
                return None
            found = self.member(current, link, static)
            if found is None:
                nested = self.surface.resolve(link.name, current)
                if static and nested:
                    current, static = nested, link.call is None
                    if link.call is not None and not self.constructor(line, nested, link.call, report):
                        return None
                    continue
                if report:
                    self.report(line, f"{current.rpartition('.')[2]}.{link.name}: no such {'static ' if static else ''}member in the pinned API")
                return None
            declared, kind, owner = found
            if self.language == "swift" and (kind == "func") != (link.call is not None):
                if report:
                    self.report(line, f"{current}.{link.name} is a {'method: call it' if kind == 'func' else 'property, not a method'}")
                return None
            array = declared and (declared.startswith("[") or declared.endswith("[]"))
            target = self.surface.resolve(re.sub(r"^\[|\]$|\[\]$", "", declared or ""), owner.rpartition(".")[0] or owner)
            if target is None and declared:  # a name nested in the owner (Interpreter.Options' "Options")
                target = self.surface.resolve(re.sub(r"<.*", "", declared).strip("?"), owner)
            current = f"[{target}]" if array and target else target
            if link.index and current and current.startswith("["):
                current = current[1:-1]
            static = False
        return current

    def member(self, type_name: str, link: Link, static: bool):
        found = self.surface.lookup(type_name, link.name, static)
        if found or self.language != "kotlin" or link.call is not None:
            return found
        cap = link.name[:1].upper() + link.name[1:]
        for getter in (f"get{cap}", f"is{cap}"):  # Kotlin reads Java getters as properties
            found = self.surface.lookup(type_name, getter, static)
            if found:
                return found[0], "var", found[2]
        return None

    def constructor(self, line: int, type_name: str, args: str, report: bool) -> bool:
        inits = self.surface.types[type_name]["inits"]
        if self.language == "kotlin" or not inits:
            ok = bool(inits) or self.language == "swift"
        else:
            ok = any(_subsequence(_labels(args), labels) for labels in inits)
        if not ok and report:
            self.report(line, f"{type_name}({', '.join(l + ':' for l in _labels(args))}) matches no initializer in the pinned API")
        return ok

    def run(self) -> list[str]:
        text = strip(self.path.read_text(encoding="utf-8"))
        self.declared(text)
        # inferred variables: name = <chain>, in file order (Swift `let`/`var`/`if let`/`guard let`, Kotlin `val`/`var`)
        for m in re.finditer(r"\b(?:let|var|val)\s+(\w+)\s*(?::[^=\n]*)?=\s*(?:try\s+|await\s+)*", text):
            if m.group(1) in self.vars:
                continue
            for _, links in chains(text[m.end():m.end() + 400]):
                found = self.walk(0, links, report=False)
                if found:
                    self.vars[m.group(1)] = found
                break
        for line, links in chains(text):
            if len(links) > 1 or (links[0].call is not None and links[0].name in self.names):
                self.walk(line, links)
        return self.problems


def imported_names(text: str, language: str, library: dict, surface: Surface) -> dict[str, str]:
    """Simple name -> surface type for the library types this file can name."""
    if language == "swift":
        if not any(re.search(rf"^\s*import\s+{re.escape(mod)}\b", text, re.M) for mod in library["imports"]):
            return {}
        return {name: name for name in library["types"]}
    names = {}
    for imported in re.findall(r"^\s*import\s+([\w.]+)", text, re.M):
        if imported in library["types"]:
            names[imported.rpartition(".")[2]] = imported
        elif imported.endswith(".*") and imported[:-2] in library["imports"]:
            names.update({t.rpartition(".")[2]: t for t in library["types"] if t.rpartition(".")[0] == imported[:-2]})
    return names


def check(surface_doc: dict, sources: dict[str, Path] = SOURCES) -> list[str]:
    problems = []
    for language, folder in sources.items():
        # one namespace per language: ExecuTorch's Swift Tensor is not LiteRT's Java Tensor
        surface = Surface({k: v for k, v in surface_doc["libraries"].items() if v["language"] == language})
        for path in sorted(folder.rglob("*" + SUFFIX[language])):
            text = path.read_text(encoding="utf-8")
            names = {}
            for library in surface_doc["libraries"].values():
                if library["language"] == language:
                    names.update(imported_names(text, language, library, surface))
            if names:
                problems += FileCheck(path, language, surface, names).run()
    return problems


def main() -> int:
    problems = check(json.loads((HERE / "surface.json").read_text()))
    for line in problems:
        print(line)
    print(f"{len(problems)} call(s) outside the pinned API")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
