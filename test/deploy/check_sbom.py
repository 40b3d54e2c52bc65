#!/usr/bin/env python3
"""Checks an SBOM from scripts/sbom.py against the machine it describes.

Usage: check_sbom.py SBOM.json PATH/TO/drawbridge
Every library ldd resolves for the binary is a component; each component's
version is what dpkg says of its package; its MD5 and SHA-256 match the file,
and the MD5 is the one in the package's dpkg md5sums; the binary's SHA-256 is
the metadata component's. Prints the problems (or the count checked); exit 1
on any problem.
"""
import hashlib
import json
import re
import subprocess
import sys


def main():
    bom = json.load(open(sys.argv[1]))
    binary = sys.argv[2]
    problems = []
    if bom["metadata"]["component"]["hashes"][0]["content"] != hashlib.sha256(open(binary, "rb").read()).hexdigest():
        problems.append("the binary's SHA-256 differs")
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    wanted = set(re.findall(r"^\s*(\S+) => /", ldd, re.M)) | {
        m.split("/")[-1] for m in re.findall(r"^\s*(/\S*ld-linux\S*)", ldd, re.M)}
    names = {c["name"] for c in bom["components"]}
    if wanted - names:
        problems.append(f"libraries missing: {sorted(wanted - names)}")
    for c in bom["components"]:
        props = {p["name"]: p["value"] for p in c["properties"]}
        pkg = props["drawbridge:debian_package"]
        have = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                              capture_output=True, text=True).stdout
        if have != c["version"]:
            problems.append(f"{c['name']}: version {c['version']}, dpkg says {have}")
        hashes = {h["alg"]: h["content"] for h in c["hashes"]}
        data = open(props["drawbridge:file"], "rb").read()
        if hashes.get("SHA-256") != hashlib.sha256(data).hexdigest() or \
                hashes.get("MD5") != hashlib.md5(data).hexdigest():
            problems.append(f"{c['name']}: checksums do not match {props['drawbridge:file']}")
        md5sums = subprocess.run(["dpkg-query", "--control-show", pkg, "md5sums"],
                                 capture_output=True, text=True).stdout
        if hashes.get("MD5") not in md5sums:
            problems.append(f"{c['name']}: MD5 not in {pkg}'s dpkg md5sums")
    print("\n".join(problems) or f"{len(bom['components'])} components checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
