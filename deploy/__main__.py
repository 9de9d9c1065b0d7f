"""Entry point of the packaged app (MAP): `python /opt/holoscan/app`, the same as `python deploy/app.py`."""

import sys

from app import main

if __name__ == "__main__":
    sys.exit(main())
