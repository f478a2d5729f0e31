#!/usr/bin/env python3
"""Checks the relative links of the project's markdown files.

For every markdown link [text](target) or image ![alt](target) in README.md,
SECURITY.md and docs/*.md whose target is not absolute (http:, https:,
mailto:, or any other scheme): the file it names exists, relative to the
linking file's folder, and when the target has a #fragment, a heading of the
target file (or of the linking file itself, for a bare #fragment) produces
that anchor under GitHub's rules: lowercased, punctuation other than '-' and
'_' removed, spaces turned into '-', and repeated headings suffixed -1, -2...

Links inside fenced code blocks and inline code spans are ignored.

Usage: python3 .ci/check_links.py [REPO]   (default: the repository this file is in)
Exits 1 when a link is broken, listing each.
"""

import glob
import os
import re
import sys
import unicodedata

REPO = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def strip_code(lines, blank_spans=True):
    """The lines outside fenced code blocks, with inline code spans blanked
    (unless blank_spans is false), paired with their line numbers."""
    out = []
    fenced = False
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        if blank_spans:
            line = re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), line)
        out.append((number, line))
    return out


def slug(text):
    """GitHub's anchor for a heading's text."""
    # Markdown in the heading renders to its text: links keep their text,
    # emphasis and code marks go.
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.strip().lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in "-_ " or category[0] in ("L", "N") or category == "Mn":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen = {}
        found = set()
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for _, line in strip_code(lines, blank_spans=False):
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        cache[path] = found
    return cache[path]


def main():
    files = [os.path.join(REPO, "README.md"), os.path.join(REPO, "SECURITY.md")]
    files += sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
    files = [f for f in files if os.path.exists(f)]
    broken = []
    checked = 0
    for source in files:
        with open(source, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for number, line in strip_code(lines):
            for m in LINK.finditer(line):
                target = m.group(1)
                if SCHEME.match(target):
                    continue
                checked += 1
                path, _, fragment = target.partition("#")
                where = f"{os.path.relpath(source, REPO)}:{number}: {target}"
                resolved = (
                    os.path.normpath(os.path.join(os.path.dirname(source), path)) if path else source
                )
                if not os.path.exists(resolved):
                    broken.append(f"{where}: no file {os.path.relpath(resolved, REPO)}")
                    continue
                if fragment:
                    if not resolved.endswith(".md"):
                        broken.append(f"{where}: a #fragment on a file that is not markdown")
                    elif fragment not in anchors(resolved):
                        broken.append(
                            f"{where}: no heading in {os.path.relpath(resolved, REPO)} makes #{fragment}"
                        )
    names = ", ".join(os.path.relpath(f, REPO) for f in files)
    print(f"{len(files)} files ({names}), {checked} relative links checked, {len(broken)} broken")
    for line in broken:
        print("  " + line)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
