#!/usr/bin/env python3
"""Writes a CycloneDX 1.5 JSON SBOM of the drawbridge binary (`make sbom`).

Usage: sbom.py PATH/TO/drawbridge [OUT.json]

Every shared library the binary loads (as ldd resolves it on this machine) is a
component, named by the Debian package that installed it: the package's exact
version, a package URL (pkg:deb/debian/NAME@VERSION?arch=ARCH), the file's MD5
as dpkg recorded it (/var/lib/dpkg/info/PKG.md5sums) and its SHA-256. A file
whose MD5 no longer matches dpkg's record is refused: the SBOM would describe a
library that is not the one installed. The libraries the binary names itself
(DT_NEEDED) are its direct dependencies; the rest hang off the binary too, as
dependencies of those (ldd does not say which one pulled which).
"""
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def linked_libraries(binary):
    """(soname, path) of every library ldd resolves, and the loader."""
    libs = []
    for line in run("ldd", binary).splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line)
        if m:
            libs.append((m.group(1), m.group(2)))
            continue
        m = re.match(r"\s*(/\S*ld-linux\S*)", line)
        if m:
            libs.append((os.path.basename(m.group(1)), m.group(1)))
    return libs


def needed(binary):
    return {m.group(1) for m in re.finditer(r"NEEDED\s+(\S+)", run("objdump", "-p", binary))}


def candidates(path):
    """The names dpkg may know a library file by: Debian 12 is merged-/usr, so
    /lib/x/y may be recorded as /usr/lib/x/y or the reverse, or only the
    symlink (the soname) or only the real file."""
    real = os.path.realpath(path)
    out = [path, real]
    for p in (path, real):
        if p.startswith("/lib"):
            out.append("/usr" + p)
        elif p.startswith("/usr/lib"):
            out.append(p[len("/usr"):])
    return out


def owners(paths):
    """{path: package} for every path dpkg knows, in one dpkg-query call."""
    r = subprocess.run(["dpkg-query", "-S", *paths], capture_output=True, text=True)
    found = {}
    for line in r.stdout.splitlines():
        pkg, _, known = line.partition(": ")
        if "diversion" not in pkg:
            for p in known.split(", "):
                found[p.strip()] = pkg.strip()
    return found


def dpkg_md5sums(package, arch):
    """{path without leading /: md5} as dpkg recorded the package's files."""
    name = package.split(":")[0]
    for file in (f"{package}.md5sums", f"{name}.md5sums", f"{name}:{arch}.md5sums"):
        path = os.path.join("/var/lib/dpkg/info", file)
        if os.path.exists(path):
            sums = {}
            for line in open(path):
                md5, _, f = line.strip().partition("  ")
                sums[f] = md5
            return sums
    return {}


def dpkg_md5(sums, real_path):
    """dpkg's MD5 of the file behind real_path (by any of its merged-/usr names)."""
    for f, md5 in sums.items():
        if os.path.realpath("/" + f) == real_path:
            return md5
    return None


def main():
    binary = os.path.realpath(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) > 2 else None
    arch = run("dpkg", "--print-architecture").strip()
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    version = re.search(r"project\(drawbridge VERSION ([0-9.]+)",
                        open(os.path.join(src, "CMakeLists.txt")).read()).group(1)
    direct = needed(binary)
    libs = linked_libraries(binary)
    known = owners(sorted({c for _, path in libs for c in candidates(path)}))
    packages = {}
    for soname, path in libs:
        package = next((known[c] for c in candidates(path) if c in known), None)
        if package is None:
            raise SystemExit(f"sbom.py: no Debian package owns {path}")
        packages[soname] = package
    versions = dict(line.split("\t", 1) for line in run(
        "dpkg-query", "-W", "-f=${binary:Package}\t${Version}\n",
        *sorted(set(packages.values()))).splitlines())
    sums_of = {}
    components, direct_refs, indirect_refs = [], [], []
    for soname, path in libs:
        package = packages[soname]
        real = os.path.realpath(path)
        pkg_version = versions.get(package) or versions.get(package.split(":")[0])
        if package not in sums_of:
            sums_of[package] = dpkg_md5sums(package, arch)
        md5 = dpkg_md5(sums_of[package], real)
        if md5 is None:
            raise SystemExit(f"sbom.py: dpkg has no checksum for {real} ({package})")
        if digest(real, "md5") != md5:
            raise SystemExit(f"sbom.py: {real} does not match dpkg's checksum for {package}: "
                             "modified after installation; refusing to describe it")
        name = package.split(":")[0]
        purl = f"pkg:deb/debian/{name}@{pkg_version}?arch={arch}&distro=debian-12"
        ref = f"{purl}#{soname}"
        components.append({
            "type": "library",
            "bom-ref": ref,
            "name": soname,
            "version": pkg_version,
            "purl": purl,
            "hashes": [{"alg": "MD5", "content": md5},
                       {"alg": "SHA-256", "content": digest(real, "sha256")}],
            "properties": [
                {"name": "drawbridge:debian_package", "value": name},
                {"name": "drawbridge:file", "value": real},
                {"name": "drawbridge:linked", "value": "direct" if soname in direct else "indirect"},
            ],
        })
        (direct_refs if soname in direct else indirect_refs).append(ref)
    root_ref = f"pkg:generic/drawbridge@{version}"
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "drawbridge scripts/sbom.py",
                                      "version": version}]},
            "component": {
                "type": "application",
                "bom-ref": root_ref,
                "name": "drawbridge",
                "version": version,
                "purl": root_ref,
                "hashes": [{"alg": "SHA-256", "content": digest(binary, "sha256")}],
            },
        },
        "components": components,
        "dependencies": [{"ref": root_ref, "dependsOn": direct_refs + indirect_refs}]
        + [{"ref": r, "dependsOn": []} for r in direct_refs + indirect_refs],
    }
    text = json.dumps(bom, indent=2) + "\n"
    if out:
        with open(out, "w") as f:
            f.write(text)
        print(f"{out}: {len(components)} libraries from "
              f"{len({c['purl'] for c in components})} Debian packages")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
