"""``python -m compression``: the command line (``compression.cli``)."""
from compression.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
