"""Builds the cloudsync_sqlite wheel from a prepared folder, with the standard library only.

    python3 build_wheel.py <folder> <version> <out_dir>

<folder> holds the package (`cloudsync_sqlite/` with the native library inside) and
`README.md`; the wheel is written to <out_dir> and its path printed. A wheel is a zip
file with `*.dist-info/{METADATA,WHEEL,RECORD}` (PEP 427, PEP 491); its platform tag
is derived from the library itself: the newest glibc symbol version it needs decides
`manylinux_<major>_<minor>_<arch>` (PEP 600), so pip refuses it on older systems
instead of failing at load time.
"""

import base64
import hashlib
import os
import platform
import re
import subprocess
import sys
import zipfile

NAME = "cloudsync_sqlite"


def platform_tag(library: str) -> str:
    arch = platform.machine()
    if sys.platform != "linux":
        raise SystemExit(f"wheels are built on Linux here, not {sys.platform} (docs/packaging.md)")
    out = subprocess.run(["objdump", "-T", library], check=True, capture_output=True, text=True).stdout
    versions = [tuple(int(x) for x in m.groups()) for m in re.finditer(r"GLIBC_(\d+)\.(\d+)", out)]
    major, minor = max(versions, default=(2, 17))
    # manylinux2014 (glibc 2.17) is the oldest tag pip still knows.
    major, minor = max((major, minor), (2, 17))
    return f"manylinux_{major}_{minor}_{arch}"


def record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def main() -> None:
    folder, version, out_dir = sys.argv[1:4]
    package = os.path.join(folder, NAME)
    library = os.path.join(package, "libcloudsync.so")
    tag = f"py3-none-{platform_tag(library)}"
    readme = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    dist_info = f"{NAME}-{version}.dist-info"
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {version}\n"
        "Summary: cloudsync's SQLite extension: offline-first sync for SQLite, loadable from Python\n"
        "License: Apache-2.0\n"
        "Requires-Python: >=3.8\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme
    )
    wheel = f"Wheel-Version: 1.0\nGenerator: cloudsync xtask\nRoot-Is-Purelib: false\nTag: {tag}\n"
    files = []
    for base, _, names in os.walk(package):
        for n in sorted(names):
            if n.endswith(".pyc") or n == "__pycache__":
                continue
            full = os.path.join(base, n)
            files.append((os.path.relpath(full, folder), open(full, "rb").read()))
    files.append((f"{dist_info}/METADATA", metadata.encode()))
    files.append((f"{dist_info}/WHEEL", wheel.encode()))
    path = os.path.join(out_dir, f"{NAME}-{version}-{tag}.whl")
    records = [record_line(p, d) for p, d in files] + [f"{dist_info}/RECORD,,"]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p, d in files:
            info = zipfile.ZipInfo(p, date_time=(2026, 1, 1, 0, 0, 0))
            # The native library must stay executable once unpacked.
            info.external_attr = (0o755 if p.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, d)
        z.writestr(zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(2026, 1, 1, 0, 0, 0)), "\n".join(records) + "\n")
    print(path)


if __name__ == "__main__":
    main()
