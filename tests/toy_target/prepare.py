"""A toy research target for fast tests of the loop: no torch, a known optimum.

`--resolve` follows the tinygpt contract: one line of JSON describing the corpus.
"""
import hashlib
import json
import sys
from pathlib import Path

if __name__ == "__main__" and "--resolve" in sys.argv:
    data = sys.argv[sys.argv.index("--data") + 1] if "--data" in sys.argv else __file__
    path = Path(data).resolve()
    if not path.is_file():
        print(f"corpus file {path} does not exist", file=sys.stderr)
        sys.exit(2)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    print(json.dumps({"path": str(path), "sha256": digest, "bytes": path.stat().st_size, "name": path.name}))
