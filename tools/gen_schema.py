#!/usr/bin/env python3
"""Write ``docs/schema/plant.schema.json`` from the plant config models.

Run after changing any model of ``petra.config`` (including the driver models):
``python tools/gen_schema.py``. ``--check`` exits 1 when the file is stale instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from petra.config._schema import render_schema

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "schema" / "plant.schema.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file differs from a fresh generation")
    args = parser.parse_args(argv)
    text = render_schema()
    out: Path = args.out
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(f"{out} is stale: run python tools/gen_schema.py", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
