"""``python -m services.cli ...``: how the stack starts each service as a process."""

from services.cli import main

raise SystemExit(main())
