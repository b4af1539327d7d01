"""``python -m gears_sdk.worker``: run a worker on stdin/stdout (for local debugging)."""

from gears_sdk.worker.main import main

raise SystemExit(main())
