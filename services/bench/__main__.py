"""``python -m services.bench passthrough|heal-load ...``: the benchmark's children."""

from services.bench.loads import main

raise SystemExit(main())
